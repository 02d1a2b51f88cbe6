// The CLI client against a real HTTP server: createApp(memory backend) under Bun.serve on
// 127.0.0.1, port chosen by the OS. Also the flag parser the client shares with other subcommands.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { OpStatus } from "../../src/base/kinds.ts";
import { UsageError, parseArgs, parseIntegerFlag } from "../../src/cli/args.ts";
import { type ClientIo, clientCommands, runClientCommand } from "../../src/cli/client.ts";
import { createApp } from "../../src/http/app.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

let backend: MemoryBackend;
let server: ReturnType<typeof Bun.serve>;
let endpoint: string;

beforeAll(() => {
  backend = new MemoryBackend({ keyBytesMax: 128, valueBytesMax: 4096 });
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(backend).fetch });
  endpoint = `http://127.0.0.1:${server.port}`;
});

afterAll(() => {
  server.stop(true);
});

interface Run {
  code: number;
  stdout: string;
  stdoutBytes: Uint8Array;
  stderr: string;
}

async function run(
  argv: string[],
  options: { stdin?: Uint8Array; env?: Record<string, string>; noEndpoint?: boolean } = {},
): Promise<Run> {
  const out: Uint8Array[] = [];
  let stderr = "";
  const encoder = new TextEncoder();
  const io: ClientIo = {
    stdout: (data) => {
      out.push(typeof data === "string" ? encoder.encode(data) : data.slice());
    },
    stderr: (text) => {
      stderr += text;
    },
    readStdin: async (bytesMax) => {
      const input = options.stdin ?? new Uint8Array(0);
      return input.length > bytesMax ? null : input;
    },
    env: options.env ?? {},
  };
  const args = options.noEndpoint === true ? argv : [...argv, "--endpoint", endpoint];
  const code = await runClientCommand(args, io);
  const stdoutBytes = new Uint8Array(out.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of out) {
    stdoutBytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { code, stdout: new TextDecoder().decode(stdoutBytes), stdoutBytes, stderr };
}

describe("get / put / delete", () => {
  test("put prints OK and the ETag; get prints the value", async () => {
    const put = await run(["put", "greeting", "hello world"]);
    expect(put).toMatchObject({ code: 0, stdout: 'OK\n"2.1"\n', stderr: "" });
    const get = await run(["get", "greeting"]);
    expect(get).toMatchObject({ code: 0, stdout: "hello world\n", stderr: "" });
  });

  test("get --print-etag prints the ETag first; --raw adds no newline", async () => {
    await run(["put", "raw-key", "abc"]);
    expect((await run(["get", "raw-key", "--print-etag"])).stdout).toBe('"2.1"\nabc\n');
    expect((await run(["get", "raw-key", "--raw"])).stdout).toBe("abc");
  });

  test("put - reads the value from stdin, byte for byte", async () => {
    const bytes = new Uint8Array(1000).map((_, i) => (i * 7) % 256);
    expect((await run(["put", "binary", "-"], { stdin: bytes })).code).toBe(0);
    const get = await run(["get", "binary", "--raw"]);
    expect(get.code).toBe(0);
    expect(get.stdoutBytes).toEqual(bytes);
  });

  test("keys with slashes, spaces, percent signs and non-ASCII are sent exactly", async () => {
    for (const key of ["a/b/c", "with space", "100%", "q?x#y", "été/日本"]) {
      expect((await run(["put", key, key])).code).toBe(0);
      expect(backend.peek(key)?.value).toEqual(new TextEncoder().encode(key));
      expect((await run(["get", key])).stdout).toBe(`${key}\n`);
    }
  });

  test("get of an absent key exits 1 with Error: on stderr", async () => {
    const get = await run(["get", "never-written"]);
    expect(get).toMatchObject({ code: 1, stdout: "", stderr: "Error: key not found\n" });
  });

  test("delete prints OK and the tombstone's ETag; the key is then absent", async () => {
    await run(["put", "doomed", "x"]);
    expect(await run(["delete", "doomed"])).toMatchObject({ code: 0, stdout: 'OK\n"4.1"\n' });
    expect((await run(["get", "doomed"])).code).toBe(1);
  });

  test("put --if-absent creates once, then exits 2", async () => {
    expect((await run(["put", "once", "1", "--if-absent"])).code).toBe(0);
    const again = await run(["put", "once", "2", "--if-absent"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toStartWith("Error: precondition failed");
    expect((await run(["get", "once"])).stdout).toBe("1\n");
  });
});

describe("cas", () => {
  test("succeeds with the current ETag, quoted or not, and exits 2 with the current ETag when stale", async () => {
    await run(["put", "c", "v1"]);
    expect(await run(["cas", "c", "v2", "--etag", '"2.1"'])).toMatchObject({ code: 0, stdout: 'OK\n"3.1"\n' });
    expect(await run(["cas", "c", "v3", "--etag", "3.1"])).toMatchObject({ code: 0, stdout: 'OK\n"4.1"\n' });
    const stale = await run(["cas", "c", "v4", "--etag=3.1"]);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toContain('"4.1"');
    expect((await run(["get", "c"])).stdout).toBe("v3\n");
  });

  test("reads the value from stdin with -", async () => {
    await run(["put", "cs", "old"]);
    const result = await run(["cas", "cs", "-", "--etag", "2.1"], { stdin: new TextEncoder().encode("from stdin") });
    expect(result.code).toBe(0);
    expect((await run(["get", "cs"])).stdout).toBe("from stdin\n");
  });

  test("without --etag, or with a malformed one, is a usage error (64)", async () => {
    const missing = await run(["cas", "c", "v"]);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain("--etag");
    const malformed = await run(["cas", "c", "v", "--etag", "W/x"]);
    expect(malformed.code).toBe(64);
    expect(malformed.stderr).toStartWith("Error: ");
  });
});

describe("incr", () => {
  test("adds 1 by default, or BY given as an argument or --by, negative included", async () => {
    expect(await run(["incr", "n"])).toMatchObject({ code: 0, stdout: "1\n" });
    expect(await run(["incr", "n", "10"])).toMatchObject({ code: 0, stdout: "11\n" });
    expect(await run(["incr", "n", "-20"])).toMatchObject({ code: 0, stdout: "-9\n" });
    expect(await run(["incr", "n", "--by", "-1"])).toMatchObject({ code: 0, stdout: "-10\n" });
    expect((await run(["get", "n"])).stdout).toBe("-10\n");
  });

  test("BY twice, or not an integer, is a usage error; a non-number value exits 4", async () => {
    expect((await run(["incr", "n", "1", "--by", "2"])).code).toBe(64);
    expect((await run(["incr", "n", "1.5"])).code).toBe(64);
    await run(["put", "text", "abc"]);
    const notNumber = await run(["incr", "text"]);
    expect(notNumber.code).toBe(4);
    expect(notNumber.stderr).toStartWith("Error: the value is not a decimal safe integer");
  });
});

describe("exit codes for node answers", () => {
  const cases: Array<[string, OpStatus, string[], number, string]> = [
    ["unavailable", OpStatus.Unavailable, ["get", "k"], 3, "not serving"],
    ["busy", OpStatus.Busy, ["put", "k", "v"], 3, "queue is full"],
    ["outcome unknown", OpStatus.Unknown, ["put", "k", "v"], 3, "may or may not"],
    ["read timeout", OpStatus.Timeout, ["get", "k"], 3, "did not complete"],
    ["incr aborted", OpStatus.Aborted, ["incr", "k"], 3, "retry"],
    ["store full", OpStatus.StoreFull, ["put", "k", "v"], 4, "the store is full"],
  ];
  for (const [name, status, argv, code, text] of cases) {
    test(`${name} exits ${code}`, async () => {
      backend.failNext(status);
      const result = await run(argv);
      expect(result.code).toBe(code);
      expect(result.stdout).toBe("");
      expect(result.stderr).toStartWith("Error: ");
      expect(result.stderr).toContain(text);
    });
  }

  test("input the node rejects (400, 413) is a usage error", async () => {
    const control = await run(["put", "bad\u0001key", "v"]);
    expect(control.code).toBe(64);
    expect(control.stderr).toContain("control character");
    const tooLong = await run(["put", "k".repeat(129), "v"]);
    expect(tooLong.code).toBe(64);
    expect(tooLong.stderr).toContain("longer than 128");
    const tooBig = await run(["put", "k", "-"], { stdin: new Uint8Array(5000) });
    expect(tooBig.code).toBe(64);
    expect(tooBig.stderr).toContain("the largest accepted is 4096");
  });

  test("an unreachable node exits 3", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const port = closed.port;
    closed.stop(true);
    const result = await run(["get", "k", "--endpoint", `http://127.0.0.1:${port}`], { noEndpoint: true });
    expect(result.code).toBe(3);
    expect(result.stderr).toStartWith(`Error: cannot reach http://127.0.0.1:${port}`);
  });

  test("a node that does not answer in --timeout-ms exits 3, and an update says its outcome is unknown", async () => {
    const silent = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Promise<Response>(() => {}) });
    try {
      const url = `http://127.0.0.1:${silent.port}`;
      const result = await run(["put", "k", "v", "--endpoint", url, "--timeout-ms", "50"], { noEndpoint: true });
      expect(result.code).toBe(3);
      expect(result.stderr).toContain("no answer");
      expect(result.stderr).toContain("may or may not have taken effect");
    } finally {
      silent.stop(true);
    }
  });
});

