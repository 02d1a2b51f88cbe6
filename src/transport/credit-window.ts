// Per-peer flow control of the RDMA transport, in datagrams: the sender's CreditWindow and the
// receiver's AckDebt. Pure arithmetic, kept apart from the verbs calls so that it can be tested on
// its own (raft keeps its Inflights the same way).
//
// Why credits at all: a UD datagram that finds no posted receive buffer is dropped by the NIC
// without a trace, so a sender may only have as many datagrams unacknowledged as the receiver keeps
// buffers for it. Data datagrams are numbered (u32, wrapping); the receiver acknowledges
// cumulatively ("done with all of yours below seq") on any datagram going back. Acks are
// cumulative and the newest wins, so a lost, duplicated or reordered ack only delays.
//
// All sequence arithmetic is modulo 2^32, which orders two numbers correctly while they are less
// than 2^31 apart: hence creditWindowDatagramsLimit.

import { assert } from "../base/assert.ts";

/** Sequence numbers wrap at 2^32; a window must stay below half of that for comparisons to hold. */
export const creditWindowDatagramsLimit = 0x7fffffff;

const u32 = (x: number) => x >>> 0;

function assertSeq(seq: number, what: string): void {
  assert(Number.isInteger(seq) && seq >= 0 && seq <= 0xffffffff, `${what} is a u32`);
}

/** The sender's side for one peer: how many more data datagrams it may send now. */
export class CreditWindow {
  readonly windowDatagrams: number;
  /** Sequence number the next data datagram takes (its header carries it + 1, the seqEnd). */
  #nextSeq: number;
  /** The peer has processed every datagram below this one. */
  #ackedSeq: number;
  /** Credits a refused send needed (1, or the pieces of a large frame); 0: none refused since. */
  #creditsNeeded = 0;
  #creditRequestedMs = -Infinity;

  /** `seqStart` is where numbering begins (0 on a new link; tests start near 2^32 to wrap). */
  constructor(windowDatagrams: number, seqStart = 0) {
    assert(Number.isInteger(windowDatagrams) && windowDatagrams >= 1, "a credit window holds at least one datagram");
    assert(windowDatagrams <= creditWindowDatagramsLimit, "a credit window spans less than half the sequence space");
    assertSeq(seqStart, "the first sequence number");
    this.windowDatagrams = windowDatagrams;
    this.#nextSeq = seqStart;
    this.#ackedSeq = seqStart;
  }

  get nextSeq(): number {
    return this.#nextSeq;
  }

  get ackedSeq(): number {
    return this.#ackedSeq;
  }

  /** Data datagrams sent and not yet acknowledged. */
  inFlight(): number {
    return u32(this.#nextSeq - this.#ackedSeq);
  }

  credits(): number {
    const credits = this.windowDatagrams - this.inFlight();
    assert(credits >= 0, "never more datagrams in flight than the window");
    return credits;
  }

  /**
   * Whether `datagrams` may be sent now (all of them: the pieces of a frame go together or not at
   * all). When not, remembers the need: the sender is starved until that many credits are back.
   */
  admits(datagrams: number): boolean {
    assert(Number.isInteger(datagrams) && datagrams >= 1, "a send needs at least one credit");
    assert(datagrams <= this.windowDatagrams, "a send that needs more than the window could never go");
    if (this.credits() >= datagrams) return true;
    this.#creditsNeeded = datagrams;
    return false;
  }

  /** Numbers one more data datagram; returns its seqEnd (its sequence number + 1) for the header. */
  take(): number {
    assert(this.credits() > 0, "a datagram is only numbered with a credit in hand (admits first)");
    this.#creditsNeeded = 0;
    this.#nextSeq = u32(this.#nextSeq + 1);
    return this.#nextSeq;
  }

  /**
   * An ack from the peer. Only one inside [ackedSeq, nextSeq] is news (returns true): an older one
   * arrived late, and one beyond nextSeq acknowledges datagrams never sent (a stale incarnation).
   */
  acknowledge(ack: number): boolean {
    assertSeq(ack, "an ack");
    if (u32(ack - this.#ackedSeq) > this.inFlight()) return false;
    this.#ackedSeq = ack;
    return true;
  }

  /** A send was refused for want of credit, and the credits it needs are not back yet. */
  get starved(): boolean {
    return this.#creditsNeeded > 0 && this.credits() < this.#creditsNeeded;
  }

  /** Starved, and the last credit request went out at least `probeMs` before `nowMs`. */
  creditRequestDue(nowMs: number, probeMs: number): boolean {
    return this.starved && nowMs - this.#creditRequestedMs >= probeMs;
  }

  /** A datagram asking the peer for an ack went out at `nowMs`. */
  creditRequested(nowMs: number): void {
    this.#creditRequestedMs = nowMs;
  }
}

/** The receiver's side for one peer: the ack it owes, and whether it is time to send it. */
export class AckDebt {
  /** An idle receiver sends an ack once this many datagrams are unacknowledged. */
  readonly ackEveryDatagrams: number;
  /** The peer's seqEnd on its newest datagram: every datagram below it is processed. */
  #receivedSeq = 0;
  #ackedSeq = 0;
  #requested = false;

  constructor(ackEveryDatagrams: number) {
    assert(Number.isInteger(ackEveryDatagrams) && ackEveryDatagrams >= 1, "acks are due after at least one datagram");
    this.ackEveryDatagrams = ackEveryDatagrams;
  }

  /**
   * A datagram from the peer carrying `seqEnd`. The newest wins, even backwards: a peer that
   * restarted numbers from 0 again, and its acks must follow it.
   */
  received(seqEnd: number): void {
    assertSeq(seqEnd, "a datagram's seqEnd");
    this.#receivedSeq = seqEnd;
  }

  /** The peer is out of credit: answer with an ack even if nothing new was processed. */
  requested(): void {
    this.#requested = true;
  }

  /** Whether an idle receiver owes a control datagram now. */
  due(): boolean {
    return this.#requested || u32(this.#receivedSeq - this.#ackedSeq) >= this.ackEveryDatagrams;
  }

  /** The ack for a datagram going to the peer now; the debt is paid by sending it. */
  pay(): number {
    this.#ackedSeq = this.#receivedSeq;
    this.#requested = false;
    return this.#receivedSeq;
  }
}
