// Runs one round of the core's microbenchmarks (bench/core-rounds.ts) in a loop, for the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/core-profile.ts read|write|incr|create [rounds]
// Prints the time per round (a rough figure: mitata's bench/core.bench.ts is the measurement).

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
// The mean over all rounds, and the least mean of batches of 10 k rounds: the machine is shared,
// and the least batch is the figure least disturbed by other work.
const batch = 10_000;
let best = Infinity;
const start = Bun.nanoseconds();
const cpuStart = process.cpuUsage();
for (let done = 0; done < rounds; done += batch) {
  const batchStart = Bun.nanoseconds();
  const n = Math.min(batch, rounds - done);
  for (let i = 0; i < n; i++) round();
  best = Math.min(best, (Bun.nanoseconds() - batchStart) / n);
}
const ns = (Bun.nanoseconds() - start) / rounds;
// CPU time is counted only while this process runs: less disturbed than wall time by the others' load.
const cpu = process.cpuUsage(cpuStart);
const cpuNs = ((cpu.user + cpu.system) * 1000) / rounds;
if (completed === before) throw new Error("no op completed: the loop measured nothing");
console.log(
  `${name}: ${ns.toFixed(1)} ns per round over ${rounds} rounds (CPU time ${cpuNs.toFixed(1)}), ${best.toFixed(1)} in the fastest batch of ${batch}`,
);
