// The append-only log of one shard: a write-ahead log with group commit.
//
// Format: a sequence of segment files (shard-files.ts names them), each a plain concatenation of
// records (record-layout.ts: length, CRC32C, kind, flags, key, version, writer, value). There is no
// file header: every record checks itself, and recovery.ts tells a torn tail from corruption. A
// segment that is closed for the next one ends with a SegmentEnd record (its number and entry
// count), so a segment that lost whole records at its end is caught even though every record left
// in it is intact; recovery seals the last segment the same way before a new one is opened.
//
// Group commit: `append` only copies the record into one reusable buffer (no allocation, and no I/O
// unless the buffer or the segment is full); `flush` writes the buffer with one write; `sync` is
// flush + one fdatasync. The worker calls `sync` once per loop turn, after the turn's appends and
// before it releases the ACKs that depend on them: one fdatasync covers the whole batch.
//
// Segments: a segment is closed before it would pass `segmentBytesMax`, and `rotate` closes one on
// demand (before a snapshot), so that the segments a snapshot covers can be deleted as whole files.
// A segment is fdatasynced before the next one is created, so a torn record can only ever be at the
// end of the last segment: recovery relies on that.
//
// Disk faults: a failed write or fdatasync (ENOSPC, EIO, ...) throws a DiskError and poisons the
// log: every later append, flush and sync throws the same error, so nothing is ever reported
// durable again. Why not retry: after a failed fsync, Linux may already have dropped the dirty
// pages and cleared the error (the 2018 "fsyncgate" that made PostgreSQL panic rather than retry),
// so a second fsync can succeed while the data never reached the disk. After a failed write the
// file may hold a partial record at an unknown offset. Either way the page cache state is unknown,
// and the only safe recovery is the one on restart: re-read what is on disk, checksums and all.

