// The netns test tier: etcd and every hermes-kv node in a network namespace of its own, wired by
// two Linux bridges (data: clients, replica transport, snapshot loads; control: etcd only), with
// faults from the kernel: a veth set down, nftables drop rules (both directions or one), a process
// SIGSTOPped past its lease, SIGKILL and restart. The topology and the faults are
// scripts/netns-cluster.sh's (one implementation: what a person brings up by hand with
// `scripts/netns-cluster.sh up` is what these tests run); this file starts the processes, drives
// the faults and cleans up. The nodes are the BUILT binary, dist/hermes-kv (rebuilt with
// scripts/build.sh when missing or older than the sources), copied into the run's directory so that
// a rebuild during a test neither changes what runs nor fails on a busy executable.
//
// Cleanup, in layers (nothing may outlive a run: namespaces, veths, bridges, processes, files):
// - NetnsCluster.close() from the test's finally / afterAll: `netns-cluster.sh destroy RUN` kills
//   every process in the run's namespaces, deletes the host ends of the veths, the bridges, the
//   namespaces and the run's directory, and checks that nothing is left;
// - while a cluster is live, handlers for process "exit" and SIGINT/SIGTERM/SIGHUP destroy it
//   synchronously (for scripts; `bun test` does not emit "exit" to test files);
// - a watchdog shell per run blocks reading a pipe only this process writes: when this process
//   dies, even by SIGKILL, the read sees EOF and the watchdog runs the destroy. It ignores
//   SIGTERM/SIGINT/SIGHUP (bun test SIGTERMs the subprocesses it sees when a hook times out);
// - every start first sweeps leftovers of the same prefix whose owner process is gone (an earlier
//   run killed before even its watchdog could act).
//
// Skipping: when namespaces cannot be used here (not root, no iproute2 or nftables, `ip netns add`
// refused), `netnsSupport` says why and the test files skip with that one message.
//
// HERMES_KV_BIN=path runs that binary instead of building dist/hermes-kv (e.g. a build of another
// commit).

import { expect } from "bun:test";
import { copyFileSync, existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { etcdBin, testElectionMs, testHeartbeatMs } from "../lib/etcd.ts";
import {
  LoadClient,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  request,
  startLoad,
  waitFor,
  waitServingMembers,
  type Load,
  type NodeStatusBody,
  type OpRecord,
} from "../cluster/helpers.ts";

export const repoRoot = join(import.meta.dir, "..", "..");
export const netnsScript = join(repoRoot, "scripts", "netns-cluster.sh");
const distBinary = join(repoRoot, "dist", "hermes-kv");
const httpPort = 8080;
const listenPort = 7000;
const etcdPort = 2379;
/** Log lines kept per process, shown when a test fails. */
const logLinesMax = 400;
const nodeUpTimeoutMs = 30_000;
const scriptTimeoutMs = 30_000;

// --- can this machine run the tier? ----------------------------------------------------------

export interface NetnsSupport {
  ok: boolean;
  /** Why not, when !ok. */
  reason: string;
}

let support: NetnsSupport | null = null;

/** Whether network namespaces, veths, bridges and nft work here (asked once per process). */
export function netnsSupport(): NetnsSupport {
  if (support !== null) return support;
  if (process.platform !== "linux") support = { ok: false, reason: `not Linux (${process.platform})` };
  else if (process.getuid?.() !== 0) support = { ok: false, reason: `not root (uid ${process.getuid?.()})` };
  else {
    const probe = Bun.spawnSync(["bash", netnsScript, "check"], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: scriptTimeoutMs,
    });
    const why = `${probe.stdout.toString()}${probe.stderr.toString()}`.trim();
    support =
      probe.exitCode === 0
        ? { ok: true, reason: "" }
        : { ok: false, reason: why || `netns-cluster.sh check failed (exit ${probe.exitCode})` };
  }
  const g = globalThis as { __hermesNetnsSkipSaid?: boolean };
  if (!support.ok && !g.__hermesNetnsSkipSaid) {
    g.__hermesNetnsSkipSaid = true;
    console.warn(
      `netns tests skipped: network namespaces are not usable here (${support.reason}); they need root, iproute2 and nftables`,
    );
  }
  return support;
}

// --- the binary ------------------------------------------------------------------------------

