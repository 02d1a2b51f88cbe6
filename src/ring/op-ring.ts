// The two record types that travel over the rings between a node's shard workers, on top of the
// SPSC byte ring:
//   requests    worker that received the HTTP request -> worker of the key's shard (one client op)
//   completions worker of the key's shard -> the worker that forwarded it (the op's outcome, by opId)
//
// Producers encode straight into the ring (no allocation per record: the key is UTF-8 encoded by a
// charCodeAt loop, numbers go through the ring's DataView). Consumers decode into one reused object
// whose fields hold the current record; the key comes out as a string and the value as a copy,
// because the ring space is handed back to the producer on `release`.
//
// Request payload (little-endian, byte offsets):
//    0 u32 opId
//    4 u8  kind             OpKind
//    5 u8  reserved (0)
//    6 u16 keyBytes
//    8 f64 expectedVersion  (Cas; 0 otherwise) a safe integer: versions go beyond 2^32
//   16 f64 by               (Incr; 0 otherwise) a safe integer
//   24 u32 valueBytes       0xFFFFFFFF = no value
//   28 u32 expectedWriter   WriterId (Cas; 0 otherwise)
//   32 key (keyBytes of UTF-8), then the value (valueBytes)
//
// Completion payload (little-endian, byte offsets):
//    0 u32 opId
//    4 u8  status           OpStatus
//    5 u8  reserved (0)
//    6 u16 reserved (0)
//    8 f64 version          a safe integer
//   16 u32 valueBytes       0xFFFFFFFF = null
//   20 u32 writer           WriterId
//   24 value (valueBytes)

import { assert } from "../base/assert.ts";
import { isWriterId, type WriterId } from "../base/ids.ts";
import type { OpKind, OpStatus } from "../base/kinds.ts";
import { RingReader, RingWriter, ringRecordBytesMax, type RingWaitResult } from "./spsc-ring.ts";
import { isAscii, utf8Decode, utf8Encode, utf8Length, Utf8Kind } from "../base/utf8.ts";

const reqOpId = 0;
const reqKind = 4;
const reqReserved = 5;
const reqKeyBytes = 6;
const reqExpectedVersion = 8;
const reqBy = 16;
const reqValueBytes = 24;
const reqExpectedWriter = 28;
/** Fixed part of a request record, in front of the key. */
export const opRequestFixedBytes = 32;

const cplOpId = 0;
const cplStatus = 4;
const cplReserved = 5;
const cplVersion = 8;
const cplValueBytes = 16;
const cplWriter = 20;
/** Fixed part of a completion record, in front of the value. */
export const opCompletionFixedBytes = 24;

/** valueBytes word meaning "no value" (request) / null (completion). */
const valueAbsent = 0xffffffff;
/** The key length field is a u16. */
export const opKeyBytesMax = 0xffff;
const opKindMin = 1;
const opKindMax = 6;
const opStatusMax = 8;

/** Values up to this size are copied by a loop, larger ones by slice (a memcpy with more setup). */
const copyLoopBytesMax = 64;

/** A fresh (non-shared) copy of `bytes[start..end)`: the ring space is reused after release. */
function copyBytes(bytes: Uint8Array, start: number, end: number): Uint8Array {
  const length = end - start;
  if (length > copyLoopBytesMax) return bytes.slice(start, end);
  const copy = new Uint8Array(length);
  for (let i = 0; i < length; i++) copy[i] = bytes[start + i];
  return copy;
}

/** Payload bytes of a request record with this key and value size. */
export function opRequestBytes(keyBytes: number, valueBytes: number): number {
  return opRequestFixedBytes + keyBytes + valueBytes;
}

/** Payload bytes of a completion record with this value size. */
export function opCompletionBytes(valueBytes: number): number {
  return opCompletionFixedBytes + valueBytes;
}

/**
 * Smallest ring capacity (a power of two) whose records can hold any request with a key of up to
 * `keyBytesMax` and a value of up to `valueBytesMax`; the node sizes its rings with at least this.
 */
export function opRingCapacityBytesMin(keyBytesMax: number, valueBytesMax: number): number {
  const recordBytes = opRequestBytes(keyBytesMax, valueBytesMax);
  let capacityBytes = 1024;
  while (ringRecordBytesMax(capacityBytes) < recordBytes) capacityBytes *= 2;
  return capacityBytes;
}

/** Producer of request records (the forwarding worker). One per ring, in one thread. */
export class OpRequestWriter {
  readonly ring: RingWriter;

  constructor(sab: SharedArrayBuffer) {
    this.ring = new RingWriter(sab);
  }

