// Single-producer single-consumer byte ring in a SharedArrayBuffer, for variable-length records.
//
// One ring connects exactly two threads: the thread holding the RingWriter and the thread holding
// the RingReader. Both are built from the same SharedArrayBuffer (`new RingWriter(sab)` in one
// thread, `new RingReader(sab)` in the other, after posting the SAB), and each class keeps its
// cursor in a private field of that thread, so a second writer or reader on the same ring would
// corrupt it: the type is the contract, there is no lock.
//
// Layout of the SharedArrayBuffer (byte offsets; Int32 words; little-endian like the host):
//
//     0  head           consumer's read position (stored by the reader, loaded by the writer)
//    64  tail           producer's publish position (stored by the writer, loaded and waited on by the reader)
//   128  readerSleeping 1 while the reader is about to wait or is waiting on `tail`
//   192  magic, capacityBytes   written once by createRing, read by both constructors
//   256  data region of capacityBytes (a power of two)
//
// Each control word has its own 64-byte cache line, so the producer's tail stores do not invalidate
// the line the consumer stores head into, and neither touches the sleep flag's line on the fast path.
//
// Positions are free-running 32-bit counters (wrapping), the data offset is `position & (capacity-1)`
// and `(tail - head) | 0` is the number of bytes in use, so full and empty are never ambiguous.
//
// A record is a 4-byte header holding the payload length, then the payload, padded so the next
// record starts on an 8-byte boundary. A record never wraps around the end of the data region: when
// it does not fit before the end, the producer writes a pad marker (-1) in the header slot and the
// record starts at offset 0. Hence a record may take at most half the capacity (`recordBytesMax`):
// the worst case pads away just under one record size and then needs one record size.
//
// Publication is batched: the writer reserves and seals many records, then `commit()` stores the
// tail once; the reader drains every record available and `release()` stores the head once.
// Atomics.store/load are sequentially consistent, so the plain byte writes before a tail store are
// visible to the reader after its tail load (and likewise for head and reuse of the space).
//
// Sleeping: a reader that finds the ring empty sets readerSleeping, re-checks the tail, and only
// then waits on the tail word (Atomics.wait/waitAsync compare it with the value it saw). The writer
// calls Atomics.notify after a commit only when it sees the flag set. Because both sides use
// sequentially consistent operations (writer: store tail, load flag; reader: store flag, load
// tail), at least one of them sees the other's store: either the reader's re-check finds the new
// records, or the writer sees the flag and notifies. A notify that lands before the wait starts is
// harmless because the wait then finds the tail changed ("not-equal") and returns at once.

import { assert } from "../base/assert.ts";

/** Bytes of control words in front of the data region (4 cache lines). */
export const ringControlBytes = 256;
/** Smallest and largest data capacity a ring may have (a power of two in between). */
export const ringCapacityBytesMin = 1024;
export const ringCapacityBytesMax = 1 << 30;
/** Header in front of every record: its payload length in bytes (u32, or -1 for the pad marker). */
export const ringRecordHeaderBytes = 4;
/** Records start on this boundary so that headers are aligned Int32 words. */
export const ringRecordAlignBytes = 8;

const headIndex = 0; // byte 0
const tailIndex = 16; // byte 64
const sleepIndex = 32; // byte 128
const magicIndex = 48; // byte 192
const capacityIndex = 49; // byte 196
const ringMagic = 0x474e4952; // "RING"
const padMarker = -1;
const dataWordIndex = ringControlBytes >> 2;

/** Largest record payload a ring of `capacityBytes` accepts (see the layout comment). */
export function ringRecordBytesMax(capacityBytes: number): number {
  return capacityBytes / 2 - ringRecordHeaderBytes;
}

/** Bytes one record of `payloadBytes` takes in the data region, header and padding included. */
export function ringRecordFootprintBytes(payloadBytes: number): number {
  return (payloadBytes + ringRecordHeaderBytes + ringRecordAlignBytes - 1) & ~(ringRecordAlignBytes - 1);
}

/** Allocates a ring's SharedArrayBuffer with `capacityBytes` of data (a power of two). */
export function createRing(capacityBytes: number): SharedArrayBuffer {
  assert(Number.isInteger(capacityBytes), "ring capacity must be an integer");
  assert(capacityBytes >= ringCapacityBytesMin, "ring capacity below ringCapacityBytesMin");
  assert(capacityBytes <= ringCapacityBytesMax, "ring capacity above ringCapacityBytesMax");
  assert((capacityBytes & (capacityBytes - 1)) === 0, "ring capacity must be a power of two");
  const sab = new SharedArrayBuffer(ringControlBytes + capacityBytes);
  const ctrl = new Int32Array(sab, 0, dataWordIndex);
  ctrl[magicIndex] = ringMagic;
  ctrl[capacityIndex] = capacityBytes;
  return sab;
}

