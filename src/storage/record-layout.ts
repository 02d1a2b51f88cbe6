// One record as the log and the snapshot store it. Little-endian, 24-byte header, then the fields:
//
//   0  u32  length     bytes of the whole record, header included
//   4  u32  crc        CRC32C of bytes [8, length): everything after this field
//   8  u8   kind       RecordKind
//   9  u8   flags      RecordFlag bits: valid, tombstone, rmw
//  10  u16  keyBytes
//  12  u32  writer     (u32 so writer ids can grow beyond today's 0..31)
//  16  u64  version    an integer below 2^53 (exact in a JS number), stored as two u32 halves
//  24  key bytes, then value bytes (length - 24 - keyBytes; none for a tombstone)
//
// The length comes first so a reader can frame a record before it checks it; the CRC covers the
// kind and every field, so a flipped bit anywhere but in the length is caught by the CRC, and a
// flipped length is caught by the CRC of the misframed bytes. The layer knows nothing of Hermes:
// key, version, writer and value are opaque; "valid" is one bit the caller gives meaning to.

import { crc32c } from "./crc32c.ts";

export const recordHeaderBytes = 24;

/** Largest key a record can hold (the u16 field). Callers pass their own, smaller limit. */
export const recordKeyBytesMax = 0xffff;

/** Largest value a record can hold: bounds the reader's buffer and rejects absurd lengths on disk. */
export const recordValueBytesMax = 64 * 1024 * 1024;

/** Largest version: versions above it would not be exact in a JS number. */
export const recordVersionMax = Number.MAX_SAFE_INTEGER;

export const enum RecordKind {
  /** One key: the log's only kind, and the snapshot's body. */
  Entry = 1,
  /** A snapshot's first record: version = the first log segment it does not cover, writer = format. */
  SnapshotHeader = 2,
  /** A snapshot's last record: version = its entry count, writer = CRC32C of every byte before it. */
  SnapshotTrailer = 3,
  /**
   * A log segment's last record, written when the segment is closed for the next one (or sealed by
   * recovery): version = the segment's number, writer = its count of entries. Without it a segment
   * cut at a record boundary would look whole.
   */
  SegmentEnd = 4,
}

export const enum RecordFlag {
  /** The caller's "valid" state; without it the entry is kept in a not-valid state. */
  Valid = 1,
  /** No value: the key is deleted. */
  Tombstone = 2,
  /** The caller's read-modify-write bit, carried opaquely. */
  Rmw = 4,
}

const flagsKnown = RecordFlag.Valid | RecordFlag.Tombstone | RecordFlag.Rmw;

/** Bytes a record takes on disk. */
export function recordBytes(keyBytes: number, valueBytes: number): number {
  return recordHeaderBytes + keyBytes + valueBytes;
}

/**
 * Writes one record at `at` in `out` (which must have room) and returns its length. The key is
 * key[keyAt, keyAt + keyLength) and the value value[valueAt, valueAt + valueLength) (null: a
 * tombstone), as the core lends them. Fields are checked by the caller (checkEntry); this lays out
 * bytes and computes the CRC, allocating nothing.
 */
export function encodeRecord(
  out: Uint8Array,
  view: DataView,
  at: number,
  kind: RecordKind,
  flags: number,
  key: Uint8Array,
  keyAt: number,
  keyLength: number,
  version: number,
  writer: number,
  value: Uint8Array | null,
  valueAt: number,
  valueLength: number,
): number {
  const valueBytes = value === null ? 0 : valueLength;
  const length = recordHeaderBytes + keyLength + valueBytes;
  view.setUint32(at, length, true);
  out[at + 8] = kind;
  out[at + 9] = value === null ? flags | RecordFlag.Tombstone : flags & ~RecordFlag.Tombstone;
  view.setUint16(at + 10, keyLength, true);
  view.setUint32(at + 12, writer, true);
  view.setUint32(at + 16, version % 0x1_0000_0000, true);
  view.setUint32(at + 20, Math.floor(version / 0x1_0000_0000), true);
  copyInto(out, at + recordHeaderBytes, key, keyAt, keyLength);
  if (value !== null) copyInto(out, at + recordHeaderBytes + keyLength, value, valueAt, valueBytes);
  view.setUint32(at + 4, crc32c(out, at + 8, at + length), true);
  return length;
}

/** Ranges up to this size are copied by a loop; larger ones by set(), whose view and setup then pay off. */
const copyLoopBytesMax = 64;

function copyInto(to: Uint8Array, toAt: number, from: Uint8Array, fromAt: number, length: number): void {
  if (length <= copyLoopBytesMax) {
    for (let i = 0; i < length; i++) to[toAt + i] = from[fromAt + i]!;
  } else {
    to.set(from.subarray(fromAt, fromAt + length), toAt);
  }
}

/** Why the bytes at `at` are not a whole, intact record, or null if they are one. */
export function recordProblem(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  end: number,
  bytesMax: number,
): string | null {
  if (end - at < recordHeaderBytes) return `short record header: ${end - at} of ${recordHeaderBytes} bytes`;
  const length = view.getUint32(at, true);
  if (length < recordHeaderBytes || length > bytesMax) return `impossible record length ${length}`;
  if (end - at < length) return `short record: ${end - at} of ${length} bytes`;
  const kind = bytes[at + 8]!;
  if (kind < RecordKind.Entry || kind > RecordKind.SegmentEnd) return `unknown record kind ${kind}`;
  const flags = bytes[at + 9]!;
  if ((flags & ~flagsKnown) !== 0) return `unknown record flags ${flags}`;
  const keyBytes = view.getUint16(at + 10, true);
  if (recordHeaderBytes + keyBytes > length) return `key of ${keyBytes} bytes overruns a record of ${length}`;
  if (flags & RecordFlag.Tombstone && recordHeaderBytes + keyBytes !== length) return "tombstone with value bytes";
  if (view.getUint32(at + 20, true) > 0x1f_ffff) return "version above 2^53";
  const stored = view.getUint32(at + 4, true);
  if (crc32c(bytes, at + 8, at + length) !== stored) return "CRC32C mismatch";
  return null;
}

