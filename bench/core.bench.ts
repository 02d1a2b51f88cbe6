// mitata microbenchmarks of the Hermes core: the cost of a local read, and of a full write round
// (coordinator + 2 followers in one thread: INV, ACK, VAL); the rounds are in bench/core-rounds.ts.
// `bun bench/core.bench.ts`

import { bench, run, summary } from "mitata";
import { completed, createRound, createRoundUnordered, incrRound, readRound, writeRound } from "./core-rounds.ts";

summary(() => {
  bench("core: local read of a Valid key", readRound);
  bench("core: write round, 3 replicas (INV, 2 ACK, VAL in memory)", writeRound);
  bench("core: incr round, 3 replicas (RMW)", incrRound);
});

// What the ordered key index adds to the write path: only a write that creates a key inserts into
// it (overwrites, deletes and reads never touch it), so the rounds below create a key each time.
summary(() => {
  bench("core: write round creating a key, ordered key index (default)", createRound);
  bench("core: write round creating a key, no ordered index (orderedKeys: false)", createRoundUnordered);
});

await run({ colors: false });
if (completed === 0) throw new Error("no op completed: the benchmark measured nothing");
