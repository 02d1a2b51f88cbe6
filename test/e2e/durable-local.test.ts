// `hermes-kv local --data-dir` as a real process on real files: a SIGKILL of the whole process under
// load, then a restart on the same dir; the damaged-file cases of recovery end to end; the data
// dir's lock and identity.
//
// Asserted:
// - after each restart every key's version is at least that of every acknowledged update on it,
//   the replicas agree, and the history spanning the crashes (with final reads on every replica) is
//   linearizable;
// - a log cut short, or with a flipped byte in its last record: the process starts, says in one
//   line how many bytes it dropped, and serves every write acknowledged before the damaged record;
// - a flipped byte in the middle of the log: the process refuses to start, naming the file and the
//   offset of the damaged record;
// - a second process on a locked dir, or a node on another node's dir, refuses with a clear message.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { spawnSync } from "node:child_process";
import {
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  Recorder,
  repoRoot,
  request,
  startLoad,
  testSeed,
  waitFor,
} from "../cluster/helpers.ts";
import { etagVersion } from "../cluster/durable-helpers.ts";

const seed = testSeed(0xd15c_0002);
const bunBin = process.execPath;
/** Bound on a process's start-up (recovery included). */
const startTimeoutMs = 30_000;

const dirs: string[] = [];
const live = new Set<Subprocess>();
afterAll(() => {
  for (const proc of live) proc.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "hermes-durable-local-"));
  dirs.push(dir);
  return dir;
}

/** `count` consecutive free ports on 127.0.0.1 from a random base. */
function freePorts(count: number): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const listeners: { stop(closeActive?: boolean): void }[] = [];
    try {
      for (let i = 0; i < count; i++)
        listeners.push(Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } }));
      return base;
    } catch {
      // taken: try another base
    } finally {
      for (const l of listeners) l.stop(true);
    }
  }
  throw new Error(`no ${count} consecutive free ports`);
}

/** One `hermes-kv` process with its output kept. */
class Proc {
  readonly lines: string[] = [];
  readonly proc: Subprocess;
  constructor(args: string[]) {
    this.proc = Bun.spawn([bunBin, "src/main.ts", ...args], {
      cwd: repoRoot,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    live.add(this.proc);
    void this.#pump(this.proc.stdout as ReadableStream<Uint8Array>);
    void this.#pump(this.proc.stderr as ReadableStream<Uint8Array>);
    void this.proc.exited.then(() => live.delete(this.proc));
  }
  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      this.lines.push(...parts);
    }
    if (pending.length > 0) this.lines.push(pending);
  }
  get output(): string {
    return this.lines.join("\n");
  }
  /** Waits for a line containing `text`; throws if the process exits first. */
  async waitLine(text: string): Promise<void> {
    await waitFor(
      `a line with "${text}"`,
      () => {
        if (this.proc.exitCode !== null)
          throw new Error(`exited ${this.proc.exitCode} before "${text}":\n${this.output}`);
        return this.lines.some((l) => l.includes(text));
      },
      startTimeoutMs,
      20,
    );
  }
  async kill(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.exited;
  }
  async exitCode(): Promise<number> {
    return await this.proc.exited;
  }
}

function startLocal(dir: string, port: number, replicas: number, mode: "fsync" | "async" = "fsync"): Proc {
  return new Proc([
    "local",
    "--replicas",
    String(replicas),
    "--http-port",
    String(port),
    "--transport",
    "tcp",
    "--data-dir",
    dir,
    "--durability",
    mode,
  ]);
}

async function put(url: string, key: string, value: string): Promise<void> {
  const answer = await request(`${url}/v1/kv/${key}`, { method: "PUT", body: value });
  expect(answer.kind === "response" && answer.status).toBe(200);
}

async function get(url: string, key: string): Promise<string | null> {
  const answer = await request(`${url}/v1/kv/${key}`);
  if (answer.kind !== "response") throw new Error(`GET ${key}: ${answer.kind}`);
  return answer.status === 200 ? answer.body : null;
}

