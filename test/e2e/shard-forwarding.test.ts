// Every shard worker serves HTTP on its node's port (SO_REUSEPORT) and forwards ops for other
// shards over the rings between workers. On a real 3-replica cluster with W=2 and W=4 shards per
// node and keys on every shard, concurrent clients (unique values, half of them on a new
// connection per request so that requests land on every worker) run the mixed workload; the whole
// history, with a final read of every key from every replica, must be linearizable, and the
// counters must show that ops were in fact forwarded. A second test checks that all shard workers
// of a node accept connections on the one port. No timing assertions.

import { afterEach, expect, test } from "bun:test";
import { shardOf } from "../../src/worker/key-shard.ts";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  eventually,
  expectLinearizable,
  request,
  startSteadyCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { runWorkload } from "./workload.ts";

const replicas = 3;
const seed = testSeed(0x5eed_f0d2);

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

/** `perShard` keys named `${prefix}${n}` on each of the `shards` shards. */
function keysOnEveryShard(prefix: string, shards: number, perShard: number): string[] {
  const byShard: string[][] = Array.from({ length: shards }, () => []);
  for (let n = 0; byShard.some((keys) => keys.length < perShard); n++) {
    const key = `${prefix}${n}`;
    const keys = byShard[shardOf(key, shards)]!;
    if (keys.length < perShard) keys.push(key);
  }
  return byShard.flat();
}

/** Sum of a Prometheus counter over its label sets, from each replica's /metrics. */
async function metricSum(urls: readonly string[], name: string): Promise<number> {
  let sum = 0;
  for (const url of urls) {
    const answer = await request(`${url}/metrics`);
    if (answer.kind !== "response" || answer.status !== 200) continue;
    for (const line of answer.body.split("\n"))
      if (line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

for (const shards of [2, 4]) {
  test(`W=${shards}: ops forwarded between shard workers are linearizable, keys on every shard (seed ${seed})`, async () => {
    current = await startSteadyCluster(shards);
    const { cluster, log } = current;
    const urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
    const registerKeys = keysOnEveryShard("reg-", shards, 2);
    const counterKeys = keysOnEveryShard("ctr-", shards, 1);
    const recorder = new Recorder();
    const clients = Array.from(
      { length: 8 },
      (_, id) => new Client(id, id % replicas, (i) => urls[i]!, recorder, { freshConnections: id % 2 === 0 }),
    );

    const { invoked } = await runWorkload({
      clients,
      recorder,
      registerKeys,
      counterKeys,
      seed: seed + shards,
      opsMin: 1500,
      opsMax: 1500,
    });
    const { converged, answers } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
    console.error(`e2e forwarding W=${shards}: ${invoked} ops; ${recorder.tally}`);

    expect(recorder.unexpected).toEqual([]);
    expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
    expect(recorder.tally.get("write:200")).toBeGreaterThan(100);
    expect(recorder.tally.get("incr:200")).toBeGreaterThan(50);
    // A healthy cluster answers every op (an incr may still give up after losing too many RMW races).
    const notOk = [...recorder.tally.counts].filter(
      ([name]) => !/:(200|404|412)/.test(name) && name !== "incr:409:aborted",
    );
    if (notOk.length > 0) console.error(`cluster log:\n${log.join("\n")}`);
    expect(notOk).toEqual([]);
    expectLinearizable(recorder.check(), log);
    // Ops did go from worker to worker, both ways of the count (the node's stats lag up to 1 s).
    const forwarded = await eventually(
      async () => (await metricSum(urls, "hermes_ops_forwarded_out_total")) > 100,
      50,
      100,
    );
    expect(forwarded).toBe(true);
    expect(await metricSum(urls, "hermes_ops_forwarded_in_total")).toBeGreaterThan(100);
  }, 120_000);
}

test("all shard workers of a node accept connections on its one HTTP port", async () => {
  const shards = 4;
  current = await startSteadyCluster(shards);
  const url = current.cluster.url(0);
  // New connections spread over the sockets bound with SO_REUSEPORT by the kernel's hash of the
  // client's port: with 64 of them, a worker that accepted none means it is not listening
  // (or the odds of 4 x (3/4)^64, about 4e-8).
  const connections = 64;
  for (let i = 0; i < connections; i++) {
    const answer = await request(`${url}/v1/kv/spread-${i}`, { headers: { connection: "close" } });
    expect(answer.kind === "response" && answer.status).toBe(404);
  }
  const metrics = await request(`${url}/metrics`);
  expect(metrics.kind).toBe("response");
  const body = metrics.kind === "response" ? metrics.body : "";
  const perShard = Array.from({ length: shards }, (_, shard) => {
    const line = body.split("\n").find((l) => l.startsWith(`hermes_http_requests_by_shard_total{shard="${shard}"}`));
    return line === undefined ? -1 : Number(line.slice(line.lastIndexOf(" ") + 1));
  });
  console.error(`e2e same port: requests answered per shard worker ${JSON.stringify(perShard)}`);
  for (const answered of perShard) expect(answered).toBeGreaterThan(0);
  // The scrape itself is counted only once its answer is rendered: the sum is exactly the 64.
  expect(perShard.reduce((a, b) => a + b, 0)).toBe(connections);
}, 60_000);
