// Snapshots on real files: a snapshot taken after a rotation covers the segments before it, which
// are then deleted; recovery loads it and replays the later segments over it, including records
// appended while it was being written (the fuzzy case). A snapshot is only trusted whole: a flipped
// byte anywhere, or a file cut short at any offset, is a CorruptionError naming the file and offset.
// A crash mid-snapshot (a leftover temp file) changes nothing and the temp file is removed.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptionError } from "../../src/storage/errors.ts";
import { recoverShard } from "../../src/storage/recovery.ts";
import { segmentName, snapshotName } from "../../src/storage/shard-files.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { SnapshotWriter, readSnapshot } from "../../src/storage/snapshot-file.ts";
import { appendEntry, collectInto, entry, freshDir, limits, removeDir, type Entry } from "./helpers.ts";

const dirs: string[] = [];
function dir(label: string): string {
  const d = freshDir(label);
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach(removeDir));

const encoder = new TextEncoder();

function addEntry(writer: SnapshotWriter, e: Entry): void {
  const key = encoder.encode(e.key);
  const value = e.value === null ? null : encoder.encode(e.value);
  writer.add(key, 0, key.length, e.version, e.writer, e.valid, e.rmw, value, 0, value?.length ?? 0);
}

function recoverAll(d: string): Entry[] {
  const entries: Entry[] = [];
  recoverShard(d, collectInto(entries));
  return entries;
}

/** A shard with 3 segments of log, a snapshot of 50 keys taken after rotating to segment 4. */
function shardWithSnapshot(
  d: string,
  chunkBytes?: number,
  syncBytes?: number,
): { snapshot: Entry[]; after: Entry[]; log: ShardLog } {
  const log = ShardLog.open(d, 1, limits);
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < 5; i++) appendEntry(log, entry(s * 10 + i, "old"));
    if (s < 2) log.rotate();
  }
  const coversBefore = log.rotate();
  expect(coversBefore).toBe(4);
  const writer = SnapshotWriter.begin(d, coversBefore, limits, chunkBytes, syncBytes);
  const snapshot: Entry[] = [];
  const after: Entry[] = [];
  for (let i = 0; i < 50; i++) {
    snapshot.push(entry(i, "snap"));
    addEntry(writer, snapshot[i]!);
    // Updates keep arriving while the snapshot is written (one per "loop turn" here).
    if (i % 10 === 0) {
      after.push(entry(1000 + i, "during"));
      appendEntry(log, after.at(-1)!);
      log.sync();
    }
  }
  const done = writer.finish();
  expect(done).toMatchObject({ entries: 50, filesDropped: 3, path: join(d, snapshotName(4)) });
  return { snapshot, after, log };
}

function corruptionOf(run: () => unknown): CorruptionError {
  try {
    run();
  } catch (error) {
    if (error instanceof CorruptionError) return error;
    throw error;
  }
  throw new Error("expected a CorruptionError, the snapshot was accepted");
}

describe("snapshot file", () => {
  test("a snapshot drops the segments it covers; recovery = snapshot, then the later log in order", () => {
    const d = dir("snap");
    const { snapshot, after, log } = shardWithSnapshot(d, 256, 1024); // small chunks and sync steps: many writes and fdatasyncs
    appendEntry(log, entry(2000, "later"));
    log.close();
    expect(readdirSync(d).sort()).toEqual([segmentName(4), snapshotName(4)]);
    expect(recoverAll(d)).toEqual([...snapshot, ...after, entry(2000, "later")]);
  });

  test("a second snapshot replaces the first and drops its segments", () => {
    const d = dir("second");
    const { log } = shardWithSnapshot(d);
    appendEntry(log, entry(3000, "x"));
    const coversBefore = log.rotate();
    const writer = SnapshotWriter.begin(d, coversBefore, limits);
    const kept = [entry(1, "final"), entry(2, "final")];
    kept.forEach((e) => addEntry(writer, e));
    expect(writer.finish().filesDropped).toBe(2); // segment 4 and snapshot 4
    log.close();
    expect(readdirSync(d).sort()).toEqual([segmentName(5), snapshotName(5)]);
    expect(recoverAll(d)).toEqual(kept);
  });

  test("a crash mid-snapshot leaves a temp file that recovery ignores and removes", () => {
    const d = dir("crash");
    const log = ShardLog.open(d, 1, limits);
    const written = [entry(1, "c"), entry(2, "c")];
    written.forEach((e) => appendEntry(log, e));
    const coversBefore = log.rotate();
    log.close();
    writeFileSync(join(d, snapshotName(coversBefore) + ".tmp"), "half a snapshot");
    expect(recoverAll(d)).toEqual(written);
    expect(readdirSync(d).some((name) => name.endsWith(".tmp"))).toBe(false);
  });

  test("abort removes the temp file and keeps the log", () => {
    const d = dir("abort");
    const log = ShardLog.open(d, 1, limits);
    appendEntry(log, entry(1, "a"));
    const writer = SnapshotWriter.begin(d, log.rotate(), limits);
    addEntry(writer, entry(2, "a"));
    writer.abort();
    log.close();
    expect(readdirSync(d).sort()).toEqual([segmentName(1), segmentName(2)]);
    expect(recoverAll(d)).toEqual([entry(1, "a")]);
  });

  test("every flipped byte of a snapshot is a CorruptionError naming the file, and nothing is handed over", () => {
    const d = dir("flipsnap");
    shardWithSnapshot(d).log.close();
    const path = join(d, snapshotName(4));
    const pristine = readFileSync(path);
    for (let at = 0; at < pristine.length; at++) {
      const damaged = Uint8Array.from(pristine);
      damaged[at]! ^= 0x10;
      writeFileSync(path, damaged);
      const handed: Entry[] = [];
      const error = corruptionOf(() => readSnapshot(path, collectInto(handed)));
      expect(error.file).toBe(path);
      expect(error.offset).toBeLessThanOrEqual(at);
      expect(handed).toEqual([]);
    }
  });

  test("a snapshot cut short at any offset is a CorruptionError, not a torn tail", () => {
    const d = dir("cutsnap");
    shardWithSnapshot(d).log.close();
    const path = join(d, snapshotName(4));
    const pristine = readFileSync(path);
    for (let cut = 0; cut < pristine.length; cut++) {
      writeFileSync(path, pristine.subarray(0, cut));
      const error = corruptionOf(() => recoverAll(d));
      expect(error.file).toBe(path);
    }
    writeFileSync(path, pristine);
    expect(existsSync(path)).toBe(true);
    expect(recoverAll(d).length).toBe(50 + 5);
  });
});
