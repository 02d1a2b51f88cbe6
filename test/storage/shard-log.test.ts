// The shard log on real files: what is appended and synced comes back from recovery exactly and in
// order (tombstones, not-valid entries, the rmw bit, versions above 2^32, writers above 255); group
// commit does one write and one fdatasync per batch, and a separate process sees the batch on disk
// while the log is still open; segments rotate below their size limit without splitting a record;
// bad input throws and writes nothing.

import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { recoverShard } from "../../src/storage/recovery.ts";
import { segmentName } from "../../src/storage/shard-files.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { appendEntry, collectInto, entry, freshDir, limits, removeDir, type Entry } from "./helpers.ts";

const dirs: string[] = [];
function dir(label: string): string {
  const d = freshDir(label);
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach(removeDir));

function recovered(d: string): { entries: Entry[]; nextSegment: number; bytesDropped: number } {
  const entries: Entry[] = [];
  const result = recoverShard(d, collectInto(entries));
  return { entries, nextSegment: result.nextSegment, bytesDropped: result.bytesDropped };
}

const segmentSizes = (d: string): number[] =>
  readdirSync(d)
    .filter((name) => name.endsWith(".log"))
    .sort()
    .map((name) => statSync(join(d, name)).size);

describe("shard log", () => {
  test("round trip: every synced entry comes back, in order, field for field", () => {
    const d = dir("roundtrip");
    const log = ShardLog.open(d, 1, limits);
    const written: Entry[] = [];
    for (let i = 0; i < 500; i++) {
      const e = entry(i);
      appendEntry(log, e);
      written.push(e);
      if (i % 64 === 63) log.sync();
    }
    log.close();
    const back = recovered(d);
    expect(back.entries).toEqual(written);
    expect(back.entries.some((e) => e.value === null)).toBe(true);
    expect(back.entries.some((e) => e.version > 2 ** 32 && e.writer > 255)).toBe(true);
    expect(back.bytesDropped).toBe(0);
    expect(back.nextSegment).toBe(log.segment + 1);
  });

  test("group commit: appends do no I/O, one sync is one write and one fdatasync, another process sees it", async () => {
    const d = dir("group");
    const log = ShardLog.open(d, 1, limits);
    for (let i = 0; i < 64; i++) appendEntry(log, entry(i, "group"));
    expect(log.stats.writes).toBe(0);
    expect(statSync(join(d, segmentName(1))).size).toBe(0);
    const batchBytes = log.bufferedBytes;
    expect(batchBytes).toBeGreaterThan(64 * 24);

    log.sync();
    expect(log.stats).toMatchObject({ records: 64, writes: 1, syncs: 1, bytes: batchBytes });
    expect(statSync(join(d, segmentName(1))).size).toBe(batchBytes);
    log.sync(); // nothing new: no second fdatasync
    expect(log.stats.syncs).toBe(1);

    // A real second process reads the batch while this one still holds the log open.
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "child.ts"), "recover", d], { stdout: "pipe" });
    const out = await new Response(child.stdout).text();
    expect(await child.exited).toBe(0);
    expect(JSON.parse(out)).toEqual({ records: 64, bytesDropped: 0 });
    log.close();
  });

  test("a full buffer is written out during append, and sync still covers every record", () => {
    const d = dir("fullbuffer");
    const small = { ...limits, bufferBytes: 1 }; // raised to one largest record
    const log = ShardLog.open(d, 1, small);
    const written: Entry[] = [];
    for (let i = 0; i < 200; i++) {
      written.push(entry(i, "full"));
      appendEntry(log, written[i]!);
    }
    expect(log.stats.writes).toBeGreaterThan(0);
    log.sync();
    expect(log.stats.syncs).toBe(1);
    log.close();
    expect(recovered(d).entries).toEqual(written);
  });

  test("segments rotate before they pass segmentBytesMax, never splitting a record, and replay in order", () => {
    const d = dir("rotate");
    const segmentBytesMax = 4 * 1024 + 2 * 24 + limits.keyBytesMax; // one largest record and an end record
    const log = ShardLog.open(d, 1, { ...limits, valueBytesMax: 4096, segmentBytesMax });
    const written: Entry[] = [];
    for (let i = 0; i < 400; i++) {
      const e = entry(i, "rot");
      written.push(e);
      appendEntry(log, e);
      if (i % 10 === 9) log.sync();
    }
    log.close();
    const sizes = segmentSizes(d);
    expect(sizes.length).toBeGreaterThan(3);
    for (const size of sizes) expect(size).toBeLessThanOrEqual(segmentBytesMax);
    expect(log.stats.segmentsOpened).toBe(sizes.length);
    expect(recovered(d).entries).toEqual(written);
  });

  test("rotate() starts the next segment; reopening after recovery continues the log", () => {
    const d = dir("reopen");
    const first = ShardLog.open(d, 1, limits);
    const written: Entry[] = [];
    for (let i = 0; i < 10; i++) {
      written.push(entry(i, "a"));
      appendEntry(first, written.at(-1)!);
    }
    expect(first.rotate()).toBe(2);
    for (let i = 10; i < 20; i++) {
      written.push(entry(i, "a"));
      appendEntry(first, written.at(-1)!);
    }
    first.close();
    const back = recovered(d);
    expect(back.entries).toEqual(written);
    expect(back.nextSegment).toBe(3);

    const second = ShardLog.open(d, back.nextSegment, limits);
    for (let i = 20; i < 30; i++) {
      written.push(entry(i, "b"));
      appendEntry(second, written.at(-1)!);
    }
    second.close();
    expect(recovered(d).entries).toEqual(written);
    expect(() => ShardLog.open(d, 3, limits)).toThrow(/EEXIST/);
  });

  test("bad input throws a RangeError naming the limit, and nothing is written", () => {
    const d = dir("badinput");
    const log = ShardLog.open(d, 1, limits);
    appendEntry(log, entry(1, "ok"));
    log.sync();
    const size = statSync(join(d, segmentName(1))).size;
    const key = new Uint8Array(limits.keyBytesMax + 1);
    const value = new Uint8Array(limits.valueBytesMax + 1);
    const k = new Uint8Array(3);
    expect(() => log.append(key, 0, key.length, 1, 1, true, false, null, 0, 0)).toThrow(/keyBytesMax is 256/);
    expect(() => log.append(k, 0, 3, 1, 1, true, false, value, 0, value.length)).toThrow(/valueBytesMax is 4096/);
    expect(() => log.append(k, 0, 3, -1, 1, true, false, null, 0, 0)).toThrow(/version -1/);
    expect(() => log.append(k, 0, 3, 2 ** 53, 1, true, false, null, 0, 0)).toThrow(/version/);
    expect(() => log.append(k, 0, 3, 1.5, 1, true, false, null, 0, 0)).toThrow(/version 1.5/);
    expect(() => log.append(k, 0, 3, 1, 2 ** 32, true, false, null, 0, 0)).toThrow(/writer 4294967296/);
    expect(() => log.append(k, 1, 3, 1, 1, true, false, null, 0, 0)).toThrow(
      /key range \[1, 4\) outside its 3-byte array/,
    );
    expect(() => log.append(k, 0, 3, 1, 1, true, false, k, 2, 2)).toThrow(/value range \[2, 4\) outside/);
    expect(() => log.append(k, -1, 1, 1, 1, true, false, null, 0, 0)).toThrow(/key range/);
    log.sync();
    expect(log.stats.records).toBe(1);
    expect(statSync(join(d, segmentName(1))).size).toBe(size);
    log.close();
    expect(recovered(d).entries).toEqual([entry(1, "ok")]);
  });

  test("limits that the format cannot hold are refused at open", () => {
    const d = dir("limits");
    expect(() => ShardLog.open(d, 1, { ...limits, keyBytesMax: 70_000 })).toThrow(/keyBytesMax 70000/);
    expect(() => ShardLog.open(d, 1, { ...limits, segmentBytesMax: 100 })).toThrow(/segmentBytesMax 100/);
    expect(() => ShardLog.open(d, 0, limits)).toThrow(/first segment 0/);
    expect(readdirSync(d)).toEqual([]);
  });
});
