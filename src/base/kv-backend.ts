// The contract between the HTTP shell and whatever serves it: submit ops, read status and metrics.
// It is shared vocabulary (here in base, not in node) because the HTTP shell runs inside the shard
// workers, which the node starts: if it lived in node, http -> node -> worker -> http would be a
// cycle. Tests implement it in memory. The HTTP layer never sees protocol state.

import type { BrowseBackend } from "./browse.ts";
import type { Epoch, NodeId } from "./ids.ts";
import type { OpKind, OpStatus } from "./kinds.ts";

export interface OpRequest {
  kind: OpKind;
  key: string;
  /** Write/Cas/Create: the new value. */
  value?: Uint8Array;
  /** Cas: the expected timestamp (from the ETag). */
  expectedVersion?: number;
  expectedWriter?: NodeId;
  /** Incr: the amount (a safe integer). */
  by?: number;
  /**
   * The key's UTF-8 bytes, `keyBytes[keyAt..keyAt+keyLength)`, when the caller holds them anyway (a
   * binary batch reads its keys in place): the backend may look the key up by them rather than
   * encode `key` again. They must stay unchanged until the op's result.
   */
  keyBytes?: Uint8Array;
  keyAt?: number;
  keyLength?: number;
}

export interface OpResult {
  status: OpStatus;
  /** Read: the value (null = absent). Incr: the new value as decimal ASCII. */
  value: Uint8Array | null;
  /** The key's timestamp after the op (reads: the value's ts; updates: the new ts). */
  version: number;
  writer: NodeId;
}

export interface ShardStatus {
  index: number;
  keys: number;
  opsInFlight: number;
  numaNode: number | null;
  cpu: number | null;
}

export interface NodeStatus {
  nodeId: NodeId;
  epoch: Epoch;
  members: NodeId[];
  serving: boolean;
  /** Holds data it has served from (not a fresh or wiped process): may contribute to a merge. */
  hasState: boolean;
  /** Milliseconds of lease left (0 = none). */
  leaseRemainingMs: number;
  transport: string;
  shards: ShardStatus[];
  /** The failure detector (etcd nodes with --suspect-ms > 0; absent otherwise): members this node cannot hear. */
  suspects?: NodeId[];
  /** Members whose suspicions, published in etcd, name this node. */
  suspectedBy?: NodeId[];
  /** How long ago every shard last heard each member, in ms (null: never). */
  heardAgoMs?: Record<string, number | null>;
  evictions?: EvictionStatus;
  /** With a data dir (--durability fsync|async); absent with none. */
  durability?: DurabilityStatus;
}

export interface DurabilityStatus {
  mode: "fsync" | "async";
  /** The errno name (ENOSPC, EIO, ...) with which a shard's log failed, or null. */
  diskFailure: string | null;
  /** False once a log failed: updates are answered 503 (reads go on while the lease holds). */
  acceptingUpdates: boolean;
}

/** Evictions as this node sees them (src/membership/etcd-eviction.ts). */
export interface EvictionStatus {
  /** Evictions this node carried out as the decider. */
  decided: number;
  /** Times this node was evicted. */
  ofThisNode: number;
  /** True while this node, evicted, waits to reach every member before registering again. */
  candidate: boolean;
  /** A recorded eviction whose lease is still being revoked. */
  pending: { member: NodeId; lease: string } | null;
  /** Views that remove an evicted member, held here until its lease has surely expired. */
  holding: { epoch: Epoch; removed: NodeId[]; releaseInMs: number }[];
  /** The last eviction recorded in etcd. */
  last: { member: NodeId; lease: string; by: NodeId; reason: string; suspectedBy: NodeId[]; epoch: Epoch } | null;
  /** The eviction rule's answer now (null: nobody to evict). */
  decision: { target: NodeId; decider: NodeId; reason: string; suspectedBy: NodeId[] } | null;
}

/** What a node's failure detector adds to its status (see NodeStatus), all or nothing. */
export type StatusExtras = Required<Pick<NodeStatus, "suspects" | "suspectedBy" | "heardAgoMs" | "evictions">>;

export interface KvBackend {
  /**
   * Submit one op; exactly one result follows. A result known at once (a local read of a Valid
   * key) may come back as is, without a promise: the HTTP fast path then answers synchronously.
   */
  submit(request: OpRequest): OpResult | Promise<OpResult>;
  /**
   * submit() for every op of a batch, in order, in this one turn, each result (or promise) into
   * `into[index]`: a backend may read its clock and node state once for them all. Optional: a
   * batch calls submit per op without it (batch-submit.ts).
   */
  submitEach?(ops: readonly OpRequest[], into: (OpResult | Promise<OpResult>)[]): void;
  status(): NodeStatus;
  /** Prometheus text exposition format (from another thread: a promise of it). */
  metrics(): string | Promise<string>;
  /** Largest key (UTF-8 bytes) and value the node accepts; the HTTP layer enforces them (413). */
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  /** Prefix listings and watch streams (absent: the routes answer 503). */
  readonly browse?: BrowseBackend;
}