describe("usage", () => {
  test("--help of every command tells the truth: exit 0, and every flag it lists is accepted", async () => {
    for (const command of clientCommands) {
      const help = await run([command, "--help"], { noEndpoint: true });
      expect(help.code).toBe(0);
      expect(help.stdout).toStartWith(`Usage: hermes-kv ${command} KEY`);
      expect(help.stdout).toContain("Exit codes:");
      // The flags listed in the "Flags:" section (lines "  --name ..." or "  -h, --help ...").
      const listed = help.stdout.split("\n").filter((line) => line.startsWith("  -"));
      const flags = new Set(listed.map((line) => line.match(/--[a-z][a-z-]*/)![0]));
      expect(flags.has("--endpoint")).toBe(true);
      for (const flag of flags) {
        const result = await run([command, flag, "1", "--help"], { noEndpoint: true });
        expect(result.stderr).not.toContain("unknown flag");
      }
    }
  });

  test("unknown flags, missing and extra arguments, unknown commands exit 64 naming the problem", async () => {
    const unknown = await run(["get", "k", "--bogus"]);
    expect(unknown).toMatchObject({ code: 64, stdout: "" });
    expect(unknown.stderr).toStartWith("Error: unknown flag: --bogus\n");
    expect(unknown.stderr).toContain("hermes-kv get --help");
    expect((await run(["get"])).stderr).toContain("missing argument: expected KEY");
    expect((await run(["get", "a", "b"])).stderr).toContain('unexpected argument "b"');
    expect((await run(["put", "a"])).code).toBe(64);
    expect((await run(["get", ""])).stderr).toContain("KEY is empty");
    expect((await run(["get", ".."])).code).toBe(64);
    expect((await run(["frobnicate", "k"])).code).toBe(64);
    expect((await run([])).code).toBe(64);
    expect((await run(["get", "k", "--endpoint", "ftp://x"], { noEndpoint: true })).code).toBe(64);
    expect((await run(["get", "k", "--timeout-ms", "0"])).code).toBe(64);
  });

  test("the endpoint comes from HERMES_KV_ENDPOINT when --endpoint is absent", async () => {
    await run(["put", "env-key", "via env"]);
    const result = await run(["get", "env-key"], { noEndpoint: true, env: { HERMES_KV_ENDPOINT: `${endpoint}/` } });
    expect(result).toMatchObject({ code: 0, stdout: "via env\n" });
    const bad = await run(["get", "env-key"], { noEndpoint: true, env: { HERMES_KV_ENDPOINT: "nonsense" } });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toStartWith("Error: $HERMES_KV_ENDPOINT must be a URL");
  });
});

