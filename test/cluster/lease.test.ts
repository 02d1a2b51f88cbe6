// The classic lease test: a node is SIGSTOPped for longer than its etcd lease while the others keep
// writing, then SIGCONTinued. Its clients keep sending reads the whole time (requests queue in the
// paused process's socket backlog and are answered as soon as it continues), and more reads of a
// sentinel key go to it the moment it continues.
//
// Asserted:
// - the survivors remove the paused node (its lease expired) and acknowledge updates without it,
//   among them a new value of the sentinel key, which the paused node still holds as Valid;
// - after SIGCONT, every read the paused node answers is 503 (not serving: its lease is over) or the
//   sentinel's current value, never the value it held when it was stopped (a stale read);
// - the whole history, in which every read queued during the pause and answered after it is a
//   candidate stale read, is linearizable;
// - the node then rejoins (new epoch with all three members, /health 200) and serves the current value.

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

const seed = testSeed(0x1ea5_0001);
const leaseMs = 1000;
const victim = 2;
const survivors = [0, 1];
const keys = ["hot-a", "hot-b", "hot-c", "hot-d"];
const counters = ["ctr-x"];
const sentinel = "sentinel";
/** Sentinel reads sent to the resumed node, one every sentinelReadEveryMs from the moment it continues. */
const sentinelReads = 40;
const sentinelReadEveryMs = 10;
/** Reads sent to the node while it is paused: one every pauseReadEveryMs, at most pauseReadsMax. */
const pauseReadEveryMs = 25;
const pauseReadsMax = 400;
/** SIGSTOP takes hold of every thread of the paused process well within this (scheduler latency). */
const pauseTakesHoldMs = 100;

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

test(`a node paused past its lease serves no stale read when it continues, then rejoins (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs });
  const c = cluster;
  const urls = c.urls();
  const recorder = new Recorder();
  let stopLoad = false;
  // Client ids 0.. are the load; 500.. the sentinel clients; 1000.. the final readers; 2000.. the pause readers.
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
  const onVictim = new LoadClient(500, victim, urls, recorder);
  const onSurvivor = new LoadClient(501, 0, urls, recorder);
  try {
    await waitFor(
      "150 acknowledged updates before the pause",
      () => ackedUpdates(recorder, () => true).length >= 150,
      30_000,
    );
    const oldValue = `sentinel-old-${seed}`;
    expect((await onSurvivor.write(sentinel, oldValue)).status).toBe(200);
    // The paused node holds the old value Valid: without leases it would answer it.
    expect((await onVictim.read(sentinel)).value).toBe(oldValue);

    const pausedAt = performance.now();
    c.node(victim).pause();
    // Reads sent to the paused node all through the pause, each on its own connection: they wait in
    // its socket backlog and are answered when it continues. Those sent after the survivors
    // acknowledged the new sentinel value must not see the old one.
    let pauseReading = true;
    const pauseReads: Promise<unknown>[] = [];
    const pauseReader = (async () => {
      for (let i = 0; pauseReading && i < pauseReadsMax; i++) {
        const reader = new LoadClient(2000 + i, victim, urls, recorder);
        pauseReads.push(reader.read(i % 2 === 0 ? sentinel : keys[i % keys.length]!));
        await Bun.sleep(pauseReadEveryMs);
      }
    })();
    // The survivors remove the paused node only after its lease expired in etcd...
    await c.waitMembers(survivors, 20_000, survivors);
    // ...then write without it.
    const newValue = `sentinel-new-${seed}`;
    const sentinelWrite = await onSurvivor.write(sentinel, newValue);
    expect(sentinelWrite.status).toBe(200);
    await waitFor(
      "30 acknowledged updates on the survivors during the pause",
      () => ackedUpdates(recorder, (r) => r.node !== victim && r.call > sentinelWrite.ret).length >= 30,
      20_000,
    );

    pauseReading = false;
    await pauseReader;
    const resumedAt = performance.now();
    c.node(victim).resume();
    const readers = Array.from({ length: sentinelReads }, (_, i) => new LoadClient(510 + i, victim, urls, recorder));
    const answers = await Promise.all(
      readers.map(async (reader, i) => {
        await Bun.sleep(i * sentinelReadEveryMs);
        return reader.read(sentinel);
      }),
    );
    for (const answer of answers) {
      // 503: not serving. 200: only the current value. Anything else (a timeout, 504) is a failed read, also not stale.
      if (answer.status === 200) expect(answer.value).toBe(newValue);
      expect(answer.status === 200 && answer.value === oldValue).toBe(false);
    }
    await Promise.all(pauseReads);
    // Every answer the paused node gave after it continued, from any client: never the old sentinel
    // once the new one was acknowledged. A read sent in the instant of the pause may have been
    // answered just before SIGSTOP took hold and delivered only after SIGCONT (its bytes still in
    // the server's write buffer); it was linearized before the new write, so the old value is its
    // correct answer: a stale read is one sent after the new value was acknowledged.
    const victimSentinelReads = recorder.records.filter(
      (r) => r.node === victim && r.key === sentinel && r.kind === "read" && r.ret > resumedAt,
    );
    const readsAfterNewValue = victimSentinelReads.filter((r) => r.call > sentinelWrite.ret);
    expect(readsAfterNewValue.length).toBeGreaterThan(0);
    expect(readsAfterNewValue.filter((r) => r.status === 200 && r.value !== newValue)).toEqual([]);
    expect(
      victimSentinelReads.filter(
        (r) => r.status === 200 && r.value === oldValue && r.call > pausedAt + pauseTakesHoldMs,
      ),
    ).toEqual([]);

    // It rejoins (wiping its state and loading a live member's) and then serves current data.
    await c.node(victim).waitHealthy(30_000);
    await c.waitMembers([0, 1, 2], 20_000);
    const after = await onVictim.read(sentinel);
    expect(after.status).toBe(200);
    expect(after.value).toBe(newValue);
    await waitFor(
      "20 acknowledged updates on the rejoined node",
      () => ackedUpdates(recorder, (r) => r.node === victim && r.call > resumedAt).length >= 20,
      30_000,
    );
    stopLoad = true;
    await load.done;

    const queuedReads = recorder.records.filter(
      (r) => r.node === victim && r.kind === "read" && r.call > pausedAt && r.call < resumedAt,
    );
    const statuses = new Map<string, number>();
    for (const r of answers) statuses.set(String(r.status), (statuses.get(String(r.status)) ?? 0) + 1);
    console.error(
      `cluster lease: paused ${(resumedAt - pausedAt).toFixed(0)} ms; ${queuedReads.length} reads queued on the paused node ` +
        `(${queuedReads.filter((r) => r.status === 200 || r.status === 404).length} answered ok); sentinel reads after SIGCONT ${JSON.stringify([...statuses])}; ` +
        `${recorder.history.invokedCount} ops; ${recorder.tallyText()}`,
    );
    const { converged, answers: finalAnswers } = await convergeAndReadAll(
      urls,
      [...keys, ...counters, sentinel],
      recorder,
      1000,
    );
    expect(converged, `nodes disagree: ${JSON.stringify([...finalAnswers])}\n${c.logs()}`).toBe(true);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  } finally {
    stopLoad = true;
    if (c.node(victim).paused) c.node(victim).resume();
    await load.done;
  }
}, 120_000);
