// The kinds every layer names: client operations, their outcomes, and protocol messages.
// Const enums, so that they compile to plain numbers on the rings and in frames.

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

/** Protocol message kinds, as carried in frames. */
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
