// The byte stream of a shard snapshot sent to a rejoining node over HTTP
// (GET /v1/internal/snapshot/{shard}?minEpoch=E, E being the joiner's epochMin). One record per key,
// little-endian:
//   u16 key bytes | key (UTF-8) | f64 version | u32 writer (a WriterId) | u8 flags (1 rmw, 2 committed, 4 has value)
//   | u32 value bytes | value
// Records are self-delimiting, so the reader decodes as bytes arrive and rejects truncation.
// The format is the core's (src/core/snapshot-records.ts): a source replica writes these records
// from its slabs, the node streams them as they are, and the joiner's node splits the stream into
// whole records (SnapshotRecordSplitter) for its replica, which installs them in place. The
// entry encoder and decoder below are for tools and tests.

import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import {
  recordFixedBytes,
  recordFlagsOffset,
  recordValueBytesOffset,
  recordValueOffset,
  recordWriterOffset,
  wholeRecordsEnd,
} from "../core/snapshot-records.ts";

/**
 * The query parameter that carries epochMin. It keeps its old spelling on purpose: it is part of
 * the HTTP API between nodes, and a source that did not find it would take 0 and export before it
 * holds the epoch that added the joiner (a node of the previous version during an upgrade).
 */
export const snapshotEpochMinParam = "minEpoch";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const fixedBytes = recordFixedBytes;

export function encodeSnapshotEntries(entries: SnapshotEntry[]): Uint8Array {
  const keys = entries.map((e) => encoder.encode(e.key));
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += fixedBytes + keys[i]!.length + (entries[i]!.value?.length ?? 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const key = keys[i]!;
    view.setUint16(at, key.length, true);
    out.set(key, at + 2);
    at += 2 + key.length;
    view.setFloat64(at, e.version, true);
    view.setUint32(at + recordWriterOffset, e.writer, true);
    view.setUint8(at + recordFlagsOffset, (e.rmw ? 1 : 0) | (e.committed ? 2 : 0) | (e.value !== null ? 4 : 0));
    view.setUint32(at + recordValueBytesOffset, e.value?.length ?? 0, true);
    at += recordValueOffset;
    if (e.value !== null) {
      out.set(e.value, at);
      at += e.value.length;
    }
  }
  return out;
}

/** Incremental decoder: push() bytes as they come; finish() throws if a record was cut short. */
export class SnapshotDecoder {
  #pending = new Uint8Array(0);
  readonly #keyBytesMax: number;
  readonly #valueBytesMax: number;

  constructor(keyBytesMax: number, valueBytesMax: number) {
    this.#keyBytesMax = keyBytesMax;
    this.#valueBytesMax = valueBytesMax;
  }

  push(chunk: Uint8Array): SnapshotEntry[] {
    const bytes = this.#pending.length === 0 ? chunk : concat(this.#pending, chunk);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const entries: SnapshotEntry[] = [];
    let at = 0;
    for (;;) {
      if (bytes.length - at < 2) break;
      const keyBytes = view.getUint16(at, true);
      if (keyBytes === 0 || keyBytes > this.#keyBytesMax) throw new Error(`snapshot: bad key length ${keyBytes}`);
      if (bytes.length - at < fixedBytes + keyBytes) break;
      const valueBytes = view.getUint32(at + 2 + keyBytes + recordValueBytesOffset, true);
      if (valueBytes > this.#valueBytesMax) throw new Error(`snapshot: value of ${valueBytes} bytes over the limit`);
      if (bytes.length - at < fixedBytes + keyBytes + valueBytes) break;
      const key = decoder.decode(bytes.subarray(at + 2, at + 2 + keyBytes));
      const body = at + 2 + keyBytes;
      const version = view.getFloat64(body, true);
      const writer = view.getUint32(body + recordWriterOffset, true);
      const flags = view.getUint8(body + recordFlagsOffset);
      if (!Number.isSafeInteger(version) || version < 0 || flags > 7) throw new Error("snapshot: bad record");
      const valueAt = body + recordValueOffset;
      const value = (flags & 4) !== 0 ? bytes.slice(valueAt, valueAt + valueBytes) : null;
      entries.push({ key, version, writer, rmw: (flags & 1) !== 0, committed: (flags & 2) !== 0, value });
      at = valueAt + valueBytes;
    }
    this.#pending = bytes.slice(at);
    return entries;
  }

  finish(): void {
    if (this.#pending.length !== 0)
      throw new Error(`snapshot: stream ended inside a record (${this.#pending.length} bytes left)`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * Splits a snapshot byte stream into runs of whole records, checking each record's key and value
 * lengths against this node's limits: push() bytes as they come and get back the whole records
 * they complete (possibly none); finish() throws if the stream ended inside a record.
 */
export class SnapshotRecordSplitter {
  #pending = new Uint8Array(0);
  /** Whole records returned so far. */
  records = 0;
  readonly #keyBytesMax: number;
  readonly #valueBytesMax: number;
  readonly #counted = { records: 0 };

  constructor(keyBytesMax: number, valueBytesMax: number) {
    this.#keyBytesMax = keyBytesMax;
    this.#valueBytesMax = valueBytesMax;
  }

  push(chunk: Uint8Array): Uint8Array {
    const bytes = this.#pending.length === 0 ? chunk : concat(this.#pending, chunk);
    const end = wholeRecordsEnd(bytes, 0, bytes.length, this.#keyBytesMax, this.#valueBytesMax, this.#counted);
    if (end < 0) throw new Error(`snapshot: bad record (${end === -1 ? "key length" : "value length"})`);
    this.records += this.#counted.records;
    this.#pending = bytes.slice(end);
    return bytes.subarray(0, end);
  }

  finish(): void {
    if (this.#pending.length !== 0)
      throw new Error(`snapshot: stream ended inside a record (${this.#pending.length} bytes left)`);
  }
}