describe("parseArgs", () => {
  const specs = {
    name: { kind: "string" },
    verbose: { kind: "boolean", short: "v" },
    count: { kind: "string", short: "n" },
  } as const;

  test("long, inline, short, boolean, --, - and negative numbers", () => {
    const parsed = parseArgs(["a", "--name", "x", "-v", "-n=3".slice(0, 2), "3", "-", "-5", "--", "--name"], specs);
    expect(parsed.flags).toEqual({ name: "x", verbose: true, count: "3" });
    expect(parsed.positionals).toEqual(["a", "-", "-5", "--name"]);
    expect(parseArgs(["--name=a=b"], specs).flags.name).toBe("a=b");
    expect(parseArgs([], specs).flags).toEqual({ name: undefined, verbose: false, count: undefined });
  });

  test("strict: unknown, repeated, valueless, and boolean-with-value flags are usage errors", () => {
    const error = (argv: string[]) => {
      try {
        parseArgs(argv, specs);
      } catch (caught) {
        expect(caught).toBeInstanceOf(UsageError);
        return (caught as Error).message;
      }
      throw new Error(`no error for ${argv.join(" ")}`);
    };
    expect(error(["--nme", "x"])).toBe("unknown flag: --nme");
    expect(error(["-x"])).toBe("unknown flag: -x");
    expect(error(["-vn"])).toBe("unknown flag: -vn");
    expect(error(["--name", "a", "--name", "b"])).toBe("flag --name given more than once");
    expect(error(["--name"])).toBe("flag --name needs a value");
    expect(error(["--name", "--verbose"])).toBe("flag --name needs a value");
    expect(error(["--verbose=yes"])).toBe("flag --verbose takes no value");
  });

  test("parseIntegerFlag checks syntax and range", () => {
    expect(parseIntegerFlag("--n", "-3", -5, 5)).toBe(-3);
    expect(() => parseIntegerFlag("--n", "6", -5, 5)).toThrow("--n must be between -5 and 5, got 6");
    expect(() => parseIntegerFlag("--n", "2.0", -5, 5)).toThrow(UsageError);
    expect(() => parseIntegerFlag("--n", "", -5, 5)).toThrow(UsageError);
  });
});
