// mitata microbenchmarks of the storage layer (issue 11), per record of a 17-byte key and a 32-byte
// value (73 bytes on disk):
// - CRC32C of one record's checked bytes, slicing-by-8 against the byte-at-a-time loop;
// - append of one record: the copy into the log's buffer plus its share of the 1 MiB writes, on a
//   tmpfs (/dev/shm) so that the figure is the CPU cost of the log and not the disk's;
// - group commit on this machine's disk (the OS tmpdir): 64 appends + one fdatasync, against one
//   fdatasync per record, and against 64 appends + a write with no fdatasync (the `async` mode's
//   per-batch cost). Divide a batch's time by 64 for the per-record figure.
// Old segments are deleted as the log rotates, so the bench's disk use stays bounded.
// Then, timed once each (not mitata: they take seconds): writing a snapshot of 100 k and 1 M keys
// (add + finish with its fdatasync), and recovering the same keys from that snapshot, and from a
// log of as many records, on this machine's disk.
//
//   bun bench/storage.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c, crc32cBytewise } from "../src/storage/crc32c.ts";
import { encodeRecord, RecordKind } from "../src/storage/record-layout.ts";
import { segmentName } from "../src/storage/shard-files.ts";
import { ShardLog, type ShardLogLimits } from "../src/storage/shard-log.ts";
import { recoverShard } from "../src/storage/recovery.ts";
import { SnapshotWriter } from "../src/storage/snapshot-file.ts";

const recordsPerBatch = 64;
const limits: ShardLogLimits = {
  keyBytesMax: 256,
  valueBytesMax: 4096,
  segmentBytesMax: 16 * 1024 * 1024,
  bufferBytes: 1024 * 1024,
};
const key = new TextEncoder().encode("user:100000000042");
const value32 = new Uint8Array(32).fill(0xab);

const memoryRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
const memoryDir = mkdtempSync(join(memoryRoot, "hermes-storage-bench-"));
const diskDir = mkdtempSync(join(tmpdir(), "hermes-storage-bench-"));
const dirs = [memoryDir, diskDir];

let nextSegment = 1;
function openLog(root: string): { log: ShardLog; dir: string } {
  const dir = join(root, `log-${nextSegment++}`);
  Bun.spawnSync(["mkdir", "-p", dir]);
  return { log: ShardLog.open(dir, 1, limits), dir };
}

/** Deletes every segment before the current one: keeps the bench's files bounded. */
function dropOldSegments(log: ShardLog, dir: string): void {
  for (const name of readdirSync(dir)) if (name < segmentName(log.segment)) unlinkSync(join(dir, name));
}

let version = 1;
function appendOne(log: ShardLog): void {
  log.append(key, 0, key.length, version++, 1, true, false, value32, 0, value32.length);
}

const record = new Uint8Array(256);
const recordView = new DataView(record.buffer);
const recordLength = encodeRecord(record, recordView, 0, RecordKind.Entry, 1, key, 0, key.length, 7, 1, value32, 0, 32);

const memory = openLog(memoryDir);
const durable = openLog(diskDir);
const eachRecord = openLog(diskDir);
const writeOnly = openLog(diskDir);
let lastSegment = memory.log.segment;

summary(() => {
  group(`CRC32C of one ${recordLength}-byte record`, () => {
    bench("crc32c slicing-by-8", () => do_not_optimize(crc32c(record, 8, recordLength)));
    bench("crc32c byte at a time", () => do_not_optimize(crc32cBytewise(record, 8, recordLength)));
  });
});

summary(() => {
  group("append one record (32-byte value)", () => {
    bench("encode into a buffer (header, copy, CRC)", () =>
      do_not_optimize(
        encodeRecord(record, recordView, 0, RecordKind.Entry, 1, key, 0, key.length, version++, 1, value32, 0, 32),
      ),
    );
    bench("ShardLog.append, tmpfs, 1 MiB writes amortized", () => {
      appendOne(memory.log);
      if (memory.log.segment !== lastSegment) {
        lastSegment = memory.log.segment;
        dropOldSegments(memory.log, memory.dir);
      }
    });
  });
});

summary(() => {
  group(`${recordsPerBatch} records, ${diskDir} (this machine's disk)`, () => {
    bench(`${recordsPerBatch} appends + 1 write, no fdatasync (async)`, () => {
      for (let i = 0; i < recordsPerBatch; i++) appendOne(writeOnly.log);
      writeOnly.log.flush();
    });
    bench(`${recordsPerBatch} appends + 1 fdatasync (group commit)`, () => {
      for (let i = 0; i < recordsPerBatch; i++) appendOne(durable.log);
      durable.log.sync();
    });
    bench(`${recordsPerBatch} × (append + fdatasync) (no group commit)`, () => {
      for (let i = 0; i < recordsPerBatch; i++) {
        appendOne(eachRecord.log);
        eachRecord.log.sync();
      }
    });
  });
});

const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
console.log(`load average ${load}; disk dir ${diskDir}, memory dir ${memoryDir}`);
await run({ colors: false });
console.log(`load average after ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
for (const opened of [memory, durable, eachRecord, writeOnly]) opened.log.close();

/** Key i as bytes, written into one reused buffer: "user:" and 12 digits, 17 bytes like the rest. */
const keyBuffer = new Uint8Array(17);
function keyOf(i: number): Uint8Array {
  keyBuffer.set(key.subarray(0, 5));
  let n = i;
  for (let d = 16; d >= 5; d--) {
    keyBuffer[d] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return keyBuffer;
}

for (const keys of [100_000, 1_000_000]) {
  const { log, dir } = openLog(diskDir);
  let began = performance.now();
  for (let i = 0; i < keys; i++) {
    log.append(keyOf(i), 0, 17, i + 1, 1, true, false, value32, 0, 32);
    if (i % recordsPerBatch === recordsPerBatch - 1) log.flush();
  }
  log.sync();
  const logMs = performance.now() - began;
  const coversBefore = log.rotate();
  log.close();

  let records = 0;
  began = performance.now();
  recoverShard(dir, () => records++);
  const replayMs = performance.now() - began;

  began = performance.now();
  const writer = SnapshotWriter.begin(dir, coversBefore, limits);
  for (let i = 0; i < keys; i++) writer.add(keyOf(i), 0, 17, i + 1, 1, true, false, value32, 0, 32);
  const done = writer.finish();
  const snapshotMs = performance.now() - began;

  let entries = 0;
  began = performance.now();
  recoverShard(dir, () => entries++);
  const loadMs = performance.now() - began;
  if (records !== keys || entries !== keys) throw new Error(`recovered ${records} and ${entries} of ${keys}`);
  console.log(
    `${keys} keys: log append+sync ${logMs.toFixed(0)} ms, replay of the log ${replayMs.toFixed(0)} ms; ` +
      `snapshot write ${snapshotMs.toFixed(0)} ms (${(done.bytes / 1e6).toFixed(1)} MB), load of the snapshot ${loadMs.toFixed(0)} ms`,
  );
}
console.log(`load average at the end ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
