// N replicas in one process (`hermes-kv local`): one HermesNode each, an in-process RM, and one
// HTTP port per replica, served by that replica's shard workers. A replica can be stopped (it
// stops renewing its lease, like a crashed process; the RM removes it once the lease has expired)
// and started again (it registers in a new epoch, loads a live replica's state, then serves). A
// started replica joins through a Rejoiner, as a `hermes-kv node` does, so that it would join again
// if it ever lost its lease.
//
// While a replica is stopped, a small server of the main thread holds its port (SO_REUSEPORT, like
// the workers' servers, so the port is never unbound across a stop or a start): it answers 503 as a
// replica that does not serve, and takes /v1/admin/start.

import { OpStatus } from "../base/kinds.ts";
import type { NodeId } from "../base/ids.ts";
import { consolePathPrefix, registerConsoleRoutes } from "../console/routes.ts";
import { createApp, createControlApp } from "../http/app.ts";
import { splitTarget } from "../http/target.ts";
import { LocalRm, type LocalRmOptions } from "../membership/local.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import type { KvBackend, NodeStatus, OpResult } from "../base/kv-backend.ts";
import { HermesNode, httpBodyBytesMax, nodeDefaults, type NodeOptions } from "../node/node.ts";
import { NotReadyError } from "../node/not-ready-error.ts";
import { Rejoiner } from "../node/rejoiner.ts";
import { AuthGuard, guardedFetch } from "../http/auth-guard.ts";
import type { TokenEntry } from "../http/auth-file.ts";
import type { FetchHandler } from "../http/fast-path.ts";
import { serveTls } from "../worker/http-server.ts";
import { peerHttpOf, type ServerSecurity } from "./server-security.ts";
import type { DurabilityOptions } from "../base/durability.ts";
import type { DataDir } from "../storage/data-dir.ts";
import { localReplicaDir, openDataDir, recoveryLines } from "./durability-flags.ts";
import { claimIncarnationIn } from "./incarnation-file.ts";

export interface LocalClusterOptions {
  replicas: number;
  host: string;
  /** Replica i serves HTTP on httpPort + i (0: OS-assigned ports). */
  httpPort: number;
  shards: number;
  transport: TransportKind;
  rm: Partial<LocalRmOptions>;
  node: Partial<NodeOptions>;
  log: (line: string) => void;
  /** HTTPS and client tokens on every replica's port (absent: plain HTTP, every route open). */
  security?: Pick<ServerSecurity, "tls" | "auth">;
  /** Keep each replica's data in dataDir/replica-i (--data-dir); absent or null: nothing on disk. */
  durability?: DurabilityOptions | null;
}

/** Paths of a replica's port that the main thread answers (the workers forward them). */
const adminPathPrefix = "/v1/admin/";
const adminStopPath = "/v1/admin/stop";

const stoppedResult: OpResult = { status: OpStatus.Unavailable, value: null, version: 0, writer: 0 };

/**
 * A joiner asks every live replica for a shard, and asks again after a pause while none is ready
 * (none has installed the epoch that added the joiner yet), this many times before it gives up:
 * 200 rounds at least 10 ms apart, 2 s or more; a new epoch reaches every replica in milliseconds.
 */
const sourceRoundsMax = 200;
const sourceRoundPauseMs = 10;

/** What a stopped replica's port answers: 503 for every op, not serving. */
class StoppedReplica implements KvBackend {
  readonly id: NodeId;
  readonly keyBytesMax = nodeDefaults.keyBytesMax;
  readonly valueBytesMax = nodeDefaults.valueBytesMax;
  constructor(id: NodeId) {
    this.id = id;
  }
  submit(): OpResult {
    return stoppedResult;
  }
  status(): NodeStatus {
    return {
      nodeId: this.id,
      epoch: 0,
      members: [],
      serving: false,
      hasState: false,
      leaseRemainingMs: 0,
      transport: "stopped",
      shards: [],
    };
  }
  metrics(): string {
    return "# replica stopped\n";
  }
}

type Server = ReturnType<typeof Bun.serve>;

