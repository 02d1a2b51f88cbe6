// Whole-cluster crashes with `--data-dir --durability fsync` (real etcd, real processes, real disk).
//
// Rounds of: concurrent load with unique values on every node; all three nodes SIGKILLed at once at
// a random moment; all three restarted on the same data dirs; they recover, merge and serve again.
// Asserted:
// - after every restart, every key's version is at least the version of every update that was
//   acknowledged on it before the crash (versions only grow: a lower one means a lost write);
// - every node answers the same for every key once they serve again;
// - the one history, spanning every crash and ending with reads of every key on every node, is
//   linearizable (a lost acknowledged write shows as an impossible read);
// - no answer was outside the HTTP contract.
// The rounds are few here (time); bench/durable-crash.ts runs 20 for the target.

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ProcCluster,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  prng,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";
import { crashRound } from "./durable-helpers.ts";

const seed = testSeed(0xd15c_0001);
const rounds = 3;
const leaseMs = 1000;
const keys = ["dk-a", "dk-b", "dk-c", "dk-d"];
const counters = ["dc-x", "dc-y"];

const base = mkdtempSync(join(tmpdir(), "hermes-durable-crash-"));
let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
  rmSync(base, { recursive: true, force: true });
}, 30_000);

test(`SIGKILL all three nodes at once under load, ${rounds} times: nothing acknowledged is lost, history linearizable (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({
    nodes: 3,
    leaseMs,
    nodeArgsOf: (id) => ["--data-dir", join(base, `node-${id}`), "--durability", "fsync"],
  });
  const c = cluster;
  const urls = c.urls();
  const recorder = new Recorder();
  const random = prng(seed);
  try {
    for (let round = 0; round < rounds; round++) {
      const result = await crashRound(c, recorder, {
        keys,
        counters,
        seed: seed + round,
        clientIdBase: round * 100,
        // Kill after a random number of acknowledged updates: a random moment of the load.
        ackedBeforeKill: 20 + Math.floor(random() * 150),
        killDelayMs: Math.floor(random() * 50),
      });
      // Every update acknowledged before the crash is still there: versions never go back.
      for (const [key, version] of result.ackedVersionMax)
        expect(result.versionAfter.get(key)!, `key ${key} after round ${round}`).toBeGreaterThanOrEqual(version);
      console.error(
        `durable crash round ${round}: ${result.acked} acknowledged updates before the kill, restarted and serving in ${result.restartMs.toFixed(0)} ms`,
      );
    }
    // A last load, then every key read from every node.
    let stop = false;
    const load = startLoad({
      urls,
      recorder,
      keys,
      counters,
      clientsPerNode: 2,
      seed: seed + rounds,
      clientIdBase: rounds * 100,
      stop: () => stop,
      opsMax: 200_000,
    });
    const before = ackedUpdates(recorder, () => true).length;
    await waitFor(
      "30 acknowledged updates after the last restart",
      () => ackedUpdates(recorder, () => true).length >= before + 30,
      30_000,
    );
    stop = true;
    await load.done;
    const { converged, answers, finalReads } = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 10_000);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}`).toBe(true);
    expect(finalReads.every((r) => r.outcome === "ok")).toBe(true);
    expect(recorder.unexpected).toEqual([]);
    console.error(
      `durable crash: ${recorder.history.invokedCount} ops over ${rounds} crashes; ${recorder.tallyText()}`,
    );
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  }
}, 240_000);
