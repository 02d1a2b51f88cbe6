// Recovery on real files, against every damage a crash or a bad disk can leave:
// - the last record torn at EVERY byte offset: the records before it come back, the tail is cut at
//   the last good record (bytesDropped and the one log line say how much), and the log continues;
// - EVERY byte of the last record flipped: the record is dropped as a corrupt tail, never handed over;
// - EVERY byte of a record in the middle flipped: a CorruptionError naming the file and the record's
//   offset, because intact records follow it;
// - damage in a segment that is not the last, and a missing segment: CorruptionError.

import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptionError } from "../../src/storage/errors.ts";
import { recoverShard, type RecoveryResult } from "../../src/storage/recovery.ts";
import { segmentName } from "../../src/storage/shard-files.ts";
import { recordHeaderBytes } from "../../src/storage/record-layout.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { appendEntry, collectInto, entry, freshDir, limits, removeDir, type Entry } from "./helpers.ts";

const dirs: string[] = [];
function dir(label: string): string {
  const d = freshDir(label);
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach(removeDir));

/** Writes `count` entries to segment 1 and returns them with the byte offset where each record starts. */
function writeLog(d: string, count: number, tag: string): { written: Entry[]; starts: number[]; size: number } {
  const log = ShardLog.open(d, 1, limits);
  const written: Entry[] = [];
  const starts: number[] = [];
  for (let i = 0; i < count; i++) {
    starts.push(log.stats.bytes);
    written.push(entry(i, tag));
    appendEntry(log, written[i]!);
  }
  log.close();
  return { written, starts, size: log.stats.bytes };
}

function recoverAll(d: string): { entries: Entry[]; result: RecoveryResult } {
  const entries: Entry[] = [];
  const result = recoverShard(d, collectInto(entries));
  return { entries, result };
}

function corruptionOf(run: () => unknown): CorruptionError {
  try {
    run();
  } catch (error) {
    if (error instanceof CorruptionError) return error;
    throw error;
  }
  throw new Error("expected a CorruptionError, recovery succeeded");
}