export class LocalCluster {
  readonly options: LocalClusterOptions;
  readonly rm: LocalRm;
  /** Replica i's HTTP port, fixed for the life of the cluster. */
  readonly ports: number[] = [];
  readonly #nodes: (HermesNode | null)[] = [];
  /** The Rejoiner of a replica started again (startReplica), from its join until it stops. */
  readonly #rejoiners: (Rejoiner | null)[] = [];
  /** The main thread's server on a stopped replica's port. */
  readonly #stoppedServers: (Server | null)[] = [];
  /** The auth guard of each stopped replica's server (null without an auth file). */
  readonly #stoppedGuards: (AuthGuard | null)[] = [];
  readonly #starting = new Set<NodeId>();
  /**
   * Processes started so far per replica id: the process is the RM, so this counter is where a
   * (re)started replica gets its incarnation, which makes its timestamps' writer ids new
   * (src/base/ids.ts): a replica started again is empty and must not reissue an old timestamp.
   */
  readonly #incarnations: number[] = [];
  /** Stopped nodes still closing their HTTP servers and workers. */
  readonly #retiring = new Set<Promise<void>>();
  #closed = false;
  /** The tokens every replica's port checks (null: no auth file); replaced by setAuthTokens. */
  #tokens: TokenEntry[] | null;
  /** Each replica's locked data dir (with --data-dir), held for the life of the cluster. */
  readonly #dataDirs: DataDir[] = [];

  private constructor(options: LocalClusterOptions) {
    this.options = options;
    this.rm = new LocalRm({ log: options.log, ...options.rm });
    this.#tokens = options.security?.auth?.tokens ?? null;
  }

  /** A reloaded auth file (SIGHUP): every replica's port, running or stopped, checks these from now on. */
  setAuthTokens(tokens: TokenEntry[]): void {
    this.#tokens = tokens;
    for (const node of this.#nodes) node?.setAuthTokens(tokens);
    for (const guard of this.#stoppedGuards) guard?.setTokens(tokens);
  }

  /** The auth configuration with the current tokens, or null. */
  #auth() {
    const auth = this.options.security?.auth ?? null;
    return auth === null || this.#tokens === null ? null : { ...auth, tokens: this.#tokens };
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = new LocalCluster(options);
    try {
      await cluster.#start();
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  async #start(): Promise<void> {
    const o = this.options;
    for (let id = 0; id < o.replicas; id++) {
      this.#nodes.push(null);
      this.#rejoiners.push(null);
      this.#stoppedServers.push(null);
    }
    const d = o.durability ?? null;
    if (d !== null)
      for (let id = 0; id < o.replicas; id++)
        this.#dataDirs.push(openDataDir(localReplicaDir(d.dataDir, id), "local", id, o.shards));
    const nodes = await Promise.all(
      this.#nodes.map((_, id) => this.#startNode(id, o.httpPort === 0 ? 0 : o.httpPort + id)),
    );
    // Replicas recovered from disk serve only once they have merged what each kept (below).
    if (d !== null) for (const node of nodes) node.beginJoin();
    for (let id = 0; id < o.replicas; id++) {
      this.#nodes[id] = nodes[id]!;
      this.ports.push(await this.#serve(nodes[id]!, id, o.httpPort === 0 ? 0 : o.httpPort + id));
    }
    const handles = this.rm.registerAll(nodes.map((n) => n.memberInfo()));
    nodes.forEach((node, id) => node.attachMembership(handles[id]!));
    if (d !== null) await this.#mergeRecovered(nodes);
  }

  /**
   * After a restart of the whole process with a data dir: no replica serves, so each loads what
   * every other replica recovered (its kept state; the higher timestamp wins), as nodes do when no
   * member serves (src/node/etcd-join.ts), then serves. A key left non-Valid is replayed.
   */
  async #mergeRecovered(nodes: HermesNode[]): Promise<void> {
    for (const [id, node] of nodes.entries()) {
      for (const line of recoveryLines(node, `hermes-kv local: replica ${id}`)) this.options.log(line);
      const entries = await node.loadFrom(async (index, epochMin, onChunk) => {
        let count = 0;
        for (const [sourceId, source] of nodes.entries()) {
          if (sourceId === id || !source.hasState) continue;
          count += await this.#exportWhenReady(source, index, epochMin, onChunk);
        }
        return count;
      }, true);
      this.options.log(`hermes-kv local: replica ${id} merged ${entries} entries recovered by the others`);
    }
  }

  /** source.exportShard, waiting out "not ready" (it has not installed epochMin yet). */
  async #exportWhenReady(
    source: HermesNode,
    index: number,
    epochMin: number,
    onChunk: (records: Uint8Array) => void,
  ): Promise<number> {
    for (let round = 0; ; round++) {
      try {
        return await source.exportShard(index, epochMin, onChunk, true);
      } catch (error) {
        if (!(error instanceof NotReadyError) || round >= sourceRoundsMax) throw error;
      }
      await Bun.sleep(sourceRoundPauseMs);
    }
  }

  #startNode(id: NodeId, httpPort: number): Promise<HermesNode> {
    const o = this.options;
    // With a data dir the count is kept there: the replica's log outlives this process (incarnation-file.ts).
    const incarnation =
      o.durability == null
        ? (this.#incarnations[id] ?? 0)
        : claimIncarnationIn(localReplicaDir(o.durability.dataDir, id));
    this.#incarnations[id] = incarnation + 1;
    return HermesNode.start({
      nodeId: id,
      clusterId: nodeDefaults.clusterId,
      shards: o.shards,
      transport: o.transport,
      host: o.host,
      basePort: 0,
      httpAddress: `${o.host}:${httpPort}`,
      keyBytesMax: nodeDefaults.keyBytesMax,
      valueBytesMax: nodeDefaults.valueBytesMax,
      frameBytesMax: nodeDefaults.frameBytesMax,
      opsInFlightMaxPerShard: nodeDefaults.opsInFlightMaxPerShard,
      numa: true,
      bench: null,
      ...o.node,
      replica: { ...o.node.replica, incarnation },
      ...(o.durability == null
        ? {}
        : { durability: { ...o.durability, dataDir: localReplicaDir(o.durability.dataDir, id) } }),
    });
  }

  /** The node's workers serve the replica's port; its admin routes are answered here. */
  #serve(node: HermesNode, id: NodeId, port: number): Promise<number> {
    const admin = this.#adminApp(id);
    return node.serveHttp({
      host: this.options.host,
      port,
      controlPathPrefixes: [adminPathPrefix, consolePathPrefix],
      // As a crash: the replica answers nothing more from the moment the stop arrives.
      stopPaths: [adminStopPath],
      control: (request) => admin.fetch(request),
      tls: this.options.security?.tls ?? null,
      auth: this.#auth(),
    });
  }

