// The rings between the shard workers of one node. Every shard worker serves HTTP; an op whose key
// lives on another shard goes to that shard's worker over a request ring, and its answer comes back
// over a completion ring: one of each per ordered pair of workers, so every ring keeps exactly one
// producer and one consumer thread (the SPSC contract of spsc-ring.ts).
//
// Batching: records are pushed as requests arrive and published by `flush` (one tail store per ring)
// once per loop turn; the consumer drains whole batches in its loop turn. A sleeping consumer is
// woken by the ring's own sleep flag and notify (see `waits`), so a busy pair never notifies.
//
// This end (worker `self`) holds, for every peer p: the writer of requests self->p and the reader
// of their completions, and the reader of requests p->self and the writer of their completions.

import { assert } from "../base/assert.ts";
import type { NodeId } from "../base/ids.ts";
import { OpStatus, type OpKind } from "../base/kinds.ts";
import type { OpResult } from "../base/kv-backend.ts";
import {
  OpCompletionReader,
  OpCompletionWriter,
  OpRequestReader,
  OpRequestWriter,
  opRingCapacityBytesMin,
} from "../ring/op-ring.ts";
import { createRing } from "../ring/spsc-ring.ts";
import { busyResult } from "./client-ops.ts";

/** The node allocates these once and gives every worker the whole set (see PeerLinks). */
export interface PeerRings {
  /** requests[from][to]: ops that worker `from` forwards to worker `to` (null when from === to). */
  requests: (SharedArrayBuffer | null)[][];
  /** completions[from][to]: the answers worker `to` sends back for them. */
  completions: (SharedArrayBuffer | null)[][];
}

/**
 * Capacity of each ring: room for a burst of forwarded values (the largest record, a 32 KiB value,
 * must fit, and a full ring answers Busy). Pages a ring never reaches are never touched.
 */
export const peerRingBytesMin = 1 << 20;

/** The rings of a node of `shards` workers; `ringBytesMin` below the default only for tests (the smallest ring that holds any record). */
export function createPeerRings(
  shards: number,
  keyBytesMax: number,
  valueBytesMax: number,
  ringBytesMin = peerRingBytesMin,
): PeerRings {
  const bytes = Math.max(ringBytesMin, opRingCapacityBytesMin(keyBytesMax, valueBytesMax));
  const square = (): (SharedArrayBuffer | null)[][] =>
    Array.from({ length: shards }, (_, from) =>
      Array.from({ length: shards }, (_, to) => (from === to ? null : createRing(bytes))),
    );
  return { requests: square(), completions: square() };
}

type Resolver = (result: OpResult) => void;

/** Called for each op another worker forwarded; the reader's fields describe it during the call. */
export type OnForwardedRequest = (peer: number, reader: OpRequestReader) => void;

interface Backlogged {
  opId: number;
  status: OpStatus;
  value: Uint8Array | null;
  version: number;
  writer: NodeId;
}

/** How long a sleeping worker's wait on one inbound ring lasts before it is renewed (the loop has its own idle timer). */
const ringWaitMs = 100;

const unknownResult: OpResult = Object.freeze({ status: OpStatus.Unknown, value: null, version: 0, writer: 0 });
const unavailableResult: OpResult = Object.freeze({ status: OpStatus.Unavailable, value: null, version: 0, writer: 0 });

export class PeerLinks {
  readonly self: number;
  readonly shards: number;
  readonly #requestsOut: (OpRequestWriter | null)[] = [];
  readonly #completionsIn: (OpCompletionReader | null)[] = [];
  readonly #requestsIn: (OpRequestReader | null)[] = [];
  readonly #completionsOut: (OpCompletionWriter | null)[] = [];
  /** Answers the completion rings had no room for, per peer, retried by flush (bounded by that peer's forwards). */
  readonly #backlogs: Backlogged[][] = [];
  /** Ops this worker forwarded and waits for: slot = the op id on the wire. */
  readonly #resolvers: (Resolver | null)[];
  readonly #target: Int16Array;
  readonly #free: Int32Array;
  #freeCount: number;
  /** Pending waits on the inbound rings (index: peer * 2 + 0 requests, + 1 completions). */
  readonly #waits: (Promise<unknown> | null)[] = [];
  readonly #waitDone: (() => void)[] = [];
  readonly #onRequest: OnForwardedRequest;
  #draining = -1;
  /** Peers whose worker failed: nothing goes to them and nothing from them is read any more. */
  readonly #failed: boolean[] = [];
  #stopped = false;
  forwardedOut = 0;
  forwardedIn = 0;