describe("recovery", () => {
  test("a last record torn at every byte offset is cut off; everything before it comes back", () => {
    const d = dir("torn");
    const { written, starts, size } = writeLog(d, 12, "torn");
    const path = join(d, segmentName(1));
    const pristine = readFileSync(path);
    const lastStart = starts.at(-1)!;
    expect(size - lastStart).toBeGreaterThan(24);
    for (let cut = lastStart; cut < size; cut++) {
      writeFileSync(path, pristine.subarray(0, cut));
      const { entries, result } = recoverAll(d);
      expect(entries).toEqual(written.slice(0, -1));
      expect(result.bytesDropped).toBe(cut - lastStart);
      expect(statSync(path).size).toBe(lastStart + recordHeaderBytes); // cut, then sealed with its end record
      if (cut > lastStart) expect(result.tailNote).toContain(`dropped a torn tail of ${cut - lastStart} bytes`);
      else expect(result.tailNote).toBeNull();
    }
    // After the cut, the log continues in a new segment and both come back.
    writeFileSync(path, pristine.subarray(0, size - 1));
    const { result } = recoverAll(d);
    const log = ShardLog.open(d, result.nextSegment, limits);
    appendEntry(log, entry(99, "after"));
    log.close();
    expect(recoverAll(d).entries).toEqual([...written.slice(0, -1), entry(99, "after")]);
  });

  test("every flipped byte of the last record drops it as a corrupt tail and never hands it over", () => {
    const d = dir("fliptail");
    const { written, starts, size } = writeLog(d, 8, "fliptail");
    const path = join(d, segmentName(1));
    const pristine = readFileSync(path);
    const lastStart = starts.at(-1)!;
    for (let at = lastStart; at < size; at++) {
      const damaged = Uint8Array.from(pristine);
      damaged[at]! ^= 0x5a;
      writeFileSync(path, damaged);
      const { entries, result } = recoverAll(d);
      expect(entries).toEqual(written.slice(0, -1));
      expect(result.bytesDropped).toBe(size - lastStart);
      expect(result.tailNote).toContain(`at offset ${lastStart} of ${path}`);
    }
  });

  test("every flipped byte of a record in the middle is a CorruptionError naming the file and offset", () => {
    const d = dir("flipmiddle");
    const { starts } = writeLog(d, 8, "flipmiddle");
    const path = join(d, segmentName(1));
    const pristine = readFileSync(path);
    const victim = 3;
    for (let at = starts[victim]!; at < starts[victim + 1]!; at++) {
      const damaged = Uint8Array.from(pristine);
      damaged[at]! ^= 0x01;
      writeFileSync(path, damaged);
      const handed: Entry[] = [];
      const error = corruptionOf(() => recoverShard(d, collectInto(handed)));
      expect(error.file).toBe(path);
      expect(error.offset).toBe(starts[victim]!);
      expect(error.message).toContain(`${path} at byte offset ${starts[victim]}`);
      expect(error.message).toContain(`an intact record follows at ${starts[victim + 1]}`);
      // Only intact records before the damage were handed over; the file was not cut.
      expect(handed.length).toBe(victim);
      expect(statSync(path).size).toBe(pristine.length);
    }
  });

  test("a torn record in a segment that is not the last is corruption, not a tail", () => {
    const d = dir("notlast");
    const log = ShardLog.open(d, 1, limits);
    for (let i = 0; i < 5; i++) appendEntry(log, entry(i, "one"));
    log.rotate();
    for (let i = 5; i < 10; i++) appendEntry(log, entry(i, "two"));
    log.close();
    const first = join(d, segmentName(1));
    const size = statSync(first).size;
    truncateSync(first, size - 3);
    const error = corruptionOf(() => recoverAll(d));
    expect(error.file).toBe(first);
    expect(error.message).toContain("not the last");
  });

  test("a missing segment is a hole in the log: CorruptionError naming it", () => {
    const d = dir("hole");
    const log = ShardLog.open(d, 1, limits);
    appendEntry(log, entry(1, "h"));
    log.rotate();
    appendEntry(log, entry(2, "h"));
    log.rotate();
    appendEntry(log, entry(3, "h"));
    log.close();
    const middle = join(d, segmentName(2));
    Bun.spawnSync(["rm", middle]);
    const error = corruptionOf(() => recoverAll(d));
    expect(error.file).toBe(middle);
    expect(error.message).toContain("log segment missing");
  });

  test("trailing zeros (a size extended before its data landed) are a torn tail", () => {
    const d = dir("zeros");
    const { written, size } = writeLog(d, 6, "zeros");
    const path = join(d, segmentName(1));
    writeFileSync(path, Buffer.concat([readFileSync(path), new Uint8Array(4096)]));
    const { entries, result } = recoverAll(d);
    expect(entries).toEqual(written);
    expect(result.bytesDropped).toBe(4096);
    expect(statSync(path).size).toBe(size + recordHeaderBytes);
  });

  test("a segment that is not the last, cut at a record boundary, is caught by its missing end record", () => {
    const d = dir("boundary");
    const log = ShardLog.open(d, 1, limits);
    const starts: number[] = [];
    for (let i = 0; i < 5; i++) {
      starts.push(log.stats.bytes);
      appendEntry(log, entry(i, "one"));
    }
    log.rotate();
    appendEntry(log, entry(5, "two"));
    log.close();
    const first = join(d, segmentName(1));
    // Just the end record lost, then two whole entries as well: every record left is intact.
    for (const cut of [statSync(first).size - recordHeaderBytes, starts[3]!]) {
      truncateSync(first, cut);
      const error = corruptionOf(() => recoverAll(d));
      expect(error.file).toBe(first);
      expect(error.offset).toBe(cut);
      expect(error.message).toContain("ends without its end record");
    }
  });

  test("recovery read-only cuts and seals nothing", () => {
    const d = dir("readonly");
    const { written, size } = writeLog(d, 4, "ro");
    const path = join(d, segmentName(1));
    truncateSync(path, size - 5);
    const entries: Entry[] = [];
    const result = recoverShard(d, collectInto(entries), { readOnly: true });
    expect(entries).toEqual(written.slice(0, -1));
    expect(result.tailNote).toContain("would drop a torn tail");
    expect(statSync(path).size).toBe(size - 5);
  });
});
