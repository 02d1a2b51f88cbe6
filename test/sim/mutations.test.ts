// Prove the oracles can fail: each test-only mutation of the core breaks one protocol rule, and the
// simulator must catch it within a few hundred seeds. A surviving mutant means a weak oracle.
// Likewise each bookkeeping mutation must be reported by the whole-state invariants check.
// The rules of a lease loss need rejoins (removed nodes come back): their catch rate is measured.

import { expect, test } from "bun:test";
import { invariantMutants, leaseLossMutants, mutants, reusesWriterIdMutant } from "./mutants.ts";
import { simModes } from "./options.ts";
import { runSeed, type SeedResult } from "./run-seed.ts";
import type { ReplicaFactory } from "./simulation.ts";

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
    expect(oracle).not.toBe("invariants"); // by a protocol oracle: the bookkeeping is intact
  }, 120_000);
}

for (const [name, makeReplica] of Object.entries(invariantMutants)) {
  test(`the simulator reports the broken invariant: ${name}`, () => {
    let caught: SeedResult | null = null;
    for (let seed = 1; seed <= seedsMax && caught === null; seed++) {
      const result = runSeed(seed, {}, makeReplica);
      if (!result.ok) caught = result;
    }
    console.log(`  mutation "${name}": caught at seed ${caught?.seed ?? 0} by ${caught?.oracle ?? "nothing"}`);
    expect(caught).not.toBeNull();
    expect(caught!.oracle).toBe("invariants");
    expect(caught!.detail).toMatch(/^invariants: replica \d+: /);
    expect(caught!.trace!.length).toBeGreaterThan(0);
  }, 120_000);

  test(`without the invariants check, no other oracle catches: ${name}`, () => {
    // Why checkInvariants earns its cost: this mutant passes every safety and liveness oracle.
    const unchecked: ReplicaFactory = (c, o, d, p) => {
      const replica = makeReplica(c, o, d, p);
      replica.checkInvariants = () => {};
      return replica;
    };
    for (let seed = 1; seed <= 20; seed++) expect(runSeed(seed, {}, unchecked).ok).toBe(true);
  }, 120_000);
}

// The double increment of commit 42499e8 escaped the simulator while it never re-added a removed
// node. Now it must be caught on a good share of seeds in both modes (measured on seeds 1-300: 109
// in core mode, 117 in shard mode, all by linearizability: an op kept across the lease loss, applied
// by a replay while its node was out and again when the node retried it).
const rateSeeds = 100;
const [retryMutantName, retryMutant] = Object.entries(leaseLossMutants())[0]!;
for (const mode of simModes) {
  test(`${mode} mode catches "${retryMutantName}" on at least a fifth of ${rateSeeds} seeds`, () => {
    const oracles = new Map<string, number>();
    for (let seed = 1; seed <= rateSeeds; seed++) {
      const result = runSeed(seed, { mode }, retryMutant!);
      if (!result.ok) oracles.set(result.oracle!, (oracles.get(result.oracle!) ?? 0) + 1);
    }
    const caught = [...oracles.values()].reduce((a, b) => a + b, 0);
    console.log(
      `  ${mode} mode, mutation "${retryMutantName}": caught on ${caught} of ${rateSeeds} seeds (${[...oracles].map(([o, n]) => `${o} ${n}`).join(", ")})`,
    );
    expect(caught).toBeGreaterThanOrEqual(rateSeeds / 5);
    expect(oracles.has("assertion")).toBe(false);
    expect(oracles.has("invariants")).toBe(false);
  }, 120_000);
}

// A restarted process comes back under its old node id (restartIdentity "same", the default, as
// hermes-kv). Without the incarnation in its writer id it can reissue a timestamp of its previous
// process; the swarm hits that rarely (core seed 4990: none of seeds 1-3000 did), so the seed that
// found it is replayed, against the fixed core too.
const identitySeed = 4990;
test(`the simulator catches the mutation: a restarted process writes under its old writer id (core seed ${identitySeed})`, () => {
  const mutant = runSeed(identitySeed, { mode: "core" }, reusesWriterIdMutant);
  console.log(
    `  mutation "reuse the writer id": seed ${identitySeed} ${mutant.ok ? "passed" : `caught by ${mutant.oracle}`}`,
  );
  expect(mutant.ok).toBe(false);
  expect(mutant.oracle).toBe("linearizability");
  expect(runSeed(identitySeed, { mode: "core" }).ok).toBe(true);
}, 120_000);
