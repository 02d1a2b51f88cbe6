// Prove the oracles can fail: each test-only mutation of the core breaks one protocol rule, and the
// simulator must catch it within a few hundred seeds. A surviving mutant means a weak oracle.

import { expect, test } from "bun:test";
import { mutants } from "./mutants.ts";
import { runSeed } from "./run-seed.ts";

const seedsMax = 400;

for (const [name, makeReplica] of Object.entries(mutants)) {
  test(`the simulator catches the mutation: ${name}`, () => {
    let caughtAt = 0;
    let oracle = "";
    for (let seed = 1; seed <= seedsMax && caughtAt === 0; seed++) {
      const result = runSeed(seed, {}, makeReplica);
      if (!result.ok) {
        caughtAt = seed;
        oracle = result.oracle ?? "";
      }
    }
    console.log(`  mutation "${name}": caught at seed ${caughtAt} by ${oracle || "nothing"}`);
    expect(caughtAt).toBeGreaterThan(0);
    expect(oracle).not.toBe("assertion"); // caught by an oracle, not by a crash of the mutant
  }, 120_000);
}
