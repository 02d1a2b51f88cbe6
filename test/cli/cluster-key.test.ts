// `hermes-kv keygen` and `--cluster-key-file`, as a user runs them: real processes of src/main.ts.
// keygen writes 32 random bytes as hex with mode 0600 and never overwrites; node and local refuse a
// key file that is missing, malformed or readable by others, with one line that says why and exit
// 64, before they bind or write anything.

import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterKey } from "../../src/base/cluster-key.ts";
import { repoRoot } from "../cluster/helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "hermes-kv-keygen-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const proc = Bun.spawnSync([process.execPath, "src/main.ts", ...args], { cwd: repoRoot, stdin: "ignore" });
  return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

describe("hermes-kv keygen", () => {
  test("writes a 32-byte hex key with mode 0600; two keys differ; never overwrites", () => {
    const a = join(dir, "a.key");
    const b = join(dir, "b.key");
    expect(run(["keygen", a]).code).toBe(0);
    expect(run(["keygen", b]).code).toBe(0);
    const text = readFileSync(a, "utf8");
    expect(text).toMatch(/^[0-9a-f]{64}\n$/);
    expect(parseClusterKey(text).length).toBe(32);
    expect(statSync(a).mode & 0o777).toBe(0o600);
    expect(readFileSync(b, "utf8")).not.toBe(text);
    const again = run(["keygen", a]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("refusing to overwrite");
    expect(readFileSync(a, "utf8")).toBe(text);
    // The secret is never printed.
    expect(again.stdout + again.stderr).not.toContain(text.trim());
  });

  test("usage: no file, too many arguments, --help", () => {
    expect(run(["keygen"]).code).toBe(64);
    expect(run(["keygen", join(dir, "x"), join(dir, "y")]).code).toBe(64);
    expect(existsSync(join(dir, "x"))).toBe(false);
    const help = run(["keygen", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("mode 600");
  });
});

describe("--cluster-key-file", () => {
  const cases: [string, (path: string) => void, string][] = [
    ["missing", () => {}, "cannot read it (ENOENT)"],
    ["short", (p) => writeFileSync(p, "abcd\n", { mode: 0o600 }), "64 hex digits"],
    ["not hex", (p) => writeFileSync(p, "g".repeat(64), { mode: 0o600 }), "hex digits only"],
    ["all zeros", (p) => writeFileSync(p, "0".repeat(64), { mode: 0o600 }), "all zeros"],
    [
      "readable by others",
      (p) => {
        writeFileSync(p, "ab".repeat(32));
        chmodSync(p, 0o644);
      },
      "chmod 600",
    ],
  ];
  for (const [name, make, message] of cases) {
    test(`node and local refuse a key file that is ${name}, with one line, exit 64`, () => {
      const path = join(dir, `bad-${name.replaceAll(" ", "-")}.key`);
      make(path);
      // Ports that would be bound if the flags were accepted: nothing may answer there afterwards.
      const node = run([
        "node",
        "--id",
        "0",
        "--http",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:1",
        "--etcd",
        "http://127.0.0.1:1",
        "--cluster-key-file",
        path,
      ]);
      expect(node.code).toBe(64);
      expect(node.stderr).toContain(message);
      expect(node.stderr.trim().split("\n").length).toBe(1);
      const local = run(["local", "--http-port", "1", "--cluster-key-file", path]);
      expect(local.code).toBe(64);
      expect(local.stderr).toContain(message);
    });
  }
});
