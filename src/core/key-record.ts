// Per-key metadata of the Hermes replica (spec variable names in comments).

import { KeyState } from "./types.ts";
import type { Epoch, NodeId } from "../base/ids.ts";
import type { Op } from "./op.ts";

/** Marks "no own pending update" in pendingWriter. */
export const noPending = -1;

export class KeyRecord {
  readonly key: string;
  /** nodeState */
  state: KeyState = KeyState.Valid;
  /** nodeTS: the highest timestamp seen; `value` belongs to it. (0, 0) is the initial absent value. */
  version = 0;
  writer: NodeId = 0;
  /** The value of `version.writer`; null = absent (never written, or a tombstone). */
  value: Uint8Array | null = null;
  /** nodeFlagRMW: whether `version.writer` was installed by an RMW (a replay keeps it). */
  rmw = false;
  /** nodeLastWriter: sender of the INV that installed the current ts (self for own updates and replays). */
  lastWriter: NodeId = 0;

  // The one own pending update (W, R, or Trans). Spec: nodeLastWriteTS, nodeRcvedAcks, nodeWriteEpochID.
  pendingVersion = 0;
  pendingWriter: NodeId = noPending;
  /** The pending update's value and RMW flag: kept apart because in Trans the key holds a higher ts's value. */
  pendingValue: Uint8Array | null = null;
  pendingRmw = false;
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
   * INV of a later epoch. Only while joining (finishJoin ends it).
   */
  stale = false;
  /**
   * The epoch in which the key became stale: in it nothing can commit without this replica, so it
   * answers INVs of that epoch as usual. -1 for an entry loaded from a snapshot (any epoch).
   */
  staleEpoch: Epoch = -1;

  /** Ops waiting for this key: behind the pending update, for Valid, or for the lease. FIFO, bounded. */
  readonly waiting: Op[] = [];

  constructor(key: string) {
    this.key = key;
  }

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
}
