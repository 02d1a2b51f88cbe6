// A node process restarted under its old `--id` writes under a new writer id (real etcd, real
// processes). Its process number comes from etcd's incarnation counter (src/membership/etcd-incarnation.ts)
// and goes into its timestamps (src/base/ids.ts): incarnation k of node n writes as k * 32 + n.
// Without it the restarted, empty process would write a key it never saw at 2.<id>, the very
// timestamp its previous process may have issued with another value (the simulator's
// --restart-identity same; test/core/replica.test.ts has that interleaving).
//
// Asserted:
// - the first process of node 2 writes a new key at "2.2", the second at "2.34", the third at "2.66";
// - a CAS with an ETag taken before the restarts still succeeds, once (an old ETag stays valid);
// - every node answers the same for every key afterwards, and the whole history is linearizable.

import { afterAll, expect, test } from "bun:test";
import { ProcCluster, Recorder, LoadClient, convergeAndReadAll, expectLinearizable, testSeed } from "./helpers.ts";
import { writerIdOf } from "../../src/base/ids.ts";

const seed = testSeed(0x1de0_0001);
const leaseMs = 1000;
const restarted = 2;

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

test(`a node restarted under its id writes with a new incarnation; old ETags still work (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs });
  const c = cluster;
  const urls = c.urls();
  const recorder = new Recorder();
  const clients = urls.map((_, id) => new LoadClient(id, id, urls, recorder));
  const keys: string[] = [];
  /** Writes a key never written before through the restarted node: version 2, its writer id. */
  const firstWrite = async (incarnation: number): Promise<string> => {
    const key = `fresh-${incarnation}-${seed}`;
    keys.push(key);
    const record = await clients[restarted]!.write(key, `v-${incarnation}-${seed}`);
    expect(record.status).toBe(200);
    return clients[restarted]!.known(key)!.etag;
  };
  try {
    const casKey = `cas-${seed}`;
    keys.push(casKey);
    expect((await clients[0]!.write(casKey, `before-${seed}`)).status).toBe(200);
    const before = clients[0]!.known(casKey)!;
    expect(before.etag).toBe('"2.0"');
    expect(await firstWrite(0)).toBe(`"2.${writerIdOf(0, restarted)}"`);

    for (const incarnation of [1, 2]) {
      await c.node(restarted).kill();
      await c.waitMembers([0, 1], 15_000);
      await c.node(restarted).spawn();
      await c.node(restarted).waitHealthy(30_000);
      await c.waitMembers([0, 1, 2], 15_000);
      expect(
        c
          .node(restarted)
          .currentLog()
          .some((line) => line.includes(`incarnation ${incarnation} `)),
      ).toBe(true);
      expect(await firstWrite(incarnation)).toBe(`"2.${writerIdOf(incarnation, restarted)}"`);
    }

    // The ETag from before both restarts: the key still holds that timestamp, so the CAS applies.
    const cas = await clients[restarted]!.cas(casKey, before, `after-${seed}`);
    expect(cas.status).toBe(200);
    expect(clients[restarted]!.known(casKey)!.etag).toBe(`"3.${writerIdOf(2, restarted)}"`);
    expect((await clients[1]!.cas(casKey, before, `again-${seed}`)).status).toBe(412);

    const { converged, answers, finalReads } = await convergeAndReadAll(urls, keys, recorder, 100);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    expect(finalReads.every((r) => r.outcome === "ok")).toBe(true);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  }
}, 120_000);
