// A second, real process for the storage tests (run with Bun.spawn):
//   child.ts recover DIR            recovers DIR read-only (another process may be writing it) and prints {"records": N, "bytesDropped": N}
//   child.ts lock DIR CLUSTER NODE  opens the data dir; prints "held" and keeps the lock until killed,
//                                   or prints the error's name and message and exits 3

import { DataDir } from "../../src/storage/data-dir.ts";
import { recoverShard } from "../../src/storage/recovery.ts";

const [command, dir, cluster, node] = process.argv.slice(2);
if (command === "recover") {
  let records = 0;
  const result = recoverShard(dir!, () => records++, { readOnly: true });
  console.log(JSON.stringify({ records, bytesDropped: result.bytesDropped }));
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
  console.error(`usage: child.ts recover DIR | lock DIR CLUSTER NODE`);
  process.exit(2);
}
