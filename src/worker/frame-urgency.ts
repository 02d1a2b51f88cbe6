// Which peers' frames must leave at the end of a loop turn, and which may wait for company.
//
// INVs, ACKs and rejects are on a write's critical path: the coordinator answers its client only
// once every live peer has ACKed. A VAL is not: the write is already answered when its VALs go
// out; they only end the Invalid window of the key at the followers (a read there waits for it).
// Sent on its own, a VAL costs a frame, a syscall and, above all, a wake-up of the follower's
// thread; on a loaded machine every wake-up may wait in the kernel's run queue. At 95 % reads a
// peer's next INV or ACK usually follows within a millisecond, so a VAL held up to valHoldMs rides
// in that frame instead (measured: docs/benchmarks.md, "Writes at 95 % reads").

import { MsgKind } from "../base/kinds.ts";
import type { NodeId } from "../base/ids.ts";

/**
 * How long a frame holding only VALs may wait for a message that must leave now (ms). The loop
 * wakes at least this often while such a frame waits (see Shard.run), so it is also the most a
 * VAL is delayed by this policy. One loop tick: a read of the key at the follower waits at most
 * that much longer.
 */
export const valHoldMs = 1;

export class FrameUrgency {
  /** Per peer: its pending frame holds a message other than a VAL. */
  readonly #urgent: Uint8Array;
  /** Per peer: when its pending frame got its first message (ms). */
  readonly #sinceMs: Float64Array;
  #urgentFrames = 0;

  constructor(peerSlots: number) {
    this.#urgent = new Uint8Array(peerSlots);
    this.#sinceMs = new Float64Array(peerSlots);
  }

  /** A message of `kind` went into `peer`'s frame at `nowMs`; `first`: the frame was empty. */
  added(peer: NodeId, kind: MsgKind, first: boolean, nowMs: number): void {
    if (first) this.#sinceMs[peer] = nowMs;
    if (kind !== MsgKind.Val && this.#urgent[peer] === 0) {
      this.#urgent[peer] = 1;
      this.#urgentFrames++;
    }
  }

  /** Whether `peer`'s pending frame leaves at a flush at `nowMs` (always when `force`). */
  due(peer: NodeId, nowMs: number, force: boolean): boolean {
    return force || this.#urgent[peer] === 1 || nowMs - this.#sinceMs[peer]! >= valHoldMs;
  }

  /** `peer`'s pending frame left (or was dropped): the next one starts empty. */
  sent(peer: NodeId): void {
    if (this.#urgent[peer] === 1) {
      this.#urgent[peer] = 0;
      this.#urgentFrames--;
    }
  }

  /** Some pending frame must leave at the next flush. */
  get anyUrgent(): boolean {
    return this.#urgentFrames > 0;
  }
}
