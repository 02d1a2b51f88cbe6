// Control messages between the node (main thread) and a shard worker. These are rare (start,
// membership and lease changes, stats, stop) and go by postMessage; client ops and their answers
// never do: they travel in the SharedArrayBuffer rings.

import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import { nodeIdMax, type Epoch, type NodeId } from "../base/ids.ts";
import type { ReplicaConfig } from "../core/types.ts";
import type { TransportKind } from "../base/transport-kind.ts";

export interface ShardInit {
  type: "init";
  nodeId: NodeId;
  shardIndex: number;
  clusterId: number;
  transport: { kind: TransportKind; host: string; port: number; frameBytesMax: number };
  replica: ReplicaConfig;
  keyBytesMax: number;
  requestRing: SharedArrayBuffer;
  completionRing: SharedArrayBuffer;
  /** Pin this worker's thread to a NUMA node when libnuma is present (-1: leave unpinned). */
  numaNode: number;
  /** Closed-loop benchmark clients inside the worker (`hermes-kv bench`), or null. */
  bench: ShardBenchConfig | null;
  /** Transport liveness: heartbeats, and when each peer was last heard; absent: neither. */
  liveness?: ShardLivenessInit;
}

/**
 * A candidate (an evicted node waiting to rejoin) gets a shard's heartbeats only while the shard
 * heard it, freshly, within this many heartbeat intervals, so a candidate that hears a member knows
 * that both directions work. The candidate counts a member as reached within the same window.
 */
export const probeEchoIntervals = 3;

/**
 * Slots of ShardLivenessInit.lastHeard: [id] when a frame from node id was last accepted;
 * [lastFreshSlot + id] when a FRESH one was: sent at the receiver's current epoch or later, so not
 * a stale frame from before a view change (TCP can deliver bytes queued long ago, e.g. member
 * traffic to a node since evicted, trickling through a half-broken link by retransmission).
 */
export const lastFreshSlot = nodeIdMax + 1;
export const livenessSlots = 2 * (nodeIdMax + 1);

export interface ShardLivenessInit {
  /** Send an empty frame to a peer that got nothing from this shard for this long. */
  heartbeatMs: number;
  /**
   * A BigInt64Array of livenessSlots: the clock (whole ms, monotonicMs) when this shard last
   * accepted a frame, and a fresh frame, from each node (see lastFreshSlot), 0 for never. The shard
   * writes it (Atomics), the node reads it.
   */
  lastHeard: SharedArrayBuffer;
}

export interface ShardBenchConfig {
  /** Outstanding ops per worker (the reference's request slots). */
  slots: number;
  keys: number;
  valueBytes: number;
  /** Per mille of ops that are updates, and of updates that are RMWs (the reference's -w and -R in tenths of a percent). */
  writePerMille: number;
  rmwPerMille: number;
}

export interface ShardPeer {
  id: NodeId;
  /** This shard's transport address on that member. */
  address: string;
}

export type ToShard =
  | ShardInit
  | { type: "membership"; epoch: Epoch; members: ShardPeer[] }
  | { type: "lease"; untilMs: number }
  | { type: "stats"; requestId: number }
  | { type: "bench-start" }
  | { type: "join-begin" }
  /** Candidates (evicted nodes waiting to rejoin): heartbeat-only peers, answered while heard. */
  | { type: "probes"; peers: ShardPeer[] }
  /** Test hook: drop transport frames to and from these peers (an in-process partition). */
  | { type: "drop"; peers: NodeId[] }
  /** allowJoining: export even while joining (a replica that kept its state through a lease loss). */
  | { type: "snapshot-export"; requestId: number; epochMin: Epoch; allowJoining: boolean }
  | { type: "snapshot-import"; entries: SnapshotEntry[] }
  | { type: "join-finish" }
  | { type: "stop" };

export interface ShardStats {
  keys: number;
  opsInFlight: number;
  epoch: Epoch;
  counters: Record<string, number>;
  transport: Record<string, number>;
  wire: Record<string, number>;
  numa: { node: number | null; cpu: number | null; pinned: boolean };
  bench: ShardBenchStats | null;
}

export interface ShardBenchStats {
  reads: number;
  writes: number;
  rmws: number;
  rmwAborts: number;
  /** Latency histograms in microseconds: bucket i counts ops in [i, i+1) µs, the last bucket is overflow. */
  readLatencyUs: number[];
  writeLatencyUs: number[];
}

export type FromShard =
  | { type: "ready"; shardIndex: number; address: string }
  | { type: "stats"; requestId: number; stats: ShardStats }
  | { type: "stopped"; shardIndex: number }
  /** notReady: why this replica refuses to be a source for now (the export ends with no entries), or null. */
  | { type: "snapshot-chunk"; requestId: number; entries: SnapshotEntry[]; done: boolean; notReady: string | null }
  | { type: "fatal"; shardIndex: number; message: string };
