// A hermes-kv node: W shard workers (one Hermes replica each), key routing, membership and lease
// distribution, status and metrics. It implements KvBackend for the HTTP shell.

import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import { defaultReplicaConfig, type ReplicaConfig } from "../core/types.ts";
import { OpStatus } from "../base/kinds.ts";
import type { NodeId } from "../base/ids.ts";
import type { MemberInfo, Membership, MembershipView } from "../membership/membership.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import { frameValueBytesMax } from "../wire/layout.ts";
import { lastFreshSlot, livenessSlots, type ShardBenchConfig, type ShardStats } from "../worker/messages.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult } from "../base/kv-backend.ts";
import { monotonicMs } from "../base/clock.ts";
import { renderMetrics } from "./metrics.ts";
import { ShardHandle } from "./shard-handle.ts";

/** Streams shard `index` of a live member to `onChunk`; resolves with the entry count. */
export type SnapshotSource = (index: number, epochMin: number, onChunk: (entries: SnapshotEntry[]) => void) => Promise<number>;

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

/** FNV-1a over UTF-16 code units: the same shard for a key on every node. */
export function shardOf(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

export class HermesNode implements KvBackend {
  readonly options: NodeOptions;
  readonly shards: ShardHandle[];
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  #view: MembershipView = { epoch: 0, members: [] };
  #leaseUntilMs = 0;
  #membership: Membership | null = null;
  #leaseTimer: ReturnType<typeof setInterval> | null = null;
  #statsTimer: ReturnType<typeof setInterval> | null = null;
  #closed = false;
  #joining = false;
  /** False only for a process that joined empty and has not finished loading (see beginJoin). */
  #hasState = true;
  #fatal: string | null = null;
  #lastStats: ShardStats[] = [];
  readonly membershipChanges = { count: 0 };

  readonly #lastHeard: BigInt64Array[];

  private constructor(options: NodeOptions, shards: ShardHandle[], lastHeard: BigInt64Array[]) {
    this.options = options;
    this.shards = shards;
    this.#lastHeard = lastHeard;
    this.keyBytesMax = options.keyBytesMax;
    this.valueBytesMax = options.valueBytesMax;
  }

  static async start(options: NodeOptions): Promise<HermesNode> {
    const valueCap = frameValueBytesMax(options.frameBytesMax, options.keyBytesMax);
    if (options.valueBytesMax > valueCap) {
      throw new RangeError(`valueBytesMax ${options.valueBytesMax} exceeds what one ${options.frameBytesMax}-byte frame carries (${valueCap})`);
    }
    const replica: Omit<ReplicaConfig, "self"> = { ...defaultReplicaConfig, ...options.replica, valueBytesMax: options.valueBytesMax };
    let node: HermesNode | null = null;
    const shards: ShardHandle[] = [];
    const heartbeatMs = options.heartbeatMs ?? 0;
    const lastHeard: BigInt64Array[] = [];
    for (let i = 0; i < options.shards; i++) {
      const liveness = heartbeatMs > 0 ? { heartbeatMs, lastHeard: new SharedArrayBuffer(8 * livenessSlots) } : undefined;
      if (liveness !== undefined) lastHeard.push(new BigInt64Array(liveness.lastHeard));
      shards.push(
        new ShardHandle({
          init: {
            nodeId: options.nodeId,
            shardIndex: i,
            clusterId: options.clusterId,
            transport: { kind: options.transport, host: options.host, port: options.basePort === 0 ? 0 : options.basePort + i, frameBytesMax: options.frameBytesMax },
            replica: { ...replica, self: options.nodeId },
            keyBytesMax: options.keyBytesMax,
            numaNode: options.numa ? 0 : -1,
            bench: options.bench,
            ...(liveness === undefined ? {} : { liveness }),
          },
          opsInFlightMax: options.opsInFlightMaxPerShard,
          onFatal: (index, message) => {
            console.error(`hermes-kv node ${options.nodeId}: shard ${index} died: ${message}`);
            if (node !== null) node.#fatal = `shard ${index} died`;
          },
        }),
      );
    }
    try {
      await Promise.all(shards.map((s) => s.ready()));
    } catch (error) {
      await Promise.all(shards.map((s) => s.close()));
      throw error;
    }
    node = new HermesNode(options, shards, lastHeard);
    await node.refreshStats();
    node.#statsTimer = setInterval(() => void node!.refreshStats(), 1000);
    return node;
  }

  /** What this node publishes in the membership. */
  memberInfo(): MemberInfo {
    return {
      id: this.options.nodeId,
      http: this.options.httpAddress,
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
    for (const shard of this.shards) shard.post({ type: "lease", untilMs: until });
  }

  applyView(view: MembershipView): void {
    if (view.epoch <= this.#view.epoch) return;
    this.#view = view;
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

  // KvBackend ---------------------------------------------------------------------------------

  submit(request: OpRequest): Promise<OpResult> {
    // Not a member with a lease (or joining, or closed): answer 503 now rather than let the op wait
    // in the replica until its timeout. Short gaps cannot happen: leases are renewed long before
    // they end, so this is false only when the lease is really lost.
    if (!this.serving) return Promise.resolve({ status: OpStatus.Unavailable, value: null, version: 0, writer: 0 });
    return this.shards[shardOf(request.key, this.shards.length)]!.submit(request);
  }

  get serving(): boolean {
    return !this.#closed && !this.#joining && this.#fatal === null && this.#view.members.some((m) => m.id === this.options.nodeId) && monotonicMs() < this.#leaseUntilMs;
  }

  status(): NodeStatus {
    return {
      nodeId: this.options.nodeId,
      epoch: this.#view.epoch,
      members: this.#view.members.map((m) => m.id),
      serving: this.serving,
      hasState: this.#hasState,
      leaseRemainingMs: Math.max(0, Math.round(this.#leaseUntilMs - monotonicMs())),
      transport: this.options.transport,
      shards: this.shards.map((s, i) => ({
        index: s.index,
        keys: this.#lastStats[i]?.keys ?? 0,
        opsInFlight: s.opsInFlight,
        numaNode: this.#lastStats[i]?.numa.node ?? null,
        cpu: this.#lastStats[i]?.numa.cpu ?? null,
      })),
    };
  }

  /** Refresh the per-shard statistics that status() and metrics() report. */
  async refreshStats(): Promise<ShardStats[]> {
    this.#lastStats = await Promise.all(this.shards.map((s) => s.stats()));
    return this.#lastStats;
  }

  /** The statistics of the last refresh (refreshed every second, so one scrape may lag by that). */
  metrics(): string {
    return renderMetrics(this.status(), this.#lastStats, this.membershipChanges.count);
  }

  /** Rejoin after a restart: serve nothing until every shard has loaded a live member's state. */
  beginJoin(): void {
    this.#joining = true;
    this.#hasState = false;
    for (const shard of this.shards) shard.post({ type: "join-begin" });
  }

  /**
   * After a lease loss: stop serving and rejoin, keeping the data. It is merged with a serving
   * member's (the higher ts wins), so stale entries are replaced; and if no member serves (e.g.
   * everyone lost their lease while etcd was down, when nothing could commit), the members' kept
   * data is all there is, and it is complete for every write committed while they were members.
   */
  rejoinKeepingState(): void {
    this.#joining = true;
    for (const shard of this.shards) shard.post({ type: "join-begin" });
  }

  /** This process holds data it served from (it finished a join since it started or was wiped). */
  get hasState(): boolean {
    return this.#hasState;
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
        peers: candidates.filter((c) => c.shardAddresses.length === this.shards.length).map((c) => ({ id: c.id, address: c.shardAddresses[shard.index]! })),
      });
    }
  }

  /** Test hook: drop transport traffic to and from `peers` on every shard ([] heals). */
  setDropPeers(peers: NodeId[]): void {
    for (const shard of this.shards) shard.post({ type: "drop", peers });
  }

  get joining(): boolean {
    return this.#joining;
  }

  get epoch(): number {
    return this.#view.epoch;
  }

  /**
   * Load every shard from `source` (another node's exportShard, in this process or over HTTP), then
   * serve. `source` must only answer once it has installed `epochMin` (the view that added us).
   */
  async loadFrom(source: SnapshotSource): Promise<number> {
    let entries = 0;
    for (const shard of this.shards) {
      entries += await source(shard.index, this.#view.epoch, (chunk) => shard.post({ type: "snapshot-import", entries: chunk }));
    }
    for (const shard of this.shards) shard.post({ type: "join-finish" });
    this.#joining = false;
    this.#hasState = true;
    return entries;
  }

  /**
   * Export shard `index` to a joiner (see loadFrom); `allowJoining` also while this node joins with
   * kept state. Rejects with NotReadyError while this replica cannot be a source yet.
   */
  exportShard(index: number, epochMin: number, onChunk: (entries: SnapshotEntry[]) => void | Promise<void>, allowJoining = false): Promise<number> {
    return this.shards[index]!.exportSnapshot(epochMin, allowJoining && this.#hasState, onChunk);
  }

  startBench(): void {
    for (const shard of this.shards) shard.post({ type: "bench-start" });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#leaseTimer !== null) clearInterval(this.#leaseTimer);
    if (this.#statsTimer !== null) clearInterval(this.#statsTimer);
    // Leave the membership (etcd: revoke the lease; local: stop renewing, as a crashed node would).
    await this.#membership?.close();
    await Promise.all(this.shards.map((s) => s.close()));
  }
}
