// The files of one shard's directory and their names. Every name carries a sequence number, padded
// so that names sort like numbers:
//   0000000000000007.log     log segment 7: records appended after segment 6 filled up or rotated
//   0000000000000007.snap    a snapshot covering every segment before 7 (replay starts at segment 7)
//   *.tmp                    a snapshot being written; never read, deleted on recovery
// The directory itself is fsynced after every create, rename and delete, because on Linux a file's
// fsync does not make its directory entry durable.

import { closeSync, constants, fdatasyncSync, fsyncSync, openSync, readdirSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { diskError } from "./errors.ts";

const seqDigits = 16;
const segmentSuffix = ".log";
const snapshotSuffix = ".snap";
export const tempSuffix = ".tmp";

export function segmentName(seq: number): string {
  return String(seq).padStart(seqDigits, "0") + segmentSuffix;
}

export function snapshotName(seq: number): string {
  return String(seq).padStart(seqDigits, "0") + snapshotSuffix;
}

export interface ShardFiles {
  /** Log segment sequence numbers, ascending. */
  segments: number[];
  /** Snapshot sequence numbers (the first segment each does not cover), ascending. */
  snapshots: number[];
  /** Names of leftover temporary files. */
  temps: string[];
}

/** Parses a name made by segmentName/snapshotName; null for anything else. */
function seqOf(name: string, suffix: string): number | null {
  if (name.length !== seqDigits + suffix.length || !name.endsWith(suffix)) return null;
  const digits = name.slice(0, seqDigits);
  return /^[0-9]+$/.test(digits) ? Number(digits) : null;
}

/** What the shard directory holds. Files this layer did not name are ignored. */
export function listShardFiles(dir: string): ShardFiles {
  const files: ShardFiles = { segments: [], snapshots: [], temps: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    throw diskError("readdir", dir, error);
  }
  for (const name of names) {
    const segment = seqOf(name, segmentSuffix);
    const snapshot = seqOf(name, snapshotSuffix);
    if (segment !== null) files.segments.push(segment);
    else if (snapshot !== null) files.snapshots.push(snapshot);
    else if (name.endsWith(tempSuffix)) files.temps.push(name);
  }
  files.segments.sort((a, b) => a - b);
  files.snapshots.sort((a, b) => a - b);
  return files;
}

/** Makes the directory's entries (creates, renames, deletes) durable. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (error) {
    throw diskError("open", dir, error);
  }
  try {
    fsyncSync(fd);
  } catch (error) {
    throw diskError("fsync", dir, error);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace the small file `path` with `text` so that it is either as before or whole, never torn:
 * write a temp file, fdatasync it, rename it over `path`, fsync the directory. DiskError on failure.
 */
export function writeFileDurably(path: string, text: string): void {
  const temp = path + tempSuffix;
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
    try {
      writeSync(fd, text);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    throw diskError("write", path, error);
  }
  fsyncDir(dirname(path));
}