function newestMtimeMs(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtimeMs(join(path, entry)));
  return newest;
}

/** What the binary is built from: newer than the binary means stale. */
function sourcesMtimeMs(): number {
  let newest = newestMtimeMs(join(repoRoot, "src"));
  for (const f of ["package.json", "bun.lock", "package-lock.json", "scripts/build.sh"]) {
    const p = join(repoRoot, f);
    if (existsSync(p)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** The node binary: HERMES_KV_BIN, or dist/hermes-kv, built first (scripts/build.sh) when missing or stale. */
export async function ensureBinary(): Promise<string> {
  const override = process.env.HERMES_KV_BIN;
  if (override !== undefined && override !== "") {
    if (!existsSync(override)) throw new Error(`HERMES_KV_BIN=${override} does not exist`);
    return override;
  }
  if (existsSync(distBinary) && statSync(distBinary).mtimeMs >= sourcesMtimeMs()) return distBinary;
  const started = performance.now();
  const build = Bun.spawn(["bash", "scripts/build.sh"], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(build.stdout).text(),
    new Response(build.stderr).text(),
    build.exited,
  ]);
  if (code !== 0) throw new Error(`scripts/build.sh failed (exit ${code}):\n${out}\n${err}`);
  console.error(`netns: built ${distBinary} in ${(performance.now() - started).toFixed(0)} ms`);
  return distBinary;
}

// --- the script ------------------------------------------------------------------------------

async function script(...args: string[]): Promise<string> {
  const proc = Bun.spawn(["bash", netnsScript, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    timeout: scriptTimeoutMs,
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`netns-cluster.sh ${args.join(" ")} failed (exit ${code}): ${err.trim()}`);
  return out;
}

function scriptSync(...args: string[]): void {
  Bun.spawnSync(["bash", netnsScript, ...args], { stdout: "ignore", stderr: "inherit", timeout: scriptTimeoutMs });
}

// --- cleanup of live runs --------------------------------------------------------------------

const liveRuns = new Set<string>();
const signalNumbers = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
const signalHandlers = new Map<string, () => void>();

function destroyLiveSync(): void {
  for (const run of [...liveRuns]) {
    scriptSync("destroy", run);
    liveRuns.delete(run);
  }
}

const onExit = () => destroyLiveSync();

function trackRun(run: string): void {
  liveRuns.add(run);
  if (signalHandlers.size > 0) return;
  process.on("exit", onExit);
  for (const [name, number] of Object.entries(signalNumbers)) {
    const handler = () => {
      destroyLiveSync();
      process.exit(128 + number);
    };
    signalHandlers.set(name, handler);
    process.on(name as NodeJS.Signals, handler);
  }
}

function untrackRun(run: string): void {
  liveRuns.delete(run);
  if (liveRuns.size > 0 || signalHandlers.size === 0) return;
  process.off("exit", onExit);
  for (const [name, handler] of signalHandlers) process.off(name as NodeJS.Signals, handler);
  signalHandlers.clear();
}

// --- processes in namespaces -----------------------------------------------------------------

/** Keeps the last lines of a process's output. */
class LogTail {
  readonly lines: string[] = [];
  constructor(private readonly tag: string) {}

  note(line: string): void {
    if (this.lines.length >= logLinesMax) this.lines.shift();
    this.lines.push(`${performance.now().toFixed(0)} [${this.tag}] ${line}`);
  }

  async pump(stream: ReadableStream<Uint8Array>, onLine?: (line: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        onLine?.(line);
        this.note(line);
      }
    }
    if (pending.length > 0) this.note(pending);
  }

  tail(n: number): string {
    return this.lines.slice(-n).join("\n");
  }
}

/** Spawns `cmd` inside namespace `ns` (`ip netns exec` execs it: the pid is the command's own). */
function spawnInNs(ns: string, cmd: string[], log: LogTail, onLine?: (line: string) => void): Subprocess {
  const proc = Bun.spawn(["ip", "netns", "exec", ns, ...cmd], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  void log.pump(proc.stdout as ReadableStream<Uint8Array>, onLine);
  void log.pump(proc.stderr as ReadableStream<Uint8Array>, onLine);
  return proc;
}

function isRunning(proc: Subprocess | null): boolean {
  return proc !== null && proc.exitCode === null && proc.signalCode === null;
}

/** One `hermes-kv node` in its namespace; restartable there with the same id and addresses. */
export class NetnsNode {
  readonly host: string;
  readonly ns: string;
  readonly address: string;
  readonly url: string;
  private proc: Subprocess | null = null;
  private readonly log: LogTail;
  private upSeen = false;
  spawns = 0;
  paused = false;

  constructor(
    readonly id: number,
    run: string,
    net: number,
    private readonly options: { bin: string; etcdUrl: string; cluster: string; leaseMs: number; testHooks: boolean },
  ) {
    this.host = `n${id}`;
    this.ns = `hkv-${run}-${this.host}`;
    this.address = `10.77.${net}.${10 + id}`;
    this.url = `http://${this.address}:${httpPort}`;
    this.log = new LogTail(`n${id}`);
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get running(): boolean {
    return isRunning(this.proc);
  }

  get exitInfo(): string {
    if (this.proc === null) return "not started";
    return this.running ? `pid ${this.proc.pid}` : `exit ${this.proc.exitCode} signal ${this.proc.signalCode}`;
  }

  logTail(lines = 60): string {
    return this.log.tail(lines);
  }

  /** Starts the process in its namespace and waits for its "node ID up" line (it then joins). */
  async spawn(): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} is already running`);
    this.upSeen = false;
    this.paused = false;
    this.spawns++;
    this.log.note(`--- spawn #${this.spawns}`);
    const o = this.options;
    const args = [
      o.bin,
      "node",
      "--id",
      String(this.id),
      "--http",
      `${this.address}:${httpPort}`,
      "--listen",
      `${this.address}:${listenPort}`,
      // The namespaces' addresses are private to this machine; protected mode would refuse them.
      "--insecure",
      "--etcd",
      o.etcdUrl,
      "--cluster",
      o.cluster,
      "--lease-ms",
      String(o.leaseMs),
      "--transport",
      "tcp",
    ];
    if (o.testHooks) args.push("--test-hooks");
    this.proc = spawnInNs(this.ns, args, this.log, (line) => {
      if (line.startsWith(`node ${this.id} up:`)) this.upSeen = true;
    });
    await waitFor(
      `node ${this.id} to print "node ${this.id} up"`,
      () => {
        if (!this.running)
          throw new Error(`node ${this.id} exited during start-up (${this.exitInfo}):\n${this.logTail()}`);
        return this.upSeen;
      },
      nodeUpTimeoutMs,
      20,
    );
  }

  async status(): Promise<NodeStatusBody | null> {
    const answer = await request(`${this.url}/v1/status`, {}, 2000);
    return answer.kind === "response" && answer.status === 200 ? (JSON.parse(answer.body) as NodeStatusBody) : null;
  }

  async waitHealthy(timeoutMs = 30_000): Promise<number> {
    return waitFor(
      `node ${this.id} /health 200`,
      async () => {
        if (!this.running) throw new Error(`node ${this.id} is not running (${this.exitInfo}):\n${this.logTail()}`);
        const answer = await request(`${this.url}/health`, {}, 2000);
        return answer.kind === "response" && answer.status === 200;
      },
      timeoutMs,
      50,
    );
  }

  /** A crash: SIGKILL; resolves once the process is gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (proc === null) return;
    if (isRunning(proc)) proc.kill("SIGKILL");
    await proc.exited;
    this.paused = false;
  }

  pause(): void {
    if (!this.running) throw new Error(`node ${this.id} is not running`);
    this.proc!.kill("SIGSTOP");
    this.paused = true;
  }

  resume(): void {
    if (!this.running) throw new Error(`node ${this.id} is not running`);
    this.proc!.kill("SIGCONT");
    this.paused = false;
  }

  /** After the run's destroy killed it. */
  async reaped(): Promise<void> {
    if (this.proc !== null) await this.proc.exited;
  }
}

export type Net = "data" | "ctl";
/** "etcd" or "n<id>". */
export type Host = string;

export interface NetnsClusterOptions {
  nodes: number;
  /** Node lease TTL (whole seconds, as the node requires). */
  leaseMs: number;
  testHooks?: boolean;
}

/** etcd and N nodes, each in its own namespace, with kernel faults. */
export class NetnsCluster {
  readonly nodes: NetnsNode[] = [];
  readonly etcdAddress: string;
  readonly etcdUrl: string;
  private etcd: Subprocess | null = null;
  private readonly etcdLog = new LogTail("etcd");
  private watchdog: Subprocess | null = null;
  private closed = false;
  /** Faults injected, with their times (performance.now()), for failure messages. */
  readonly faultLog: string[] = [];

  private constructor(
    readonly run: string,
    /** Data subnet 10.77.net.0/24; control 10.77.(net+1).0/24. */
    readonly net: number,
    readonly dir: string,
    readonly options: NetnsClusterOptions,
  ) {
    this.etcdAddress = `10.77.${net + 1}.2`;
    this.etcdUrl = `http://${this.etcdAddress}:${etcdPort}`;
  }

  /** Sweeps orphaned runs, creates a new one, starts etcd and the nodes, waits until all serve. */
  static async start(options: NetnsClusterOptions): Promise<NetnsCluster> {
    const s = netnsSupport();
    if (!s.ok) throw new Error(`network namespaces not usable: ${s.reason}`);
    const bin = await ensureBinary();
    await script("sweep");
    const run = Array.from(
      crypto.getRandomValues(new Uint8Array(5)),
      (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36],
    ).join("");
    // Tracked before it exists: a signal from here on destroys whatever was made.
    trackRun(run);
    let env: Record<string, string>;
    try {
      env = Object.fromEntries(
        (await script("create", run, String(options.nodes), String(process.pid)))
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
    } catch (error) {
      scriptSync("destroy", run);
      untrackRun(run);
      throw error;
    }
    const cluster = new NetnsCluster(run, Number(env.NET), env.DIR!, options);
    try {
      cluster.watchdog = Bun.spawn(
        ["sh", "-c", `trap '' TERM INT HUP; read _ ; exec bash '${netnsScript}' destroy ${run}`],
        {
          stdin: "pipe",
          stdout: "ignore",
          stderr: "ignore",
        },
      );
      const runBin = join(cluster.dir, "hermes-kv");
      copyFileSync(bin, runBin);
      await cluster.startEtcd();
      const clusterName = `netns-${run}`;
      for (let id = 0; id < options.nodes; id++) {
        cluster.nodes.push(
          new NetnsNode(id, run, cluster.net, {
            bin: runBin,
            etcdUrl: cluster.etcdUrl,
            cluster: clusterName,
            leaseMs: options.leaseMs,
            testHooks: options.testHooks ?? false,
          }),
        );
      }
      // All at once: the lowest id bootstraps, the others load its (empty) state.
      await Promise.all(cluster.nodes.map((n) => n.spawn()));
      await Promise.all(cluster.nodes.map((n) => n.waitHealthy()));
      await cluster.waitMembers(
        cluster.nodes.map((n) => n.id),
        15_000,
      );
      return cluster;
    } catch (error) {
      const logs = cluster.logs();
      await cluster.close();
      throw new Error(`netns cluster start failed: ${error instanceof Error ? error.message : String(error)}\n${logs}`);
    }
  }

  private async startEtcd(): Promise<void> {
    const url = this.etcdUrl;
    let ready = false;
    this.etcd = spawnInNs(
      `hkv-${this.run}-etcd`,
      [
        etcdBin,
        "--name",
        "hkv",
        "--data-dir",
        join(this.dir, "etcd"),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "hkv=http://127.0.0.1:2380",
        "--initial-cluster-state",
        "new",
        "--heartbeat-interval",
        String(testHeartbeatMs),
        "--election-timeout",
        String(testElectionMs),
      ],
      this.etcdLog,
      (line) => {
        if (line.includes("ready to serve client requests")) ready = true;
      },
    );
    // The host has no address on the control network, so etcd's own log says when it serves.
    await waitFor(
      "etcd to log 'ready to serve client requests'",
      () => {
        if (!isRunning(this.etcd)) throw new Error(`etcd exited during start-up:\n${this.etcdLog.tail(30)}`);
        return ready;
      },
      15_000,
      20,
    );
  }

  node(id: number): NetnsNode {
    const n = this.nodes[id];
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Waits until every node in `among` reports exactly `members` and serves. */
  async waitMembers(members: number[], timeoutMs: number, among: number[] = members): Promise<number> {
    return waitServingMembers((id) => this.node(id).status(), members, timeoutMs, among);
  }

  // --- faults (all undone by heal()) ---

  private noteFault(what: string): void {
    this.faultLog.push(`${performance.now().toFixed(0)} ${what}`);
  }

  /** Sets the host end of `host`'s veth on `net` down (the cable pulled at the switch). */
  async linkDown(host: Host, net: Net): Promise<void> {
    this.noteFault(`link ${host} ${net} down`);
    await script("link", this.run, host, net, "down");
  }

  async linkUp(host: Host, net: Net): Promise<void> {
    this.noteFault(`link ${host} ${net} up`);
    await script("link", this.run, host, net, "up");
  }

  /** One direction: packets from `from` are dropped at each of `to`'s ingress (nft in their namespaces). */
  async drop(from: Host, to: Host[]): Promise<void> {
    this.noteFault(`drop ${from} -> ${to.join(",")}`);
    await script("drop", this.run, from, ...to);
  }

  /** Both directions between `a` and each of `others`. */
  async cut(a: Host, others: Host[]): Promise<void> {
    this.noteFault(`cut ${a} <-> ${others.join(",")}`);
    await script("cut", this.run, a, ...others);
  }

  /** Every drop rule flushed, every link up. */
  async heal(): Promise<void> {
    this.noteFault("heal");
    await script("heal", this.run);
  }

  logs(lines = 60): string {
    return [
      `--- run ${this.run} (10.77.${this.net}.0/24 data, 10.77.${this.net + 1}.0/24 control); faults: ${this.faultLog.join("; ") || "none"}`,
      `--- etcd`,
      this.etcdLog.tail(15),
      ...this.nodes.map((n) => `--- node ${n.id} (${n.exitInfo})\n${n.logTail(lines)}`),
    ].join("\n");
  }

  /** Kills everything in the run's namespaces and removes the topology. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await script("destroy", this.run);
    } finally {
      untrackRun(this.run);
      await Promise.all(this.nodes.map((n) => n.reaped()));
      if (this.etcd !== null) await this.etcd.exited;
      const watchdog = this.watchdog;
      if (watchdog !== null) {
        watchdog.kill("SIGKILL");
        await watchdog.exited;
      }
    }
  }
}

// --- what the tests measure and check ---------------------------------------------------------

/** Acknowledged updates (200 to a write/cas/create/delete/incr) matching `filter`, ledger writes included. */
export const acked: (recorder: Recorder, filter: (r: OpRecord) => boolean) => OpRecord[] = ackedUpdates;

/** When the first update invoked at or after `t` and matching `filter` was acknowledged, or null. */
export function firstAckAfter(recorder: Recorder, t: number, filter: (r: OpRecord) => boolean): number | null {
  let first: number | null = null;
  for (const r of acked(recorder, (r) => r.call >= t && filter(r))) if (first === null || r.ret < first) first = r.ret;
  return first;
}

/** The longest time within [from, to] with no acknowledgement of an update matching `filter`. */
export function longestAckGap(recorder: Recorder, from: number, to: number, filter: (r: OpRecord) => boolean): number {
  const rets = acked(recorder, (r) => r.ret >= from && r.ret <= to && filter(r))
    .map((r) => r.ret)
    .sort((a, b) => a - b);
  let last = from;
  let gap = 0;
  for (const t of rets) {
    gap = Math.max(gap, t - last);
    last = t;
  }
  return Math.max(gap, to - last);
}

export const ms = (t: number | null): string => (t === null ? "never" : `${t.toFixed(0)} ms`);

/** GET and PUT straight to `url` for each key: the statuses (or -1 for no answer). */
export async function probeStatuses(url: string, keys: readonly string[], tag: string): Promise<number[]> {
  const statuses: number[] = [];
  for (const key of keys) {
    for (const init of [{}, { method: "PUT", body: `probe-${tag}-${key}` }] as RequestInit[]) {
      const answer = await request(`${url}/v1/kv/${encodeURIComponent(key)}`, init, 5000);
      statuses.push(answer.kind === "response" ? answer.status : -1);
    }
  }
  return statuses;
}

export interface Workload {
  recorder: Recorder;
  load: Load;
  /** Keys of the ledger: each written once, with a unique value, by a client bound to one node. */
  ledgerDone: Promise<void>;
  stop(): Promise<void>;
}

export interface WorkloadOptions {
  urls: string[];
  keys: readonly string[];
  counters: readonly string[];
  seed: number;
  clientsPerNode?: number;
  /** Pause between two ledger writes of one ledger client. */
  ledgerEveryMs?: number;
  opsMax?: number;
}

/** Ledger keys are `led-<node>-<seq>`. */
export const ledgerPrefix = "led-";
const ledgerClientBase = 500;
const finalReaderBase = 1000;
const ledgerReaderBase = 2000;

/**
 * Starts the hot-key workload of test/cluster/helpers.ts (reads, writes, CAS, create, delete,
 * increments, every value unique) plus a ledger: one client per node writing fresh keys once each,
 * so that every acknowledged write can be read back by name at the end.
 */
export function startWorkload(o: WorkloadOptions): Workload {
  const recorder = new Recorder();
  let stopped = false;
  const load = startLoad({
    urls: o.urls,
    recorder,
    keys: o.keys,
    counters: o.counters,
    clientsPerNode: o.clientsPerNode ?? 2,
    seed: o.seed,
    stop: () => stopped,
    opsMax: o.opsMax ?? 60_000,
  });
  const every = o.ledgerEveryMs ?? 40;
  const ledgerDone = Promise.all(
    o.urls.map(async (_, node) => {
      const client = new LoadClient(ledgerClientBase + node, node, o.urls, recorder);
      for (let seq = 0; !stopped && seq < 5000; seq++) {
        const record = await client.write(`${ledgerPrefix}${node}-${seq}`, `lv-${node}-${seq}-${o.seed}`);
        await Bun.sleep(record.outcome === "failed" ? 50 : every);
      }
    }),
  ).then(() => undefined);
  return {
    recorder,
    load,
    ledgerDone,
    async stop() {
      stopped = true;
      await Promise.all([load.done, ledgerDone]);
    },
  };
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/**
 * The end of every scenario, once the workload has stopped: every node serves; every node answers
 * the same for every hot key; every ledger key written (acknowledged, unknown or failed) is read
 * back from every node as a recorded read, and every acknowledged one has its value on every node
 * (no acknowledged write lost); no answer was outside the HTTP contract; the whole history, final
 * reads included, is linearizable.
 */
export async function finalChecks(
  c: NetnsCluster,
  w: Workload,
  hotKeys: readonly string[],
  label: string,
): Promise<{ ledgerAcked: number }> {
  const urls = c.urls();
  const recorder = w.recorder;
  const { converged, answers, finalReads } = await convergeAndReadAll(urls, hotKeys, recorder, finalReaderBase);
  expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
  expect(finalReads.filter((r) => r.outcome !== "ok").map((r) => `${r.key}@n${r.node}:${r.status}`)).toEqual([]);

  const ledgerWrites = recorder.records.filter((r) => r.kind === "write" && r.key.startsWith(ledgerPrefix));
  const readers = urls.map((_, i) => new LoadClient(ledgerReaderBase + i, i, urls, recorder));
  const lost: string[] = [];
  await pool(ledgerWrites, 16, async (write) => {
    const reads = await Promise.all(readers.map((reader) => reader.read(write.key)));
    if (write.outcome !== "ok") return;
    for (const read of reads) {
      if (read.outcome !== "ok" || read.value !== write.value)
        lost.push(
          `${write.key}=${write.value} acked by n${write.node}, n${read.node} reads ${read.status} ${read.value}`,
        );
    }
  });
  expect(lost.slice(0, 20), `acknowledged ledger writes not read back (${lost.length})`).toEqual([]);
  const ledgerAcked = ledgerWrites.filter((r) => r.outcome === "ok").length;
  expect(ledgerAcked).toBeGreaterThan(0);

  expect(recorder.unexpected).toEqual([]);
  const started = performance.now();
  const result = recorder.check();
  console.error(
    `netns ${label}: ${recorder.history.invokedCount} ops (${ledgerWrites.length} ledger writes, ${ledgerAcked} acked, read back on ${urls.length} nodes); ` +
      `checked in ${(performance.now() - started).toFixed(0)} ms; ${recorder.tallyText()}`,
  );
  expectLinearizable(result, () => c.logs());
  return { ledgerAcked };
}
