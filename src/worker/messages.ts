// Control messages between the node (main thread) and a shard worker. These are rare (start,
// membership and lease changes, stats, HTTP start and stop, the main thread's own HTTP routes,
// stop) and go by postMessage; client ops and their answers never do: a worker submits its own
// HTTP requests to its replica and forwards others over the SharedArrayBuffer rings between workers.

import { nodeIdMax, type Epoch, type NodeId } from "../base/ids.ts";
import type { ReplicaConfig } from "../core/types.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import type { StatusExtras } from "../base/kv-backend.ts";
import type { PeerRings } from "./peer-links.ts";
import type { AuthConfig } from "../http/auth-guard.ts";
import type { TokenEntry } from "../http/auth-file.ts";
import type { WatchFeedShared } from "./watch-feed.ts";
import type { DurabilityOptions } from "../base/durability.ts";
import type { JournalStats } from "./shard-journal.ts";

export interface ShardInit {
  type: "init";
  nodeId: NodeId;
  shardIndex: number;
  clusterId: number;
  transport: { kind: TransportKind; host: string; port: number; frameBytesMax: number };
  replica: ReplicaConfig;
  keyBytesMax: number;
  /** The node's facts (createNodeBoard), shared by every thread of the node. */
  board: SharedArrayBuffer;
  /** Client ops this shard holds at once (a named limit: more are answered Busy). */
  opsInFlightMax: number;
  /** Pin this worker's thread to a NUMA node when libnuma is present (-1: leave unpinned). */
  numaNode: number;
  /** Closed-loop benchmark clients inside the worker (`hermes-kv bench`), or null. */
  bench: ShardBenchConfig | null;
  /** Transport liveness: heartbeats, and when each peer was last heard; absent: neither. */
  liveness?: ShardLivenessInit;
  /**
   * The frame MAC key, derived from the cluster key (deriveClusterKey(key, clusterKeyLabel.frameMac)):
   * every frame sent is tagged and every frame received must verify (src/wire/frame-mac.ts). Absent
   * or null: no cluster key, frames go untagged.
   */
  frameKey?: Uint8Array | null;
  /** The node's data dir and durability mode; absent: --durability none (nothing on disk). */
  durability?: DurabilityOptions;
}

/** What a shard recovered from its data dir before it said it was ready. */
export interface ShardRecovered {
  keys: number;
  snapshotEntries: number;
  logRecords: number;
  /** Bytes cut off a torn log tail, with the one line that says so (null: a clean tail). */
  bytesDropped: number;
  tailNote: string | null;
  ms: number;
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

/** Serve the node's HTTP API on this thread (each shard worker binds the same port with SO_REUSEPORT). */
export interface HttpStart {
  type: "http-start";
  host: string;
  /** 0: any free port (only for the first worker; the others are given the port it got). */
  port: number;
  /** Bun's own request-body cap (the app answers 413 in JSON below it). */
  bodyBytesMax: number;
  /** Paths served by the main thread: requests under them are forwarded to it by postMessage. */
  controlPathPrefixes: string[];
  /**
   * Control paths whose POST stops the node (a local replica's admin stop): the worker that
   * receives one marks the node closed on the board at once, so that it answers nothing more from
   * that moment, as the main thread did when it served HTTP itself; then forwards it.
   */
  stopPaths: string[];
  /** Rings to and from the node's other shard workers (null with one shard). */
  peerRings: PeerRings | null;
  /** Watch streams' change feed between the workers (watch-feed.ts), the same for every worker. */
  watchFeed: WatchFeedShared;
  /** This worker's port to each other worker, for listing pages (browse-links.ts); null with one shard. */
  browsePorts: (MessagePort | null)[] | null;
  /** HTTPS instead of HTTP (--tls-cert/--tls-key/--tls-ca), or null. */
  tls?: HttpTls | null;
  /** Bearer tokens with roles (--auth-file), or null: every route open. */
  auth?: AuthConfig | null;
}

/** TLS of the HTTP port, as PEM text: the main thread reads the files, so a bad path fails at start. */
export interface HttpTls {
  cert: string;
  key: string;
  /** Require a client certificate signed by this CA (mutual TLS), or null. */
  ca: string | null;
}

/** A header list as postMessage carries it. */
export type HeaderList = [name: string, value: string][];

export type ToShard =
  | ShardInit
  | HttpStart
  /** Every HTTP-serving worker's metrics buffer, in shard order: /metrics sums them. */
  | { type: "http-metrics-buffers"; buffers: SharedArrayBuffer[] }
  /** The auth file was reloaded (SIGHUP): check requests against these tokens from now on. */
  | { type: "auth-tokens"; tokens: TokenEntry[] }
  /** Close the HTTP server once the requests in flight are answered. */
  | { type: "http-stop" }
  /** The failure detector's part of /v1/status, as of `atMs` (monotonicMs), or null without one. */
  | { type: "status-extras"; extras: StatusExtras | null; atMs: number }
  /** Shard `shardIndex`'s worker died: answer what was forwarded to it, forward nothing more. */
  | { type: "peer-failed"; shardIndex: number }
  /** The main thread's answer to a forwarded HTTP request: head, then body chunks, then end. */
  | { type: "control-head"; requestId: number; status: number; headers: HeaderList }
  | { type: "control-body"; requestId: number; chunk: Uint8Array }
  | { type: "control-end"; requestId: number; error: string | null }
  | { type: "node-metrics"; requestId: number; text: string }
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
  /** Whole snapshot records (src/core/snapshot-records.ts). */
  | { type: "snapshot-import"; records: Uint8Array; fromKeptState: boolean }
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
  /** The log and snapshots (--durability fsync|async), or null. */
  durability?: JournalStats | null;
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
  | { type: "ready"; shardIndex: number; address: string; recovered?: ShardRecovered }
  | { type: "http-ready"; shardIndex: number; port: number; metricsBuffer: SharedArrayBuffer }
  /** Bun.serve refused (the port is taken, the address is not ours): the node cannot serve HTTP. */
  | { type: "http-failed"; shardIndex: number; message: string }
  | { type: "http-stopped"; shardIndex: number }
  /** An HTTP request under a control path prefix, for the main thread to answer (see control-head). */
  | {
      type: "control-request";
      requestId: number;
      method: string;
      url: string;
      headers: HeaderList;
      body: Uint8Array | null;
    }
  /** The node's Prometheus series, for this worker's /metrics. */
  | { type: "node-metrics-request"; requestId: number }
  | { type: "stats"; requestId: number; stats: ShardStats }
  | { type: "stopped"; shardIndex: number }
  /** notReady: why this replica refuses to be a source for now (the export ends with no entries), or null. */
  /** Whole snapshot records (src/core/snapshot-records.ts), `entries` of them, written from the replica's slabs. */
  | {
      type: "snapshot-chunk";
      requestId: number;
      records: Uint8Array;
      entries: number;
      done: boolean;
      notReady: string | null;
    }
  | { type: "fatal"; shardIndex: number; message: string };
