// `hermes-kv local` as a real process with HTTPS and an auth file (certificates made by openssl for
// this run): curl with --cacert gets through and without it refuses the server; the client commands
// with --cacert, --token and $HERMES_KV_TOKEN; SIGHUP reloads the auth file while a kept-alive TLS
// connection stays open and is checked against the new tokens; a bad file keeps the old tokens and
// says why on stderr. Protected mode: `local` and `node` refuse a non-loopback address without the
// security flags, in one line, before binding anything. One replica: no history to check.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type ClientIo, runClientCommand } from "../../src/cli/client.ts";
import { openConnection, parseEndpoint } from "../../src/cli/http-bench-client.ts";
import { makeTestCerts, type TestCerts } from "../lib/certs.ts";

const repoRoot = join(import.meta.dir, "..", "..");
const tokens = {
  read: "proc-read-token-2b7d91e4",
  write: "proc-write-token-6f03a8c5",
  admin: "proc-admin-token-d41c7e29",
  fresh: "proc-fresh-token-a9e05b13",
} as const;
/** Bound on waiting for the process to print a line. */
const lineTimeoutMs = 30_000;

let certs: TestCerts;
let authFile: string;
let proc: Subprocess<"ignore", "pipe", "pipe">;
let endpoint: string;
let port: number;
const stderrLines: string[] = [];

function startLocal(args: string[]): Subprocess<"ignore", "pipe", "pipe"> {
  return Bun.spawn([process.execPath, "src/main.ts", "local", ...args], {
    cwd: repoRoot,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop()!;
    into.push(...lines);
  }
}

async function waitForLine(lines: string[], pattern: RegExp, from = 0): Promise<string> {
  const deadline = performance.now() + lineTimeoutMs;
  while (performance.now() < deadline) {
    const found = lines.slice(from).find((line) => pattern.test(line));
    if (found !== undefined) return found;
    await Bun.sleep(20);
  }
  throw new Error(`no line matching ${pattern} within ${lineTimeoutMs} ms; got:\n${lines.join("\n")}`);
}

beforeAll(async () => {
  certs = makeTestCerts();
  authFile = join(certs.dir, "tokens");
  writeFileSync(
    authFile,
    `# who may do what\n${tokens.read} read reader\n${tokens.write} write writer\n${tokens.admin} admin operator\n`,
  );
  proc = startLocal([
    "--replicas",
    "1",
    "--http-port",
    "0",
    "--transport",
    "tcp",
    "--tls-cert",
    certs.serverCert,
    "--tls-key",
    certs.serverKey,
    "--auth-file",
    authFile,
  ]);
  const stdoutLines: string[] = [];
  void collect(proc.stdout, stdoutLines);
  void collect(proc.stderr, stderrLines);
  const ready = await waitForLine(stdoutLines, /^replica 0 ready: /);
  endpoint = ready.match(/(https:\/\/127\.0\.0\.1:\d+)/)![1]!;
  port = Number(endpoint.split(":").at(-1));
}, 60_000);

afterAll(async () => {
  proc?.kill("SIGTERM");
  await proc?.exited;
  certs?.remove();
});

function curl(args: string[]): { exitCode: number; stdout: string } {
  const result = Bun.spawnSync(["curl", "-sS", "--max-time", "20", ...args], { stdout: "pipe", stderr: "pipe" });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout.toString() };
}

test("an auth file other users can read is warned about at start (the test wrote it with mode 644)", async () => {
  const warning = await waitForLine(stderrLines, /warning: --auth-file/);
  expect(warning).toBe(
    `hermes-kv: warning: --auth-file ${authFile} can be read by other users (mode 644); chmod 600 it`,
  );
});

test("curl with --cacert gets through; without it curl refuses the server", () => {
  const ok = curl(["--cacert", certs.caCert, "-w", " %{http_code}", `${endpoint}/health`]);
  expect([ok.exitCode, ok.stdout]).toEqual([0, '{"status":"ok"} 200']);
  const write = curl([
    "--cacert",
    certs.caCert,
    "-X",
    "PUT",
    "--data-binary",
    "by-curl",
    "-H",
    `Authorization: Bearer ${tokens.write}`,
    "-w",
    " %{http_code}",
    `${endpoint}/v1/kv/curl-key`,
  ]);
  expect(write.stdout).toEndWith(" 200");
  expect(curl([`${endpoint}/health`]).exitCode).toBe(60);
  // The plain-HTTP port does not exist: the TLS port does not answer HTTP.
  expect(curl(["-w", "%{http_code}", `http://127.0.0.1:${port}/health`]).stdout).not.toContain("200");
});

async function client(
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: ClientIo = {
    stdout: (data) => {
      out += typeof data === "string" ? data : new TextDecoder().decode(data);
    },
    stderr: (text) => {
      err += text;
    },
    readStdin: async () => new Uint8Array(0),
    env,
  };
  const code = await runClientCommand([...argv, "--endpoint", endpoint], io);
  return { code, out, err };
}

