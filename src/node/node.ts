// A hermes-kv node: W shard workers (one Hermes replica each), membership and lease distribution,
// status and metrics, and the main thread's HTTP routes. The workers serve the HTTP API themselves
// (serveHttp: every worker binds the node's port), so the node itself never sees a client op; what
// the workers need to answer as the node would (serving, status) it keeps on the node board.

import { defaultReplicaConfig, type ReplicaConfig } from "../core/types.ts";
import type { NodeId } from "../base/ids.ts";
import type { MemberInfo, Membership, MembershipView } from "../membership/membership.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import { frameValueBytesMax } from "../wire/layout.ts";
import {
  lastFreshSlot,
  livenessSlots,
  type HttpStart,
  type ShardBenchConfig,
  type ShardStats,
  type ToShard,
} from "../worker/messages.ts";
import { createNodeBoard, NodeBoard } from "../worker/node-board.ts";
import { createPeerRings } from "../worker/peer-links.ts";
import { createWatchFeed } from "../worker/watch-feed.ts";
import type { NodeStatus, StatusExtras } from "../base/kv-backend.ts";
import { monotonicMs } from "../base/clock.ts";
import { answerControlRequest, type ControlHandler } from "./control-server.ts";
import { renderMetrics } from "./metrics.ts";
import { browsePortsOf, renderWatchMetrics } from "./browse-wiring.ts";
import { renderDurabilityMetrics } from "./durability-metrics.ts";
import { ShardHandle } from "./shard-handle.ts";
import type { DurabilityOptions } from "../base/durability.ts";

/** Streams shard `index` of a live member to `onChunk`; resolves with the entry count. */
/** Streams shard `index` as runs of whole snapshot records (src/core/snapshot-records.ts); resolves with the number of records. */
export type SnapshotSource = (
  index: number,
  epochMin: number,
  onChunk: (records: Uint8Array) => void,
) => Promise<number>;

export interface NodeOptions {
  nodeId: NodeId;
  clusterId: number;
  shards: number;
  transport: TransportKind;
  /** Address the transports bind to (and publish). */
  host: string;
  /** First transport port; shard i binds basePort + i (0: OS-assigned ports). */
  basePort: number;
  httpAddress: string;
  keyBytesMax: number;
  valueBytesMax: number;
  /** Frame size of the transport: bounds valueBytesMax so that one INV always fits one frame. */
  frameBytesMax: number;
  opsInFlightMaxPerShard: number;
  replica: Partial<Omit<ReplicaConfig, "self" | "valueBytesMax">>;
  /** Pin workers to NUMA nodes (round-robin) when libnuma is present. */
  numa: boolean;
  bench: ShardBenchConfig | null;
  /** Transport heartbeats every this many ms, and per-peer "last heard" for the failure detector; 0 or absent: none. */
  heartbeatMs?: number;
  /** The frame MAC key derived from the cluster key (ShardInit.frameKey); absent or null: frames go untagged. */
  frameKey?: Uint8Array | null;
  /** A data dir and what is kept there (--durability fsync|async); absent or null: nothing on disk. */
  durability?: DurabilityOptions | null;
}

export const nodeDefaults = {
  clusterId: 0x4845_524d, // "HERM"
  shards: 1,
  keyBytesMax: 1024,
  valueBytesMax: 32 * 1024,
  frameBytesMax: 60 * 1024,
  opsInFlightMaxPerShard: 16384,
} as const;

/**
 * Bun's own request-body cap, far above valueBytesMax: the app answers 413 in JSON for anything
 * over valueBytesMax (from Content-Length, or while reading a chunked body), so this only stops
 * bodies so large that answering them is not worth it.
 */
export const httpBodyBytesMax = 64 * 1024 * 1024;

/** How often the failure detector's part of /v1/status reaches the workers (see setStatusExtras). */
export const statusExtrasPushEveryMs = 100;

