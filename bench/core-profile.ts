// Runs one round of the core's microbenchmarks (bench/core-rounds.ts) in a loop, for the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/core-profile.ts read|write|incr|create [rounds]
// Prints the mean time per round (a rough figure: mitata's bench/core.bench.ts is the measurement).

import { completed, createRound, incrRound, readRound, writeRound } from "./core-rounds.ts";

const roundsByName: Record<string, () => void> = {
  read: readRound,
  write: writeRound,
  incr: incrRound,
  create: createRound,
};
const name = process.argv[2] ?? "";
const round = roundsByName[name];
if (round === undefined) {
  console.error(`usage: bun bench/core-profile.ts ${Object.keys(roundsByName).join("|")} [rounds]`);
  process.exit(2);
}
const rounds = Number(process.argv[3] ?? 2_000_000);
if (!Number.isSafeInteger(rounds) || rounds <= 0) {
  console.error(`rounds must be a positive integer, got ${process.argv[3]}`);
  process.exit(2);
}
const before = completed;
const start = Bun.nanoseconds();
for (let i = 0; i < rounds; i++) round();
const ns = (Bun.nanoseconds() - start) / rounds;
if (completed === before) throw new Error("no op completed: the loop measured nothing");
console.log(`${name}: ${ns.toFixed(1)} ns per round over ${rounds} rounds`);
