// Types shared by the Hermes core and everything that talks to it.
// The core is a pure state machine: these are the shapes of its inputs and outputs.

/** A replica's id inside one cluster. Ids are small integers so that ACK sets fit one 32-bit mask. */
export type NodeId = number;
export const nodeIdMax = 31;

/** A membership epoch: bumped by the reliable membership service on every change. */
export type Epoch = number;

/**
 * Per-key Lamport timestamp (spec: nodeTS), ordered lexicographically by (version, writer).
 * Writes add 2 to the version and RMWs add 1 (RMWs are always enabled), so a write always beats a
 * concurrent RMW from the same base, and two RMWs from one base are ordered by the writer id.
 */
export interface Ts {
  version: number;
  writer: NodeId;
}

/** Per-key state (spec names in brackets). */
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

/** Client operation kinds. Delete is a write of a tombstone (value null). */
export const enum OpKind {
  Read = 1,
  Write = 2,
  Delete = 3,
  /** RMW: succeed only if the key's timestamp equals the expected one (HTTP If-Match). */
  Cas = 4,
  /** RMW: succeed only if the key is absent (HTTP If-None-Match: *). */
  Create = 5,
  /** RMW: add `by` to the key's decimal integer value (absent counts as 0). */
  Incr = 6,
}

/**
 * How a client op ended. Every op gets exactly one of these.
 * An update that may have taken effect is never reported as failed: it is Ok or Unknown.
 */
export const enum OpStatus {
  /** Done. Reads: value (null = absent) and ts. Updates: new ts (and value for Incr). */
  Ok = 0,
  /** CAS/Create precondition did not hold (the key's ts or presence differs). Nothing written. */
  PreconditionFailed = 1,
  /** Incr on a value that is not a safe decimal integer, or whose result would not be. Nothing written. */
  NotANumber = 2,
  /** Incr lost its RMW race too many times in a row; each loss was final. Nothing written. */
  Aborted = 3,
  /** The update was started and may or may not have taken effect (timeout, removal, shutdown). */
  Unknown = 4,
  /** Not served: no lease, not a member, or shutting down; nothing was started. */
  Unavailable = 5,
  /** A bounded queue is full; nothing was started. */
  Busy = 6,
  /** The store holds keysMax keys; a new key cannot be created. Nothing written. */
  StoreFull = 7,
  /** The op waited longer than opTimeoutMs without being started (no lease, or the key never became Valid). Nothing written. */
  Timeout = 8,
}

export const enum MsgKind {
  /** Invalidation: key, ts, value, rmw flag, epoch. Sent by a coordinator or a replayer. */
  Inv = 1,
  /** Acknowledgement of an INV: key, ts copied from the INV, epoch. */
  Ack = 2,
  /** Validation: key, ts. Carries no epoch (spec). */
  Val = 3,
  /** RMW reject ("INV-abort"): a follower's own higher ts, value and rmw flag, sent instead of an ACK. */
  Reject = 4,
}

/**
 * Where the core puts messages. Primitive arguments so that the worker can encode straight into a
 * frame buffer without allocating a message object. `value` is borrowed: the callee copies it
 * before returning if it keeps it.
 */
export interface Outbox {
  send(
    to: NodeId,
    kind: MsgKind,
    key: string,
    version: number,
    writer: NodeId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
  ): void;
}

/** Where the core puts client completions. `opId` is the caller's handle given to `submit`. */
export interface Completions {
  complete(opId: number, status: OpStatus, value: Uint8Array | null, version: number, writer: NodeId): void;
}

/** Optional observer used by the simulator's oracles; the runtime passes none. */
export interface Probe {
  /** This node started an own update `version.writer` from the Valid base `baseVersion.baseWriter`. */
  issued(self: NodeId, key: string, version: number, writer: NodeId, rmw: boolean, baseVersion: number, baseWriter: NodeId): void;
  /** An ACK was counted towards a pending update of `key`. */
  ackCounted(self: NodeId, key: string, from: NodeId, ackEpoch: Epoch, currentEpoch: Epoch): void;
  /** This node collected every ACK for its pending update `version.writer` in W or R and sent VALs. */
  committed(self: NodeId, key: string, version: number, writer: NodeId, rmw: boolean): void;
  /** A key went Valid at this node. */
  validated(self: NodeId, key: string, version: number, writer: NodeId): void;
}

export interface ReplicaConfig {
  self: NodeId;
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
  /** Keys the replica stores (tombstones included); a write that would create more is StoreFull. */
  keysMax: number;
  /** Largest value accepted from a client. */
  valueBytesMax: number;
  /** How many times an Incr retries after a final RMW abort before answering Aborted. */
  incrRetriesMax: number;
}

export const defaultReplicaConfig: Omit<ReplicaConfig, "self"> = {
  retransmitMs: 20,
  mltMs: 200,
  opTimeoutMs: 5000,
  keyQueueMax: 256,
  opsMax: 65536,
  keysMax: 4_000_000,
  valueBytesMax: 64 * 1024,
  incrRetriesMax: 16,
};

/** Compare two timestamps lexicographically: negative, 0, positive. */
export function compareTs(aVersion: number, aWriter: NodeId, bVersion: number, bWriter: NodeId): number {
  if (aVersion !== bVersion) return aVersion < bVersion ? -1 : 1;
  if (aWriter !== bWriter) return aWriter < bWriter ? -1 : 1;
  return 0;
}

/** The HTTP ETag form of a timestamp: "version.writer" (quoted by the HTTP layer). */
export function formatTs(version: number, writer: NodeId): string {
  return `${version}.${writer}`;
}
