// Memory per key of one shard's Replica, loaded the way a rejoining node's state transfer loads it
// (beginJoin, installSnapshotRecords per 1 MiB chunk of records, finishJoin; a build from before
// the records uses installSnapshotEntry per key, as it did), after a full GC. Each size runs in a
// fresh process so that RSS is not inherited from a larger run. Measures; asserts nothing.
//
//   bun bench/memory-per-key.ts                 1 M and 4 M keys, 9-byte keys, 32-byte values
//   bun bench/memory-per-key.ts 100000 1000000  other sizes
//   MEMORY_VALUE_BYTES=100 bun bench/memory-per-key.ts
//
// "heap" is Bun's heapUsed after Bun.gc(true): the JS heap plus the memory that ArrayBuffers hold
// outside it (Bun counts both), so typed-array slabs are included. "rss" is the process's resident
// set. Both are the difference to the same process before loading, divided by the keys.
// If redis-server is installed, the same keys and values are loaded into a Redis started for the
// run (no persistence) and its used_memory / used_memory_rss per key are printed beside.

import { Replica } from "../src/core/replica.ts";
import { defaultReplicaConfig } from "../src/core/types.ts";
import * as records from "../src/core/snapshot-records.ts";

/**
 * The record layout after the key (offsets from the end of the key), named by snapshot-records.ts
 * since writer ids became u32s; builds from before had a u8 writer and these offsets.
 */
const named = records as Partial<
  Record<"recordWriterOffset" | "recordFlagsOffset" | "recordValueBytesOffset" | "recordValueOffset", number>
>;
const wideWriter = named.recordWriterOffset !== undefined;
const writerOffset = named.recordWriterOffset ?? 8;
const flagsOffset = named.recordFlagsOffset ?? 9;
const valueBytesOffset = named.recordValueBytesOffset ?? 10;
const valueOffset = named.recordValueOffset ?? 14;

const keyBytes = 9;
const valueBytes = Number(process.env.MEMORY_VALUE_BYTES ?? 32);
/** 9 bytes: "k" and 8 digits. */
const keyOf = (i: number): string => `k${i.toString().padStart(keyBytes - 1, "0")}`;

interface Figures {
  keys: number;
  heapPerKey: number;
  rssPerKey: number;
  loadMs: number;
}

function settle(): { heap: number; rss: number } {
  Bun.gc(true);
  Bun.gc(true);
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, rss: usage.rss };
}

/** The child: load `keys` keys into one Replica and print the figures as JSON. */
function measure(keys: number): Figures {
  const before = settle();
  const replica = new Replica(
    { ...defaultReplicaConfig, self: 0, keysMax: Math.max(defaultReplicaConfig.keysMax, keys) },
    { send: () => {} },
    { complete: () => {} },
  );
  replica.setMembership(1, [0, 1, 2], 0);
  replica.beginJoin();
  const value = new Uint8Array(valueBytes).fill(0x61);
  const started = performance.now();
  const install = (
    replica as { installSnapshotRecords?: (bytes: Uint8Array, at: number, end: number, nowMs: number) => number }
  ).installSnapshotRecords;
  if (install === undefined) {
    // A build without snapshot records (before issue 13): one entry object per key, as its node did.
    for (let i = 0; i < keys; i++) replica.installSnapshotEntry(keyOf(i), 2, 1, false, value, true, 0);
  } else {
    // Snapshot records (src/core/snapshot-records.ts) in 1 MiB chunks, as a joiner's worker gets them.
    const recordBytes = 2 + keyBytes + valueOffset + valueBytes;
    const chunk = new Uint8Array(Math.floor((1 << 20) / recordBytes) * recordBytes);
    const view = new DataView(chunk.buffer);
    const encoder = new TextEncoder();
    let at = 0;
    for (let i = 0; i < keys; i++) {
      view.setUint16(at, keyBytes, true);
      encoder.encodeInto(keyOf(i), chunk.subarray(at + 2, at + 2 + keyBytes));
      view.setFloat64(at + 2 + keyBytes, 2, true);
      const fields = at + 2 + keyBytes;
      if (wideWriter) view.setUint32(fields + writerOffset, 1, true);
      else chunk[fields + writerOffset] = 1;
      chunk[fields + flagsOffset] = 2 | 4; // committed, has a value
      view.setUint32(fields + valueBytesOffset, valueBytes, true);
      chunk.set(value, fields + valueOffset);
      at += recordBytes;
      if (at === chunk.length || i === keys - 1) {
        if (install.call(replica, chunk, 0, at, 0) !== at) throw new Error("records refused");
        at = 0;
      }
    }
  }
  replica.finishJoin(0);
  const loadMs = performance.now() - started;
  if (replica.keyCount !== keys) throw new Error(`loaded ${replica.keyCount} keys, expected ${keys}`);
  const after = settle();
  // Keep the replica alive past the measurement.
  if (replica.keyCount < 0) console.log(replica);
  return { keys, heapPerKey: (after.heap - before.heap) / keys, rssPerKey: (after.rss - before.rss) / keys, loadMs };
}

