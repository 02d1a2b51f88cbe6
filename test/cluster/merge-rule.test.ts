// A join with no member serving merges the kept state of every node of the cluster, members or not
// (real etcd, real processes; src/node/etcd-join.ts). etcd removes any member whose lease expired,
// so the view can shrink to nodes that missed the latest commits while a node removed since, alive,
// holds the only copies (the simulator's --merge-rule view, core seed 7). Here:
// - node 2 is cut off from etcd: it loses its lease and leaves the view, keeping its state;
// - a write commits on nodes 0 and 1 only;
// - nodes 0 and 1 are cut off from etcd too: every lease expires, no member key is left;
// - node 2 reaches etcd again and registers alone: no member serves, so it merges kept state. Had
//   it merged its view's only (itself), the write would be gone; it asks nodes 0 and 1 too.
//
// Asserted: node 2 serves the write before nodes 0 and 1 are back; after they are, every node
// answers the same for every key, and the history is linearizable.

import { afterAll, expect, test } from "bun:test";
import {
  LoadClient,
  ProcCluster,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  request,
  testSeed,
  waitFor,
} from "./helpers.ts";
import { EtcdClient } from "../../src/membership/etcd-client.ts";

const seed = testSeed(0x3e6e_0001);
const leaseMs = 1000;

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

test(`a join with no member serving merges the kept state of removed nodes too (seed ${seed})`, async () => {
  const name = `merge-${process.pid}-${seed}`;
  // No failure detector: only leases remove members here, as etcd's rule does.
  cluster = await ProcCluster.start({
    nodes: 3,
    leaseMs,
    testHooks: true,
    cluster: name,
    nodeArgs: ["--suspect-ms", "0"],
  });
  const c = cluster;
  const urls = c.urls();
  const etcd = new EtcdClient([c.etcd.clientUrl], { requestTimeoutMs: 5000 });
  const memberIds = async (): Promise<number[]> =>
    (await etcd.range(`/hermes-kv/${name}/members/`, { prefix: true })).kvs.map((kv) =>
      Number(kv.key.split("/").pop()),
    );
  const serving = async (id: number): Promise<boolean | null> => (await c.node(id).status())?.serving ?? null;
  const recorder = new Recorder();
  const clients = urls.map((_, id) => new LoadClient(id, id, urls, recorder));
  const before = `before-${seed}`;
  const only = `only-on-0-and-1-${seed}`;
  try {
    expect((await clients[0]!.write(before, `b-${seed}`)).status).toBe(200);

    await cutFromEtcd(urls[2]!, true);
    await c.waitMembers([0, 1], 15_000);
    await waitFor("node 2 to stop serving", async () => (await serving(2)) === false, 15_000);
    expect((await clients[0]!.write(only, `w-${seed}`)).status).toBe(200);

    await Promise.all([cutFromEtcd(urls[0]!, true), cutFromEtcd(urls[1]!, true)]);
    await waitFor(
      "nodes 0 and 1 to stop serving",
      async () => (await serving(0)) === false && (await serving(1)) === false,
      15_000,
    );
    await waitFor("etcd to expire every member key", async () => (await memberIds()).length === 0, 15_000);

    await cutFromEtcd(urls[2]!, false);
    await waitFor("node 2 to serve alone", async () => (await serving(2)) === true, 30_000);
    expect(await memberIds()).toEqual([2]);
    expect(
      c
        .node(2)
        .currentLog()
        .some((line) => line.includes("no member was serving; rejoined by merging")),
    ).toBe(true);
    const read = await clients[2]!.read(only);
    expect([read.outcome, read.value]).toEqual(["ok", `w-${seed}`]);

    await Promise.all([cutFromEtcd(urls[0]!, false), cutFromEtcd(urls[1]!, false)]);
    await c.waitMembers([0, 1, 2], 30_000);
    const { converged, answers, finalReads } = await convergeAndReadAll(urls, [before, only], recorder, 100);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    expect(finalReads.every((r) => r.outcome === "ok" && r.value !== null)).toBe(true);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  }
}, 120_000);