/** What a wait ended with. "ready": records were already available, so it did not wait. */
export type RingWaitResult = "ready" | "ok" | "not-equal" | "timed-out";

function ringCapacity(sab: SharedArrayBuffer): number {
  assert(sab instanceof SharedArrayBuffer, "a ring lives in a SharedArrayBuffer");
  assert(sab.byteLength > ringControlBytes, "ring buffer smaller than its control block");
  const ctrl = new Int32Array(sab, 0, dataWordIndex);
  assert(Atomics.load(ctrl, magicIndex) === ringMagic, "not a ring buffer (bad magic): use createRing");
  const capacityBytes = Atomics.load(ctrl, capacityIndex);
  assert(capacityBytes + ringControlBytes === sab.byteLength, "ring capacity disagrees with the buffer size");
  return capacityBytes;
}

/**
 * The producer side of a ring. Exactly one thread may hold a RingWriter for a given buffer.
 *
 *     const at = w.reserve(n);       // -1: full (backpressure: answer Busy or retry later)
 *     w.bytes.set(payload, at);      // or w.view.setUint32(at, ..., true) ...
 *     w.seal(n);                     // the record is complete (not yet visible)
 *     ... more records ...
 *     w.commit();                    // publish them all with one tail store
 */
export class RingWriter {
  /** The data region; payload offsets from `reserve` index into it. */
  readonly bytes: Uint8Array;
  /** The data region as a DataView, for little-endian fields. */
  readonly view: DataView;
  readonly capacityBytes: number;
  /** Largest payload `reserve` accepts: half the capacity minus the header. */
  readonly recordBytesMax: number;
  /** How many times a commit woke a sleeping reader (Atomics.notify calls). */
  notifyCount = 0;

  readonly #ctrl: Int32Array;
  readonly #words: Int32Array;
  readonly #mask: number;
  /** Local tail: includes sealed records not yet committed. */
  #tail: number;
  /** Last head loaded from the reader; reloaded only when the ring looks full. */
  #headCached: number;
  #committedTail: number;
  /** Start offset of the open reservation's record header, or -1. */
  #reservedAt = -1;
  /** Bytes of padding the open reservation skips to reach offset 0 (0 = no wrap). */
  #reservedPadBytes = 0;
  #reservedBytesMax = 0;

  constructor(sab: SharedArrayBuffer) {
    this.capacityBytes = ringCapacity(sab);
    this.recordBytesMax = ringRecordBytesMax(this.capacityBytes);
    this.#ctrl = new Int32Array(sab, 0, dataWordIndex);
    this.#words = new Int32Array(sab);
    this.bytes = new Uint8Array(sab, ringControlBytes, this.capacityBytes);
    this.view = new DataView(sab, ringControlBytes, this.capacityBytes);
    this.#mask = this.capacityBytes - 1;
    // Resume from the published tail, so a writer can be rebuilt on a ring in use (a new HTTP
    // thread object for a running worker); there is still only one writer at a time.
    this.#tail = Atomics.load(this.#ctrl, tailIndex);
    this.#committedTail = this.#tail;
    this.#headCached = Atomics.load(this.#ctrl, headIndex);
  }

