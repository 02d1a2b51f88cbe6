// Process-level cluster tests: a real etcd (test/lib/etcd.ts) and N `hermes-kv node` processes
// (bun src/main.ts node ...) on 127.0.0.1, driven through their HTTP API by concurrent clients
// whose every op is recorded in a HistoryRecorder and checked for linearizability.
//
// What is here:
// - ProcCluster: start etcd + N nodes, wait until every /health is 200, SIGKILL / SIGSTOP / SIGCONT /
//   restart a node, partition one with the --test-hooks drop hook, and tear everything down.
//   Cleanup happens in close() (call it from afterAll/finally; SIGTERM, then SIGKILL), in a process
//   "exit" hook (bench scripts: `bun test` does not emit "exit" to test files, measured), and in a
//   watchdog shell per node that SIGKILLs it once this process is gone (even after a SIGKILL): it
//   blocks reading a pipe only this process writes, as in test/lib/etcd.ts (PR_SET_PDEATHSIG is not
//   delivered on this VM). The watchdog ignores SIGTERM: when a hook times out, `bun test` SIGTERMs
//   the subprocesses it still sees, which killed plain watchdogs and left nodes that ignore SIGTERM
//   (see shutdown.test.ts) running.
// - LoadClient / runLoad: closed-loop clients, several per node, doing reads, blind writes, CAS on
//   the ETag of their last read or write, create-if-absent, deletes and increments over a few hot
//   keys, every written value unique. Answers map to the history as the brief says:
//     200 -> ok; 412 on CAS/create -> cas ok:false; 404 on GET -> read null;
//     update 504 / network error / client timeout -> unknown;
//     update 503 / 429 (and a refused TCP connection for a POST: it was never sent) -> failed;
//     a refused PUT/DELETE -> unknown (fetch may have sent it once on a reused socket, then retried);
//     any failed read -> failed (a read has no effect).
//   Anything outside the contract (500, a 4xx that cannot happen) is recorded conservatively and
//   kept in `unexpected`, which every test asserts is empty.
// - waitFor: every wait is bounded and says what it was waiting for when it gives up.

import { expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { clusterKeyLabel, deriveClusterKey, parseClusterKey } from "../../src/base/cluster-key.ts";
import { InternalProofSigner } from "../../src/node/internal-proof.ts";
import { startEtcd, type EtcdServer, type EtcdServerOptions } from "../lib/etcd.ts";
import { HistoryRecorder, type HistoryOp, type KvInput } from "../lib/history.ts";
import { prng, testSeed } from "../lib/prng.ts";
import { checkLinearizable, type LinResult } from "../lib/linearizability.ts";

/** The repository root: nodes run `bun src/main.ts` from here. */
export const repoRoot = join(import.meta.dir, "..", "..");
/** The bun that runs the tests runs the nodes too. */
const bunBin = process.execPath;

/** How long a client waits for one answer. Longer than the nodes' opTimeoutMs (5 s) so that the server's verdict (504) normally arrives first. */
export const requestTimeoutMs = 8000;
/** Log lines kept per node process (stdout + stderr), shown when a test fails. */
const nodeLogLinesMax = 400;
/** Bound on how long a node may take from spawn to its "node ID up" line. */
const nodeUpTimeoutMs = 30_000;
/** SIGTERM, then SIGKILL after this long. */
const nodeStopTimeoutMs = 5000;
/** Unexpected answers kept (a test asserts there are none; more than this is noise). */
const unexpectedMax = 100;

// --- small utilities -----------------------------------------------------------------------

/** A free TCP port on 127.0.0.1 (bound by the OS, then released). */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** Polls `probe` every `everyMs` until it returns true; throws after `timeoutMs` saying what it waited for. */
export async function waitFor(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/**
 * Waits until every node in `among` (its status read by `statusOf`) reports exactly `members` and
 * serves; returns how long that took.
 */
export function waitServingMembers(
  statusOf: (id: number) => Promise<NodeStatusBody | null>,
  members: number[],
  timeoutMs: number,
  among: number[],
): Promise<number> {
  const want = JSON.stringify([...members].sort((a, b) => a - b));
  return waitFor(
    `nodes ${among.join(",")} to serve with members ${want}`,
    async () => {
      const statuses = await Promise.all(among.map(statusOf));
      return statuses.every((s) => s !== null && s.serving && JSON.stringify(s.members) === want);
    },
    timeoutMs,
    50,
  );
}

/** One HTTP answer, or why there was none. `refused`: the TCP connection was refused, so nothing was sent. */
export type Answer =
  | { kind: "response"; status: number; etag: string | null; body: string; outcome: string | null }
  | { kind: "timeout" }
  | { kind: "refused" }
  | { kind: "network"; message: string };

/** What every request() carries besides its own init: a secured cluster's token and TLS (see setRequestCredentials). */
export interface RequestCredentials {
  headers?: Record<string, string>;
  tls?: { ca?: string; cert?: string; key?: string };
}
let credentials: RequestCredentials = {};

/** Set the credentials of every request() from now on (a test of a secured cluster); {} resets them. */
export function setRequestCredentials(next: RequestCredentials): void {
  credentials = next;
}

export async function request(url: string, init: RequestInit = {}, timeoutMs = requestTimeoutMs): Promise<Answer> {
  try {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(credentials.headers ?? {}))
      if (!headers.has(name)) headers.set(name, value);
    const response = await fetch(url, {
      ...init,
      headers,
      ...(credentials.tls === undefined ? {} : { tls: credentials.tls }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await response.text();
    return {
      kind: "response",
      status: response.status,
      etag: response.headers.get("etag"),
      body,
      outcome: response.headers.get("x-outcome"),
    };
  } catch (error) {
    const e = error as { name?: string; code?: string };
    if (e.name === "TimeoutError" || e.name === "AbortError") return { kind: "timeout" };
    if (e.code === "ECONNREFUSED" || e.code === "ConnectionRefused") return { kind: "refused" };
    return { kind: "network", message: String(error) };
  }
}

/** The JSON error code of an error answer, or null. */
export function errorCode(body: string): string | null {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    return typeof parsed.error?.code === "string" ? parsed.error.code : null;
  } catch {
    return null;
  }
}

// Every random choice of a test comes from one seeded PRNG, so seeds replay the choices.
export { prng, testSeed };

// --- node processes --------------------------------------------------------------------------

const liveProcesses = new Set<Subprocess>();
let exitHookInstalled = false;

function trackProcess(proc: Subprocess): void {
  liveProcesses.add(proc);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Runs when a bench script exits (bun test does not emit "exit" to test files: the watchdogs cover that).
  process.on("exit", () => {
    for (const p of liveProcesses) {
      try {
        p.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

export interface NodeStatusBody {
  nodeId: number;
  epoch: number;
  members: number[];
  serving: boolean;
  leaseRemainingMs: number;
  shards: { index: number; keys: number; opsInFlight: number }[];
}

/** One `hermes-kv node` process; restartable with the same id and ports. */
export class NodeProcess {
  readonly url: string;
  private proc: Subprocess | null = null;
  private watchdog: Subprocess | null = null;
  private readonly lines: string[] = [];
  private upSeen = false;
  /** Times this node was spawned. */
  spawns = 0;
  paused = false;

  constructor(
    readonly id: number,
    readonly httpPort: number,
    readonly listenPort: number,
    private readonly options: {
      etcdUrl: string;
      cluster: string;
      leaseMs: number;
      shards: number;
      testHooks: boolean;
      nodeArgs?: readonly string[];
    },
  ) {
    // A node given a certificate serves HTTPS only.
    this.url = `${options.nodeArgs?.includes("--tls-cert") === true ? "https" : "http"}://127.0.0.1:${httpPort}`;
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** How the last process ended: null while it runs (or never ran). */
  get ended(): { exitCode: number | null; signal: string | null } | null {
    const proc = this.proc;
    if (proc === null || (proc.exitCode === null && proc.signalCode === null)) return null;
    return { exitCode: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode) };
  }

  /** Exit code or signal of the last process, for failure messages. */
  get exitInfo(): string {
    if (this.proc === null) return "not started";
    return `exit ${this.proc.exitCode} signal ${this.proc.signalCode}`;
  }

  logTail(lines = 60): string {
    return this.lines.slice(-lines).join("\n");
  }

  /** The kept log lines of the current (or last) process only. */
  currentLog(): string[] {
    const tag = `[${this.id}#${this.spawns}]`;
    return this.lines.filter((line) => line.includes(tag));
  }

  private note(line: string): void {
    if (this.lines.length >= nodeLogLinesMax) this.lines.shift();
    this.lines.push(`${performance.now().toFixed(0)} [${this.id}#${this.spawns}] ${line}`);
  }

  private async pump(stream: ReadableStream<Uint8Array>, isStdout: boolean): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (isStdout && line.startsWith(`node ${this.id} up:`)) this.upSeen = true;
        this.note(line);
      }
    }
    if (pending.length > 0) this.note(pending);
  }

  /** Spawns the process and waits for its "node ID up" line (it then joins; see waitHealthy). */
  async spawn(): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} is already running`);
    this.upSeen = false;
    this.paused = false;
    this.spawns++;
    const o = this.options;
    const args = [
      bunBin,
      "src/main.ts",
      "node",
      "--id",
      String(this.id),
      "--http",
      `127.0.0.1:${this.httpPort}`,
      "--listen",
      `127.0.0.1:${this.listenPort}`,
      "--etcd",
      o.etcdUrl,
      "--cluster",
      o.cluster,
      "--lease-ms",
      String(o.leaseMs),
      "--shards",
      String(o.shards),
      "--transport",
      "tcp",
    ];
    if (o.testHooks) args.push("--test-hooks");
    args.push(...(o.nodeArgs ?? []));
    const proc = Bun.spawn(args, { cwd: repoRoot, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.proc = proc;
    trackProcess(proc);
    // Reads a pipe only this process writes: EOF (this process died) kills the node.
    this.watchdog = Bun.spawn(["sh", "-c", `trap '' TERM INT HUP; read _ ; kill -9 ${proc.pid} 2>/dev/null`], {
      stdin: "pipe",
      stdout: "ignore",
      stderr: "ignore",
    });
    trackProcess(this.watchdog);
    void this.pump(proc.stdout as ReadableStream<Uint8Array>, true);
    void this.pump(proc.stderr as ReadableStream<Uint8Array>, false);
    await waitFor(
      `node ${this.id} to print "node ${this.id} up" (${this.exitInfo})`,
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

  async healthy(): Promise<boolean> {
    const answer = await request(`${this.url}/health`, {}, 2000);
    return answer.kind === "response" && answer.status === 200;
  }

  async waitHealthy(timeoutMs = 30_000): Promise<number> {
    return waitFor(
      `node ${this.id} /health 200`,
      async () => {
        if (!this.running) throw new Error(`node ${this.id} is not running (${this.exitInfo}):\n${this.logTail()}`);
        return this.healthy();
      },
      timeoutMs,
      50,
    );
  }

  private async reap(signal: "SIGKILL" | "SIGTERM", stopTimeoutMs = nodeStopTimeoutMs): Promise<void> {
    const proc = this.proc;
    if (proc === null) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      // A stopped process does not handle SIGTERM until continued.
      if (this.paused && signal === "SIGTERM") proc.kill("SIGCONT");
    }
    if (signal === "SIGTERM") {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">(
        (resolve) => (timer = setTimeout(() => resolve("timeout"), stopTimeoutMs)),
      );
      const outcome = await Promise.race([proc.exited, timedOut]);
      clearTimeout(timer);
      if (outcome === "timeout") proc.kill("SIGKILL");
    }
    await proc.exited;
    liveProcesses.delete(proc);
    this.paused = false;
    const watchdog = this.watchdog;
    this.watchdog = null;
    if (watchdog !== null) {
      watchdog.kill("SIGKILL");
      await watchdog.exited;
      liveProcesses.delete(watchdog);
    }
  }

  /** A crash: SIGKILL, resolves once the process is gone. */
  kill(): Promise<void> {
    return this.reap("SIGKILL");
  }

  /** A clean stop: SIGTERM (the node revokes its lease), SIGKILL after `timeoutMs`. */
  stop(timeoutMs = nodeStopTimeoutMs): Promise<void> {
    return this.reap("SIGTERM", timeoutMs);
  }

  /** The cluster key's proof for an internal route, when the node runs with --cluster-key-file (else none). */
  internalProof(method: string, url: string): Record<string, string> {
    const args = this.options.nodeArgs ?? [];
    const at = args.indexOf("--cluster-key-file");
    if (at < 0) return {};
    const key = parseClusterKey(readFileSync(args[at + 1]!, "utf8"));
    return new InternalProofSigner(deriveClusterKey(key, clusterKeyLabel.internalHttp)).headers(method, url);
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

  /** Test hook: drop transport traffic to/from `peers` on this node ([] heals). */
  async drop(peers: number[]): Promise<void> {
    const url = `${this.url}/v1/test/drop`;
    const answer = await request(
      url,
      {
        method: "POST",
        body: JSON.stringify({ peers }),
        headers: { "content-type": "application/json", ...this.internalProof("POST", url) },
      },
      5000,
    );
    if (answer.kind !== "response" || answer.status !== 200)
      throw new Error(`node ${this.id}: drop ${JSON.stringify(peers)} failed: ${JSON.stringify(answer)}`);
  }
}

export interface ClusterOptions {
  nodes: number;
  /** etcd lease TTL of every node (whole seconds). */
  leaseMs: number;
  shards?: number;
  testHooks?: boolean;
  /** etcd key prefix name; default a unique one per cluster. */
  cluster?: string;
  /** More `hermes-kv node` flags for every node (e.g. ["--suspect-ms", "0"]). */
  nodeArgs?: readonly string[];
  /** How etcd is started (TLS, more flags); plain by default. */
  etcd?: EtcdServerOptions;
  /** Runs once etcd is up, before any node starts (e.g. to add users and enable authentication). */
  prepareEtcd?: (etcd: EtcdServer) => Promise<void>;
  /** More flags for node `id` alone (e.g. its own --data-dir). */
  nodeArgsOf?: (id: number) => readonly string[];
}

/** etcd + N node processes. */
export class ProcCluster {
  private closed = false;
  private constructor(
    readonly etcd: EtcdServer,
    readonly nodes: NodeProcess[],
    readonly options: ClusterOptions,
  ) {}

  static async start(options: ClusterOptions): Promise<ProcCluster> {
    const etcd = await startEtcd(options.etcd ?? {});
    const nodes: NodeProcess[] = [];
    const cluster = new ProcCluster(etcd, nodes, options);
    try {
      await options.prepareEtcd?.(etcd);
      const name = options.cluster ?? `t${process.pid}-${Math.floor(performance.now())}`;
      const used = new Set<number>();
      const pick = async (): Promise<number> => {
        for (let attempt = 0; attempt < 20; attempt++) {
          const port = await freePort();
          if (!used.has(port)) {
            used.add(port);
            return port;
          }
        }
        throw new Error("no distinct free port after 20 attempts");
      };
      for (let id = 0; id < options.nodes; id++) {
        nodes.push(
          new NodeProcess(id, await pick(), await pick(), {
            etcdUrl: etcd.clientUrl,
            cluster: name,
            leaseMs: options.leaseMs,
            shards: options.shards ?? 1,
            testHooks: options.testHooks ?? false,
            nodeArgs: [...(options.nodeArgs ?? []), ...(options.nodeArgsOf?.(id) ?? [])],
          }),
        );
      }
      // All at once: the lowest id bootstraps, the others load its (empty) state.
      await Promise.all(nodes.map((n) => n.spawn()));
      await Promise.all(nodes.map((n) => n.waitHealthy()));
      await cluster.waitMembers(
        nodes.map((n) => n.id),
        15_000,
      );
      return cluster;
    } catch (error) {
      const logs = cluster.logs();
      await cluster.close();
      throw new Error(`cluster start failed: ${error instanceof Error ? error.message : String(error)}\n${logs}`);
    }
  }

  node(id: number): NodeProcess {
    const n = this.nodes[id];
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Waits until every running, unpaused node reports exactly `members` and serves. */
  async waitMembers(members: number[], timeoutMs: number, among: number[] = members): Promise<void> {
    await waitServingMembers((id) => this.node(id).status(), members, timeoutMs, among);
  }

  /** Cuts node `id` off the transport (not from etcd): it drops traffic to/from everyone, and everyone drops it. */
  async isolate(id: number): Promise<void> {
    const others = this.nodes.filter((n) => n.id !== id);
    await Promise.all([this.node(id).drop(others.map((n) => n.id)), ...others.map((n) => n.drop([id]))]);
  }

  async heal(): Promise<void> {
    await Promise.all(this.nodes.filter((n) => n.running).map((n) => n.drop([])));
  }

  logs(lines = 60): string {
    return [
      `--- etcd`,
      this.etcd.logTail(20),
      ...this.nodes.map((n) => `--- node ${n.id} (${n.exitInfo})\n${n.logTail(lines)}`),
    ].join("\n");
  }

  /** Stops every node (SIGTERM, then SIGKILL) and etcd. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.nodes.map((n) => n.stop()));
    await this.etcd.cleanup();
  }
}

// --- the client workload ---------------------------------------------------------------------

/** One answered or failed op, for assertions on behaviour (which node answered what, when). */
export interface OpRecord {
  client: number;
  node: number;
  kind: "read" | "write" | "cas" | "create" | "delete" | "incr";
  key: string;
  call: number;
  ret: number;
  /** HTTP status, or "timeout" | "refused" | "network". */
  status: number | string;
  /** The value read (reads: 200 body, 404 -> null) or written. */
  value: string | null;
  outcome: Outcome;
  /** The ETag of a 200 answer to an update (the key's timestamp it produced). */
  etag?: string | null;
}

export type Outcome = "ok" | "unknown" | "failed";

/** Bound on the op records kept (the history has its own bound). */
const opRecordsMax = 200_000;

export class Recorder {
  readonly history = new HistoryRecorder({ opsMax: opRecordsMax });
  readonly records: OpRecord[] = [];
  readonly unexpected: string[] = [];
  readonly tally = new Map<string, number>();

  note(what: string): void {
    if (this.unexpected.length < unexpectedMax) this.unexpected.push(what);
  }

  count(label: string): void {
    this.tally.set(label, (this.tally.get(label) ?? 0) + 1);
  }

  tallyText(): string {
    return [...this.tally.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
  }

  push(record: OpRecord): void {
    if (this.records.length >= opRecordsMax) throw new Error(`more than ${opRecordsMax} op records: a runaway test`);
    this.records.push(record);
  }

  ops(): HistoryOp[] {
    return this.history.ops();
  }

  check(): LinResult {
    return checkLinearizable(this.ops());
  }
}

interface Known {
  value: string;
  etag: string;
}

/** A client bound to one node; every op is recorded. */
export class LoadClient {
  readonly #known = new Map<string, Known>();

  constructor(
    readonly id: number,
    public node: number,
    private readonly urls: readonly string[],
    private readonly rec: Recorder,
    /** See LoadOptions.refusedIsUnknown. */
    private readonly refusedIsUnknown = false,
  ) {}

  known(key: string): Known | null {
    return this.#known.get(key) ?? null;
  }

  #url(key: string, suffix = ""): string {
    return `${this.urls[this.node]}/v1/kv/${encodeURIComponent(key)}${suffix}`;
  }

  #label(kind: string, answer: Answer): string {
    if (answer.kind !== "response") return `${kind}:${answer.kind}`;
    const code = answer.status >= 400 ? errorCode(answer.body) : null;
    return `${kind}:${answer.status}${code === null ? "" : `:${code}`}`;
  }

  async read(key: string, timeoutMs = requestTimeoutMs): Promise<OpRecord> {
    const node = this.node;
    const call = performance.now();
    const id = this.rec.history.invoke(this.id, key, { type: "read" }, call);
    const answer = await request(this.#url(key), {}, timeoutMs);
    const ret = performance.now();
    this.rec.count(this.#label("read", answer));
    const record: OpRecord = {
      client: this.id,
      node,
      kind: "read",
      key,
      call,
      ret,
      status: answer.kind === "response" ? answer.status : answer.kind,
      value: null,
      outcome: "failed",
    };
    if (answer.kind === "response" && answer.status === 200) {
      if (answer.etag === null) this.rec.note(`read ${key} on node ${node}: 200 without an ETag`);
      this.rec.history.ok(id, { type: "read", value: answer.body }, ret);
      if (answer.etag !== null) this.#known.set(key, { value: answer.body, etag: answer.etag });
      record.value = answer.body;
      record.outcome = "ok";
    } else if (answer.kind === "response" && answer.status === 404 && errorCode(answer.body) === "not_found") {
      this.rec.history.ok(id, { type: "read", value: null }, ret);
      this.#known.delete(key);
      record.outcome = "ok";
    } else {
      if (answer.kind === "response" && ![503, 504, 429].includes(answer.status)) {
        this.rec.note(`read ${key} on node ${node}: ${answer.status} ${answer.body.slice(0, 200)}`);
      }
      this.rec.history.failed(id);
    }
    this.rec.push(record);
    return record;
  }

  write(key: string, value: string): Promise<OpRecord> {
    return this.#update("write", key, { type: "write", value }, this.#url(key), { method: "PUT", body: value }, value);
  }

  /** CAS on the ETag of `expected` (a value this client read or wrote). */
  cas(key: string, expected: Known, value: string): Promise<OpRecord> {
    return this.#update(
      "cas",
      key,
      { type: "cas", expected: expected.value, value },
      this.#url(key),
      { method: "PUT", body: value, headers: { "if-match": expected.etag } },
      value,
    );
  }

  create(key: string, value: string): Promise<OpRecord> {
    return this.#update(
      "create",
      key,
      { type: "cas", expected: null, value },
      this.#url(key),
      { method: "PUT", body: value, headers: { "if-none-match": "*" } },
      value,
    );
  }

  remove(key: string): Promise<OpRecord> {
    return this.#update("delete", key, { type: "write", value: null }, this.#url(key), { method: "DELETE" }, null);
  }

  incr(key: string, by: number): Promise<OpRecord> {
    return this.#update("incr", key, { type: "incr", by }, this.#url(key, `/incr?by=${by}`), { method: "POST" }, null);
  }

  async #update(
    kind: OpRecord["kind"],
    key: string,
    input: KvInput,
    url: string,
    init: RequestInit,
    written: string | null,
  ): Promise<OpRecord> {
    const node = this.node;
    const history = this.rec.history;
    const call = performance.now();
    const id = history.invoke(this.id, key, input, call);
    const answer = await request(url, init);
    const ret = performance.now();
    this.rec.count(this.#label(kind, answer));
    const record: OpRecord = {
      client: this.id,
      node,
      kind,
      key,
      call,
      ret,
      status: answer.kind === "response" ? answer.status : answer.kind,
      value: written,
      outcome: "unknown",
    };
    this.rec.push(record);
    if (answer.kind === "refused" && init.method === "POST" && !this.refusedIsUnknown) {
      // connect() was refused: no byte of the request left this process. Only for POST: Bun's fetch
      // sends an idempotent request (PUT, DELETE) again on a new connection when its reused
      // keep-alive socket is reset, so a refusal may be the retry's, after the first attempt
      // reached the node (oven-sh/bun#28706); those are unknown, below.
      history.failed(id);
      record.outcome = "failed";
      return record;
    }
    if (answer.kind !== "response") {
      this.#known.delete(key);
      history.unknown(id);
      return record;
    }
    const status = answer.status;
    const code = status >= 400 ? errorCode(answer.body) : null;
    if (status === 200) {
      record.etag = answer.etag;
      if (input.type === "incr") {
        const value = (JSON.parse(answer.body) as { value: number }).value;
        history.ok(id, { type: "incr", value }, ret);
        record.value = String(value);
      } else if (input.type === "cas") history.ok(id, { type: "cas", ok: true }, ret);
      else history.ok(id, { type: "write" }, ret);
      if (answer.etag === null) this.rec.note(`${kind} ${key} on node ${node}: 200 without an ETag`);
      if (written !== null && answer.etag !== null) this.#known.set(key, { value: written, etag: answer.etag });
      else this.#known.delete(key);
      record.outcome = "ok";
      return record;
    }
    if (status === 412 && input.type === "cas" && code === "precondition_failed") {
      history.ok(id, { type: "cas", ok: false }, ret);
      this.#known.delete(key);
      record.outcome = "ok";
      return record;
    }
    if (status === 409 && input.type === "incr" && code === "not_a_number") {
      history.ok(id, { type: "incr-nan" }, ret);
      record.outcome = "ok";
      return record;
    }
    if ((status === 503 || status === 429 || (status === 409 && code === "aborted")) && code !== null) {
      history.failed(id);
      record.outcome = "failed";
      return record;
    }
    this.#known.delete(key);
    if (!(status === 504 && code === "outcome_unknown" && answer.outcome === "unknown")) {
      this.rec.note(`${kind} ${key} on node ${node}: ${status} ${answer.body.slice(0, 200)}`);
    }
    history.unknown(id);
    return record;
  }
}

export interface LoadOptions {
  urls: readonly string[];
  recorder: Recorder;
  /** Registers: read, written, CASed, created, deleted. */
  keys: readonly string[];
  /** Counters: only incremented (by positive amounts) and read. */
  counters: readonly string[];
  clientsPerNode: number;
  seed: number;
  /** Clients stop once this returns true... */
  stop: () => boolean;
  /** ...or once this many ops were invoked in all (a bound the test then fails on). */
  opsMax: number;
  /** Pause after a "not now" answer (503, 429, refused), which comes back at once. */
  backoffMs?: number;
  /** First client id (ids must be unique across a recorder). */
  clientIdBase?: number;
  /**
   * Record a refused update as unknown, not failed: when the server process dies under a request
   * on a kept-alive connection, fetch may send it again on a new connection, which is refused,
   * though the first attempt arrived (seen when SIGKILLing whole clusters).
   */
  refusedIsUnknown?: boolean;
}

export interface Load {
  clients: LoadClient[];
  done: Promise<void>;
}

/** Starts closed-loop clients (clientsPerNode on every node); `done` resolves when they all stopped. */
export function startLoad(o: LoadOptions): Load {
  const backoffMs = o.backoffMs ?? 20;
  const clients: LoadClient[] = [];
  const base = o.clientIdBase ?? 0;
  for (let n = 0; n < o.urls.length; n++) {
    for (let c = 0; c < o.clientsPerNode; c++)
      clients.push(new LoadClient(base + clients.length, n, o.urls, o.recorder, o.refusedIsUnknown ?? false));
  }
  const finished = (): boolean => o.stop() || o.recorder.history.invokedCount >= o.opsMax;
  const done = Promise.all(
    clients.map(async (client) => {
      const random = prng(o.seed ^ Math.imul(client.id + 1, 0x9e3779b1));
      const int = (n: number): number => Math.floor(random() * n);
      let seq = 0;
      const fresh = (): string => `c${client.id}-${seq++}`;
      while (!finished()) {
        const key = o.keys[int(o.keys.length)]!;
        const r = random();
        let record: OpRecord;
        if (r < 0.35) record = await client.read(key);
        else if (r < 0.55) record = await client.write(key, fresh());
        else if (r < 0.6) record = await client.remove(key);
        else if (r < 0.75) {
          const known = client.known(key);
          record = known === null ? await client.read(key) : await client.cas(key, known, fresh());
        } else if (r < 0.8) record = await client.create(key, fresh());
        else if (r < 0.9) record = await client.read(o.counters[int(o.counters.length)]!);
        else record = await client.incr(o.counters[int(o.counters.length)]!, 1 + int(5));
        if (record.outcome === "failed") await Bun.sleep(backoffMs);
      }
    }),
  ).then(() => undefined);
  return { clients, done };
}

/** Acknowledged updates (200 to a write/cas/create/delete/incr) matching `filter`. */
export function ackedUpdates(recorder: Recorder, filter: (r: OpRecord) => boolean): OpRecord[] {
  return recorder.records.filter((r) => r.kind !== "read" && r.outcome === "ok" && r.status === 200 && filter(r));
}

// --- final checks ----------------------------------------------------------------------------

/** What one node answers for a key (status, ETag and value): equal on every node once they converged. */
export async function snapshotKey(url: string, key: string): Promise<string> {
  const answer = await request(`${url}/v1/kv/${encodeURIComponent(key)}`, {}, 3000);
  if (answer.kind !== "response") return answer.kind;
  return `${answer.status} ${answer.etag ?? "-"} ${answer.status === 200 ? JSON.stringify(answer.body) : ""}`;
}

/**
 * Waits until every given node answers the same for every key (a 504'd update may still be
 * finishing), then reads every key once from every node as recorded reads, so the linearizability
 * check also covers the final state: a lost acknowledged write shows there as an impossible read.
 */
export async function convergeAndReadAll(
  urls: readonly string[],
  keys: readonly string[],
  recorder: Recorder,
  clientIdBase: number,
  timeoutMs = 15_000,
): Promise<{ converged: boolean; answers: Map<string, string[]>; finalReads: OpRecord[] }> {
  const answers = new Map<string, string[]>();
  let converged = true;
  try {
    await waitFor(
      "every node to answer the same for every key",
      async () => {
        let same = true;
        for (const key of keys) {
          const row = await Promise.all(urls.map((url) => snapshotKey(url, key)));
          answers.set(key, row);
          if (row.some((a) => a !== row[0] || !/^(200|404) /.test(a))) same = false;
        }
        return same;
      },
      timeoutMs,
      100,
    );
  } catch {
    converged = false;
  }
  const readers = urls.map((_, i) => new LoadClient(clientIdBase + i, i, urls, recorder));
  const finalReads: OpRecord[] = [];
  for (const key of keys) finalReads.push(...(await Promise.all(readers.map((reader) => reader.read(key)))));
  return { converged, answers, finalReads };
}

/** Asserts the verdict; prints the witness and the cluster's logs when it is not ok. */
export function expectLinearizable(result: LinResult, logs: () => string): void {
  if (result.ok !== true) {
    const lines =
      result.ok === false
        ? [`key ${result.key}: ${result.message}`, ...result.witness]
        : [`key ${result.key}: ${result.message}`];
    console.error(`linearizability check failed:\n${lines.join("\n")}\n${logs()}`);
  }
  expect(result.ok).toBe(true);
}