  /** Admin routes exist only in the local cluster: they stop and start replicas of this process. */
  #adminApp(id: NodeId) {
    const app = createControlApp();
    app.post(adminStopPath, async (c) => {
      const done = await this.stopReplica(id);
      return c.json({ replica: id, stopped: done });
    });
    app.post("/v1/admin/start", async (c) => {
      const entries = await this.startReplica(id);
      return c.json({ replica: id, started: entries !== null, keysLoaded: entries ?? 0 });
    });
    // A stopped replica's console shows an empty view (it is no member): the page still loads.
    registerConsoleRoutes(app, {
      self: id,
      view: () => this.#nodes[id]?.view ?? { epoch: 0, members: [] },
      memberHttp: peerHttpOf(this.options.security?.tls ?? null),
    });
    return app;
  }

  /** The main thread's server for a stopped replica's port: 503 for the API, the admin routes. */
  #serveStopped(id: NodeId): Server {
    const app = createApp(new StoppedReplica(id));
    const admin = this.#adminApp(id);
    const fetch: FetchHandler = (request) =>
      [adminPathPrefix, consolePathPrefix].some((prefix) => splitTarget(request.url).path.startsWith(prefix))
        ? admin.fetch(request)
        : app.fetch(request);
    // The same TLS and tokens as the replica's workers: a stop opens nothing.
    const auth = this.#auth();
    const guard = auth === null ? null : new AuthGuard(auth);
    this.#stoppedGuards[id] = guard;
    const tls = this.options.security?.tls ?? null;
    return Bun.serve({
      hostname: this.options.host,
      port: this.ports[id]!,
      reusePort: true,
      maxRequestBodySize: httpBodyBytesMax,
      fetch: guard === null ? fetch : guardedFetch(guard, fetch),
      ...(tls === null ? {} : { tls: serveTls(tls) }),
    });
  }

  httpAddress(id: NodeId): string {
    return `${this.options.host}:${this.ports[id] ?? 0}`;
  }

  url(id: NodeId): string {
    return `${this.options.security?.tls == null ? "http" : "https"}://${this.httpAddress(id)}`;
  }

  nodes(): (HermesNode | null)[] {
    return [...this.#nodes];
  }

  /** Stop a replica as if it crashed: it answers 503 and the RM removes it when its lease expires. */
  async stopReplica(id: NodeId): Promise<boolean> {
    const node = this.#nodes[id];
    if (node === null || node === undefined) return false;
    this.#nodes[id] = null;
    this.#rejoiners[id]?.stop();
    this.#rejoiners[id] = null;
    this.#stoppedServers[id] ??= this.#serveStopped(id);
    await node.stop();
    // The workers' servers close once their requests in flight are answered, this one's included
    // when it came through them (POST /v1/admin/stop): so not awaited here.
    const retiring = node.close();
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
    this.options.log(`hermes-kv local: replica ${id} stopped`);
    return true;
  }

  /**
   * Start a stopped replica: it waits until the RM has removed its old incarnation, registers in a
   * new epoch, loads the state of a live replica shard by shard, and only then serves.
   * Returns the number of entries loaded, or null if it was running.
   */
  async startReplica(id: NodeId): Promise<number | null> {
    if (this.#nodes[id] !== null || this.#starting.has(id)) return null;
    this.#starting.add(id);
    try {
      await this.rm.waitRemoved(id);
      const node = await this.#startNode(id, this.ports[id]!);
      // From here a stop stops this node (its join ends, and so does this start).
      this.#nodes[id] = node;
      node.beginJoin();
      // Its workers join the port next to the stopped-replica server; all answer 503 until loaded.
      await this.#serve(node, id, this.ports[id]!);
      const membership = this.rm.register(node.memberInfo());
      node.attachMembership(membership);
      let entries = 0;
      const rejoiner = new Rejoiner({
        node,
        membership,
        attempt: async (run) => {
          entries = await node.loadFrom((index, epochMin, onChunk) =>
            this.#exportFromLive(id, index, epochMin, onChunk),
          );
          this.options.log(
            `hermes-kv local: replica ${id} rejoined: ${entries} entries loaded in ${(performance.now() - run.startedMs).toFixed(0)} ms`,
          );
          return true;
        },
        log: this.options.log,
        // #exportFromLive already waited for a ready source: when it fails, so does this start.
        failedAttemptsMax: 1,
      });
      this.#rejoiners[id] = rejoiner;
      rejoiner.start();
      const state = await rejoiner.settled();
      if (state !== "joined") {
        if (this.#rejoiners[id] === rejoiner) this.#rejoiners[id] = null;
        if (this.#nodes[id] === node) this.#nodes[id] = null;
        await node.close();
        throw rejoiner.failure ?? new Error(`replica ${id}: stopped while it joined (${state})`);
      }
      // Not awaited: the request that asked for this start may be one of its requests in flight.
      void this.#stoppedServers[id]?.stop();
      this.#stoppedServers[id] = null;
      return entries;
    } finally {
      this.#starting.delete(id);
    }
  }

  /**
   * Ask live replicas in turn until one is ready to be a source (it has installed epochMin). Only
   * "not ready" is waited out: any other error is a real failure and ends the start.
   */
  async #exportFromLive(
    joiner: NodeId,
    index: number,
    epochMin: number,
    onChunk: (records: Uint8Array) => void,
  ): Promise<number> {
    for (let round = 0; round < sourceRoundsMax; round++) {
      for (const [id, source] of this.#nodes.entries()) {
        if (id === joiner || source === null || source.joining) continue;
        try {
          return await source.exportShard(index, epochMin, onChunk);
        } catch (error) {
          if (!(error instanceof NotReadyError)) throw error;
        }
      }
      await Bun.sleep(sourceRoundPauseMs);
    }
    throw new Error(`replica ${joiner}: no live replica could give shard ${index}`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A replica that is starting again closes its own node once its join has stopped.
    for (const rejoiner of this.#rejoiners) rejoiner?.stop();
    for (const server of this.#stoppedServers) server?.stop(true);
    await Promise.all(this.#nodes.map((node) => node?.close()));
    await Promise.all(this.#retiring);
    this.rm.close();
    for (const dataDir of this.#dataDirs) dataDir.close();
  }
}