/**
 * A decoded record, reused from one record to the next. Without allocation, read the key as
 * bytes[keyAt, keyAt + keyLength) and the value as bytes[valueAt, valueAt + valueLength) (absent
 * when `tombstone`); `key` and `value` are convenience views (one allocation each). Everything is
 * valid only until the callback returns: copy what you keep.
 */
export class RecordView {
  kind: RecordKind = RecordKind.Entry;
  /** RecordFlag bits as stored. */
  flags = 0;
  version = 0;
  writer = 0;
  /** The buffer the record lies in (the whole file being read). */
  bytes: Uint8Array = new Uint8Array(0);
  keyAt = 0;
  keyLength = 0;
  valueAt = 0;
  /** 0 for a tombstone (and for an empty value: tell them apart with `tombstone`). */
  valueLength = 0;

  get valid(): boolean {
    return (this.flags & RecordFlag.Valid) !== 0;
  }

  get rmw(): boolean {
    return (this.flags & RecordFlag.Rmw) !== 0;
  }

  get tombstone(): boolean {
    return (this.flags & RecordFlag.Tombstone) !== 0;
  }

  get key(): Uint8Array {
    return this.bytes.subarray(this.keyAt, this.keyAt + this.keyLength);
  }

  /** null: a tombstone. */
  get value(): Uint8Array | null {
    return this.tombstone ? null : this.bytes.subarray(this.valueAt, this.valueAt + this.valueLength);
  }

  /** Fills the view from an intact record at `at` (recordProblem returned null); returns its length. */
  decode(bytes: Uint8Array, view: DataView, at: number): number {
    const length = view.getUint32(at, true);
    const keyLength = view.getUint16(at + 10, true);
    this.kind = bytes[at + 8]! as RecordKind;
    this.flags = bytes[at + 9]!;
    this.writer = view.getUint32(at + 12, true);
    this.version = view.getUint32(at + 16, true) + view.getUint32(at + 20, true) * 0x1_0000_0000;
    this.bytes = bytes;
    this.keyAt = at + recordHeaderBytes;
    this.keyLength = keyLength;
    this.valueAt = this.keyAt + keyLength;
    this.valueLength = length - recordHeaderBytes - keyLength;
    return length;
  }
}

/** Called once per record, in order. The view is reused: copy what you keep. */
export type RecordHandler = (record: RecordView) => void;

/** The caller's limits on one entry, checked before anything is copied: bad input writes nothing. */
export interface EntryLimits {
  keyBytesMax: number;
  valueBytesMax: number;
}

/** Throws RangeError naming the first field out of its limit or range. */
export function checkEntry(
  limits: EntryLimits,
  key: Uint8Array,
  keyAt: number,
  keyLength: number,
  version: number,
  writer: number,
  value: Uint8Array | null,
  valueAt: number,
  valueLength: number,
): void {
  if (!Number.isInteger(keyLength) || keyLength < 0 || keyLength > limits.keyBytesMax)
    throw new RangeError(`key of ${keyLength} bytes: keyBytesMax is ${limits.keyBytesMax}`);
  if (!Number.isInteger(keyAt) || keyAt < 0 || keyAt + keyLength > key.length)
    throw new RangeError(`key range [${keyAt}, ${keyAt + keyLength}) outside its ${key.length}-byte array`);
  if (value !== null) {
    if (!Number.isInteger(valueLength) || valueLength < 0 || valueLength > limits.valueBytesMax)
      throw new RangeError(`value of ${valueLength} bytes: valueBytesMax is ${limits.valueBytesMax}`);
    if (!Number.isInteger(valueAt) || valueAt < 0 || valueAt + valueLength > value.length)
      throw new RangeError(`value range [${valueAt}, ${valueAt + valueLength}) outside its ${value.length}-byte array`);
  }
  if (!Number.isSafeInteger(version) || version < 0)
    throw new RangeError(`version ${version}: must be an integer in 0..2^53-1`);
  if (!Number.isInteger(writer) || writer < 0 || writer > 0xffff_ffff)
    throw new RangeError(`writer ${writer}: must be a u32`);
}

/** Throws RangeError if the limits themselves cannot be stored in the record format. */
export function checkLimits(limits: EntryLimits): void {
  if (!Number.isInteger(limits.keyBytesMax) || limits.keyBytesMax < 0 || limits.keyBytesMax > recordKeyBytesMax)
    throw new RangeError(`keyBytesMax ${limits.keyBytesMax}: must be in 0..${recordKeyBytesMax}`);
  if (!Number.isInteger(limits.valueBytesMax) || limits.valueBytesMax < 0 || limits.valueBytesMax > recordValueBytesMax)
    throw new RangeError(`valueBytesMax ${limits.valueBytesMax}: must be in 0..${recordValueBytesMax}`);
}

/** Largest record for these limits: the size of the smallest buffer that holds any one record. */
export function entryBytesMax(limits: EntryLimits): number {
  return recordBytes(limits.keyBytesMax, limits.valueBytesMax);
}