import { closeSync, constants, fdatasyncSync, openSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { assert } from "../base/assert.ts";
import { DiskError, diskError } from "./errors.ts";
import {
  checkEntry,
  checkLimits,
  encodeRecord,
  entryBytesMax,
  RecordFlag,
  RecordKind,
  recordBytes,
  recordHeaderBytes,
  type EntryLimits,
} from "./record-layout.ts";
import { fsyncDir, segmentName } from "./shard-files.ts";

export interface ShardLogLimits extends EntryLimits {
  /** A segment is closed before a record and its end record would take it past this size. */
  segmentBytesMax: number;
  /** The append buffer, written out with one write when full or flushed; raised to hold one largest record. */
  bufferBytes: number;
}

/** Segment size: small enough that deleting covered segments frees space soon, large enough to rotate rarely. */
export const segmentBytesMaxDefault = 64 * 1024 * 1024;
/** Append buffer: a whole loop turn of small records fits, so one turn is one write. */
export const bufferBytesDefault = 1024 * 1024;

/** Counters for /metrics. */
export class ShardLogStats {
  records = 0;
  bytes = 0;
  writes = 0;
  syncs = 0;
  segmentsOpened = 0;
}

export class ShardLog {
  readonly stats = new ShardLogStats();
  readonly #dir: string;
  readonly #limits: ShardLogLimits;
  readonly #buffer: Uint8Array;
  readonly #view: DataView;
  #buffered = 0;
  #fd = -1;
  #segment: number;
  /** Bytes of the current segment: written plus buffered. */
  #segmentBytes = 0;
  /** Entries in the current segment (its SegmentEnd record counts them). */
  #segmentEntries = 0;
  /** Bytes were written (not merely buffered) since the last fdatasync. */
  #unsynced = false;
  #failure: DiskError | null = null;
  #closed = false;

  private constructor(dir: string, firstSegment: number, limits: ShardLogLimits) {
    this.#dir = dir;
    this.#limits = limits;
    this.#segment = firstSegment;
    const bufferBytes = Math.max(limits.bufferBytes, entryBytesMax(limits));
    this.#buffer = new Uint8Array(bufferBytes);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /**
   * Starts a new segment `firstSegment` in `dir` (which must not exist yet: recovery returns the
   * next free number) and returns the log. Throws RangeError for bad limits, DiskError for I/O.
   */
  static open(dir: string, firstSegment: number, limits: ShardLogLimits): ShardLog {
    checkLimits(limits);
    if (!Number.isSafeInteger(firstSegment) || firstSegment < 1)
      throw new RangeError(`first segment ${firstSegment}: must be an integer >= 1`);
    if (!Number.isInteger(limits.bufferBytes) || limits.bufferBytes < 1)
      throw new RangeError(`bufferBytes ${limits.bufferBytes}: must be a positive integer`);
    const segmentBytesMin = entryBytesMax(limits) + recordHeaderBytes;
    if (!Number.isInteger(limits.segmentBytesMax) || limits.segmentBytesMax < segmentBytesMin)
      throw new RangeError(
        `segmentBytesMax ${limits.segmentBytesMax}: must hold one largest record and an end record (${segmentBytesMin} bytes)`,
      );
    const log = new ShardLog(dir, firstSegment, limits);
    // The shard directory's own entry must be durable too, however the caller created it: without
    // this, a power cut soon after a fresh start could lose the directory with every synced record.
    try {
      fsyncDir(dirname(dir));
    } catch (error) {
      throw diskError("fsync", dirname(dir), error);
    }
    log.#openSegment();
    return log;
  }

  /** The segment being appended to. */
  get segment(): number {
    return this.#segment;
  }

  /** The DiskError that poisoned the log, or null while it is healthy. */
  get failure(): DiskError | null {
    return this.#failure;
  }

  /** Bytes appended but not yet written. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /**
   * Adds one entry: key[keyAt, keyAt + keyLength), its version and writer, the caller's valid and
   * rmw bits, and value[valueAt, valueAt + valueLength) or null for a tombstone. The bytes are
   * copied, so the caller may reuse them at once. Durable only after the next `sync`.
   * RangeError (nothing appended) for a field out of its limit; DiskError if the log is poisoned or
   * the write that makes room fails.
   */
  append(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: number,
    valid: boolean,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    this.#checkUsable();
    checkEntry(this.#limits, key, keyAt, keyLength, version, writer, value, valueAt, valueLength);
    const length = recordBytes(keyLength, value === null ? 0 : valueLength);
    if (this.#segmentBytes + length + recordHeaderBytes > this.#limits.segmentBytesMax) this.#nextSegment();
    if (this.#buffered + length > this.#buffer.length) this.flush();
    const flags = (valid ? RecordFlag.Valid : 0) | (rmw ? RecordFlag.Rmw : 0);
    const written = encodeRecord(
      this.#buffer,
      this.#view,
      this.#buffered,
      RecordKind.Entry,
      flags,
      key,
      keyAt,
      keyLength,
      version,
      writer,
      value,
      valueAt,
      valueLength,
    );
    assert(written === length, "encodeRecord wrote the length recordBytes computed");
    this.#buffered += length;
    this.#segmentBytes += length;
    assert(this.#buffered <= this.#buffer.length, "a record is only encoded where the buffer has room");
    assert(
      this.#segmentBytes + recordHeaderBytes <= this.#limits.segmentBytesMax,
      "a segment keeps room for its end record below segmentBytesMax",
    );
    this.#segmentEntries++;
    this.stats.records++;
    this.stats.bytes += length;
  }

  /** Writes the buffer with one write (no fsync: the bytes are in the page cache only). */
  flush(): void {
    this.#checkUsable();
    if (this.#buffered === 0) return;
    const path = this.#segmentPath();
    let done = 0;
    try {
      // A short write (the disk filling up mid-buffer) is continued; the next call then throws ENOSPC.
      while (done < this.#buffered) done += writeSync(this.#fd, this.#buffer, done, this.#buffered - done);
    } catch (error) {
      throw this.#poison(diskError("write", path, error));
    }
    assert(done === this.#buffered, "a flush writes the whole buffer or throws");
    this.#buffered = 0;
    this.#unsynced = true;
    this.stats.writes++;
  }

  /**
   * Group commit: flush, then one fdatasync. When it returns, every record appended so far is on
   * disk. Costs nothing when nothing was appended since the last sync.
   */
  sync(): void {
    this.flush();
    if (!this.#unsynced) return;
    try {
      fdatasyncSync(this.#fd);
    } catch (error) {
      throw this.#poison(diskError("fdatasync", this.#segmentPath(), error));
    }
    this.#unsynced = false;
    this.stats.syncs++;
  }

  /**
   * Closes the current segment (synced) and starts the next; returns the new segment's number.
   * Before a snapshot: the snapshot then covers every segment before the returned number, and
   * records appended while it is written go to segments it does not cover.
   */
  rotate(): number {
    this.#checkUsable();
    this.#nextSegment();
    return this.#segment;
  }

  /** Syncs what is buffered and closes the file. A poisoned log is closed without writing. */
  close(): void {
    if (this.#closed) return;
    try {
      if (this.#failure === null) this.sync();
    } finally {
      this.#closed = true;
      if (this.#fd >= 0) closeSync(this.#fd);
      this.#fd = -1;
    }
  }

  #checkUsable(): void {
    if (this.#failure !== null) throw this.#failure;
    assert(!this.#closed, "the log is not used after close()");
  }

  #poison(error: DiskError): DiskError {
    this.#failure = error;
    return error;
  }

  #segmentPath(): string {
    return join(this.#dir, segmentName(this.#segment));
  }

  #nextSegment(): void {
    if (this.#buffered + recordHeaderBytes > this.#buffer.length) this.flush();
    this.#buffered += encodeSegmentEnd(this.#buffer, this.#view, this.#buffered, this.#segment, this.#segmentEntries);
    this.sync();
    closeSync(this.#fd);
    this.#fd = -1;
    this.#segment++;
    this.#openSegment();
  }

  #openSegment(): void {
    const path = this.#segmentPath();
    try {
      this.#fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      // The new name must be durable before records in it are reported durable.
      fsyncDir(this.#dir);
    } catch (error) {
      throw this.#poison(diskError("create", path, error));
    }
    this.#segmentBytes = 0;
    this.#segmentEntries = 0;
    this.#unsynced = false;
    this.stats.segmentsOpened++;
  }
}

const noBytes = new Uint8Array(0);

/** Writes the SegmentEnd record of segment `segment` holding `entries` entries at `at`; returns its length. */
export function encodeSegmentEnd(
  out: Uint8Array,
  view: DataView,
  at: number,
  segment: number,
  entries: number,
): number {
  return encodeRecord(out, view, at, RecordKind.SegmentEnd, 0, noBytes, 0, 0, segment, entries, null, 0, 0);
}
