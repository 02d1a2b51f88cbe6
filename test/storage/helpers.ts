// Shared by the storage tests: fresh directories under the OS tmpdir, and records copied out of the
// reused RecordView so they can be compared after recovery.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RecordView } from "../../src/storage/record-layout.ts";
import { ShardLog, type ShardLogLimits } from "../../src/storage/shard-log.ts";

export interface Entry {
  key: string;
  version: number;
  writer: number;
  valid: boolean;
  rmw: boolean;
  /** null: a tombstone. */
  value: string | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const limits: ShardLogLimits = {
  keyBytesMax: 256,
  valueBytesMax: 4096,
  segmentBytesMax: 64 * 1024,
  bufferBytes: 16 * 1024,
};

/** A new empty directory; `root` defaults to the OS tmpdir (a disk here). */
export function freshDir(label: string, root = tmpdir()): string {
  return mkdtempSync(join(root, `hermes-storage-${label}-`));
}

/** A RAM-backed root for tests that make many files and care about bytes, not fsync: /dev/shm if present. */
export const memoryRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The i-th entry of a test: unique key and value, a spread of versions, writers, states and tombstones. */
export function entry(i: number, tag = "v"): Entry {
  return {
    key: `key:${i % 97}`,
    version: i * 40_000_037 + 1, // passes 2^32 quickly, so both u32 halves are exercised
    writer: (i * 7919) % 70_000, // above 255: writer ids wider than a byte survive
    valid: i % 3 !== 0,
    rmw: i % 5 === 0,
    value: i % 11 === 4 ? null : `${tag}-${i}-${"x".repeat(i % 40)}`,
  };
}

export function appendEntry(log: ShardLog, e: Entry): void {
  const key = encoder.encode(e.key);
  const value = e.value === null ? null : encoder.encode(e.value);
  log.append(key, 0, key.length, e.version, e.writer, e.valid, e.rmw, value, 0, value?.length ?? 0);
}

/**
 * A callback for recovery that copies every record into `into`, reading the allocation-free fields
 * (bytes, keyAt, keyLength, valueAt, valueLength) and checking the `key`/`value` views agree.
 */
export function collectInto(into: Entry[]): (record: RecordView) => void {
  return (record) => {
    const key = record.bytes.subarray(record.keyAt, record.keyAt + record.keyLength);
    const value = record.tombstone ? null : record.bytes.subarray(record.valueAt, record.valueAt + record.valueLength);
    if (Buffer.compare(key, record.key) !== 0) throw new Error("RecordView.key disagrees with keyAt/keyLength");
    if ((value === null) !== (record.value === null) || (value !== null && Buffer.compare(value, record.value!) !== 0))
      throw new Error("RecordView.value disagrees with valueAt/valueLength");
    into.push({
      key: decoder.decode(key),
      version: record.version,
      writer: record.writer,
      valid: record.valid,
      rmw: record.rmw,
      value: value === null ? null : decoder.decode(value),
    });
  };
}
