// The node's etcd security flags: what they read, and the usage errors for bad input (checked
// before anything starts). The end-to-end runs against a real etcd are in test/cluster/etcd-secure.test.ts.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../src/cli/args.ts";
import { etcdPasswordEnv, etcdSecurityOf, type EtcdFlagValues } from "../../src/cli/etcd-flags.ts";
import { currentPassword } from "../../src/membership/etcd-auth.ts";
import { makeTestCerts, type TestCerts } from "../lib/etcd-certs.ts";

const repoRoot = join(import.meta.dir, "..", "..");
let certs: TestCerts;
let dir: string;

beforeAll(() => {
  certs = makeTestCerts();
  dir = mkdtempSync(join(tmpdir(), "hermes-etcd-flags-"));
  writeFileSync(join(dir, "password"), "s3cret-from-file\n");
  writeFileSync(join(dir, "empty"), "\n");
});

afterAll(() => {
  certs?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const none: EtcdFlagValues = {
  "etcd-cacert": undefined,
  "etcd-cert": undefined,
  "etcd-key": undefined,
  "etcd-user": undefined,
  "etcd-password-file": undefined,
};
const https = ["https://127.0.0.1:2379"];

function usageError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error("expected a usage error");
}

describe("etcdSecurityOf", () => {
  test("no flags: plain etcd", () => {
    expect(etcdSecurityOf(none, ["http://127.0.0.1:2379"], {})).toBeUndefined();
  });

  test("TLS files are read; the password comes from the file's first line, else the environment", () => {
    const flags: EtcdFlagValues = {
      "etcd-cacert": certs.caFile,
      "etcd-cert": certs.clientCertFile,
      "etcd-key": certs.clientKeyFile,
      "etcd-user": "hermes",
      "etcd-password-file": join(dir, "password"),
    };
    const security = etcdSecurityOf(flags, https, { [etcdPasswordEnv]: "from-env" })!;
    expect(security.tls).toEqual({
      ca: certs.pem(certs.caFile),
      cert: certs.pem(certs.clientCertFile),
      key: certs.pem(certs.clientKeyFile),
    });
    expect(security.credentials).toMatchObject({ user: "hermes", password: "s3cret-from-file" });
    // Read again before each authentication (a rotated password); the start value when it cannot be read.
    writeFileSync(join(dir, "rotated"), "first\n");
    const rotating = etcdSecurityOf(
      { ...none, "etcd-user": "hermes", "etcd-password-file": join(dir, "rotated") },
      https,
      {},
    );
    writeFileSync(join(dir, "rotated"), "second\n");
    expect(rotating!.credentials!.password).toBe("first");
    expect(currentPassword(rotating!.credentials!)).toBe("second");
    rmSync(join(dir, "rotated"));
    expect(currentPassword(rotating!.credentials!)).toBe("first");
    const fromEnv = etcdSecurityOf({ ...none, "etcd-user": "hermes" }, https, { [etcdPasswordEnv]: "from-env" })!;
    expect(fromEnv).toEqual({ credentials: { user: "hermes", password: "from-env" } });
  });

  test("bad input is a usage error that says what is wrong", () => {
    const cases: [Partial<EtcdFlagValues>, string[], Record<string, string>, string][] = [
      [{ "etcd-user": "hermes:pw" }, https, {}, "never on the command line"],
      [{ "etcd-user": "hermes" }, https, {}, "needs a password"],
      [{ "etcd-user": "hermes", "etcd-password-file": join(dir, "empty") }, https, {}, "is empty"],
      [{ "etcd-user": "hermes", "etcd-password-file": join(dir, "missing") }, https, {}, "ENOENT"],
      [{ "etcd-password-file": join(dir, "password") }, https, {}, "needs --etcd-user"],
      [{ "etcd-cert": certs.clientCertFile }, https, {}, "go together"],
      [{ "etcd-cacert": certs.caFile }, ["http://127.0.0.1:2379"], {}, "need https://"],
      [{ "etcd-cacert": join(dir, "password") }, https, {}, "holds no PEM certificate"],
      [{ "etcd-cert": certs.clientCertFile, "etcd-key": certs.clientCertFile }, https, {}, "no PEM private key"],
      [{ "etcd-cacert": dir }, https, {}, "not a regular file"],
    ];
    for (const [flags, endpoints, env, message] of cases) {
      expect(usageError(() => etcdSecurityOf({ ...none, ...flags }, endpoints, env))).toContain(message);
    }
  });
});

describe("hermes-kv node", () => {
  test("--help documents the etcd security flags", async () => {
    const proc = Bun.spawn([process.execPath, "src/main.ts", "node", "--help"], { cwd: repoRoot, stdout: "pipe" });
    const help = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    for (const flag of ["--etcd-cacert", "--etcd-cert", "--etcd-key", "--etcd-user", "--etcd-password-file"])
      expect(help).toContain(flag);
    expect(help).toContain(etcdPasswordEnv);
  });

  test("a password on the command line is refused with one line and exit 64, before anything starts", async () => {
    const proc = Bun.spawn(
      [process.execPath, "src/main.ts", "node", "--id", "0", "--http", "127.0.0.1:1", "--listen", "127.0.0.1:1"].concat(
        ["--etcd", "http://127.0.0.1:1", "--etcd-user", "hermes:secret"],
      ),
      { cwd: repoRoot, stdout: "pipe", stderr: "pipe" },
    );
    const stderr = await new Response(proc.stderr).text();
    expect(await proc.exited).toBe(64);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toContain("never on the command line");
  });
});
