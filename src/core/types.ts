// The core's own types: per-key state, and the shapes of the replica's outputs and configuration.
// The vocabulary shared with other layers (ids, kinds, statuses, timestamps) is in src/base/.

import type { Epoch, NodeId, WriterId } from "../base/ids.ts";
import type { MsgKind, OpStatus } from "../base/kinds.ts";

/**
 * Per-key Lamport timestamp (spec: nodeTS), ordered lexicographically by (version, writer).
 * Writes add 2 to the version and RMWs add 1 (RMWs are always enabled), so a write always beats a
 * concurrent RMW from the same base, and two RMWs from one base are ordered by the writer id.
 */
export interface Ts {
  version: number;
  writer: WriterId;
}

/**
 * Per-key state (spec names in brackets). Every transition and the Replica method that makes it:
 *
 * | From           | To      | Method                                | On                                         |
 * |----------------|---------|---------------------------------------|--------------------------------------------|
 * | Valid          | Write   | #startUpdate                          | a client update starts                     |
 * | Invalid        | Replay  | #startReplay                          | mltMs without progress, or writer left     |
 * | Valid, Invalid | Invalid | #adopt                                | a higher ts (INV, Reject, snapshot entry)  |
 * | Write          | Trans   | #adopt                                | a higher ts while an own write is pending  |
 * | Write, Replay  | Invalid | #adopt                                | a higher ts aborts the RMW / ends a replay |
 * | Trans          | Invalid | #maybeFinishPending                   | the lower own write has every ACK (no VAL) |
 * | Write, Replay  | Valid   | #maybeFinishPending, then #validate   | every ACK: VALs go out                     |
 * | not Valid      | Valid   | #onVal, then #validate                | a VAL for the key's current ts             |
 * | Invalid        | Valid   | installSnapshotEntry, then #validate  | a committed entry at the key's ts          |
 */
export const enum KeyState {
  /** [valid] committed, readable locally */
  Valid = 1,
  /** [invalid] invalidated by someone else's update; reads wait */
  Invalid = 2,
  /** [invalid_write] own update in flight but a higher INV arrived: keep gathering ACKs, send no VAL */
  Trans = 3,
  /** [write] coordinating an own update (write or RMW) */
  Write = 4,
  /** [replay] replaying someone else's update with its original timestamp and value */
  Replay = 5,
}

/**
 * Where the core puts messages. Primitive arguments so that the worker can encode straight into a
 * frame buffer without allocating a message object. The key is `key[keyAt..keyAt+keyLength)` and
 * the value `value[valueAt..valueAt+valueLength)` (null: a tombstone, or none for ACK and VAL),
 * both lent from the core's store for the duration of the call: the callee copies what it keeps.
 */
export interface Outbox {
  send(
    to: NodeId,
    kind: MsgKind,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: WriterId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void;
}

/**
 * Where the core puts client completions. `opId` is the caller's handle given to `submit`. The
 * value (a read's, or an Incr's new number) is `value[valueAt..valueAt+valueLength)`, null when
 * absent; it is lent for the duration of the call (a read's lies in the store's slab, which a later
 * write overwrites in place): the callee copies it if it keeps it.
 * Neither this nor the Outbox may call back into the replica during the call.
 */
export interface Completions {
  complete(
    opId: number,
    status: OpStatus,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    version: number,
    writer: WriterId,
  ): void;
}

/**
 * Optional observer of every timestamp the replica installs, for a write-ahead log (the node's
 * `--durability`): its own update, an INV it adopts, a replay or snapshot entry it takes. Called
 * during the install, before anything that could announce it (an ACK, the coordinator's INV) is
 * handed to the Outbox, so a shard that makes these durable before sending its frames never ACKs
 * what is not on disk. `validated` says a key went Valid (no sync needed: a key left non-Valid on
 * disk is replayed at recovery). Key and value are lent, as in Outbox.send.
 */
export interface Journal {
  installed(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void;
  /** The key went Valid at this timestamp (its value is passed again: the log's records are whole). */
  validated(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void;
}

/** Optional observer used by the simulator's oracles; the runtime passes none. */
export interface Probe {
  /** This node started an own update `version.writer` from the Valid base `baseVersion.baseWriter`. */
  issued(
    self: NodeId,
    key: string,
    version: number,
    writer: WriterId,
    rmw: boolean,
    baseVersion: number,
    baseWriter: WriterId,
  ): void;
  /** An ACK was counted towards a pending update of `key`. */
  ackCounted(self: NodeId, key: string, from: NodeId, ackEpoch: Epoch, currentEpoch: Epoch): void;
  /** This node collected every ACK for its pending update `version.writer` in W or R and sent VALs. */
  committed(self: NodeId, key: string, version: number, writer: WriterId, rmw: boolean): void;
  /** A key went Valid at this node. */
  validated(self: NodeId, key: string, version: number, writer: WriterId): void;
}

import type { ItemView } from "./key-store.ts";

export interface ReplicaConfig {
  self: NodeId;
  /**
   * This process's incarnation of node `self`, from the membership service (0 for the first process
   * of a node id): with `self` it makes the writer id of this replica's timestamps (base/ids.ts), so
   * a restarted process never reissues a timestamp of a previous one.
   */
  incarnation: number;
  /** Re-send an INV to members that have not ACKed after this long. */
  retransmitMs: number;
  /** Message-loss timeout: a key stuck Invalid this long is replayed by this node. */
  mltMs: number;
  /** A client op not answered after this long is answered Unknown (updates) or Timeout (reads). */
  opTimeoutMs: number;
  /** Ops waiting on one key (behind a pending update, or for Valid/lease). */
  keyQueueMax: number;
  /** Ops in the replica at once (waiting or in flight). */
  opsMax: number;
  /** Keys this node's clients may create (tombstones included); a write that would create more is StoreFull. */
  keysMax: number;
  /**
   * Bytes of the key store's slab pages (keys, values and their 24-byte headers). A client update
   * that needs a new slot while the pages are within 1/8 of this is StoreFull; the last 1/8 is for
   * updates from other replicas, which cannot be refused. At most about 4 GiB (u32 addresses).
   */
  storeBytesMax: number;
  /** Largest value accepted from a client. */
  valueBytesMax: number;
  /** How many times an Incr retries after a final RMW abort before answering Aborted. */
  incrRetriesMax: number;
  /** Keep the keys in byte order for prefix listings (default true; false only to measure its cost). */
  orderedKeys?: boolean;
  /**
   * Seed of the key store's hash (an int32). Unset: a fixed seed (tests and the simulator repeat).
   * A node process draws a random one, so that which keys collide in its index cannot be worked
   * out from the source alone (see docs/benchmarks.md, "Hash seed").
   */
  hashSeed?: number;
}

/**
 * Told of every key that goes Valid at this node with the timestamp and value it now holds
 * (Replica.changes): commits of this node and updates it applies. The view's bytes are lent for
 * the call only. Called inside the replica's step: it must not call back into the replica.
 */
export interface ChangeSink {
  changed(view: ItemView): void;
}

export const defaultReplicaConfig: Omit<ReplicaConfig, "self"> = {
  incarnation: 0,
  retransmitMs: 20,
  mltMs: 200,
  opTimeoutMs: 5000,
  keyQueueMax: 256,
  opsMax: 65536,
  keysMax: 4_000_000,
  storeBytesMax: 2 * 1024 * 1024 * 1024,
  valueBytesMax: 64 * 1024,
  incrRetriesMax: 16,
};
