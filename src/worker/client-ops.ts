// The client ops a shard's replica holds for HTTP requests: a fixed table of slots whose index is the
// op id given to the replica. A slot belongs either to an HTTP request of this thread (answered by
// resolving its promise, or returned at once when the replica answers during submit) or to another
// shard worker of the node that forwarded the op (answered on that worker's completion ring).
//
// The table is the shard's named limit on ops in flight: when it is full, ops are answered Busy.

import { assert } from "../base/assert.ts";
import type { NodeId } from "../base/ids.ts";
import { OpStatus } from "../base/kinds.ts";
import type { OpResult } from "../base/kv-backend.ts";

type Resolver = (result: OpResult) => void;

/** Owner of a slot that an HTTP request of this thread submitted. */
const ownerLocal = -1;
/** Owner of a free slot. */
const ownerNone = -2;

/** Answers an op that another shard worker forwarded (see PeerLinks.answer). */
export type AnswerForwarded = (
  peer: number,
  peerOpId: number,
  status: OpStatus,
  value: Uint8Array | null,
  version: number,
  writer: NodeId,
) => void;

export const busyResult: OpResult = Object.freeze({ status: OpStatus.Busy, value: null, version: 0, writer: 0 });

export class ClientOps {
  readonly opsMax: number;
  readonly #owner: Int16Array;
  readonly #peerOpId: Uint32Array;
  readonly #resolvers: (Resolver | null)[];
  readonly #free: Int32Array;
  #freeCount: number;
  readonly #answerForwarded: AnswerForwarded;
  /** The local slot being submitted right now, whose answer may come during the submit call. */
  #submitting = -1;
  #answeredAtOnce: OpResult | null = null;

  constructor(opsMax: number, answerForwarded: AnswerForwarded) {
    assert(Number.isInteger(opsMax) && opsMax >= 1 && opsMax <= 0x7fff_ffff, "opsMax must be a positive integer");
    this.opsMax = opsMax;
    this.#owner = new Int16Array(opsMax).fill(ownerNone);
    this.#peerOpId = new Uint32Array(opsMax);
    this.#resolvers = new Array<Resolver | null>(opsMax).fill(null);
    this.#free = new Int32Array(opsMax);
    for (let i = 0; i < opsMax; i++) this.#free[i] = opsMax - 1 - i;
    this.#freeCount = opsMax;
    this.#answerForwarded = answerForwarded;
  }

  get inFlight(): number {
    return this.opsMax - this.#freeCount;
  }

  /** A slot for an op forwarded by shard worker `peer` under its own id `peerOpId`; -1 when full. */
  takeForwarded(peer: number, peerOpId: number): number {
    if (this.#freeCount === 0) return -1;
    const slot = this.#free[--this.#freeCount]!;
    this.#owner[slot] = peer;
    this.#peerOpId[slot] = peerOpId;
    return slot;
  }

  /**
   * Starts an op of this thread: returns its slot (the op id to submit to the replica), or -1 when
   * the table is full (answer Busy). Submit the op, then call `endLocal` at once.
   */
  beginLocal(): number {
    if (this.#freeCount === 0) return -1;
    const slot = this.#free[--this.#freeCount]!;
    this.#owner[slot] = ownerLocal;
    this.#submitting = slot;
    return slot;
  }

  /** The result when the replica answered during the submit, else a promise of it. */
  endLocal(slot: number): OpResult | Promise<OpResult> {
    assert(slot === this.#submitting, "endLocal of another slot than the one begun");
    this.#submitting = -1;
    const atOnce = this.#answeredAtOnce;
    if (atOnce !== null) {
      this.#answeredAtOnce = null;
      return atOnce;
    }
    return new Promise<OpResult>((resolve) => {
      this.#resolvers[slot] = resolve;
    });
  }

  /**
   * The replica's answer for op `slot` (its Completions callback). The value is
   * `value[valueAt..valueAt+valueLength)`, lent by the replica (a read's lies in its store, which a
   * later write overwrites in place): a forwarded op's answer is copied into the peer's ring, a
   * local one gets its own copy (it becomes the HTTP body).
   */
  complete(
    slot: number,
    status: OpStatus,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    version: number,
    writer: NodeId,
  ): void {
    const owner = this.#owner[slot];
    assert(owner !== undefined && owner !== ownerNone, "a completion for a client op slot that is not in use");
    this.#owner[slot] = ownerNone;
    this.#free[this.#freeCount++] = slot;
    if (owner !== ownerLocal) {
      this.#answerForwarded(
        owner,
        this.#peerOpId[slot]!,
        status,
        value === null ? null : value.subarray(valueAt, valueAt + valueLength),
        version,
        writer,
      );
      return;
    }
    const result: OpResult = {
      status,
      value: value === null ? null : value.slice(valueAt, valueAt + valueLength),
      version,
      writer,
    };
    if (slot === this.#submitting) {
      this.#answeredAtOnce = result;
      return;
    }
    const resolve = this.#resolvers[slot];
    assert(resolve !== null && resolve !== undefined, "a local client op completed with nobody waiting for it");
    this.#resolvers[slot] = null;
    resolve(result);
  }
}