/** Where and how the shard workers serve the node's HTTP API. */
export interface NodeHttpOptions {
  host: string;
  /** 0: any free port (the first worker binds it, the others join it). */
  port: number;
  /** Paths the main thread answers: a worker forwards requests under them to `control`. */
  controlPathPrefixes: string[];
  /** Control paths whose POST stops the node: it stops serving the moment one arrives (see HttpStart). */
  stopPaths?: string[];
  control: ControlHandler;
  /** HTTPS (PEM text), or null/absent: plain HTTP. */
  tls?: HttpStart["tls"];
  /** Bearer tokens with roles, or null/absent: every route open. */
  auth?: HttpStart["auth"];
}

export class HermesNode {
  readonly options: NodeOptions;
  readonly shards: ShardHandle[];
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  /** The facts every worker reads to answer as the node (this thread writes the node-level ones). */
  readonly board: NodeBoard;
  #view: MembershipView = { epoch: 0, members: [] };
  #leaseUntilMs = 0;
  #membership: Membership | null = null;
  #leaseTimer: ReturnType<typeof setInterval> | null = null;
  #statsTimer: ReturnType<typeof setInterval> | null = null;
  #stopping: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #control: ControlHandler | null = null;
  #extraMetrics: () => string = () => "";
  #statusExtras: () => StatusExtras | null = () => null;
  #statusExtrasTimer: ReturnType<typeof setInterval> | null = null;
  #httpPort = 0;
  /** Watch streams per worker and in all (the watch feed's counts), once HTTP is served. */
  #watchCounts: Int32Array | null = null;
  #lastStats: ShardStats[] = [];
  readonly membershipChanges = { count: 0 };

  readonly #lastHeard: BigInt64Array[];

  private constructor(options: NodeOptions, shards: ShardHandle[], board: NodeBoard, lastHeard: BigInt64Array[]) {
    this.options = options;
    this.shards = shards;
    this.board = board;
    this.#lastHeard = lastHeard;
    this.keyBytesMax = options.keyBytesMax;
    this.valueBytesMax = options.valueBytesMax;
  }

  static async start(options: NodeOptions): Promise<HermesNode> {
    const valueCap = frameValueBytesMax(options.frameBytesMax, options.keyBytesMax);
    if (options.valueBytesMax > valueCap) {
      throw new RangeError(
        `valueBytesMax ${options.valueBytesMax} exceeds what one ${options.frameBytesMax}-byte frame carries (${valueCap})`,
      );
    }
    const replica: Omit<ReplicaConfig, "self"> = {
      ...defaultReplicaConfig,
      // A random key-hash seed per process (the shards share it): see ReplicaConfig.hashSeed.
      hashSeed: crypto.getRandomValues(new Int32Array(1))[0]!,
      ...options.replica,
      valueBytesMax: options.valueBytesMax,
    };
    const boardBuffer = createNodeBoard(options.shards);
    const board = new NodeBoard(boardBuffer, options.nodeId, options.transport);
    if (options.durability != null) board.setDurabilityMode(options.durability.mode);
    let node: HermesNode | null = null;
    const shards: ShardHandle[] = [];
    const heartbeatMs = options.heartbeatMs ?? 0;
    const lastHeard: BigInt64Array[] = [];
    for (let i = 0; i < options.shards; i++) {
      const liveness =
        heartbeatMs > 0 ? { heartbeatMs, lastHeard: new SharedArrayBuffer(8 * livenessSlots) } : undefined;
      if (liveness !== undefined) lastHeard.push(new BigInt64Array(liveness.lastHeard));
      shards.push(
        new ShardHandle({
          init: {
            nodeId: options.nodeId,
            shardIndex: i,
            clusterId: options.clusterId,
            transport: {
              kind: options.transport,
              host: options.host,
              port: options.basePort === 0 ? 0 : options.basePort + i,
              frameBytesMax: options.frameBytesMax,
            },
            replica: { ...replica, self: options.nodeId },
            keyBytesMax: options.keyBytesMax,
            board: boardBuffer,
            opsInFlightMax: options.opsInFlightMaxPerShard,
            numaNode: options.numa ? 0 : -1,
            bench: options.bench,
            ...(liveness === undefined ? {} : { liveness }),
            frameKey: options.frameKey ?? null,
            ...(options.durability == null ? {} : { durability: options.durability }),
          },
          onFatal: (index, message) => {
            console.error(`hermes-kv node ${options.nodeId}: shard ${index} died: ${message}`);
            // The node stops serving, and the other workers answer what they forwarded to it.
            board.setFailed();
            for (const other of shards)
              if (other.index !== index) other.post({ type: "peer-failed", shardIndex: index });
          },
          onControlRequest: (shard, message) => {
            const control = node === null ? null : node.#control;
            if (control === null) return;
            void answerControlRequest(control, message, (answer) => shard.post(answer));
          },
          onNodeMetricsRequest: (shard, requestId) => {
            shard.post({ type: "node-metrics", requestId, text: node?.metrics() ?? "" });
          },
        }),
      );
    }
    try {
      await Promise.all(shards.map((s) => s.ready()));
    } catch (error) {
      for (const shard of shards) shard.terminate();
      throw error;
    }
    node = new HermesNode(options, shards, board, lastHeard);
    await node.refreshStats();
    node.#statsTimer = setInterval(() => void node!.refreshStats(), 1000);
    return node;
  }

