// A real 3-replica cluster (LocalCluster: one process, shard workers in threads, TCP between
// replicas, HTTP on 127.0.0.1) driven by 8 concurrent HTTP clients spread over the replicas, doing
// reads, writes, deletes, CAS, create and incr on a few hot keys; the whole client history,
// including a final read of every key from every replica, is checked for linearizability.

import { afterEach, expect, test } from "bun:test";
import type { LocalCluster } from "../../src/cli/local-cluster.ts";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  startCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { checkLinearizable } from "../lib/linearizability.ts";
import { runWorkload } from "./workload.ts";

const seed = testSeed(0x5eed_0003);
const replicas = 3;
const registerKeys = ["hot-a", "hot-b", "hot-c", "hot-d"] as const;
const counterKeys = ["ctr-x", "ctr-y"] as const;

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

function urlsOf(cluster: LocalCluster): string[] {
  return Array.from({ length: replicas }, (_, i) => cluster.url(i));
}

test(`mixed workload of 8 clients over 3 replicas is linearizable (seed ${seed})`, async () => {
  current = await startCluster(replicas);
  const { cluster, log } = current;
  const urls = urlsOf(cluster);
  const recorder = new Recorder();
  const clients = Array.from({ length: 8 }, (_, id) => new Client(id, id % replicas, (i) => urls[i]!, recorder));

  const { invoked } = await runWorkload({
    clients,
    recorder,
    registerKeys,
    counterKeys,
    seed,
    opsMin: 1500,
    opsMax: 1500,
  });
  const { converged, answers } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
  console.error(`e2e mixed: ${invoked} ops; ${recorder.tally}`);

  expect(recorder.unexpected).toEqual([]);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
  // Every kind of op succeeded often enough for the check to mean something.
  const answered = recorder.tally.sumMatching("read:200") + recorder.tally.sumMatching("read:404");
  expect(answered).toBeGreaterThan(200);
  expect(recorder.tally.get("write:200")).toBeGreaterThan(100);
  expect(recorder.tally.get("cas:200")).toBeGreaterThan(0);
  expect(recorder.tally.get("cas:412:precondition_failed")).toBeGreaterThan(0);
  expect(recorder.tally.get("create:200")).toBeGreaterThan(0);
  expect(recorder.tally.get("incr:200")).toBeGreaterThan(50);
  // A healthy cluster answers every op (an incr may still give up after losing too many RMW races).
  const notOk = [...recorder.tally.counts].filter(
    ([name]) => !/:(200|404|412)/.test(name) && name !== "incr:409:aborted",
  );
  expect(notOk).toEqual([]);
  const ops = recorder.ops();
  expectLinearizable(recorder.check(), log);

  // The check is not vacuous: the same history plus one read, after everything, of a value that
  // was overwritten (a lost write, as a client would see it) is rejected.
  const key = registerKeys[0];
  const finalAnswer = answers.get(key)![0]!;
  const overwritten = ops.find(
    (op) =>
      op.key === key &&
      op.input.type === "write" &&
      op.input.value !== null &&
      op.output !== null &&
      !finalAnswer.includes(JSON.stringify(op.input.value)),
  );
  expect(overwritten).toBeDefined();
  const staleValue = (overwritten!.input as { value: string }).value;
  const end = performance.now();
  const stale = {
    id: ops.length + 1_000_000,
    client: 999,
    key,
    call: end,
    ret: end + 1,
    input: { type: "read" as const },
    output: { type: "read" as const, value: staleValue },
  };
  expect(checkLinearizable([...ops, stale]).ok).toBe(false);
}, 60_000);
