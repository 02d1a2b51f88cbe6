// Control messages between the node (main thread) and a shard worker. These are rare (start,
// membership and lease changes, stats, stop) and go by postMessage; client ops and their answers
// never do: they travel in the SharedArrayBuffer rings.

import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import type { Epoch, NodeId } from "../base/ids.ts";
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