  /**
   * Every shard worker serves the node's HTTP API on `port` (SO_REUSEPORT). The first worker binds
   * it (resolving port 0), the others join it. Resolves with the port.
   */
  async serveHttp(options: NodeHttpOptions): Promise<number> {
    if (this.#httpPort !== 0) throw new Error("the node already serves HTTP");
    this.#control = options.control;
    const start = {
      host: options.host,
      bodyBytesMax: httpBodyBytesMax,
      controlPathPrefixes: options.controlPathPrefixes,
      stopPaths: options.stopPaths ?? [],
      tls: options.tls ?? null,
      auth: options.auth ?? null,
      peerRings:
        this.shards.length === 1 ? null : createPeerRings(this.shards.length, this.keyBytesMax, this.valueBytesMax),
    };
    const where = `${options.host}:${options.port}`;
    const failed = (error: Error): never => {
      throw new Error(`cannot serve HTTP on ${where}: ${error.message}`);
    };
    const watchFeed = createWatchFeed(this.shards.length);
    this.#watchCounts = new Int32Array(watchFeed.counts);
    const browsePorts = browsePortsOf(this.shards.length);
    const first = await this.shards[0]!.startHttp({
      ...start,
      port: options.port,
      watchFeed,
      browsePorts: browsePorts[0]!,
    }).catch(failed);
    const rest = await Promise.all(
      this.shards
        .slice(1)
        .map((s, i) => s.startHttp({ ...start, port: first.port, watchFeed, browsePorts: browsePorts[i + 1]! })),
    ).catch(failed);
    const buffers = [first, ...rest].map((r) => r.metricsBuffer);
    for (const shard of this.shards) shard.post({ type: "http-metrics-buffers", buffers });
    this.#httpPort = first.port;
    return first.port;
  }

  /** A reloaded auth file (SIGHUP): every HTTP-serving worker checks requests against these tokens from now on. */
  setAuthTokens(tokens: Extract<ToShard, { type: "auth-tokens" }>["tokens"]): void {
    for (const shard of this.shards) shard.post({ type: "auth-tokens", tokens });
  }

  /** Series appended to the node's /metrics (e.g. the etcd membership's counters). */
  setExtraMetrics(render: () => string): void {
    this.#extraMetrics = render;
  }

  /** What this node publishes in the membership. */
  memberInfo(): MemberInfo {
    return {
      id: this.options.nodeId,
      // An address given with port 0 gets the port the workers bound.
      http:
        this.#httpPort !== 0 && this.options.httpAddress.endsWith(":0")
          ? `${this.options.httpAddress.slice(0, -2)}:${this.#httpPort}`
          : this.options.httpAddress,
      transport: this.options.transport,
      shardAddresses: this.shards.map((s) => s.address),
    };
  }

  /** Follow a membership: views go to every worker; the lease deadline is pushed as it moves. */
  attachMembership(membership: Membership): void {
    this.#membership = membership;
    membership.onChange((view) => this.applyView(view));
    this.applyView(membership.view());
    this.#pushLease();
    // Leases move on every renewal without a view change: forward them (a cheap control message).
    this.#leaseTimer = setInterval(() => this.#pushLease(), 20);
  }

  #pushLease(): void {
    const until = this.#membership?.leaseUntilMs() ?? 0;
    if (until === this.#leaseUntilMs) return;
    this.#leaseUntilMs = until;
    this.board.setLeaseUntil(until);
    for (const shard of this.shards) shard.post({ type: "lease", untilMs: until });
  }

  applyView(view: MembershipView): void {
    if (view.epoch <= this.#view.epoch) return;
    this.#view = view;
    this.board.setView(
      view.epoch,
      view.members.map((m) => m.id),
    );
    this.membershipChanges.count++;
    for (const shard of this.shards) {
      shard.post({
        type: "membership",
        epoch: view.epoch,
        members: view.members
          .filter((m) => m.shardAddresses.length === this.shards.length)
          .map((m) => ({ id: m.id, address: m.shardAddresses[shard.index]! })),
      });
    }
    this.#pushLease();
  }

  /** A member of the current view with a lease, not joining, no shard failed, not closed. */
  get serving(): boolean {
    return this.board.serving(monotonicMs());
  }

  /** What GET /v1/status answers (from any thread of the node: see NodeBoard). */
  status(): NodeStatus {
    const extras = this.#statusExtras();
    return extras === null ? this.board.status() : { ...this.board.status(), ...extras };
  }

  /**
   * What the failure detector adds to /v1/status. It lives on this thread, so it is pushed to the
   * workers every statusExtrasPushEveryMs (a small control message); they add the time since to
   * each "heard ago", so that part stays exact.
   */
  setStatusExtras(provide: () => StatusExtras | null): void {
    this.#statusExtras = provide;
    if (this.#statusExtrasTimer !== null) clearInterval(this.#statusExtrasTimer);
    this.#statusExtrasTimer = setInterval(() => {
      const extras = provide();
      for (const shard of this.shards) shard.post({ type: "status-extras", extras, atMs: monotonicMs() });
    }, statusExtrasPushEveryMs);
  }

  /** Refresh the per-shard statistics that status() and metrics() report. */
  async refreshStats(): Promise<ShardStats[]> {
    this.#lastStats = await Promise.all(this.shards.map((s) => s.stats()));
    return this.#lastStats;
  }

  /** The statistics of the last refresh (refreshed every second, so one scrape may lag by that). */
  metrics(): string {
    return (
      renderMetrics(this.status(), this.#lastStats, this.membershipChanges.count) +
      renderWatchMetrics(this.#watchCounts) +
      renderDurabilityMetrics(this.#lastStats) +
      this.#extraMetrics()
    );
  }

  /** Rejoin after a restart: serve nothing until every shard has loaded a live member's state. */
  beginJoin(): void {
    this.board.setJoining(true);
    // State recovered from the data dir was served before: it takes part in a merge when no member serves.
    this.board.setHasState(this.recoveredKeys > 0);
    for (const shard of this.shards) shard.post({ type: "join-begin" });
  }

  /**
   * After a lease loss: stop serving and rejoin, keeping the data. It is merged with a serving
   * member's (the higher ts wins), so stale entries are replaced; and if no member serves (e.g.
   * everyone lost their lease while etcd was down, when nothing could commit), the members' kept
   * data is all there is, and it is complete for every write committed while they were members.
   */
  rejoinKeepingState(): void {
    this.board.setJoining(true);
    for (const shard of this.shards) shard.post({ type: "join-begin" });
  }

  /** Keys the shards loaded from the data dir at start (0 without one). */
  get recoveredKeys(): number {
    let keys = 0;
    for (const shard of this.shards) keys += shard.recovered?.keys ?? 0;
    return keys;
  }

  /** This process holds data it served from (it finished a join since it started or was wiped). */
  get hasState(): boolean {
    return this.board.hasState;
  }

  /**
   * When `peer` was last heard by EVERY shard (the oldest of the shards' times), on monotonicMs:
   * one silent shard is enough to stall that shard's updates. 0 when some shard never heard it, or
   * without heartbeats.
   */
  lastHeardMs(peer: NodeId): number {
    return this.#oldestSlot(peer);
  }

  /** The same for fresh frames: sent at the receiving shard's epoch or later (see lastFreshSlot). */
  lastFreshMs(peer: NodeId): number {
    return this.#oldestSlot(lastFreshSlot + peer);
  }

  #oldestSlot(slot: number): number {
    if (this.#lastHeard.length === 0) return 0;
    let oldest = Number.POSITIVE_INFINITY;
    for (const heard of this.#lastHeard) oldest = Math.min(oldest, Number(Atomics.load(heard, slot)));
    return oldest;
  }

  /** Candidates (evicted nodes waiting to rejoin) that every shard heartbeats while it hears them. */
  setProbes(candidates: readonly MemberInfo[]): void {
    for (const shard of this.shards) {
      shard.post({
        type: "probes",
        peers: candidates
          .filter((c) => c.shardAddresses.length === this.shards.length)
          .map((c) => ({ id: c.id, address: c.shardAddresses[shard.index]! })),
      });
    }
  }

  /** Test hook: drop transport traffic to and from `peers` on every shard ([] heals). */
  setDropPeers(peers: NodeId[]): void {
    for (const shard of this.shards) shard.post({ type: "drop", peers });
  }

  get joining(): boolean {
    return this.board.joining;
  }

  get epoch(): number {
    return this.#view.epoch;
  }

  /** The membership view this node applied last (its members' addresses: the console lists them). */
  get view(): MembershipView {
    return this.#view;
  }

  /**
   * Load every shard from `source` (another node's exportShard, in this process or over HTTP), then
   * serve. `source` must only answer once it has installed `epochMin` (the view that added us).
   * `fromKeptState`: the records are other nodes' kept state (a merge when no member serves), not a
   * serving member's: an uncommitted one then never replaces a stale entry of its version here
   * (Replica.installSnapshotRecords).
   */
  async loadFrom(source: SnapshotSource, fromKeptState = false): Promise<number> {
    let entries = 0;
    for (const shard of this.shards) {
      entries += await source(shard.index, this.#view.epoch, (records) =>
        shard.post({ type: "snapshot-import", records, fromKeptState }),
      );
    }
    for (const shard of this.shards) shard.post({ type: "join-finish" });
    this.board.setJoining(false);
    this.board.setHasState(true);
    return entries;
  }

  /**
   * Export shard `index` to a joiner (see loadFrom); `allowJoining` also while this node joins with
   * kept state. Rejects with NotReadyError while this replica cannot be a source yet.
   */
  exportShard(
    index: number,
    epochMin: number,
    onChunk: (records: Uint8Array) => void | Promise<void>,
    allowJoining = false,
  ): Promise<number> {
    return this.shards[index]!.exportSnapshot(epochMin, allowJoining && this.board.hasState, onChunk);
  }

  startBench(): void {
    for (const shard of this.shards) shard.post({ type: "bench-start" });
  }

  /**
   * Stop being a node: answer 503 from now on, leave the membership (etcd: revoke the lease; local:
   * stop renewing, as a crashed node would), and have every worker answer its ops and stop its
   * replica. The workers' HTTP servers stay up (answering 503) until close(): a request that asked
   * for this stop (a local cluster's admin route) still gets its answer.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.board.setClosed();
      if (this.#leaseTimer !== null) clearInterval(this.#leaseTimer);
      if (this.#statsTimer !== null) clearInterval(this.#statsTimer);
      if (this.#statusExtrasTimer !== null) clearInterval(this.#statusExtrasTimer);
      await this.#membership?.close();
      await Promise.all(this.shards.map((s) => s.stop()));
    })();
    return this.#stopping;
  }

  /** stop(), then close the HTTP servers once their requests in flight are answered, and end the workers. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.stop();
      if (this.#httpPort !== 0) await Promise.all(this.shards.map((s) => s.stopHttp()));
      for (const shard of this.shards) shard.terminate();
    })();
    return this.#closing;
  }
}
