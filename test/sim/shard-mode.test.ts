// The simulator's shard mode: the real Shard loop, frame codec, SimTransport and op rings per node
// under the same faults and oracles as the core mode. Seeds must pass, every seed must replay
// exactly in each mode, and the protocol mutants must be caught through the real loop too.

import { expect, test } from "bun:test";
import { mutants } from "./mutants.ts";
import { simModes } from "./options.ts";
import { formatFailure, runSeed } from "./run-seed.ts";
import { Simulation } from "./simulation.ts";

// scripts/test.sh also runs `bun test/sim/main.ts --seeds 300 --mode shard`.
const seeds = Number(process.env.SIM_SHARD_SEEDS ?? 50);

test(`${seeds} seeds in shard mode: frames through the real loop with loss, duplication, reordering, partitions, stalls, crashes and membership changes`, () => {
  let ops = 0;
  let unknownOutcomes = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const result = runSeed(seed, { mode: "shard" });
    if (!result.ok) throw new Error(formatFailure(result));
    ops += result.ops;
    unknownOutcomes += result.statusCounts.get("unknown") ?? 0;
  }
  expect(ops).toBe(seeds * 400);
  expect(unknownOutcomes).toBeGreaterThan(0);
}, 300_000);

for (const mode of simModes) {
  test(`${mode} mode: a seed replays exactly (same history, same simulated time), another seed differs`, () => {
    const a = runSeed(42, { mode });
    const b = runSeed(42, { mode });
    expect(a.ok).toBe(true);
    expect(a.mode).toBe(mode);
    expect(b.simulatedMs).toBe(a.simulatedMs);
    expect([...b.statusCounts]).toEqual([...a.statusCounts]);
    expect(b.history).toEqual(a.history);
    const c = runSeed(43, { mode });
    expect(c.history).not.toEqual(a.history);
  });
}

test("the two modes are different runs of the same seed (frames, not messages, on the network)", () => {
  const core = runSeed(7, { mode: "core" });
  const shard = runSeed(7, { mode: "shard" });
  expect(core.ok && shard.ok).toBe(true);
  expect(shard.history).not.toEqual(core.history);
});

// Seed 5 sends untagged frames, seed 6 tagged ones (options.frameMac: even seeds).
for (const seed of [5, 6]) {
  test(`shard mode runs the real loop: frames are sent, decoded and answered through the rings (seed ${seed})`, () => {
    const sims: Simulation[] = [];
    const start = Simulation.prototype.start;
    Simulation.prototype.start = function (this: Simulation) {
      sims.push(this);
      start.call(this);
    };
    try {
      expect(runSeed(seed, { mode: "shard" }).ok).toBe(true);
    } finally {
      Simulation.prototype.start = start;
    }
    expect(sims[0]!.options.frameMac).toBe(seed % 2 === 0);
    const nodes = sims[0]!.nodes;
    for (const node of nodes) {
      const shard = node.shard!.shard;
      expect(node.replica).toBe(shard.replica);
      expect(shard.loopTurns).toBeGreaterThan(0);
      expect(shard.transport.kind).toBe("sim");
      expect(shard.init.frameKey !== null && shard.init.frameKey !== undefined).toBe(seed % 2 === 0);
      expect(shard.decoder.stats.messagesAccepted).toBeGreaterThan(0);
      // Every frame verified (with the MAC) and parsed: none dropped for any reason.
      expect(shard.decoder.stats.framesDropped).toBe(0);
    }
  });
}

const mutantSeedsMax = 400;

for (const [name, makeReplica] of Object.entries(mutants)) {
  test(`shard mode catches the mutation: ${name}`, () => {
    let caughtAt = 0;
    let oracle = "";
    for (let seed = 1; seed <= mutantSeedsMax && caughtAt === 0; seed++) {
      const result = runSeed(seed, { mode: "shard" }, makeReplica);
      if (!result.ok) {
        caughtAt = seed;
        oracle = result.oracle ?? "";
      }
    }
    console.log(`  shard mode, mutation "${name}": caught at seed ${caughtAt} by ${oracle || "nothing"}`);
    expect(caughtAt).toBeGreaterThan(0);
    expect(oracle).not.toBe("assertion");
  }, 120_000);
}
