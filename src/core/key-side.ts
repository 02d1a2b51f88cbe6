// The side object of a key that is not simply Valid and idle: an own pending update, waiting ops,
// or a state other than Valid. Everything else about a key (its timestamp, state, last writer and
// value) lives in its item in the compact store (key-store.ts); a side exists only for the few
// keys with an update in flight, so a million settled keys cost no object at all. Sides are
// recycled through a pool in the Replica, so steady writing does not allocate them either.
// Spec variable names in comments.

import type { Epoch, NodeId } from "../base/ids.ts";
import { assert } from "../base/assert.ts";
import type { StoreSide } from "./key-store.ts";
import type { SideSetMember } from "./side-set.ts";
import type { Op } from "./op.ts";

/** Marks "no own pending update" in pendingWriter. */
export const noPending = -1;

export class KeySide implements StoreSide, SideSetMember {
  /** Set by the store: this side's id, and its key's slot (kept current through rehashes). */
  id = 0;
  slot = -1;
  /** Positions in the replica's side sets (the unsettled keys, the keys with waiting ops); -1: not in it. */
  readonly setAt = [-1, -1];

  // The one own pending update (W, R, or Trans). Spec: nodeLastWriteTS, nodeRcvedAcks, nodeWriteEpochID.
  pendingVersion = 0;
  pendingWriter: NodeId = noPending;
  pendingRmw = false;
  /**
   * In Trans only: the pending update's value (null: a tombstone), copied when a higher ts took
   * the key's item. In W and R the pending value is the key's own value in the store.
   */
  pendingValue: Uint8Array | null = null;
  /** ACK set as a bit mask over node ids. */
  acks = 0;
  writeEpoch: Epoch = 0;
  /** The client op that started the update; null for replays or after the op was answered (timeout). */
  pendingOp: Op | null = null;
  /** When INVs for the pending update were last sent (for retransmission). */
  invSentMs = 0;
  /** How long to wait for ACKs before the next retransmission: doubles on every retransmission. */
  retransmitWaitMs = 0;

  /** When the key last entered Invalid or saw progress while Invalid (for the message-loss timeout). */
  invalidSinceMs = 0;

  /**
   * Not known committed, and held through a lease loss (beginJoin), through an epoch change while
   * joining, or loaded from a snapshot without being committed: the update it holds may have been
   * superseded without this replica by a commit of the same version with a lower tie-breaker (an
   * RMW that lost its race only because its INVs stayed with nodes that were out). Until a live
   * update or the loaded state replaces it, it is neither re-sent, replayed, nor used to answer an
   * INV of a later epoch. Only while joining (finishJoin ends it); a stale key is Invalid.
   */
  stale = false;
  /**
   * The epoch in which the key became stale: in it nothing can commit without this replica, so it
   * answers INVs of that epoch as usual. -1 for an entry loaded from a snapshot (any epoch).
   */
  staleEpoch: Epoch = -1;

  /** Ops waiting for this key: behind the pending update, for Valid, or for the lease. FIFO, bounded. */
  readonly waiting: Op[] = [];

  hasPending(): boolean {
    return this.pendingWriter !== noPending;
  }

  clearPending(): void {
    this.pendingWriter = noPending;
    this.pendingVersion = 0;
    this.pendingValue = null;
    this.pendingRmw = false;
    this.acks = 0;
    this.pendingOp = null;
  }

  /** Back to a fresh side, for reuse by another key. */
  reset(): void {
    assert(this.setAt[0] === -1 && this.setAt[1] === -1, "a side object is reused only once it is in no set");
    this.clearPending();
    this.writeEpoch = 0;
    this.invSentMs = 0;
    this.retransmitWaitMs = 0;
    this.invalidSinceMs = 0;
    this.stale = false;
    this.staleEpoch = -1;
    // Setting an array's length is a slow call into the engine (a quarter of an incr round when
    // done unconditionally here); the queue of a side being reused is empty anyway.
    if (this.waiting.length !== 0) this.waiting.length = 0;
  }
}
