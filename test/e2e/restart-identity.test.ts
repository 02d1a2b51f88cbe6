// A replica of a local cluster stopped and started again (its process state is gone: it starts
// empty) writes under a new writer id: the local cluster is its own membership service and counts
// the processes of each replica id (src/cli/local-cluster.ts), and incarnation k of replica n
// writes its timestamps as k * 32 + n (src/base/ids.ts). Without it the started replica would
// write a key it never saw at 2.<id> again, a timestamp its previous process may have issued with
// another value (test/core/replica.test.ts has that interleaving).
//
// Asserted: a new key written through replica 1 gets "2.1", then "2.33" and "2.65" after each
// restart; a CAS with an ETag taken before the restarts applies once; every replica answers the
// same for every key, and the history is linearizable.

import { afterEach, expect, test } from "bun:test";
import { writerIdOf } from "../../src/base/ids.ts";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  startCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";

const seed = testSeed(0x1de0_0002);
const replicas = 3;
const restarted = 1;

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

test(`a replica started again writes under a new incarnation; old ETags still work (seed ${seed})`, async () => {
  current = await startCluster(replicas);
  const { cluster, log } = current;
  const urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  const recorder = new Recorder();
  const clients = urls.map((_, id) => new Client(id, id, (i) => urls[i]!, recorder));
  const keys: string[] = [];
  /** Writes a key never written before through the restarted replica: version 2, its writer id. */
  const firstWrite = async (incarnation: number): Promise<string | undefined> => {
    const key = `fresh-${incarnation}-${seed}`;
    keys.push(key);
    expect(await clients[restarted]!.put(key, `v-${incarnation}-${seed}`)).toBe("ok");
    return clients[restarted]!.known(key)?.etag;
  };

  const casKey = `cas-${seed}`;
  keys.push(casKey);
  expect(await clients[0]!.put(casKey, `before-${seed}`)).toBe("ok");
  const before = clients[0]!.known(casKey)!;
  expect(before.etag).toBe('"2.0"');
  expect(await firstWrite(0)).toBe(`"2.${writerIdOf(0, restarted)}"`);

  for (const incarnation of [1, 2]) {
    expect(await cluster.stopReplica(restarted)).toBe(true);
    expect(await cluster.startReplica(restarted)).not.toBeNull();
    expect(await firstWrite(incarnation)).toBe(`"2.${writerIdOf(incarnation, restarted)}"`);
  }

  expect(await clients[restarted]!.put(casKey, `after-${seed}`, { ifMatch: before })).toBe("ok");
  expect(clients[restarted]!.known(casKey)?.etag).toBe(`"3.${writerIdOf(2, restarted)}"`);
  // Applied once: the same ETag again is stale now.
  expect(recorder.tally.get("cas:412:precondition_failed")).toBe(0);
  expect(await clients[2]!.put(casKey, `again-${seed}`, { ifMatch: before })).toBe("ok");
  expect(recorder.tally.get("cas:412:precondition_failed")).toBe(1);

  const { converged, answers } = await convergeAndReadAll(urls, keys, recorder, 100);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
}, 60_000);
