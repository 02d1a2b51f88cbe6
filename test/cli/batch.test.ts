// `hermes-kv batch [FILE|-]` against a real HTTP server (createApp(memory backend) under Bun.serve
// on 127.0.0.1): the batch from a file and from stdin, what it prints, its exit codes, its help;
// and once through the real entry point (src/main.ts) in a child process with a real stdin.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OpStatus } from "../../src/base/kinds.ts";
import { type ClientIo, batchFailuresShownMax, runClientCommand } from "../../src/cli/client.ts";
import { createApp } from "../../src/http/app.ts";
import { batchOpsMax } from "../../src/http/routes-batch.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

let backend: MemoryBackend;
let server: ReturnType<typeof Bun.serve>;
let endpoint: string;
let dir: string;

beforeAll(() => {
  backend = new MemoryBackend({ keyBytesMax: 128, valueBytesMax: 4096 });
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(backend).fetch });
  endpoint = `http://127.0.0.1:${server.port}`;
  dir = mkdtempSync(join(tmpdir(), "hermes-batch-"));
});

afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const encoder = new TextEncoder();
const b64 = (bytes: string | Uint8Array): string =>
  Buffer.from(typeof bytes === "string" ? encoder.encode(bytes) : bytes).toString("base64");

async function run(
  argv: string[],
  options: { stdin?: string | Uint8Array; endpoint?: string | null } = {},
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const decoder = new TextDecoder();
  const io: ClientIo = {
    stdout: (data) => {
      stdout += typeof data === "string" ? data : decoder.decode(data);
    },
    stderr: (text) => {
      stderr += text;
    },
    readStdin: async (bytesMax) => {
      const input =
        typeof options.stdin === "string" ? encoder.encode(options.stdin) : (options.stdin ?? new Uint8Array(0));
      return input.length > bytesMax ? null : input;
    },
    env: {},
  };
  const target = options.endpoint === undefined ? endpoint : options.endpoint;
  const code = await runClientCommand(target === null ? argv : [...argv, "--endpoint", target], io);
  return { code, stdout, stderr };
}

