// One shard's view of its links' liveness: when each peer was last heard (and heard fresh), when
// it was last sent to and dialled, and from that, who is due a heartbeat and whose link is due a
// redial. The Shard does the sending (it owns the frame builders and the transport); this keeps
// the times, in the shard's clock, and shares them with the node (ShardLivenessInit.lastHeard).

import { nodeIdMax, type Epoch, type NodeId } from "../base/ids.ts";
import { lastFreshSlot, livenessSlots, probeEchoIntervals } from "./messages.ts";

/** Heartbeat checks per heartbeat interval: bounds how late a heartbeat leaves. */
export const heartbeatChecksPerInterval = 4;
/**
 * A link to a peer not heard for this many heartbeat intervals is dialled again, and again after
 * twice as long, up to redialSilentIntervalsMax: a blackholed TCP connection backs its
 * retransmissions off for minutes, while a fresh connection's first SYN leaves at once, so a
 * healed link carries frames again within one redial interval.
 */
export const redialSilentIntervals = 10;
export const redialSilentIntervalsMax = 30;

export class PeerLiveness {
  /** Per node id: when a frame, and a fresh frame (see lastFreshSlot), was last accepted from it; when one was last sent to it. */
  readonly #heardMs = new Float64Array(nodeIdMax + 1);
  readonly #freshMs = new Float64Array(nodeIdMax + 1);
  readonly #sentMs = new Float64Array(nodeIdMax + 1);
  /** Per node id: the address of our link to it (null: none), when we last dialled it, the current redial interval. */
  readonly #addresses: (string | null)[] = Array.from({ length: nodeIdMax + 1 }, () => null);
  readonly #dialMs = new Float64Array(nodeIdMax + 1);
  readonly #redialMs = new Float64Array(nodeIdMax + 1);
  /** What the shared slots hold, to store only changes. */
  readonly #sharedMs = new Float64Array(livenessSlots);
  #lastCheckMs = 0;
  heartbeatsSent = 0;
  redials = 0;

  constructor(
    readonly heartbeatMs: number,
    private readonly shared: BigInt64Array | null,
  ) {
    if (!(heartbeatMs > 0)) throw new RangeError("heartbeatMs must be > 0");
    if (shared !== null && shared.length !== livenessSlots)
      throw new RangeError(`the shared times hold ${livenessSlots} slots`);
  }

  /**
   * A valid frame from `from` (an empty heartbeat included) says the peer reaches us; one sent at
   * our epoch or later says so about now, not about before a view change (stale bytes that a
   * half-broken TCP link delivers late carry the epoch they were sent at).
   */
  heard(from: NodeId, frameEpoch: Epoch, ourEpoch: Epoch, nowMs: number): void {
    this.#heardMs[from] = nowMs;
    if (frameEpoch >= ourEpoch) this.#freshMs[from] = nowMs;
  }

  sent(to: NodeId, nowMs: number): void {
    this.#sentMs[to] = nowMs;
  }

  /** We keep a link to `id` at `address` (a member or a probe); a new address counts as a dial. */
  linked(id: NodeId, address: string, nowMs: number): void {
    if (this.#addresses[id] === address) return;
    this.#addresses[id] = address;
    this.#dialMs[id] = nowMs;
    this.#redialMs[id] = redialSilentIntervals * this.heartbeatMs;
  }

  unlinked(id: NodeId): void {
    this.#addresses[id] = null;
  }

  /** True at most heartbeatChecksPerInterval times per heartbeat interval. */
  checkDue(nowMs: number): boolean {
    if (nowMs - this.#lastCheckMs < this.heartbeatMs / heartbeatChecksPerInterval) return false;
    this.#lastCheckMs = nowMs;
    return true;
  }

  /** A member got nothing from us for heartbeatMs; a probe also only while we hear it fresh. */
  heartbeatDue(id: NodeId, isMember: boolean, nowMs: number): boolean {
    if (nowMs - this.#sentMs[id]! < this.heartbeatMs) return false;
    return isMember || nowMs - this.#freshMs[id]! <= probeEchoIntervals * this.heartbeatMs;
  }

  /** The links silent for their redial interval, each counted as dialled now (the caller redials them). */
  redialsDue(nowMs: number): { id: NodeId; address: string }[] {
    const due: { id: NodeId; address: string }[] = [];
    for (let id = 0; id <= nodeIdMax; id++) {
      const address = this.#addresses[id];
      if (address === null || address === undefined) continue;
      // Heard since the last dial: the link worked, a new silence starts from the shortest interval.
      if (this.#heardMs[id]! > this.#dialMs[id]!) this.#redialMs[id] = redialSilentIntervals * this.heartbeatMs;
      if (nowMs - Math.max(this.#heardMs[id]!, this.#dialMs[id]!) < this.#redialMs[id]!) continue;
      this.#redialMs[id] = Math.min(2 * this.#redialMs[id]!, redialSilentIntervalsMax * this.heartbeatMs);
      this.#dialMs[id] = nowMs;
      this.redials++;
      due.push({ id, address });
    }
    return due;
  }

  /** Publishes the times that changed to the node. */
  share(): void {
    const shared = this.shared;
    if (shared === null) return;
    for (let slot = 0; slot < livenessSlots; slot++) {
      const ms = slot < lastFreshSlot ? this.#heardMs[slot]! : this.#freshMs[slot - lastFreshSlot]!;
      if (ms === this.#sharedMs[slot]) continue;
      this.#sharedMs[slot] = ms;
      Atomics.store(shared, slot, BigInt(Math.floor(ms)));
    }
  }
}
