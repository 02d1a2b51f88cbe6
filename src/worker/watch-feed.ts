// The change feed between the shard workers of one node, for watch streams: a key that goes Valid
// on shard s (a commit of this node, or an update it applied) reaches the watchers held by every
// other worker w over an SPSC ring s -> w, one per ordered pair, as a record of the key's new
// timestamp and value. No postMessage: the feed is on the data path (every update of a watched
// node). A shard writes to w's ring only while w holds watchers (its count in `counts`), so a node
// with no watchers pays one load per change; the local shard's changes go to its own worker's
// watchers directly.
//
// A ring never grows: when one is full (its worker fell behind by a ring's worth of changes) the
// writer raises `lost[s][w]`, and worker w closes every watcher it holds with `event: overflow`,
// since each of them may have missed a change (a watcher is never silently behind).
//
// Record (little-endian):  0 f64 version   8 f64 sequence (the shard's change number)
//                         16 u32 valueBytes 20 u16 keyBytes 22 u8 writer 23 u8 flags (1: a value; 0: deleted)
//                         24 key bytes, then value bytes

import { assert } from "../base/assert.ts";
import type { ItemView } from "../core/key-store.ts";
import { createRing, RingReader, RingWriter } from "../ring/spsc-ring.ts";

const feedHeaderBytes = 24;
const flagValue = 1;
/** Slots of `counts`: [w] watchers held by worker w, [shards] the node's total (for watchersMax). */
const countsTotalSlot = (shards: number): number => shards;

/** Watch streams a node holds at once (all workers together); more are answered 429. */
export const watchersMax = 1024;

/** Data bytes of each ring: room for a burst of changes (the largest, a 32 KiB value, fits many times over). */
export const watchFeedRingBytes = 1 << 20;

/** Allocated once by the node for every worker (see HttpStart.watch). */
export interface WatchFeedShared {
  /** Int32: watchers per worker, then the node's total. */
  counts: SharedArrayBuffer;
  /** Int32 [from * shards + to]: 1 when ring from -> to dropped a change (cleared by `to`). */
  lost: SharedArrayBuffer;
  /** rings[from][to] (null when from === to). */
  rings: (SharedArrayBuffer | null)[][];
}

export function createWatchFeed(shards: number, ringBytes = watchFeedRingBytes): WatchFeedShared {
  return {
    counts: new SharedArrayBuffer(4 * (shards + 1)),
    lost: new SharedArrayBuffer(4 * shards * shards),
    rings: Array.from({ length: shards }, (_, from) =>
      Array.from({ length: shards }, (_, to) => (from === to ? null : createRing(ringBytes))),
    ),
  };
}

/** A change as a reader hands it over: the key and value are lent (`bytes[...]`) for the call only. */
export interface FeedChange {
  shard: number;
  sequence: number;
  version: number;
  writer: number;
  bytes: Uint8Array;
  keyAt: number;
  keyBytes: number;
  /** -1: deleted. */
  valueAt: number;
  valueBytes: number;
}

