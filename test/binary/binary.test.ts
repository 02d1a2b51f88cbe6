// The single binary end to end: build dist/hermes-kv, run `hermes-kv local` from another directory,
// talk to it with the binary's own client commands and with concurrent HTTP clients whose history
// is checked for linearizability, and check that every subcommand's --help answers.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HistoryRecorder } from "../lib/history.ts";
import { checkLinearizable } from "../lib/linearizability.ts";

const root = join(import.meta.dir, "../..");
const binary = join(root, "dist/hermes-kv");
const workDir = mkdtempSync(join(tmpdir(), "hermes-bin-"));
let cluster: ReturnType<typeof Bun.spawn> | null = null;
const urls: string[] = [];

async function run(args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn([binary, ...args], {
    cwd: workDir,
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err };
}

beforeAll(async () => {
  const build = Bun.spawnSync(["bash", "scripts/build.sh"], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
  // Port 0: the OS picks free ports; the ready lines tell where each replica listens.
  cluster = Bun.spawn([binary, "local", "--replicas", "3", "--http-port", "0", "--lease-ms", "500"], {
    cwd: workDir,
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = (cluster.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (urls.length < 3 && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    urls.length = 0;
    for (const m of text.matchAll(/replica \d+ ready: (http:\/\/[0-9.:]+)/g)) urls.push(m[1]!);
  }
  reader.releaseLock();
  expect(urls.length).toBe(3);
}, 60_000);

afterAll(async () => {
  cluster?.kill("SIGINT");
  await cluster?.exited;
  rmSync(workDir, { recursive: true, force: true });
});

test("the binary's client commands talk to the binary's local cluster", async () => {
  const put = await run(["put", "greeting", "hello", "--endpoint", urls[0]!]);
  expect(put.code).toBe(0);
  const get = await run(["get", "greeting", "--endpoint", urls[1]!]);
  expect(get.code).toBe(0);
  expect(get.out.trim()).toBe("hello");
  const incr = await run(["incr", "visits", "--by", "5", "--endpoint", urls[2]!]);
  expect(incr.code).toBe(0);
  expect(incr.out).toContain("5");
  const missing = await run(["get", "nothing-here", "--endpoint", urls[0]!]);
  expect(missing.code).toBe(1);
  const fromStdin = await run(["put", "piped", "-", "--endpoint", urls[0]!], "from stdin");
  expect(fromStdin.code).toBe(0);
  expect((await run(["get", "piped", "--endpoint", urls[2]!])).out.trim()).toBe("from stdin");
});

// The console is compiled in: every replica of the binary serves the page, its script and style,
// and lists the same members with their HTTP addresses (the browser test drives the page itself).
test("every replica of the binary serves the web console at /ui", async () => {
  for (const url of urls) {
    const page = await fetch(`${url}/ui`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(await page.text()).toContain('<script src="/ui/console.js" defer></script>');
    const script = await fetch(`${url}/ui/console.js`);
    expect(script.status).toBe(200);
    expect(await script.text()).toContain("/ui/members");
    expect((await fetch(`${url}/ui/console.css`)).status).toBe(200);
    const view = (await (await fetch(`${url}/ui/members`)).json()) as { members: { id: number; http: string }[] };
    expect(view.members.map((m) => `http://${m.http}`)).toEqual(urls);
  }
});

test("every subcommand answers --help, and bad usage exits 64 with a message", async () => {
  for (const command of ["local", "node", "bench", "get", "put", "delete", "cas", "incr"]) {
    const help = await run([command, "--help"]);
    expect(help.code).toBe(0);
    expect(help.out.toLowerCase()).toContain("usage:");
  }
  const bad = await run(["local", "--replicas", "99"]);
  expect(bad.code).toBe(64);
  expect(bad.err).toContain("--replicas");
  const unknown = await run(["frobnicate"]);
  expect(unknown.code).toBe(64);
});

test("concurrent clients on all replicas of the binary: the history is linearizable", async () => {
  const history = new HistoryRecorder();
  const keys = ["x", "y"];
  let okCount = 0;
  await Promise.all(
    Array.from({ length: 6 }, async (_, client) => {
      const url = urls[client % 3]!;
      for (let i = 0; i < 40; i++) {
        const key = keys[(client + i) % keys.length]!;
        if (i % 3 === 0) {
          const value = `c${client}-${i}`;
          const id = history.invoke(client, key, { type: "write", value });
          try {
            const r = await fetch(`${url}/v1/kv/${key}`, {
              method: "PUT",
              body: value,
              signal: AbortSignal.timeout(5000),
            });
            if (r.status === 200) (history.ok(id, { type: "write" }), okCount++);
            else if (r.status === 504) history.unknown(id);
            else history.failed(id);
          } catch {
            history.unknown(id);
          }
        } else {
          const id = history.invoke(client, key, { type: "read" });
          try {
            const r = await fetch(`${url}/v1/kv/${key}`, { signal: AbortSignal.timeout(5000) });
            if (r.status === 200) (history.ok(id, { type: "read", value: await r.text() }), okCount++);
            else if (r.status === 404) (history.ok(id, { type: "read", value: null }), okCount++);
            else history.failed(id);
          } catch {
            history.failed(id);
          }
        }
      }
    }),
  );
  expect(okCount).toBeGreaterThan(200);
  const result = checkLinearizable(history.ops());
  if (result.ok !== true) throw new Error(JSON.stringify(result, null, 2));
}, 60_000);