function fileWith(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

interface Result {
  status: number;
  value?: string | number;
  etag?: string;
  error?: { code: string; message: string };
}

function resultsOf(stdout: string): Result[] {
  return (JSON.parse(stdout) as { results: Result[] }).results;
}

describe("batch from a file and from stdin", () => {
  test("a file: every op kind, results in order, one per line; exit 0", async () => {
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const path = fileWith(
      "ops.json",
      JSON.stringify({
        ops: [
          { op: "put", key: "f/a", value: b64(allBytes) },
          { op: "get", key: "f/a" },
          { op: "cas", key: "f/a", etag: '"2.1"', value: b64("second") },
          { op: "create", key: "f/new", value: b64("") },
          { op: "incr", key: "f/n", by: 4 },
          { op: "delete", key: "f/new" },
        ],
      }),
    );
    const result = await run(["batch", path]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    // One result per line, and still one JSON document.
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(6 + 2);
    expect(lines[0]).toBe('{"results":[');
    expect(lines.at(-1)).toBe("]}");
    const results = resultsOf(result.stdout);
    expect(results).toEqual([
      { status: 200, etag: '"2.1"' },
      { status: 200, value: b64(allBytes), etag: '"2.1"' },
      { status: 200, etag: '"3.1"' },
      { status: 200, etag: '"1.1"' },
      { status: 200, value: 4, etag: '"1.1"' },
      { status: 200, etag: '"3.1"' },
    ]);
    // The batch really wrote: the single-key command reads what it wrote.
    const get = await run(["get", "f/a"]);
    expect(get).toMatchObject({ code: 0, stdout: "second\n" });
  });

  test("stdin, with - and with no FILE at all", async () => {
    const body = JSON.stringify({
      ops: [
        { op: "put", key: "s/k", value: b64("from stdin") },
        { op: "get", key: "s/k" },
      ],
    });
    for (const argv of [["batch", "-"], ["batch"]]) {
      const result = await run(argv, { stdin: body });
      expect(result.code).toBe(0);
      const results = resultsOf(result.stdout);
      expect(results[1]?.value).toBe(b64("from stdin"));
    }
  });

  test("the real entry point reads the batch from its stdin", async () => {
    const body = JSON.stringify({
      ops: [
        { op: "incr", key: "p/n", by: 7 },
        { op: "get", key: "p/absent" },
      ],
    });
    const child = Bun.spawn(
      [process.execPath, join(import.meta.dir, "../../src/main.ts"), "batch", "-", "--endpoint", endpoint],
      {
        stdin: new Blob([body]),
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    // The get of an absent key is the first op that did not succeed: exit 1, as `get` would.
    expect(code).toBe(1);
    expect(resultsOf(stdout).map((r) => r.status)).toEqual([200, 404]);
    expect(stderr).toBe("Error: op 1: 404 key not found\n");
  });
});

describe("exit codes", () => {
  test("the first op that did not succeed decides, as its own command would; every failed op is named", async () => {
    await run(["put", "x/k", "v"]);
    const body = JSON.stringify({
      ops: [
        { op: "get", key: "x/k" },
        { op: "cas", key: "x/k", etag: '"9.1"', value: b64("w") },
        { op: "get", key: "x/absent" },
      ],
    });
    const result = await run(["batch"], { stdin: body });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Error: op 1: 412 precondition failed: the key's current ETag is "2.1" (If-Match)\nError: op 2: 404 key not found\n`,
    );
    expect(resultsOf(result.stdout).map((r) => r.status)).toEqual([200, 412, 404]);
  });

  test.each([
    [OpStatus.Unknown, 3],
    [OpStatus.Busy, 3],
    [OpStatus.Unavailable, 3],
    [OpStatus.Aborted, 3],
    [OpStatus.NotANumber, 4],
    [OpStatus.StoreFull, 4],
  ])("an op answered with OpStatus %d exits %d", async (status, exit) => {
    backend.failNext(status);
    const result = await run(["batch"], {
      stdin: JSON.stringify({
        ops: [
          { op: "incr", key: "e/n" },
          { op: "incr", key: "e/n" },
        ],
      }),
    });
    expect(result.code).toBe(exit);
    expect(resultsOf(result.stdout)[1]?.status).toBe(200);
  });

  test(`only the first ${batchFailuresShownMax} failed ops are named on stderr; stdout has them all`, async () => {
    const ops = Array.from({ length: 25 }, (_, i) => ({ op: "get", key: `m/absent${i}` }));
    const result = await run(["batch"], { stdin: JSON.stringify({ ops }) });
    expect(result.code).toBe(1);
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines.length).toBe(batchFailuresShownMax + 1);
    expect(lines.at(-1)).toBe(`Error: ... and ${25 - batchFailuresShownMax} more ops that did not succeed`);
    expect(resultsOf(result.stdout).length).toBe(25);
  });

  test("a batch the node refuses (invalid, too many ops) exits 64 with the node's message, and runs nothing", async () => {
    const before = backend.submitCount;
    const badKey = await run(["batch"], {
      stdin: JSON.stringify({
        ops: [
          { op: "put", key: "ok", value: "" },
          { op: "get", key: "" },
        ],
      }),
    });
    expect(badKey.code).toBe(64);
    expect(badKey.stderr).toStartWith("Error: ops[1].key: the key is empty");
    expect(badKey.stdout).toBe("");
    const tooMany = await run(["batch"], {
      stdin: JSON.stringify({ ops: Array.from({ length: batchOpsMax + 1 }, () => ({ op: "get", key: "k" })) }),
    });
    expect(tooMany.code).toBe(64);
    expect(tooMany.stderr).toContain(`the most accepted is ${batchOpsMax}`);
    const notJson = await run(["batch"], { stdin: "put k v" });
    expect(notJson.code).toBe(64);
    expect(notJson.stderr).toContain("not valid JSON");
    expect(backend.submitCount).toBe(before);
  });

  test("usage errors exit 64: a missing file, two files, an unknown flag", async () => {
    const missing = await run(["batch", join(dir, "no-such-file.json")]);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain("no-such-file.json");
    expect(missing.stderr).toContain("hermes-kv batch --help");
    expect((await run(["batch", "a.json", "b.json"])).code).toBe(64);
    expect((await run(["batch", "--atomic"])).code).toBe(64);
  });

  test("an unreachable node exits 3 and says the ops may or may not have taken effect", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${closed.port}`;
    closed.stop(true);
    const result = await run(["batch"], { stdin: '{"ops":[]}', endpoint: url });
    expect(result.code).toBe(3);
    expect(result.stderr).toStartWith(`Error: cannot reach ${url}`);
  });
});

describe("--binary", () => {
  test("the same file sent in the binary format prints the same results, and writes the same", async () => {
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    const opsOf = (prefix: string) => ({
      ops: [
        { op: "put", key: `${prefix}/a`, value: b64(allBytes) },
        { op: "get", key: `${prefix}/a` },
        { op: "cas", key: `${prefix}/a`, etag: '"2.1"', value: b64("second") },
        { op: "cas", key: `${prefix}/a`, etag: '"2.1"', value: b64("late") },
        { op: "create", key: `${prefix}/new`, value: b64("") },
        { op: "incr", key: `${prefix}/n`, by: 4 },
        { op: "incr", key: `${prefix}/n` },
        { op: "delete", key: `${prefix}/new` },
        { op: "get", key: `${prefix}/new` },
      ],
    });
    const json = await run(["batch", fileWith("json.json", JSON.stringify(opsOf("j")))]);
    const binary = await run(["batch", "--binary", fileWith("binary.json", JSON.stringify(opsOf("b")))]);
    // The first op that did not succeed (the late cas, 412) decides the exit code in both.
    expect(binary.code).toBe(2);
    expect(binary.code).toBe(json.code);
    expect(binary.stdout).toBe(json.stdout);
    expect(binary.stderr).toBe(json.stderr);
    expect(resultsOf(binary.stdout)[1]).toEqual({ status: 200, value: b64(allBytes), etag: '"2.1"' });
    expect(backend.peek("b/a")?.value).toEqual(new TextEncoder().encode("second"));
    expect(backend.peek("b/n")?.value).toEqual(new TextEncoder().encode("5"));
  });

  test("a batch the node refuses exits 64 with its message; a file that is not a batch runs nothing", async () => {
    const before = backend.submitCount;
    const badKey = await run(["batch", "--binary"], {
      stdin: JSON.stringify({
        ops: [
          { op: "put", key: "ok", value: "" },
          { op: "get", key: "a\u0001" },
        ],
      }),
    });
    expect(badKey.code).toBe(64);
    expect(badKey.stderr).toStartWith("Error: ops[1].key: the key contains a control character");
    const tooMany = await run(["batch", "--binary"], {
      stdin: JSON.stringify({ ops: Array.from({ length: batchOpsMax + 1 }, () => ({ op: "get", key: "k" })) }),
    });
    expect(tooMany.code).toBe(64);
    expect(tooMany.stderr).toContain(`the most accepted is ${batchOpsMax}`);
    for (const [stdin, message] of [
      ["put k v", "not valid JSON"],
      ['{"ops":[{"op":"nope","key":"k"}]}', "ops[0].op is not one of"],
      ['{"ops":[{"op":"put","key":"k","value":"not base64!"}]}', "ops[0].value is not base64"],
      ['{"ops":[{"op":"cas","key":"k","etag":"3.1","value":""}]}', "ops[0].etag"],
      ['{"ops":[{"op":"get","key":"k","extra":1}]}', 'unknown field "extra"'],
    ] as const) {
      const result = await run(["batch", "--binary"], { stdin });
      expect(result.code).toBe(64);
      expect(result.stderr).toContain(message);
    }
    expect(backend.submitCount).toBe(before);
  });
});

describe("help", () => {
  test("--help tells the truth: exit 0, the format, the limits, and every flag it lists is accepted", async () => {
    const help = await run(["batch", "--help"], { endpoint: null });
    expect(help.code).toBe(0);
    expect(help.stdout).toStartWith("Usage: hermes-kv batch [FILE|-]");
    expect(help.stdout).toContain("not a transaction");
    expect(help.stdout).toContain(`more\nthan ${batchOpsMax} ops`);
    expect(help.stdout).toContain("Exit codes:");
    // The example in the help is a valid batch: sent as is, every op is answered.
    const example = help.stdout.slice(help.stdout.indexOf('{"ops"'), help.stdout.indexOf("}]}") + 3);
    const sent = await run(["batch"], { stdin: example });
    expect(sent.code).not.toBe(64);
    expect(resultsOf(sent.stdout).length).toBe(6);
    // The flags listed in the "Flags:" section, each accepted (the value flags with a value).
    const listed = help.stdout.split("\n").filter((line) => line.startsWith("  -"));
    const flags = listed.map((line) => line.match(/--[a-z][a-z-]*/)![0]);
    expect(flags).toEqual(["--binary", "--endpoint", "--timeout-ms", "--token", "--cacert", "--cert", "--help"]);
    expect((await run(["batch", "--binary", "--help"], { endpoint: null })).code).toBe(0);
    expect(help.stdout).toContain("--cert FILE, --key FILE");
    for (const flag of ["--endpoint", "--timeout-ms", "--token", "--cacert", "--cert", "--key"]) {
      const result = await run(["batch", flag, "1", "--help"], { endpoint: null });
      expect(result.stderr).not.toContain("unknown flag");
    }
    expect((await run(["batch", "-h"], { endpoint: null })).code).toBe(0);
  });
});
