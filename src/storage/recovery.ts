// Recovery of one shard's directory on start: the newest snapshot, then every log segment after it,
// handed record by record, in the order they were written, to the caller's callback.
//
// What is tolerated and what is not:
// - A torn or corrupt TAIL of the last segment (a short record, an impossible length, a bad CRC,
//   with no intact record after it) is what a crash between write and fdatasync leaves. Nothing in
//   it was ever reported durable, so it is truncated at the last good record and the result says
//   how many bytes were dropped (the caller logs the one line in `tailNote`).
// - Anything else is corruption and throws a CorruptionError naming the file and the byte offset:
//   a bad record followed by an intact one (the damage is not where a crash could have put it), a
//   bad record in any segment but the last (each is fdatasynced before the next is created), a
//   missing segment, a segment other than the last without its end record (whole records lost at
//   its end), or any flaw in the snapshot (it only gets its name once it is whole).
// - The last segment is then sealed with its end record, so it reads as whole once the log goes on
//   in a new segment.
// Never silently wrong: every record handed over passed its CRC. If recovery throws part-way, the
// caller must discard what it received and stop.
//
// One false alarm is possible: a torn record whose bytes happen to contain an intact record image
// (a value that is itself a log record). That stops the node with a CorruptionError rather than
// truncating: a refusal to start, never a wrong answer.