  /**
   * Appends one request. Returns false when the ring is full (backpressure: answer Busy). Records
   * become visible to the worker at the next `commit`. `value` null means "no value" (Read,
   * Delete, Incr); `expectedVersion`/`expectedWriter` matter for Cas, `by` for Incr (pass 0 else).
   */
  push(
    opId: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: WriterId,
    by: number,
  ): boolean {
    assert(opId >>> 0 === opId, "opId must be a u32");
    assert(kind >= opKindMin && kind <= opKindMax, "request kind is not an OpKind");
    assert(
      Number.isSafeInteger(expectedVersion) && expectedVersion >= 0,
      "expectedVersion must be a safe integer >= 0",
    );
    assert(isWriterId(expectedWriter), "expectedWriter must be a WriterId (a u32)");
    assert(Number.isSafeInteger(by), "by must be a safe integer");
    const valueBytes = value === null ? 0 : value.length;
    const ring = this.ring;
    // First try the key's UTF-16 length as its byte length: exact for ASCII keys (the common
    // case, encoded in one pass), and a strict lower bound otherwise, in which case the encoder
    // runs out of room and the exact length is computed. Either way the reservation is exact, so
    // "full" means exactly "these bytes do not fit".
    let keyBytes = key.length;
    let payloadBytes = opRequestBytes(keyBytes, valueBytes);
    assert(keyBytes <= opKeyBytesMax, "request key longer than opKeyBytesMax");
    assert(
      payloadBytes <= ring.recordBytesMax,
      "request larger than the ring's recordBytesMax: size the ring with opRingCapacityBytesMin",
    );
    let at = ring.reserve(payloadBytes);
    if (at < 0) return false;
    let keyAt = at + opRequestFixedBytes;
    let keyEnd = utf8Encode(key, ring.bytes, keyAt, keyAt + keyBytes);
    if (keyEnd < 0) {
      ring.cancel();
      keyBytes = utf8Length(key);
      payloadBytes = opRequestBytes(keyBytes, valueBytes);
      assert(keyBytes <= opKeyBytesMax, "request key longer than opKeyBytesMax");
      assert(
        payloadBytes <= ring.recordBytesMax,
        "request larger than the ring's recordBytesMax: size the ring with opRingCapacityBytesMin",
      );
      at = ring.reserve(payloadBytes);
      if (at < 0) return false;
      keyAt = at + opRequestFixedBytes;
      keyEnd = utf8Encode(key, ring.bytes, keyAt, keyAt + keyBytes);
      assert(keyEnd === keyAt + keyBytes, "utf8Encode disagrees with utf8Length");
    }
    const view = ring.view;
    view.setUint32(at + reqOpId, opId, true);
    view.setUint8(at + reqKind, kind);
    view.setUint8(at + reqReserved, 0);
    view.setUint32(at + reqExpectedWriter, expectedWriter, true);
    view.setUint16(at + reqKeyBytes, keyBytes, true);
    view.setFloat64(at + reqExpectedVersion, expectedVersion, true);
    view.setFloat64(at + reqBy, by, true);
    view.setUint32(at + reqValueBytes, value === null ? valueAbsent : valueBytes, true);
    if (value !== null) ring.bytes.set(value, keyEnd);
    ring.seal(payloadBytes);
    return true;
  }

  /** Publishes the pushed requests (one tail store) and wakes the worker if it sleeps. */
  commit(): boolean {
    return this.ring.commit();
  }
}

/** Consumer of request records (the worker). Fields describe the record last returned by `next`. */
/**
 * What both record readers share: the ring, batch release, draining and waiting. Subclasses decode
 * one record into their own fields in `next()`.
 */
abstract class RecordReader {
  readonly ring: RingReader;

  constructor(sab: SharedArrayBuffer) {
    this.ring = new RingReader(sab);
  }

  /** Decodes the next record into this object's fields; false when none is available. */
  abstract next(): boolean;

  /** Hands the consumed records' space back to the producer (one head store per batch). */
  release(): void {
    this.ring.release();
  }

  /** Calls `handler(this)` for up to `recordsMax` records, then releases them. Returns how many. */
  drain(handler: (reader: this) => void, recordsMax: number): number {
    let count = 0;
    while (count < recordsMax && this.next()) {
      handler(this);
      count++;
    }
    this.release();
    return count;
  }

  wait(timeoutMs: number): RingWaitResult {
    return this.ring.wait(timeoutMs);
  }

  waitAsync(timeoutMs: number): Promise<RingWaitResult> {
    return this.ring.waitAsync(timeoutMs);
  }
}

export class OpRequestReader extends RecordReader {
  opId = 0;
  kind: OpKind = 0 as OpKind;
  key = "";
  /** A copy (the worker may keep it); null when the request carries no value. */
  value: Uint8Array | null = null;
  expectedVersion = 0;
  expectedWriter: WriterId = 0;
  by = 0;

