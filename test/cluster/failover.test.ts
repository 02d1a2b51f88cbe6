// A node process is SIGKILLed under concurrent load and later restarted (real etcd, real processes).
//
// Asserted:
// - before the kill, an update acknowledged by the victim is readable on the survivors afterwards
//   (an acknowledged write is on every replica, so losing the victim loses nothing);
// - the survivors take writes again without the victim, and only in the new membership: every
//   update invoked on a survivor after the kill and acknowledged returned after that survivor was
//   last seen still listing the victim as a member (it needed the view change; the victim, dead,
//   could not ACK it);
// - the restarted victim rejoins: /health 200, every node lists [0,1,2], its clients get
//   acknowledged updates, and its answers for every key equal the others' (same value and ETag);
// - the whole history (including final reads of every key on every node) is linearizable, and no
//   answer was outside the HTTP contract.

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

const seed = testSeed(0xfa11_0001);
const leaseMs = 1000;
const victim = 2;
const survivors = [0, 1];
const keys = ["hot-a", "hot-b", "hot-c", "hot-d"];
const counters = ["ctr-x", "ctr-y"];
/** Marker keys written through the victim just before it dies. */
const markerKeys = ["marker-0", "marker-1", "marker-2"];

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

test(`SIGKILL a node under load: writes resume on the others, it rejoins with current data, history linearizable (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs });
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
      "200 acknowledged updates before the kill",
      () => ackedUpdates(recorder, () => true).length >= 200,
      30_000,
    );

    // Acknowledged by the victim right before it dies: must survive it.
    const marker = load.clients.find((client) => client.node === victim)!;
    const markerValues = new Map<string, string>();
    for (const key of markerKeys) {
      const value = `marker-${key}-${seed}`;
      const record = await marker.write(key, value);
      expect(record.status).toBe(200);
      markerValues.set(key, value);
    }

    // Poll the survivors' views: a status answer listing the victim was produced after it was sent.
    const lastSeenWithVictim = new Map<number, number>(survivors.map((id) => [id, 0]));
    let polling = true;
    const poller = (async () => {
      while (polling) {
        await Promise.all(
          survivors.map(async (id) => {
            const sent = performance.now();
            const status = await c.node(id).status();
            if (status !== null && status.members.includes(victim))
              lastSeenWithVictim.set(id, Math.max(lastSeenWithVictim.get(id)!, sent));
          }),
        );
        await Bun.sleep(10);
      }
    })();

    const killedAt = performance.now();
    await c.node(victim).kill();
    await waitFor(
      "50 acknowledged updates invoked on the survivors after the kill",
      () => ackedUpdates(recorder, (r) => r.call > killedAt && r.node !== victim).length >= 50,
      30_000,
    );
    await c.waitMembers(survivors, 15_000, survivors);
    polling = false;
    await poller;

    const resumed = ackedUpdates(recorder, (r) => r.call > killedAt && r.node !== victim);
    for (const r of resumed) {
      // Committed without the dead victim's ACK, so in a view without it.
      expect(r.ret).toBeGreaterThan(lastSeenWithVictim.get(r.node)!);
    }
    // The victim acknowledged nothing invoked after it was killed.
    expect(ackedUpdates(recorder, (r) => r.node === victim && r.call > killedAt)).toEqual([]);
    for (const id of survivors) {
      for (const [key, value] of markerValues) {
        const answer = await request(`${urls[id]}/v1/kv/${key}`);
        expect(answer.kind === "response" && answer.status === 200 && answer.body).toBe(value);
      }
    }

    // The victim's lease has expired (it left every view), so the same id may register again.
    const restartedAt = performance.now();
    await c.node(victim).spawn();
    await c.node(victim).waitHealthy(30_000);
    await c.waitMembers([0, 1, 2], 15_000);
    await waitFor(
      "30 acknowledged updates on the restarted victim",
      () => ackedUpdates(recorder, (r) => r.node === victim && r.call > restartedAt).length >= 30,
      30_000,
    );
    stopLoad = true;
    await load.done;

    const { converged, answers, finalReads } = await convergeAndReadAll(
      urls,
      [...keys, ...counters, ...markerKeys],
      recorder,
      1000,
    );
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    // The rejoined node answers what the others answer (converged compares status, ETag, value).
    for (const key of [...keys, ...counters, ...markerKeys]) {
      const row = answers.get(key)!;
      expect(row[victim]).toBe(row[0]);
    }
    expect(finalReads.every((r) => r.outcome === "ok")).toBe(true);
    console.error(
      `cluster failover: ${recorder.history.invokedCount} ops, ${resumed.length} survivor acks after the kill, ` +
        `victim down ${(restartedAt - killedAt).toFixed(0)} ms; ${recorder.tallyText()}`,
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
