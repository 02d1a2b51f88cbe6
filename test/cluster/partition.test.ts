// One node is cut off the replica transport (not from etcd) with the --test-hooks drop rule: it
// drops all traffic to and from the others, and they drop all traffic to and from it. etcd still
// sees it, so it keeps its lease and stays a member: nobody may commit without its ACK.
// The nodes run with the failure detector off (--suspect-ms 0), so this is what a cluster without
// it does; with it (the default), the cut node is evicted and writes resume: peer-partition.test.ts.
//
// Asserted:
// - the membership does not change during the partition (same epoch, all three members, all serving);
// - writes stall: no update invoked (anywhere) after the partition took effect is acknowledged
//   before the heal; such updates answer 504 (outcome unknown) after the op timeout, which the
//   contract allows, or are still pending at the heal;
// - reads on the isolated node of keys written before the partition (and not written since) keep
//   answering the value written before;
// - after the heal every node takes updates again, all nodes converge, and the history (stalled
//   updates as unknown outcomes, final reads of every key included) is linearizable.

import { afterAll, expect, test } from "bun:test";
import {
  LoadClient,
  ProcCluster,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x9a27_0001);
const leaseMs = 1000;
const isolated = 2;
const keys = ["hot-a", "hot-b", "hot-c", "hot-d"];
const counters = ["ctr-x"];
/** Written before the partition and never again: the isolated node must keep answering them. */
const stableKeys = ["stable-0", "stable-1", "stable-2", "stable-3"];
/**
 * The drop rule reaches the shard workers by postMessage while client ops travel through the
 * rings, so an op submitted right after the hook's HTTP answer may overtake it. Updates invoked
 * within this slack after the partition are not held to "must stall".
 */
const dropRuleSlackMs = 200;
/** Reads of the stable keys on the isolated node during the partition. */
const stableReadRounds = 5;

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

test(`a node cut off the transport stalls writes (504 allowed), keeps correct reads, and recovers on heal (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs, testHooks: true, nodeArgs: ["--suspect-ms", "0"] });
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
    const writer = new LoadClient(500, 0, urls, recorder);
    const stableValues = new Map<string, string>();
    for (const [i, key] of stableKeys.entries()) {
      writer.node = i % urls.length;
      const value = `stable-${i}-${seed}`;
      expect((await writer.write(key, value)).status).toBe(200);
      stableValues.set(key, value);
    }
    await waitFor(
      "150 acknowledged updates before the partition",
      () => ackedUpdates(recorder, () => true).length >= 150,
      30_000,
    );
    const before = await Promise.all(c.nodes.map((n) => n.status()));
    const epoch = before[0]!.epoch;
    expect(before.map((s) => [s?.epoch, s?.members])).toEqual(c.nodes.map(() => [epoch, [0, 1, 2]]));

    await c.isolate(isolated);
    const isolatedAt = performance.now();

    // Probe writes on every node, invoked once the drop rule surely took effect: they cannot
    // collect every ACK, so after the op timeout (5 s) they answer 504 (started: outcome unknown)
    // or, if they waited behind another stalled update on the key and never started, 503 timeout.
    await Bun.sleep(dropRuleSlackMs);
    const probes = Promise.all(
      c.nodes.map((n) =>
        new LoadClient(510 + n.id, n.id, urls, recorder).write(keys[n.id % keys.length]!, `probe-${n.id}-${seed}`),
      ),
    );
    // Meanwhile, reads of the stable keys on the isolated node, spread over the partition.
    const reader = new LoadClient(501, isolated, urls, recorder);
    const stableReads = [];
    for (let round = 0; round < stableReadRounds; round++) {
      for (const key of stableKeys) stableReads.push(await reader.read(key));
      await Bun.sleep(200);
    }
    const probeAnswers = await probes;
    const during = await Promise.all(c.nodes.map((n) => n.status()));

    const healingAt = performance.now();
    await c.heal();
    const healedAt = performance.now();
    await waitFor(
      "20 acknowledged updates on every node after the heal",
      () => c.nodes.every((n) => ackedUpdates(recorder, (r) => r.node === n.id && r.call > healedAt).length >= 20),
      30_000,
    );
    stopLoad = true;
    await load.done;

    // Nobody was removed: etcd still saw the isolated node.
    expect(during.map((s) => [s?.epoch, s?.members, s?.serving])).toEqual(c.nodes.map(() => [epoch, [0, 1, 2], true]));
    for (const r of stableReads) {
      expect(r.status).toBe(200);
      expect(r.value).toBe(stableValues.get(r.key)!);
    }
    const stalled = ackedUpdates(recorder, (r) => r.call > isolatedAt + dropRuleSlackMs && r.ret < healingAt);
    expect(stalled).toEqual([]);
    const stalledUnknown = recorder.records.filter(
      (r) => r.kind !== "read" && r.call > isolatedAt && r.ret < healingAt && r.status === 504,
    );
    // Every probe stalled: 504 (outcome unknown) or 503 "timeout" (never started); none was acknowledged.
    for (const probe of probeAnswers) {
      expect([503, 504]).toContain(probe.status as number);
      expect(probe.outcome).toBe(probe.status === 504 ? "unknown" : "failed");
    }

    const { converged, answers } = await convergeAndReadAll(
      urls,
      [...keys, ...counters, ...stableKeys],
      recorder,
      1000,
    );
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    console.error(
      `cluster partition: partition ${(healingAt - isolatedAt).toFixed(0)} ms, ${stalledUnknown.length} updates answered 504; ` +
        `${recorder.history.invokedCount} ops; ${recorder.tallyText()}`,
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
