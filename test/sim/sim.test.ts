// The seeded simulation as a test: seeds (3, 5 and 7 replicas in turn) with faults must end
// with no violation, and a seed must replay exactly.

import { expect, test } from "bun:test";
import { formatFailure, runSeed } from "./run-seed.ts";

// .ci/run also runs `bun run sim --seeds 300`; this test covers the first 100 seeds.
const seeds = Number(process.env.SIM_SEEDS ?? 100);

test(`${seeds} seeds with loss, duplication, reordering, partitions, crashes and membership changes`, () => {
  let ops = 0;
  let unknownOutcomes = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const result = runSeed(seed);
    if (!result.ok) throw new Error(formatFailure(result));
    ops += result.ops;
    unknownOutcomes += result.statusCounts.get("unknown") ?? 0;
  }
  expect(ops).toBe(seeds * 400);
  // Faults must really happen: some updates end with an unknown outcome.
  expect(unknownOutcomes).toBeGreaterThan(0);
}, 300_000);

test("a seed replays exactly: same answers, same simulated time", () => {
  const a = runSeed(42);
  const b = runSeed(42);
  expect(a.ok).toBe(true);
  expect(b.simulatedMs).toBe(a.simulatedMs);
  expect([...b.statusCounts]).toEqual([...a.statusCounts]);
  const c = runSeed(43);
  expect(c.simulatedMs).not.toBe(a.simulatedMs);
});