describe("local --data-dir: a restart of the whole process", () => {
  // async promises the same for a crash of the process (its writes are in the kernel's page cache,
  // which outlives it); only a crash of the machine loses its window.
  test.each(["fsync", "async"] as const)(
    `%s: SIGKILL under load, twice: nothing acknowledged is lost, history linearizable (seed ${seed})`,
    async (mode) => {
      const dir = tempDir();
      const port = freePorts(3);
      const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${port + i}`);
      const keys = ["lk-a", "lk-b", "lk-c"];
      const counters = ["lc-x"];
      const recorder = new Recorder();
      let proc = startLocal(dir, port, 3, mode);
      await proc.waitLine("replica 2 ready");
      try {
        for (let round = 0; round < 2; round++) {
          const startedAt = performance.now();
          const before = ackedUpdates(recorder, () => true).length;
          let stop = false;
          const load = startLoad({
            urls,
            recorder,
            keys,
            counters,
            clientsPerNode: 2,
            seed: seed + round,
            clientIdBase: round * 100,
            stop: () => stop,
            opsMax: Number.MAX_SAFE_INTEGER,
            refusedIsUnknown: true,
          });
          await waitFor(
            "60 acknowledged updates",
            () => ackedUpdates(recorder, () => true).length >= before + 60,
            30_000,
          );
          await proc.kill();
          stop = true;
          await load.done;
          const ackedMax = new Map<string, number>();
          for (const r of ackedUpdates(recorder, (r) => r.call >= startedAt))
            ackedMax.set(r.key, Math.max(ackedMax.get(r.key) ?? 0, etagVersion(r.etag ?? null)));
          proc = startLocal(dir, port, 3, mode);
          await proc.waitLine("replica 2 ready");
          expect(proc.output).toContain("recovered");
          for (const [key, version] of ackedMax) {
            const answer = await request(`${urls[round % 3]}/v1/kv/${key}`);
            expect(answer.kind).toBe("response");
            if (answer.kind === "response") expect(etagVersion(answer.etag)).toBeGreaterThanOrEqual(version);
          }
        }
        const { converged, answers, finalReads } = await convergeAndReadAll(
          urls,
          [...keys, ...counters],
          recorder,
          1000,
        );
        expect(converged, JSON.stringify([...answers])).toBe(true);
        expect(finalReads.every((r) => r.outcome === "ok")).toBe(true);
        expect(recorder.unexpected).toEqual([]);
        expectLinearizable(recorder.check(), () => proc.output);
      } finally {
        await proc.kill();
      }
    },
    120_000,
  );
});

/** The one log segment of a 1-replica local cluster's shard 0. */
function segmentPath(dir: string): string {
  const shardDir = join(dir, "replica-0", "shard-0");
  const logs = readdirSync(shardDir).filter((n) => n.endsWith(".log"));
  expect(logs.length).toBe(1);
  return join(shardDir, logs[0]!);
}

/** A 1-replica cluster that acknowledged `count` writes, then was SIGKILLed; returns its dir and port. */
async function writtenThenKilled(count: number): Promise<{ dir: string; port: number; values: Map<string, string> }> {
  const dir = tempDir();
  const port = freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  const proc = startLocal(dir, port, 1);
  await proc.waitLine("replica 0 ready");
  const values = new Map<string, string>();
  try {
    for (let i = 0; i < count; i++) {
      const value = `value-${i}-${seed}`;
      await put(url, `key-${i}`, value);
      values.set(`key-${i}`, value);
    }
  } finally {
    await proc.kill();
  }
  return { dir, port, values };
}

describe("recovery from a damaged log, end to end", () => {
  test("a log cut short: the torn tail is dropped with one line saying how many bytes; every earlier write is served", async () => {
    const { dir, port, values } = await writtenThenKilled(10);
    const path = segmentPath(dir);
    const size = readFileSync(path).length;
    truncateSync(path, size - 5);
    const proc = startLocal(dir, port, 1);
    try {
      await proc.waitLine("replica 0 ready");
      const dropped = proc.lines.filter((l) => l.includes("dropped a torn tail"));
      expect(dropped.length).toBe(1);
      expect(dropped[0]).toContain(path);
      expect(dropped[0]).toMatch(/torn tail of \d+ bytes/);
      // The damaged record belongs to the last write (its install, or the Valid mark after it): every
      // write before it is served. (On a real crash a torn record was never synced, so never ACKed.)
      for (const [key, value] of values)
        if (key !== `key-${values.size - 1}`) expect(await get(`http://127.0.0.1:${port}`, key)).toBe(value);
    } finally {
      await proc.kill();
    }
  }, 60_000);

  test("a flipped byte in the last record: dropped as a torn tail, the rest served", async () => {
    const { dir, port, values } = await writtenThenKilled(10);
    const path = segmentPath(dir);
    const bytes = readFileSync(path);
    bytes[bytes.length - 2] ^= 0xff;
    writeFileSync(path, bytes);
    const proc = startLocal(dir, port, 1);
    try {
      await proc.waitLine("replica 0 ready");
      expect(proc.lines.filter((l) => l.includes("dropped a torn tail")).length).toBe(1);
      for (const [key, value] of values)
        if (key !== `key-${values.size - 1}`) expect(await get(`http://127.0.0.1:${port}`, key)).toBe(value);
    } finally {
      await proc.kill();
    }
  }, 60_000);

  test("a flipped byte in the middle: the process refuses to start and names the file and offset", async () => {
    const { dir, port } = await writtenThenKilled(10);
    const path = segmentPath(dir);
    const bytes = readFileSync(path);
    // Inside the first record (its header is 24 bytes: the key's first byte).
    bytes[24] ^= 0xff;
    writeFileSync(path, bytes);
    const proc = startLocal(dir, port, 1);
    expect(await proc.exitCode()).toBe(1);
    expect(proc.output).toContain(`corrupt data in ${path} at byte offset 0`);
    expect(proc.output).not.toContain("ready");
  }, 60_000);
});