  /** Decodes the next request into this object's fields; false when none is available. */
  next(): boolean {
    const ring = this.ring;
    const at = ring.next();
    if (at < 0) return false;
    const view = ring.view;
    const length = ring.recordBytes;
    assert(length >= opRequestFixedBytes, "request record shorter than its fixed part");
    this.opId = view.getUint32(at + reqOpId, true);
    this.kind = view.getUint8(at + reqKind) as OpKind;
    this.expectedWriter = view.getUint32(at + reqExpectedWriter, true);
    const keyBytes = view.getUint16(at + reqKeyBytes, true);
    this.expectedVersion = view.getFloat64(at + reqExpectedVersion, true);
    this.by = view.getFloat64(at + reqBy, true);
    const valueWord = view.getUint32(at + reqValueBytes, true);
    const valueBytes = valueWord === valueAbsent ? 0 : valueWord;
    // Paired with the producer's length computation: a mismatch means the ring is corrupt.
    assert(opRequestBytes(keyBytes, valueBytes) === length, "request record length disagrees with its fields");
    assert(this.kind >= opKindMin && this.kind <= opKindMax, "request record kind corrupt");
    const keyAt = at + opRequestFixedBytes;
    const keyEnd = keyAt + keyBytes;
    const bytes = ring.bytes;
    this.key = utf8Decode(bytes, keyAt, keyEnd, isAscii(bytes, keyAt, keyEnd) ? Utf8Kind.Ascii : Utf8Kind.Valid);
    this.value = valueWord === valueAbsent ? null : copyBytes(bytes, keyEnd, keyEnd + valueBytes);
    return true;
  }
}

/**
 * Producer of completion records (the worker). `push` has the argument list of
 * `Completions.complete` so a worker's Completions can forward to it directly.
 */
export class OpCompletionWriter {
  readonly ring: RingWriter;

  constructor(sab: SharedArrayBuffer) {
    this.ring = new RingWriter(sab);
  }

  /** Appends one completion. False when the ring is full: the caller keeps it and retries later. */
  push(opId: number, status: OpStatus, value: Uint8Array | null, version: number, writer: WriterId): boolean {
    assert(opId >>> 0 === opId, "opId must be a u32");
    assert(status >= 0 && status <= opStatusMax, "completion status is not an OpStatus");
    assert(Number.isSafeInteger(version) && version >= 0, "version must be a safe integer >= 0");
    assert(isWriterId(writer), "writer must be a WriterId (a u32)");
    const valueBytes = value === null ? 0 : value.length;
    const payloadBytes = opCompletionBytes(valueBytes);
    assert(
      payloadBytes <= this.ring.recordBytesMax,
      "completion larger than the ring's recordBytesMax: size the ring with opRingCapacityBytesMin",
    );
    const ring = this.ring;
    const at = ring.reserve(payloadBytes);
    if (at < 0) return false;
    const view = ring.view;
    view.setUint32(at + cplOpId, opId, true);
    view.setUint8(at + cplStatus, status);
    view.setUint8(at + cplReserved, 0);
    view.setUint16(at + cplReserved + 1, 0, true);
    view.setUint32(at + cplWriter, writer, true);
    view.setFloat64(at + cplVersion, version, true);
    view.setUint32(at + cplValueBytes, value === null ? valueAbsent : valueBytes, true);
    if (value !== null) ring.bytes.set(value, at + opCompletionFixedBytes);
    ring.seal(payloadBytes);
    return true;
  }

  /** Publishes the pushed completions and wakes the forwarding worker if it sleeps. */
  commit(): boolean {
    return this.ring.commit();
  }
}

/** Consumer of completion records (the forwarding worker). Fields describe the record last returned by `next`. */
export class OpCompletionReader extends RecordReader {
  opId = 0;
  status: OpStatus = 0 as OpStatus;
  /** A copy (it becomes the HTTP response body); null = absent. */
  value: Uint8Array | null = null;
  version = 0;
  writer: WriterId = 0;

  /** Decodes the next completion into this object's fields; false when none is available. */
  next(): boolean {
    const ring = this.ring;
    const at = ring.next();
    if (at < 0) return false;
    const view = ring.view;
    const length = ring.recordBytes;
    assert(length >= opCompletionFixedBytes, "completion record shorter than its fixed part");
    this.opId = view.getUint32(at + cplOpId, true);
    this.status = view.getUint8(at + cplStatus) as OpStatus;
    this.writer = view.getUint32(at + cplWriter, true);
    this.version = view.getFloat64(at + cplVersion, true);
    const valueWord = view.getUint32(at + cplValueBytes, true);
    const valueBytes = valueWord === valueAbsent ? 0 : valueWord;
    assert(opCompletionBytes(valueBytes) === length, "completion record length disagrees with its fields");
    const valueAt = at + opCompletionFixedBytes;
    this.value = valueWord === valueAbsent ? null : copyBytes(ring.bytes, valueAt, valueAt + valueBytes);
    return true;
  }
}