  /**
   * Reserves room for one record of up to `payloadBytesMax` bytes. Returns the payload's offset in
   * `bytes`/`view`, or -1 when the ring has no room (the ring never grows). Exactly one reservation
   * may be open: `seal` (or `cancel`) it before the next.
   */
  reserve(payloadBytesMax: number): number {
    assert(this.#reservedAt < 0, "ring reserve while a reservation is open");
    assert(payloadBytesMax >= 0, "ring record length must not be negative");
    assert(payloadBytesMax <= this.recordBytesMax, "ring record larger than recordBytesMax");
    const footprintBytes = ringRecordFootprintBytes(payloadBytesMax);
    const offset = this.#tail & this.#mask;
    const toEndBytes = this.capacityBytes - offset;
    const padBytes = footprintBytes > toEndBytes ? toEndBytes : 0;
    const needBytes = padBytes + footprintBytes;
    if (((this.#tail - this.#headCached) | 0) + needBytes > this.capacityBytes) {
      this.#headCached = Atomics.load(this.#ctrl, headIndex);
      const usedBytes = (this.#tail - this.#headCached) | 0;
      assert(usedBytes >= 0 && usedBytes <= this.capacityBytes, "ring head is ahead of the tail");
      if (usedBytes + needBytes > this.capacityBytes) return -1;
    }
    this.#reservedPadBytes = padBytes;
    this.#reservedBytesMax = payloadBytesMax;
    this.#reservedAt = padBytes === 0 ? offset : 0;
    return this.#reservedAt + ringRecordHeaderBytes;
  }

  /** Completes the open reservation with its actual length (at most what was reserved). */
  seal(payloadBytes: number): void {
    assert(this.#reservedAt >= 0, "ring seal without a reservation");
    assert(payloadBytes >= 0 && payloadBytes <= this.#reservedBytesMax, "ring seal longer than the reservation");
    const words = this.#words;
    if (this.#reservedPadBytes !== 0) {
      words[dataWordIndex + ((this.#tail & this.#mask) >> 2)] = padMarker;
    }
    words[dataWordIndex + (this.#reservedAt >> 2)] = payloadBytes;
    this.#tail = (this.#tail + this.#reservedPadBytes + ringRecordFootprintBytes(payloadBytes)) | 0;
    this.#reservedAt = -1;
  }

  /** Abandons the open reservation; nothing of it becomes visible. */
  cancel(): void {
    this.#reservedAt = -1;
  }

  /** Copies one record in. False (and nothing written) when the ring is full. Commit to publish. */
  push(payload: Uint8Array): boolean {
    const at = this.reserve(payload.length);
    if (at < 0) return false;
    this.bytes.set(payload, at);
    this.seal(payload.length);
    return true;
  }

  /** Sealed records not yet published by `commit`. */
  get pendingBytes(): number {
    return (this.#tail - this.#committedTail) | 0;
  }

  /**
   * Publishes every sealed record with one tail store, and wakes the reader if it sleeps.
   * Returns true when it called Atomics.notify.
   */
  commit(): boolean {
    assert(this.#reservedAt < 0, "ring commit while a reservation is open");
    if (this.#tail === this.#committedTail) return false;
    Atomics.store(this.#ctrl, tailIndex, this.#tail);
    this.#committedTail = this.#tail;
    if (Atomics.load(this.#ctrl, sleepIndex) === 0) return false;
    Atomics.notify(this.#ctrl, tailIndex);
    this.notifyCount++;
    return true;
  }

  /** True while the reader has declared that it waits (or is about to) for records. */
  get readerSleeping(): boolean {
    return Atomics.load(this.#ctrl, sleepIndex) !== 0;
  }

  /** Bytes free as of the last head this writer loaded (refreshes it). */
  freeBytes(): number {
    this.#headCached = Atomics.load(this.#ctrl, headIndex);
    return this.capacityBytes - ((this.#tail - this.#headCached) | 0);
  }
}

/** Called for each record by `RingReader.drain`: the payload is `bytes[at .. at+length)`, valid only during the call. */
export type RingRecordHandler = (bytes: Uint8Array, at: number, length: number) => void;

/**
 * The consumer side of a ring. Exactly one thread may hold a RingReader for a given buffer.
 *
 *     let at;
 *     while ((at = r.next()) >= 0) use(r.bytes, at, r.recordBytes);
 *     r.release();                   // one head store for the whole batch: the space is reused after it
 *     await r.waitAsync(100);        // or r.wait(100) in a worker
 */
export class RingReader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly capacityBytes: number;
  readonly recordBytesMax: number;
  /** Payload length of the record last returned by `next`. */
  recordBytes = 0;
  /** How many times this reader actually waited (the ring was empty after setting the flag). */
  waitCount = 0;

  readonly #ctrl: Int32Array;
  readonly #words: Int32Array;
  readonly #mask: number;
  /** Local head: records returned by `next` but not yet released are behind it. */
  #head: number;
  #releasedHead: number;
  /** Last tail loaded from the writer; reloaded only when the reader catches up with it. */
  #tailCached: number;
  #waiting = false;
  readonly #afterAsyncWait: (result: "ok" | "not-equal" | "timed-out") => RingWaitResult;

  constructor(sab: SharedArrayBuffer) {
    this.capacityBytes = ringCapacity(sab);
    this.recordBytesMax = ringRecordBytesMax(this.capacityBytes);
    this.#ctrl = new Int32Array(sab, 0, dataWordIndex);
    this.#words = new Int32Array(sab);
    this.bytes = new Uint8Array(sab, ringControlBytes, this.capacityBytes);
    this.view = new DataView(sab, ringControlBytes, this.capacityBytes);
    this.#mask = this.capacityBytes - 1;
    this.#head = Atomics.load(this.#ctrl, headIndex);
    this.#releasedHead = this.#head;
    this.#tailCached = Atomics.load(this.#ctrl, tailIndex);
    // Built once so that an asynchronous wait allocates only the engine's own promise.
    this.#afterAsyncWait = (result) => {
      Atomics.store(this.#ctrl, sleepIndex, 0);
      this.#waiting = false;
      return result;
    };
  }

  /**
   * Moves to the next record and returns its payload offset in `bytes`/`view` (its length is in
   * `recordBytes`), or -1 when no published record is left. The record stays valid until `release`.
   */
  next(): number {
    for (;;) {
      if (this.#head === this.#tailCached) {
        this.#tailCached = Atomics.load(this.#ctrl, tailIndex);
        if (this.#head === this.#tailCached) return -1;
      }
      const offset = this.#head & this.#mask;
      const length = this.#words[dataWordIndex + (offset >> 2)];
      if (length === padMarker) {
        this.#head = (this.#head + this.capacityBytes - offset) | 0;
        continue;
      }
      assert(length >= 0 && length <= this.recordBytesMax, "ring record header corrupt");
      const footprintBytes = ringRecordFootprintBytes(length);
      assert(offset + footprintBytes <= this.capacityBytes, "ring record crosses the end of the ring");
      assert(((this.#tailCached - this.#head) | 0) >= footprintBytes, "ring record extends past the tail");
      this.#head = (this.#head + footprintBytes) | 0;
      this.recordBytes = length;
      return offset + ringRecordHeaderBytes;
    }
  }

  /** Hands every record consumed by `next` back to the writer with one head store. */
  release(): void {
    if (this.#head === this.#releasedHead) return;
    Atomics.store(this.#ctrl, headIndex, this.#head);
    this.#releasedHead = this.#head;
  }

  /**
   * Calls `handler` for up to `recordsMax` available records, then releases them. Returns how many.
   * The bound keeps one busy ring from starving the rest of the caller's loop.
   */
  drain(handler: RingRecordHandler, recordsMax: number): number {
    let count = 0;
    while (count < recordsMax) {
      const at = this.next();
      if (at < 0) break;
      handler(this.bytes, at, this.recordBytes);
      count++;
    }
    this.release();
    return count;
  }

  /** True when a record is available to `next` (loads the tail). */
  hasRecords(): boolean {
    if (this.#head !== this.#tailCached) return true;
    this.#tailCached = Atomics.load(this.#ctrl, tailIndex);
    return this.#head !== this.#tailCached;
  }

  /**
   * Declares the reader asleep unless records arrived meanwhile. Returns true with the flag set
   * when the ring is empty (wait on tail === local head), false with it clear when records are
   * available. Consumed records are released first: a sleeping reader must not hold space.
   */
  #prepareSleep(): boolean {
    assert(!this.#waiting, "ring reader waits twice at once");
    this.release();
    if (this.hasRecords()) return false;
    Atomics.store(this.#ctrl, sleepIndex, 1);
    // Re-check after publishing the flag: a commit between the first check and the flag store did
    // not notify, so its records must be seen here.
    const tail = Atomics.load(this.#ctrl, tailIndex);
    if (tail !== this.#head) {
      Atomics.store(this.#ctrl, sleepIndex, 0);
      this.#tailCached = tail;
      return false;
    }
    return true;
  }

  /** Blocks this thread until records arrive or `timeoutMs` passes (Infinity: no limit). */
  wait(timeoutMs: number): RingWaitResult {
    if (!this.#prepareSleep()) return "ready";
    this.waitCount++;
    // Atomics.wait returns "not-equal" at once if a commit already moved the tail.
    const result = Atomics.wait(this.#ctrl, tailIndex, this.#head, timeoutMs);
    Atomics.store(this.#ctrl, sleepIndex, 0);
    return result;
  }

  /**
   * Resolves when records arrive or `timeoutMs` passes, without blocking the thread (the HTTP
   * thread's event loop keeps running). At most one wait may be outstanding.
   */
  waitAsync(timeoutMs: number): Promise<RingWaitResult> {
    if (!this.#prepareSleep()) return readyPromise;
    this.waitCount++;
    this.#waiting = true;
    const r = Atomics.waitAsync(this.#ctrl, tailIndex, this.#head, timeoutMs);
    if (!r.async) return Promise.resolve(this.#afterAsyncWait(r.value));
    return r.value.then(this.#afterAsyncWait);
  }
}

const readyPromise: Promise<RingWaitResult> = Promise.resolve("ready");