test("the client commands take --cacert, --token and $HERMES_KV_TOKEN", async () => {
  const ca = ["--cacert", certs.caCert];
  expect((await client(["put", "cli-key", "cli-value-1", ...ca, "--token", tokens.write])).code).toBe(0);
  const read = await client(["get", "cli-key", ...ca], { HERMES_KV_TOKEN: tokens.read });
  expect([read.code, read.out]).toEqual([0, "cli-value-1\n"]);
  const weak = await client(["put", "cli-key", "cli-value-2", ...ca], { HERMES_KV_TOKEN: tokens.read });
  expect(weak.code).toBe(4);
  expect(weak.err).toContain('the token "reader" has role read');
  const none = await client(["delete", "cli-key", ...ca]);
  expect(none.code).toBe(4);
  expect(none.err).toContain("needs a token");
  const untrusted = await client(["get", "cli-key", "--token", tokens.read]);
  expect(untrusted.code).toBe(3);
  // Nothing refused was written.
  const after = await client(["get", "cli-key", ...ca, "--token", tokens.admin]);
  expect(after.out).toBe("cli-value-1\n");
  for (const result of [read, weak, none, untrusted]) expect(result.err).not.toContain("token-");
});

/** One TLS connection kept open across reloads (the bench's raw HTTP/1.1 client); `status` sends GET /v1/status on it. */
async function keptConnection(): Promise<{ status(token: string): Promise<number>; closed(): boolean; end(): void }> {
  const parsed = parseEndpoint(endpoint);
  if (typeof parsed === "string") throw new Error(parsed);
  const connection = await openConnection("raw", {
    endpoint: parsed,
    tls: { ca: certs.pem(certs.caCert) },
    commonHeaders: [],
  });
  return {
    async status(token) {
      const answer = await connection.request({
        method: "GET",
        path: "/v1/status",
        headers: [["Authorization", `Bearer ${token}`]],
        body: null,
      });
      return answer.status;
    },
    closed: () => connection.closed,
    end: () => connection.close(),
  };
}

test("SIGHUP reloads the auth file without closing connections; a bad file keeps the old tokens", async () => {
  const connection = await keptConnection();
  expect(await connection.status(tokens.read)).toBe(200);
  expect(await connection.status(tokens.fresh)).toBe(401);

  writeFileSync(authFile, `${tokens.fresh} read newcomer\n${tokens.admin} admin operator\n`);
  let from = stderrLines.length;
  proc.kill("SIGHUP");
  const reloaded = await waitForLine(stderrLines, /SIGHUP: .* reloaded: 2 token\(s\): 1 read, 0 write, 1 admin$/, from);
  expect(reloaded).not.toContain("token-");
  expect(await connection.status(tokens.fresh)).toBe(200);
  expect(await connection.status(tokens.read)).toBe(401);
  expect(connection.closed()).toBe(false);

  writeFileSync(authFile, `${tokens.read} superuser someone\n`);
  from = stderrLines.length;
  proc.kill("SIGHUP");
  const kept = await waitForLine(
    stderrLines,
    /SIGHUP: .* not reloaded, keeping the tokens loaded before: line 1: unknown role/,
    from,
  );
  expect(kept).not.toContain(tokens.read);
  expect(await connection.status(tokens.fresh)).toBe(200);
  expect(await connection.status(tokens.read)).toBe(401);
  expect(connection.closed()).toBe(false);
  // The process kept serving through both signals.
  expect(proc.exitCode).toBeNull();
  connection.end();
}, 60_000);

async function refusal(argv: string[]): Promise<{ code: number; stderr: string }> {
  const child = Bun.spawn([process.execPath, "src/main.ts", ...argv], {
    cwd: repoRoot,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
  return { code, stderr };
}

test("protected mode: a non-loopback address without the security flags is refused in one line", async () => {
  const local = await refusal(["local", "--replicas", "1", "--http-port", "0", "--host", "0.0.0.0"]);
  expect(local.code).toBe(1);
  expect(local.stderr.trim()).toBe(
    "hermes-kv local: refusing to listen on --host 0.0.0.0, reachable from other machines, without TLS (--tls-cert, --tls-key), client tokens (--auth-file); add them, bind a loopback address, or pass --insecure to accept the risk",
  );
  // etcd is never asked (nothing listens on port 9): the check comes first.
  const nodeArgs = [
    "node",
    "--id",
    "0",
    "--http",
    "0.0.0.0:8080",
    "--listen",
    "127.0.0.1:7000",
    "--etcd",
    "http://127.0.0.1:9",
    "--transport",
    "tcp",
  ];
  const node = await refusal([
    ...nodeArgs,
    "--tls-cert",
    certs.serverCert,
    "--tls-key",
    certs.serverKey,
    "--auth-file",
    authFile,
  ]);
  expect(node.code).toBe(1);
  expect(node.stderr.trim()).toBe(
    "hermes-kv node: refusing to listen on --http 0.0.0.0, reachable from other machines, without the cluster key (--cluster-key-file); add them, bind a loopback address, or pass --insecure to accept the risk",
  );
});

test("--help documents the security flags", async () => {
  for (const command of ["local", "node"]) {
    const child = Bun.spawn([process.execPath, "src/main.ts", command, "--help"], { cwd: repoRoot, stdout: "pipe" });
    const help = await new Response(child.stdout).text();
    expect(await child.exited).toBe(0);
    for (const flag of ["--tls-cert", "--tls-key", "--tls-ca", "--auth-file", "--metrics-public", "--insecure"])
      expect(help).toContain(flag);
  }
});