async function redisFigures(keys: number): Promise<{ usedPerKey: number; rssPerKey: number } | null> {
  if (Bun.which("redis-server") === null || Bun.which("redis-cli") === null) return null;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = Bun.spawn(
    ["redis-server", "--port", String(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    const cli = (...args: string[]) => Bun.spawnSync(["redis-cli", "-p", String(port), ...args]).stdout.toString();
    for (let i = 0; i < 100 && !cli("PING").includes("PONG"); i++) await Bun.sleep(50);
    const info = (): Record<string, number> => {
      const fields: Record<string, number> = {};
      for (const line of cli("INFO", "memory").split("\r\n")) {
        const [name, value] = line.split(":");
        if (name !== undefined && value !== undefined && /^\d+$/.test(value)) fields[name] = Number(value);
      }
      return fields;
    };
    const before = info();
    // SET commands in the Redis protocol, piped in batches.
    const batch = 100_000;
    const value = "a".repeat(valueBytes);
    for (let from = 0; from < keys; from += batch) {
      let text = "";
      for (let i = from; i < Math.min(keys, from + batch); i++)
        text += `*3\r\n$3\r\nSET\r\n$${keyBytes}\r\n${keyOf(i)}\r\n$${valueBytes}\r\n${value}\r\n`;
      const piped = Bun.spawnSync(["redis-cli", "-p", String(port), "--pipe"], { stdin: Buffer.from(text) });
      if (piped.exitCode !== 0) throw new Error(`redis-cli --pipe failed: ${piped.stderr.toString()}`);
    }
    const after = info();
    return {
      usedPerKey: (after.used_memory! - before.used_memory!) / keys,
      rssPerKey: (after.used_memory_rss! - before.used_memory_rss!) / keys,
    };
  } finally {
    server.kill();
    await server.exited;
  }
}

if (process.env.MEMORY_CHILD !== undefined) {
  console.log(JSON.stringify(measure(Number(process.env.MEMORY_CHILD))));
} else {
  const sizes = process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1_000_000, 4_000_000];
  console.log(`keys ${keyBytes} B, values ${valueBytes} B; heap = heapUsed after Bun.gc(true) (ArrayBuffers included)`);
  console.log(
    "| keys | hermes-kv heap B/key | hermes-kv RSS B/key | load | Redis used_memory B/key | Redis RSS B/key |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const keys of sizes) {
    const child = Bun.spawnSync([process.execPath, import.meta.path], {
      env: { ...process.env, MEMORY_CHILD: String(keys) },
      stderr: "inherit",
    });
    if (child.exitCode !== 0) throw new Error(`measuring ${keys} keys failed (exit ${child.exitCode})`);
    const f = JSON.parse(child.stdout.toString()) as Figures;
    const redis = await redisFigures(keys);
    const r =
      redis === null ? ["not installed", "not installed"] : [redis.usedPerKey.toFixed(0), redis.rssPerKey.toFixed(0)];
    console.log(
      `| ${keys.toLocaleString("en")} | ${f.heapPerKey.toFixed(0)} | ${f.rssPerKey.toFixed(0)} | ${(f.loadMs / 1000).toFixed(2)} s | ${r[0]} | ${r[1]} |`,
    );
  }
}