import {
  closeSync,
  constants,
  fdatasyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { CorruptionError, diskError } from "./errors.ts";
import { RecordKind, recordHeaderBytes, recordProblem, RecordView, type RecordHandler } from "./record-layout.ts";
import { encodeSegmentEnd } from "./shard-log.ts";
import { fsyncDir, listShardFiles, segmentName, snapshotName } from "./shard-files.ts";
import { readRecordBytesMax, readSnapshot } from "./snapshot-file.ts";

export interface RecoveryResult {
  /** The snapshot loaded, or null if there was none. */
  snapshot: string | null;
  snapshotEntries: number;
  /** Log records replayed after the snapshot. */
  logRecords: number;
  logSegments: number;
  /** Bytes cut off the last segment's torn tail (0 if it was clean). */
  bytesDropped: number;
  /** One line for the caller's log when a tail was dropped, else null. */
  tailNote: string | null;
  /** The segment number to give ShardLog.open: one past every file in the directory. */
  nextSegment: number;
}

export interface RecoveryOptions {
  /**
   * Only read: cut no tail, seal nothing, delete no temp file (the result still says what a
   * recovery would drop). For inspecting a directory another process may be writing.
   */
  readOnly?: boolean;
}

/**
 * Replays `dir` into `onRecord`: the snapshot's entries first, then the log's records. Unless
 * read-only, also cuts a torn tail and seals the last segment with its end record, so that the
 * log ShardLog.open then starts (at `nextSegment`) follows a segment that is whole.
 */
export function recoverShard(dir: string, onRecord: RecordHandler, options: RecoveryOptions = {}): RecoveryResult {
  const readOnly = options.readOnly === true;
  const files = listShardFiles(dir);
  if (!readOnly) {
    for (const name of files.temps) removeFile(join(dir, name));
    if (files.temps.length > 0) fsyncDir(dir);
  }

  const result: RecoveryResult = {
    snapshot: null,
    snapshotEntries: 0,
    logRecords: 0,
    logSegments: 0,
    bytesDropped: 0,
    tailNote: null,
    nextSegment: 1,
  };
  let firstSegment = 1;
  const newestSnapshot = files.snapshots.at(-1);
  if (newestSnapshot !== undefined) {
    const path = join(dir, snapshotName(newestSnapshot));
    const read = readSnapshot(path, onRecord);
    if (read.coversBefore !== newestSnapshot)
      throw new CorruptionError(path, 0, `the header says it covers segments before ${read.coversBefore}`);
    result.snapshot = path;
    result.snapshotEntries = read.entries;
    firstSegment = newestSnapshot;
  }

  // Segments before the snapshot are covered by it (a crash may have stopped their deletion).
  const segments = files.segments.filter((seq) => seq >= firstSegment);
  for (let i = 0; i < segments.length; i++) {
    const expected = i === 0 ? firstSegment : segments[i - 1]! + 1;
    if (segments[i] !== expected)
      throw new CorruptionError(join(dir, segmentName(expected)), 0, "log segment missing: the log has a hole");
    replaySegment(dir, segments[i]!, i === segments.length - 1, readOnly, onRecord, result);
  }
  result.logSegments = segments.length;
  result.nextSegment = Math.max(firstSegment, (files.segments.at(-1) ?? 0) + 1);
  return result;
}

const record = new RecordView();

function replaySegment(
  dir: string,
  seq: number,
  isLast: boolean,
  readOnly: boolean,
  onRecord: RecordHandler,
  result: RecoveryResult,
): void {
  const path = join(dir, segmentName(seq));
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw diskError("read", path, error);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  let entries = 0;
  while (at < bytes.length) {
    const problem = recordProblem(bytes, view, at, bytes.length, readRecordBytesMax);
    if (problem !== null) {
      if (!isLast) throw new CorruptionError(path, at, `${problem}, in a segment that is not the last`);
      const intactAt = nextIntactRecord(bytes, view, at + 1);
      if (intactAt >= 0) throw new CorruptionError(path, at, `${problem}, and an intact record follows at ${intactAt}`);
      if (!readOnly) truncate(path, at);
      result.bytesDropped = bytes.length - at;
      result.tailNote =
        `recovery: ${readOnly ? "would drop" : "dropped"} a torn tail of ${result.bytesDropped} bytes ` +
        `at offset ${at} of ${path} (${problem})`;
      break;
    }
    const length = record.decode(bytes, view, at);
    if (record.kind === RecordKind.SegmentEnd) {
      if (record.version !== seq)
        throw new CorruptionError(path, at, `the end record of segment ${record.version} in segment ${seq}`);
      if (record.writer !== entries)
        throw new CorruptionError(
          path,
          at,
          `the end record counts ${record.writer} entries, the segment has ${entries}`,
        );
      if (at + length !== bytes.length)
        throw new CorruptionError(path, at + length, "bytes after the segment's end record");
      return;
    }
    if (record.kind !== RecordKind.Entry)
      throw new CorruptionError(path, at, `a record of kind ${record.kind} in the log`);
    onRecord(record);
    entries++;
    result.logRecords++;
    at += length;
  }
  if (!isLast)
    throw new CorruptionError(path, at, "the segment ends without its end record: records are missing at its end");
  if (!readOnly) seal(path, at, seq, entries);
}

/** Appends the last segment's end record at `at` (its intact length) and makes it durable. */
function seal(path: string, at: number, seq: number, entries: number): void {
  const end = new Uint8Array(recordHeaderBytes);
  encodeSegmentEnd(end, new DataView(end.buffer), 0, seq, entries);
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY);
  } catch (error) {
    throw diskError("open", path, error);
  }
  try {
    writeSync(fd, end, 0, end.length, at);
    fdatasyncSync(fd);
  } catch (error) {
    throw diskError("seal", path, error);
  } finally {
    closeSync(fd);
  }
}

/** The offset of the first intact record at or after `from`, or -1: tells a torn tail from damage before it. */
function nextIntactRecord(bytes: Uint8Array, view: DataView, from: number): number {
  for (let at = from; at < bytes.length; at++) {
    if (recordProblem(bytes, view, at, bytes.length, readRecordBytesMax) === null) return at;
  }
  return -1;
}

function truncate(path: string, length: number): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY);
  } catch (error) {
    throw diskError("open", path, error);
  }
  try {
    ftruncateSync(fd, length);
    fdatasyncSync(fd);
  } catch (error) {
    throw diskError("truncate", path, error);
  } finally {
    closeSync(fd);
  }
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    throw diskError("unlink", path, error);
  }
}
