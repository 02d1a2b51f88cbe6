// A full partition of one node: cut off the replica transport (the --test-hooks drop rule on every
// node) AND from etcd (POST /v1/test/etcd on it). It can no longer renew its lease, so:
// - the isolated side, without a lease, stops serving: /v1/status says serving=false, and every
//   read or write it answers from then on is 503 (never a stale read, never an acknowledged write);
// - etcd removes it once its lease has expired, and the majority side commits without it;
// - after healing, it rejoins (merging its kept state with a serving member's) and serves current data;
// - the whole history, final reads on every node included, is linearizable.

import { afterAll, expect, test } from "bun:test";
import {
  ProcCluster,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  request,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x9a27_0101);
const leaseMs = 1000;
const isolated = 2;
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

async function cutFromEtcd(url: string, partitioned: boolean): Promise<void> {
  const answer = await request(
    `${url}/v1/test/etcd`,
    { method: "POST", body: JSON.stringify({ partitioned }), headers: { "content-type": "application/json" } },
    5000,
  );
  if (answer.kind !== "response" || answer.status !== 200)
    throw new Error(`etcd partition hook failed: ${JSON.stringify(answer)}`);
}

test(`a node cut off from its peers and from etcd stops serving; the majority goes on; it rejoins on heal (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs, testHooks: true });
  const c = cluster;
  const urls = c.urls();
  const recorder = new Recorder();
  let stopLoad = false;
  const load = startLoad({
    urls,
    recorder,
    keys,
    counters,
    clientsPerNode: 3,
    seed,
    stop: () => stopLoad,
    opsMax: 40_000,
  });
  try {
    await waitFor(
      "100 acknowledged updates before the partition",
      () => ackedUpdates(recorder, () => true).length >= 100,
      30_000,
    );

    await c.isolate(isolated);
    await cutFromEtcd(c.node(isolated).url, true);

    // The isolated side loses its lease and says so; from then on it answers nothing but 503.
    await waitFor(
      "the isolated node to stop serving",
      async () => (await c.node(isolated).status())?.serving === false,
      10_000,
    );
    const stoppedAt = performance.now();
    // The majority side: etcd removed the isolated node, and the others serve without it.
    await c.waitMembers([0, 1], 15_000, [0, 1]);
    const removedAt = performance.now();
    await waitFor(
      "50 updates acknowledged by the majority after the removal",
      () => ackedUpdates(recorder, (r) => r.node !== isolated && r.call > removedAt).length >= 50,
      30_000,
    );
    // Fresh reads and writes on the isolated node: all 503 (its load clients may still be blocked
    // on updates they started before the partition, so ask it directly too).
    const probes: number[] = [];
    for (const key of keys) {
      for (const init of [{}, { method: "PUT", body: `probe-${key}-${seed}` }] as RequestInit[]) {
        const answer = await request(`${c.node(isolated).url}/v1/kv/${key}`, init, 5000);
        probes.push(answer.kind === "response" ? answer.status : -1);
      }
    }
    expect(probes).toEqual(probes.map(() => 503));
    const fromIsolated = recorder.records.filter(
      (r) => r.node === isolated && r.call > stoppedAt && typeof r.status === "number",
    );
    for (const r of fromIsolated) expect(r.status).toBe(503);

    // Heal: it re-registers, merges, and serves again with current data.
    await cutFromEtcd(c.node(isolated).url, false);
    await c.heal();
    await c.waitMembers([0, 1, 2], 30_000);
    const healedAt = performance.now();
    await waitFor(
      "20 updates acknowledged by the rejoined node",
      () => ackedUpdates(recorder, (r) => r.node === isolated && r.call > healedAt).length >= 20,
      30_000,
    );
    stopLoad = true;
    await load.done;

    const { converged, answers } = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 1000);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    console.error(
      `cluster full partition: ${probes.length} probes and ${fromIsolated.length} load ops answered 503 by the isolated node; ${recorder.history.invokedCount} ops; ${recorder.tallyText()}`,
    );
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  } finally {
    stopLoad = true;
    await load.done;
  }
}, 120_000);