describe("the data dir's lock and identity", () => {
  test("a second process on a locked dir, and a node on another node's dir, refuse to start", async () => {
    const dir = tempDir();
    const port = freePorts(3);
    const holder = startLocal(dir, port, 1);
    try {
      await holder.waitLine("replica 0 ready");
      // The etcd URL is never reached: the dir is checked before anything else.
      const locked = new Proc([
        "node",
        "--id",
        "0",
        "--cluster",
        "local",
        "--http",
        `127.0.0.1:${port + 1}`,
        "--listen",
        `127.0.0.1:${port + 2}`,
        "--etcd",
        "http://127.0.0.1:1",
        "--data-dir",
        join(dir, "replica-0"),
      ]);
      expect(await locked.exitCode()).toBe(1);
      expect(locked.output).toContain("is in use by another process");
    } finally {
      await holder.kill();
    }
    const foreign = new Proc([
      "node",
      "--id",
      "5",
      "--cluster",
      "prod",
      "--http",
      `127.0.0.1:${port + 1}`,
      "--listen",
      `127.0.0.1:${port + 2}`,
      "--etcd",
      "http://127.0.0.1:1",
      "--data-dir",
      join(dir, "replica-0"),
    ]);
    expect(await foreign.exitCode()).toBe(1);
    expect(foreign.output).toContain('belongs to cluster "local" node 0, not to cluster "prod" node 5');
  }, 60_000);
});

describe("a full disk under --durability fsync", () => {
  test.skipIf(process.getuid?.() !== 0)(
    "ENOSPC on a 256 KiB tmpfs made by the test: updates 503, reads 200, /v1/status and /metrics say why",
    async () => {
      const dir = tempDir();
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=262144", "tmpfs", dir]).status).toBe(0);
      const port = freePorts(1);
      const url = `http://127.0.0.1:${port}`;
      const proc = startLocal(dir, port, 1);
      try {
        await proc.waitLine("replica 0 ready");
        await put(url, "before", "kept");
        const big = "x".repeat(16 * 1024);
        let status = 200;
        let writes = 0;
        for (; writes < 200 && status === 200; writes++) {
          const answer = await request(`${url}/v1/kv/fill-${writes % 8}`, { method: "PUT", body: big });
          status = answer.kind === "response" ? answer.status : 0;
        }
        // The write whose sync failed is not acknowledged (its outcome is unknown), and then every
        // update is refused before anything is written.
        expect(status === 504 || status === 503).toBe(true);
        const refused = await request(`${url}/v1/kv/after`, { method: "PUT", body: "no" });
        expect(refused.kind === "response" && refused.status).toBe(503);
        expect(await get(url, "before")).toBe("kept");
        const statusAnswer = await request(`${url}/v1/status`);
        expect(statusAnswer.kind).toBe("response");
        const body = JSON.parse(statusAnswer.kind === "response" ? statusAnswer.body : "{}") as {
          durability?: unknown;
        };
        expect(body.durability).toEqual({ mode: "fsync", diskFailure: "ENOSPC", acceptingUpdates: false });
        await waitFor(
          "/metrics to show the failed disk (stats refresh every second)",
          async () => {
            const metrics = await request(`${url}/metrics`);
            return (
              metrics.kind === "response" &&
              metrics.body.includes('hermes_durability_disk_failed{shard="0",code="ENOSPC"} 1')
            );
          },
          10_000,
        );
      } finally {
        await proc.kill();
        spawnSync("umount", ["-l", dir]);
      }
    },
    60_000,
  );
});
