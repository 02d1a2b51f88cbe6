// A snapshot of one shard: every key the caller hands over (Valid or not, with version, writer and
// value), so that the log segments before it can be deleted.
//
// Format: records as in the log (record-layout.ts), framed by two of their own:
//   SnapshotHeader   version = the first log segment the snapshot does NOT cover, writer = format
//   Entry ...        one per key, in any order
//   SnapshotTrailer  version = the number of entries, writer = CRC32C of every byte before the trailer
// The trailer proves the file is whole: a snapshot that lost or repeated a block, or stopped early,
// fails it even where every record's own CRC holds.
//
// Writing is crash-safe by the usual steps: write to `<name>.tmp`, fdatasync, rename onto the final
// name (atomic), fsync the directory (the rename is durable); only then are the covered log segments
// and older snapshots deleted (and the directory fsynced again). A crash at any step leaves either
// the old snapshot with its segments or the new one: recovery never sees a half-written snapshot
// under a final name, which is why any flaw in one is corruption, not a torn tail.
//
// `add` buffers and writes a chunk whenever the buffer is full, and fdatasyncs every few MiB, so the
// caller can spread a large shard over many loop turns (a few thousand keys per turn) and the
// final fdatasync in `finish` has little left to flush: no turn pays for the whole file.
// The snapshot is fuzzy: keys may change while it is written. That is safe because the caller
// rotated the log first (ShardLog.rotate) and recovery replays every record appended since, in order,
// over the snapshot.