export class WatchFeed {
  readonly self: number;
  readonly shards: number;
  readonly #counts: Int32Array;
  readonly #lost: Int32Array;
  readonly #writers: (RingWriter | null)[] = [];
  readonly #readers: (RingReader | null)[] = [];
  /** Changes this shard numbered (the sequence of the last one). */
  sequence = 0;
  /** Changes dropped on a full ring (by this writer). */
  dropped = 0;
  readonly #change: FeedChange = {
    shard: 0,
    sequence: 0,
    version: 0,
    writer: 0,
    bytes: new Uint8Array(0),
    keyAt: 0,
    keyBytes: 0,
    valueAt: -1,
    valueBytes: 0,
  };
  readonly #waits: (Promise<unknown> | null)[] = [];
  readonly #waitDone: (() => void)[] = [];

  constructor(self: number, shared: WatchFeedShared) {
    this.self = self;
    this.shards = shared.rings.length;
    assert(self >= 0 && self < this.shards, "a watch feed of a shard outside the node");
    this.#counts = new Int32Array(shared.counts);
    this.#lost = new Int32Array(shared.lost);
    for (let peer = 0; peer < this.shards; peer++) {
      const own = peer === self;
      this.#writers.push(own ? null : new RingWriter(shared.rings[self]![peer]!));
      this.#readers.push(own ? null : new RingReader(shared.rings[peer]![self]!));
      this.#waits.push(null);
      this.#waitDone.push(() => {
        this.#waits[peer] = null;
      });
    }
  }

  // Watcher counts (every worker reads them; each worker writes its own and the total) ----------

  /** Take a watcher slot of the node: false (nothing taken) when it has `watchersMax`. */
  addWatcher(watchersMax: number): boolean {
    const total = countsTotalSlot(this.shards);
    if (Atomics.add(this.#counts, total, 1) >= watchersMax) {
      Atomics.sub(this.#counts, total, 1);
      return false;
    }
    Atomics.add(this.#counts, this.self, 1);
    return true;
  }

  removeWatcher(): void {
    Atomics.sub(this.#counts, this.self, 1);
    Atomics.sub(this.#counts, countsTotalSlot(this.shards), 1);
  }

  /** Watchers of the whole node. */
  get nodeWatchers(): number {
    return Atomics.load(this.#counts, countsTotalSlot(this.shards));
  }

  /** Some worker of the node (this one included) holds a watcher: changes must be numbered and fed. */
  get anyWatcher(): boolean {
    return this.nodeWatchers > 0;
  }

  // Writing (shard `self`'s changes) ------------------------------------------------------------

  /** Number a change of this shard and write it to every other worker that holds watchers. Returns its sequence. */
  publish(view: ItemView): number {
    const sequence = ++this.sequence;
    for (let peer = 0; peer < this.shards; peer++) {
      const ring = this.#writers[peer];
      if (ring === null || ring === undefined || Atomics.load(this.#counts, peer) === 0) continue;
      const valueBytes = view.hasValue ? view.valueBytes : 0;
      const at = ring.reserve(feedHeaderBytes + view.keyBytes + valueBytes);
      if (at < 0) {
        this.dropped++;
        Atomics.store(this.#lost, this.self * this.shards + peer, 1);
        continue;
      }
      const dv = ring.view;
      dv.setFloat64(at, view.version, true);
      dv.setFloat64(at + 8, sequence, true);
      dv.setUint32(at + 16, valueBytes, true);
      dv.setUint16(at + 20, view.keyBytes, true);
      dv.setUint8(at + 22, view.writer);
      dv.setUint8(at + 23, view.hasValue ? flagValue : 0);
      const bytes = ring.bytes;
      const keyTo = at + feedHeaderBytes;
      for (let i = 0; i < view.keyBytes; i++) bytes[keyTo + i] = view.page[view.keyAt + i]!;
      if (valueBytes > 0) bytes.set(view.page.subarray(view.valueAt, view.valueAt + valueBytes), keyTo + view.keyBytes);
      ring.seal(feedHeaderBytes + view.keyBytes + valueBytes);
    }
    return sequence;
  }

  /** Publish what `publish` wrote (one tail store per ring), waking sleeping readers. */
  flush(): void {
    for (const ring of this.#writers) ring?.commit();
  }

  // Reading (changes of the other shards, for this worker's watchers) -----------------------

  /** Some shard dropped a change for this worker since the last call (and the flags are cleared). */
  takeLost(): boolean {
    let lost = false;
    for (let peer = 0; peer < this.shards; peer++) {
      if (peer === this.self) continue;
      if (Atomics.exchange(this.#lost, peer * this.shards + this.self, 0) !== 0) lost = true;
    }
    return lost;
  }

  /** Hand every change waiting on the rings from shard `from` (-1: every shard) to `handler`. Returns how many. */
  drain(from: number, handler: (change: FeedChange) => void): number {
    let count = 0;
    const change = this.#change;
    for (let peer = 0; peer < this.shards; peer++) {
      if (from >= 0 && peer !== from) continue;
      const reader = this.#readers[peer];
      if (reader === null || reader === undefined) continue;
      let at: number;
      while ((at = reader.next()) >= 0) {
        const dv = reader.view;
        change.shard = peer;
        change.version = dv.getFloat64(at, true);
        change.sequence = dv.getFloat64(at + 8, true);
        change.valueBytes = dv.getUint32(at + 16, true);
        change.keyBytes = dv.getUint16(at + 20, true);
        change.writer = dv.getUint8(at + 22);
        change.bytes = reader.bytes;
        change.keyAt = at + feedHeaderBytes;
        change.valueAt = (dv.getUint8(at + 23) & flagValue) !== 0 ? change.keyAt + change.keyBytes : -1;
        handler(change);
        count++;
      }
      reader.release();
    }
    return count;
  }

  /** Promises that resolve when changes arrive from another shard (reused across idle turns). */
  waits(out: Promise<unknown>[]): void {
    for (let peer = 0; peer < this.shards; peer++) {
      const reader = this.#readers[peer];
      if (reader === null || reader === undefined) continue;
      let wait = this.#waits[peer];
      if (wait === null || wait === undefined) {
        wait = reader.waitAsync(100).then(this.#waitDone[peer]);
        this.#waits[peer] = wait;
      }
      out.push(wait);
    }
  }
}
