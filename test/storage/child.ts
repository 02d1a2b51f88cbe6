// A second, real process for the storage tests (run with Bun.spawn):
//   child.ts recover DIR            recovers DIR read-only (another process may be writing it) and prints {"records": N, "bytesDropped": N}
//   child.ts write DIR              recovers DIR, then appends entry(i, "kill") from where it left off
//                                   in synced batches, taking a snapshot every few batches; prints
//                                   "synced N" after each sync (N entries durable in all), until killed
//   child.ts lock DIR CLUSTER NODE  opens the data dir; prints "held" and keeps the lock until killed,
//                                   or prints the error's name and message and exits 3

import { DataDir } from "../../src/storage/data-dir.ts";
import { recoverShard } from "../../src/storage/recovery.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { SnapshotWriter } from "../../src/storage/snapshot-file.ts";
import { appendEntry, collectInto, entry, limits, type Entry } from "./helpers.ts";

const [command, dir, cluster, node] = process.argv.slice(2);
if (command === "recover") {
  let records = 0;
  const result = recoverShard(dir!, () => records++, { readOnly: true });
  console.log(JSON.stringify({ records, bytesDropped: result.bytesDropped }));
} else if (command === "write") {
  const all: Entry[] = [];
  const result = recoverShard(dir!, collectInto(all));
  const log = ShardLog.open(dir!, result.nextSegment, { ...limits, segmentBytesMax: 8 * 1024 });
  const encoder = new TextEncoder();
  for (let batch = 0; ; batch++) {
    const size = 1 + (batch % 64);
    for (let i = 0; i < size; i++) {
      all.push(entry(all.length, "kill"));
      appendEntry(log, all.at(-1)!);
    }
    log.sync();
    console.log(`synced ${all.length}`);
    if (batch % 16 === 15) {
      const writer = SnapshotWriter.begin(dir!, log.rotate(), limits, 4096, 16 * 1024);
      for (const e of all) {
        const key = encoder.encode(e.key);
        const value = e.value === null ? null : encoder.encode(e.value);
        writer.add(key, 0, key.length, e.version, e.writer, e.valid, e.rmw, value, 0, value?.length ?? 0);
      }
      writer.finish();
    }
  }
} else if (command === "lock") {
  try {
    DataDir.open(dir!, { cluster: cluster!, node: Number(node) });
    console.log("held");
    setInterval(() => {}, 1000); // keep the process (and so the lock) alive until the test kills it
  } catch (error) {
    console.log(`${(error as Error).name}: ${(error as Error).message}`);
    process.exit(3);
  }
} else {
  console.error(`usage: child.ts recover DIR | write DIR | lock DIR CLUSTER NODE`);
  process.exit(2);
}