  /** `onRequest` gets every op forwarded to this worker; answer it with `answer(peer, reader.opId, ...)`. */
  constructor(self: number, rings: PeerRings, forwardsMax: number, onRequest: OnForwardedRequest) {
    this.#onRequest = onRequest;
    this.self = self;
    this.shards = rings.requests.length;
    assert(self >= 0 && self < this.shards, "peer links of a shard outside the node");
    assert(
      Number.isInteger(forwardsMax) && forwardsMax >= 1 && forwardsMax <= 0x7fff_ffff,
      "forwardsMax must be a positive integer",
    );
    for (let peer = 0; peer < this.shards; peer++) {
      const own = peer === self;
      this.#requestsOut.push(own ? null : new OpRequestWriter(rings.requests[self]![peer]!));
      this.#completionsIn.push(own ? null : new OpCompletionReader(rings.completions[self]![peer]!));
      this.#requestsIn.push(own ? null : new OpRequestReader(rings.requests[peer]![self]!));
      this.#completionsOut.push(own ? null : new OpCompletionWriter(rings.completions[peer]![self]!));
      this.#backlogs.push([]);
      this.#failed.push(false);
      for (let kind = 0; kind < 2; kind++) {
        const index = peer * 2 + kind;
        this.#waits.push(null);
        this.#waitDone.push(() => {
          this.#waits[index] = null;
        });
      }
    }
    this.#resolvers = new Array<Resolver | null>(forwardsMax).fill(null);
    this.#target = new Int16Array(forwardsMax).fill(-1);
    this.#free = new Int32Array(forwardsMax);
    for (let i = 0; i < forwardsMax; i++) this.#free[i] = forwardsMax - 1 - i;
    this.#freeCount = forwardsMax;
  }

  /** Ops forwarded by this worker and not answered yet. */
  get forwardsInFlight(): number {
    return this.#resolvers.length - this.#freeCount;
  }

  /**
   * Forward an op to shard `peer`'s worker. It is published at the next `flush`. Busy when this
   * worker has forwardsMax ops out or the ring is full (nothing was started).
   */
  forward(
    peer: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
  ): OpResult | Promise<OpResult> {
    const ring = this.#requestsOut[peer];
    assert(ring !== null && ring !== undefined, "forward to this worker itself or to a shard outside the node");
    if (this.#stopped || this.#failed[peer]) return unavailableResult;
    if (this.#freeCount === 0) return busyResult;
    const opId = this.#free[--this.#freeCount]!;
    if (!ring.push(opId, kind, key, value, expectedVersion, expectedWriter, by)) {
      this.#free[this.#freeCount++] = opId;
      return busyResult;
    }
    this.#target[opId] = peer;
    this.forwardedOut++;
    return new Promise<OpResult>((resolve) => {
      this.#resolvers[opId] = resolve;
    });
  }

  /** Hands up to `recordsMax` ops forwarded by each peer to `onRequest`. Returns how many. */
  drainRequests(recordsMax: number): number {
    if (this.#stopped) return 0;
    let count = 0;
    for (let peer = 0; peer < this.shards; peer++) {
      const reader = this.#requestsIn[peer];
      if (reader === null || reader === undefined || this.#failed[peer]) continue;
      this.#draining = peer;
      count += reader.drain(this.#deliverRequest, recordsMax);
    }
    this.#draining = -1;
    this.forwardedIn += count;
    return count;
  }

  readonly #deliverRequest = (reader: OpRequestReader): void => {
    this.#onRequest(this.#draining, reader);
  };

  /** Resolves the forwarded ops whose answers arrived (up to `recordsMax` per peer). Returns how many. */
  drainCompletions(recordsMax: number): number {
    if (this.#stopped) return 0;
    let count = 0;
    for (let peer = 0; peer < this.shards; peer++) {
      const reader = this.#completionsIn[peer];
      if (reader === null || reader === undefined || this.#failed[peer]) continue;
      count += reader.drain(this.#resolveCompletion, recordsMax);
    }
    return count;
  }

  readonly #resolveCompletion = (c: OpCompletionReader): void => {
    const resolve = this.#resolvers[c.opId];
    assert(
      resolve !== null && resolve !== undefined && this.#target[c.opId] !== -1,
      "an answer for an op this worker did not forward",
    );
    this.#release(c.opId);
    resolve({ status: c.status, value: c.value, version: c.version, writer: c.writer });
  };

  #release(opId: number): void {
    this.#resolvers[opId] = null;
    this.#target[opId] = -1;
    this.#free[this.#freeCount++] = opId;
  }

  /** Answer an op that `peer` forwarded (its id `opId`); published at the next `flush`. `value` is lent: copied at once. */
  answer(
    peer: number,
    opId: number,
    status: OpStatus,
    value: Uint8Array | null,
    version: number,
    writer: NodeId,
  ): void {
    const ring = this.#completionsOut[peer];
    assert(ring !== null && ring !== undefined, "answer to this worker itself or to a shard outside the node");
    if (this.#failed[peer]) return; // nobody is there to read it
    const backlog = this.#backlogs[peer]!;
    if (backlog.length === 0 && ring.push(opId, status, value, version, writer)) return;
    // Every op gets exactly one answer: keep it until the ring has room. The value is lent by the
    // replica (a read's lies in its store, which a later write overwrites in place): keep a copy.
    // Every worker of a node has the same forwardsMax, so the peer has at most that many ops out,
    // and at most that many answers wait.
    assert(
      backlog.length < this.#resolvers.length,
      "completion backlog holds at most forwardsMax answers (a peer keeps at most forwardsMax ops out)",
    );
    backlog.push({ opId, status, value: value === null ? null : value.slice(), version, writer });
  }

  /** Publishes every pushed request and answer (one tail store per ring), waking sleeping peers. */
  flush(): void {
    for (let peer = 0; peer < this.shards; peer++) {
      if (peer === this.self) continue;
      const backlog = this.#backlogs[peer]!;
      const ring = this.#completionsOut[peer]!;
      if (backlog.length > 0) {
        let sent = 0;
        while (sent < backlog.length) {
          const c = backlog[sent]!;
          if (!ring.push(c.opId, c.status, c.value, c.version, c.writer)) break;
          sent++;
        }
        backlog.splice(0, sent);
      }
      ring.commit();
      this.#requestsOut[peer]!.commit();
    }
  }

  /**
   * Adds to `out` a promise per inbound ring that resolves when records arrive on it (at once if
   * some are there). A wait stays pending across loop turns until it ends, and is reused, so an
   * idle turn creates at most one wait per ring. Completion rings are watched only while this
   * worker has forwards out: nothing else can arrive on them.
   */
  waits(out: Promise<unknown>[]): void {
    const watchCompletions = this.forwardsInFlight > 0;
    for (let peer = 0; peer < this.shards; peer++) {
      if (peer === this.self || this.#failed[peer]) continue;
      this.#watch(peer * 2, this.#requestsIn[peer]!, out);
      if (watchCompletions) this.#watch(peer * 2 + 1, this.#completionsIn[peer]!, out);
    }
  }

  #watch(index: number, reader: OpRequestReader | OpCompletionReader, out: Promise<unknown>[]): void {
    let wait = this.#waits[index];
    if (wait === null || wait === undefined) {
      wait = reader.waitAsync(ringWaitMs).then(this.#waitDone[index]);
      this.#waits[index] = wait;
    }
    out.push(wait);
  }

  /**
   * Shard `peer`'s worker failed: answer Unknown every op forwarded to it (it may have been applied
   * there), and from now on forward nothing to it and read nothing from it, so that no late answer
   * can meet a reused op id.
   */
  peerFailed(peer: number): void {
    if (peer === this.self || this.#failed[peer]) return;
    this.#failed[peer] = true;
    this.#failForwards(peer);
  }

  /** This worker stops: answer Unknown every op still out, and stop reading. */
  stop(): void {
    this.#stopped = true;
    this.#failForwards(-1);
  }

  #failForwards(peer: number): void {
    for (let opId = 0; opId < this.#resolvers.length; opId++) {
      const resolve = this.#resolvers[opId];
      if (resolve === null || resolve === undefined) continue;
      if (peer >= 0 && this.#target[opId] !== peer) continue;
      this.#release(opId);
      resolve(unknownResult);
    }
  }
}
