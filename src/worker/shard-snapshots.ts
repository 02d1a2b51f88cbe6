// When and how a shard snapshots its replica to disk, without stopping its loop for long.
//
// A snapshot starts when the log has grown by snapshotLogBytesMax since the last one, or
// snapshotIntervalMs after it if the log grew at all. It rotates the log first (the snapshot
// covers every segment before the new one), then takes at most snapshotStepBytes of the replica's
// keys per loop turn (Replica.snapshotRecords with a cursor: the replica serves between steps; a
// key changed meanwhile is also in the new segment, replayed over the snapshot at recovery, the
// higher timestamp winning), and finishes with the snapshot file's fdatasync, rename and directory
// fsync, which deletes the covered segments. The longest step is the snapshot's pause: measured
// (stepMsMax, finishMsLast) and reported in /metrics.

import { SnapshotCursor, type Replica } from "../core/replica.ts";
import {
  recordBytes as coreRecordBytes,
  recordFlagCommitted,
  recordFlagRmw,
  recordFlagValue,
  recordFlagsOffset,
  recordValueBytesOffset,
  recordValueOffset,
  recordWriterOffset,
} from "../core/snapshot-records.ts";
import type { EntryLimits } from "../storage/record-layout.ts";
import type { ShardLog } from "../storage/shard-log.ts";
import { SnapshotWriter } from "../storage/snapshot-file.ts";

export interface SnapshotPolicy {
  /** Snapshot this long after the last one if the log grew (0: by size only). */
  intervalMs: number;
  /** Snapshot once the log grew by this many bytes since the last one. */
  logBytesMax: number;
  /** Bytes of records one loop turn takes from the replica. */
  stepBytes: number;
}

export class ShardSnapshots {
  readonly #replica: Replica;
  readonly #log: ShardLog;
  readonly #dir: string;
  readonly #limits: EntryLimits;
  readonly #policy: SnapshotPolicy;
  /** The replica's records of one step (core format: snapshot-records.ts). */
  readonly #scratch: Uint8Array;
  readonly #view: DataView;
  #writer: SnapshotWriter | null = null;
  #cursor = new SnapshotCursor();
  /** Log bytes (ShardLog.stats.bytes) when the last snapshot started. */
  #logBytesAtLast: number;
  #lastStartMs: number;
  #startedAt = 0;
  taken = 0;
  stepMsMax = 0;
  lastMs = 0;
  finishMsLast = 0;

  constructor(
    replica: Replica,
    log: ShardLog,
    dir: string,
    limits: EntryLimits,
    policy: SnapshotPolicy,
    nowMs: number,
    /** Bytes of log replayed at recovery that no snapshot covers yet: they count towards the next one. */
    logBytesCarried = 0,
  ) {
    this.#replica = replica;
    this.#log = log;
    this.#dir = dir;
    this.#limits = limits;
    this.#policy = policy;
    this.#scratch = new Uint8Array(
      Math.max(policy.stepBytes, coreRecordBytes(limits.keyBytesMax, limits.valueBytesMax)),
    );
    this.#view = new DataView(this.#scratch.buffer);
    this.#logBytesAtLast = log.stats.bytes - logBytesCarried;
    this.#lastStartMs = nowMs;
  }

  get inProgress(): boolean {
    return this.#writer !== null;
  }

  /** Is a snapshot due by the policy? */
  due(nowMs: number): boolean {
    const grown = this.#log.stats.bytes - this.#logBytesAtLast;
    if (grown >= this.#policy.logBytesMax) return true;
    return this.#policy.intervalMs > 0 && grown > 0 && nowMs - this.#lastStartMs >= this.#policy.intervalMs;
  }

  /** One loop turn's share: start a snapshot if due, else continue the one in progress. DiskError propagates. */
  step(nowMs: number): void {
    if (this.#writer === null) {
      if (!this.due(nowMs)) return;
      this.start(nowMs);
    }
    const began = performance.now();
    const writer = this.#writer!;
    const bytes = this.#replica.snapshotRecords(this.#cursor, this.#scratch);
    this.#addRecords(writer, bytes);
    let finishMs = 0;
    if (this.#cursor.done) {
      const finishBegan = performance.now();
      this.#writer = null;
      writer.finish();
      finishMs = performance.now() - finishBegan;
      this.finishMsLast = finishMs;
      this.taken++;
      this.lastMs = performance.now() - this.#startedAt;
    }
    this.stepMsMax = Math.max(this.stepMsMax, performance.now() - began);
  }

  /** Begin a snapshot now (also used by tests and benchmarks to force one). */
  start(nowMs: number): void {
    if (this.#writer !== null) return;
    const coversBefore = this.#log.rotate();
    this.#writer = SnapshotWriter.begin(this.#dir, coversBefore, this.#limits);
    this.#cursor = new SnapshotCursor();
    this.#logBytesAtLast = this.#log.stats.bytes;
    this.#lastStartMs = nowMs;
    this.#startedAt = performance.now();
  }

  /** Drop a snapshot in progress (its temp file goes; the old snapshot and segments stay). */
  abort(): void {
    this.#writer?.abort();
    this.#writer = null;
  }

  /** The core's records (snapshot-records.ts: u16 key length, key, f64 version, u32 writer, u8 flags, u32 value length, value) into the snapshot file. */
  #addRecords(writer: SnapshotWriter, end: number): void {
    const bytes = this.#scratch;
    const view = this.#view;
    let p = 0;
    while (p < end) {
      const keyBytes = view.getUint16(p, true);
      const fields = p + 2 + keyBytes;
      const version = view.getFloat64(fields, true);
      const flags = bytes[fields + recordFlagsOffset]!;
      const valueBytes = view.getUint32(fields + recordValueBytesOffset, true);
      const valueAt = fields + recordValueOffset;
      // A key that was looked up but never written (version 0) has nothing to keep.
      if (version > 0)
        writer.add(
          bytes,
          p + 2,
          keyBytes,
          version,
          view.getUint32(fields + recordWriterOffset, true),
          (flags & recordFlagCommitted) !== 0,
          (flags & recordFlagRmw) !== 0,
          (flags & recordFlagValue) !== 0 ? bytes : null,
          valueAt,
          valueBytes,
        );
      p = valueAt + valueBytes;
    }
  }
}
