// The durability target: 0 acknowledged writes lost over 20 whole-cluster SIGKILLs under load.
// 3 `hermes-kv node` processes with --data-dir --durability fsync and a real etcd; each round runs
// a load with unique values, SIGKILLs all three at a random moment, restarts them on their dirs,
// and checks that every key's version is at least that of every update acknowledged on it. At the
// end the whole history (every crash, final reads on every node) is checked for linearizability.
// The same rounds as test/cluster/durable-crash.test.ts, more of them.
//
//   bun bench/durable-crash.ts [rounds=20] [seed]

import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { convergeAndReadAll, ProcCluster, prng, Recorder } from "../test/cluster/helpers.ts";
import { crashRound } from "../test/cluster/durable-helpers.ts";

const rounds = Number(process.argv[2] ?? 20);
const seed = Number(process.argv[3] ?? 0xd15c_0003);
const keys = ["bk-a", "bk-b", "bk-c", "bk-d", "bk-e", "bk-f"];
const counters = ["bc-x", "bc-y"];

const base = mkdtempSync(join(tmpdir(), "hermes-durable-crash-bench-"));
const cluster = await ProcCluster.start({
  nodes: 3,
  leaseMs: 1000,
  nodeArgsOf: (id) => ["--data-dir", join(base, `node-${id}`), "--durability", "fsync"],
});
const recorder = new Recorder();
const random = prng(seed);
let lost = 0;
let acked = 0;
try {
  console.log(`${rounds} whole-cluster SIGKILLs, seed ${seed}, load ${loadavg()[0]!.toFixed(1)}`);
  for (let round = 0; round < rounds; round++) {
    const result = await crashRound(cluster, recorder, {
      keys,
      counters,
      seed: seed + round,
      clientIdBase: round * 100,
      ackedBeforeKill: 20 + Math.floor(random() * 300),
      killDelayMs: Math.floor(random() * 100),
    });
    acked += result.acked;
    const lostHere = [...result.ackedVersionMax].filter(([key, v]) => (result.versionAfter.get(key) ?? 0) < v);
    lost += lostHere.length;
    console.log(
      `round ${round + 1}: ${result.acked} updates acknowledged before the kill; keys behind an acknowledged version: ${lostHere.length}; serving again after ${result.restartMs.toFixed(0)} ms`,
    );
  }
  const { converged, finalReads } = await convergeAndReadAll(cluster.urls(), [...keys, ...counters], recorder, 100_000);
  const verdict = recorder.check();
  console.log(
    `done: ${rounds} crashes, ${acked} acknowledged updates, keys found behind an acknowledged version: ${lost}; ` +
      `converged ${converged}, final reads ok ${finalReads.every((r) => r.outcome === "ok")}, ` +
      `unexpected answers ${recorder.unexpected.length}, linearizable ${verdict.ok}; load ${loadavg()[0]!.toFixed(1)}`,
  );
  if (verdict.ok !== true) console.log(JSON.stringify(verdict).slice(0, 2000));
  process.exitCode = lost === 0 && verdict.ok === true && converged ? 0 : 1;
} catch (error) {
  console.error(cluster.logs(80));
  throw error;
} finally {
  await cluster.close();
  rmSync(base, { recursive: true, force: true });
}