import {
  closeSync,
  constants,
  fdatasyncSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { assert } from "../base/assert.ts";
import { crc32c } from "./crc32c.ts";
import { CorruptionError, DiskError, diskError } from "./errors.ts";
import {
  checkEntry,
  checkLimits,
  encodeRecord,
  entryBytesMax,
  RecordFlag,
  RecordKind,
  recordBytes,
  recordHeaderBytes,
  recordKeyBytesMax,
  recordProblem,
  recordValueBytesMax,
  RecordView,
  type EntryLimits,
  type RecordHandler,
} from "./record-layout.ts";
import { fsyncDir, listShardFiles, segmentName, snapshotName, tempSuffix } from "./shard-files.ts";

/** Version of the on-disk format of records, segments and snapshots; the data dir's identity records it too. */
export const storageFormatVersion = 1;

/** Snapshot write buffer: one write per this many bytes of entries. */
export const snapshotChunkBytesDefault = 1024 * 1024;

/**
 * The writer fdatasyncs the temp file whenever this many bytes were written since its last sync,
 * so the disk absorbs a large snapshot a few MiB per loop turn instead of all at once in `finish`
 * (whose fdatasync would otherwise flush the whole file in one pause of the worker).
 */
export const snapshotSyncBytesDefault = 4 * 1024 * 1024;

export interface SnapshotDone {
  path: string;
  entries: number;
  bytes: number;
  /** Log segments and older snapshots deleted because this snapshot covers them. */
  filesDropped: number;
}

export class SnapshotWriter {
  readonly #dir: string;
  readonly #coversBefore: number;
  readonly #limits: EntryLimits;
  readonly #buffer: Uint8Array;
  readonly #view: DataView;
  readonly #tempPath: string;
  #fd: number;
  #buffered = 0;
  #entries = 0;
  #bytes = 0;
  #bytesUnsynced = 0;
  readonly #syncBytes: number;
  /** CRC32C of every byte written so far (the trailer's check). */
  #fileCrc = 0;
  #failure: DiskError | null = null;
  #done = false;

  private constructor(dir: string, coversBefore: number, limits: EntryLimits, chunkBytes: number, syncBytes: number) {
    this.#dir = dir;
    this.#syncBytes = syncBytes;
    this.#coversBefore = coversBefore;
    this.#limits = limits;
    this.#buffer = new Uint8Array(Math.max(chunkBytes, entryBytesMax(limits), recordHeaderBytes * 2));
    this.#view = new DataView(this.#buffer.buffer);
    this.#tempPath = join(dir, snapshotName(coversBefore) + tempSuffix);
    try {
      // A leftover temp file of an attempt that crashed is overwritten.
      this.#fd = openSync(this.#tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
    } catch (error) {
      throw diskError("create", this.#tempPath, error);
    }
    const empty = new Uint8Array(0);
    this.#buffered = encodeRecord(
      this.#buffer,
      this.#view,
      0,
      RecordKind.SnapshotHeader,
      0,
      empty,
      0,
      0,
      coversBefore,
      storageFormatVersion,
      null,
      0,
      0,
    );
  }

  /**
   * Starts a snapshot in `dir` that covers every log segment before `coversBefore` (the number
   * ShardLog.rotate returned). Nothing is visible under the final name until `finish`.
   */
  static begin(
    dir: string,
    coversBefore: number,
    limits: EntryLimits,
    chunkBytes = snapshotChunkBytesDefault,
    syncBytes = snapshotSyncBytesDefault,
  ): SnapshotWriter {
    checkLimits(limits);
    if (!Number.isSafeInteger(coversBefore) || coversBefore < 1)
      throw new RangeError(`coversBefore ${coversBefore}: must be an integer >= 1`);
    return new SnapshotWriter(dir, coversBefore, limits, chunkBytes, syncBytes);
  }

  get entries(): number {
    return this.#entries;
  }

  /** Adds one key, with the same fields and checks as ShardLog.append. May write one chunk. */
  add(
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
    if (this.#buffered + length > this.#buffer.length) this.#writeBuffer();
    const flags = (valid ? RecordFlag.Valid : 0) | (rmw ? RecordFlag.Rmw : 0);
    this.#buffered += encodeRecord(
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
    this.#entries++;
    assert(this.#buffered <= this.#buffer.length, "a record is only encoded where the buffer has room");
  }

  /**
   * Writes the trailer, makes the file durable and visible under its final name, then deletes the
   * log segments and older snapshots it covers. A DiskError here or in `add` gives the snapshot up
   * (its temp file removed; later calls throw the same error): the old snapshot and segments stay.
   */
  finish(): SnapshotDone {
    this.#checkUsable();
    if (this.#buffered + recordHeaderBytes > this.#buffer.length) this.#writeBuffer();
    const fileCrc = crc32c(this.#buffer, 0, this.#buffered, this.#fileCrc);
    const empty = new Uint8Array(0);
    this.#buffered += encodeRecord(
      this.#buffer,
      this.#view,
      this.#buffered,
      RecordKind.SnapshotTrailer,
      0,
      empty,
      0,
      0,
      this.#entries,
      fileCrc,
      null,
      0,
      0,
    );
    this.#writeBuffer();
    const path = join(this.#dir, snapshotName(this.#coversBefore));
    try {
      try {
        fdatasyncSync(this.#fd);
      } catch (error) {
        throw diskError("fdatasync", this.#tempPath, error);
      }
      closeSync(this.#fd);
      this.#fd = -1;
      try {
        renameSync(this.#tempPath, path);
      } catch (error) {
        throw diskError("rename", this.#tempPath, error);
      }
      fsyncDir(this.#dir);
    } catch (error) {
      this.#fail(error as DiskError);
      throw error;
    }
    this.#done = true;
    return {
      path,
      entries: this.#entries,
      bytes: this.#bytes,
      filesDropped: dropCovered(this.#dir, this.#coversBefore),
    };
  }

  /** Gives the snapshot up: closes and deletes the temp file. Safe to call more than once. */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    try {
      unlinkSync(this.#tempPath);
    } catch {
      // Already gone (renamed, or never created): nothing to undo; recovery deletes any leftover.
    }
  }

  #checkUsable(): void {
    if (this.#failure !== null) throw this.#failure;
    assert(!this.#done, "the snapshot writer is not used after finish() or abort()");
  }

  /** A failed snapshot is given up at once: its temp file is removed, the old state stays. */
  #fail(error: DiskError): void {
    this.#failure = error;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    try {
      unlinkSync(this.#tempPath);
    } catch {
      // Already gone (renamed, or never created): nothing to undo; recovery deletes any leftover.
    }
  }

  #writeBuffer(): void {
    this.#fileCrc = crc32c(this.#buffer, 0, this.#buffered, this.#fileCrc);
    let done = 0;
    try {
      while (done < this.#buffered) done += writeSync(this.#fd, this.#buffer, done, this.#buffered - done);
    } catch (error) {
      const failure = diskError("write", this.#tempPath, error);
      this.#fail(failure);
      throw failure;
    }
    this.#bytes += this.#buffered;
    this.#bytesUnsynced += this.#buffered;
    this.#buffered = 0;
    if (this.#bytesUnsynced >= this.#syncBytes) {
      try {
        fdatasyncSync(this.#fd);
      } catch (error) {
        const failure = diskError("fdatasync", this.#tempPath, error);
        this.#fail(failure);
        throw failure;
      }
      this.#bytesUnsynced = 0;
    }
  }
}

/** Deletes log segments and snapshots older than `coversBefore`; returns how many. */
function dropCovered(dir: string, coversBefore: number): number {
  const files = listShardFiles(dir);
  let dropped = 0;
  const drop = (name: string): void => {
    try {
      unlinkSync(join(dir, name));
    } catch (error) {
      throw diskError("unlink", join(dir, name), error);
    }
    dropped++;
  };
  for (const seq of files.segments) if (seq < coversBefore) drop(segmentName(seq));
  for (const seq of files.snapshots) if (seq < coversBefore) drop(snapshotName(seq));
  if (dropped > 0) fsyncDir(dir);
  return dropped;
}

export interface SnapshotRead {
  /** The first log segment the snapshot does not cover: replay starts there. */
  coversBefore: number;
  entries: number;
  bytes: number;
}

/** Largest record any writer can have produced: bounds what a reader accepts as a length. */
export const readRecordBytesMax = recordBytes(recordKeyBytesMax, recordValueBytesMax);

/**
 * Reads a snapshot file and checks all of it (every record's CRC, the header's format, the
 * trailer's count and whole-file CRC) before it yields a single entry, in file order, to `onEntry`.
 * Any flaw throws a CorruptionError naming the file and the byte offset.
 */
export function readSnapshot(path: string, onEntry: RecordHandler): SnapshotRead {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw diskError("read", path, error);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const record = new RecordView();
  const corrupt = (at: number, why: string): CorruptionError => new CorruptionError(path, at, why);

  let at = 0;
  let entries = 0;
  let coversBefore = 0;
  let trailerAt = -1;
  while (at < bytes.length) {
    const problem = recordProblem(bytes, view, at, bytes.length, readRecordBytesMax);
    if (problem !== null) throw corrupt(at, problem);
    const length = record.decode(bytes, view, at);
    if (at === 0) {
      if (record.kind !== RecordKind.SnapshotHeader) throw corrupt(at, "the first record is not a snapshot header");
      if (record.writer !== storageFormatVersion)
        throw corrupt(at, `format ${record.writer}, this build reads format ${storageFormatVersion}`);
      coversBefore = record.version;
    } else if (record.kind === RecordKind.SnapshotTrailer) {
      if (record.version !== entries)
        throw corrupt(at, `trailer counts ${record.version} entries, the file has ${entries}`);
      if (record.writer !== crc32c(bytes, 0, at)) throw corrupt(at, "the trailer's whole-file CRC32C does not match");
      if (at + length !== bytes.length) throw corrupt(at + length, "bytes after the trailer");
      trailerAt = at;
    } else if (record.kind === RecordKind.Entry) {
      entries++;
    } else {
      throw corrupt(at, `a record of kind ${record.kind} inside a snapshot`);
    }
    at += length;
  }
  if (bytes.length === 0) throw corrupt(0, "empty file");
  if (trailerAt < 0) throw corrupt(bytes.length, "no trailer: the file ends early");

  // Everything checked: now hand the entries over.
  at = 0;
  while (at < trailerAt) {
    const length = record.decode(bytes, view, at);
    if (record.kind === RecordKind.Entry) onEntry(record);
    at += length;
  }
  return { coversBefore, entries, bytes: bytes.length };
}
