// Watch streams of a node that stops serving because of a fault, on a real cluster (3 node
// processes, etcd, TCP), with a client load on every node throughout:
// - a node cut off its peers (the --test-hooks drop rule; etcd still reachable) is evicted and
//   loses its lease: its watch streams end with `event: unavailable`;
// - a node paused with SIGSTOP for longer than its lease finds it expired when it runs again: its
//   watch streams end with `event: unavailable` (never a stale event after the lease is gone).
// The load's whole history, final reads included, is linearizable. No timing assertions: the
// waits below are bounds on a run, not measurements.

import { afterAll, expect, test } from "bun:test";
import {
  ProcCluster,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x3a7c_0f17);
const leaseMs = 1000;
/** A stream that has not ended this long after the fault fails the test instead of hanging it. */
const streamEndBoundMs = 60_000;
const keys = ["wf-a", "wf-b", "wf-c"];
const counters = ["wf-n"];

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

interface SseEvent {
  event: string;
  data: { key?: string; reason?: string };
}

/** A watch stream read into `events` until it ends; `ended` says how (or "bound" if it did not). */
function openWatch(url: string): { events: SseEvent[]; ended: Promise<"ended" | "bound"> } {
  const events: SseEvent[] = [];
  const read = (async (): Promise<"ended"> => {
    const response = await fetch(`${url}/v1/watch?prefix=wf-`);
    expect(response.status).toBe(200);
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const chunk of response.body!) {
        buffered += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data !== undefined) events.push({ event, data: JSON.parse(data) });
        }
      }
    } catch {
      // The connection broke rather than ended: the events say whether it was announced.
    }
    return "ended";
  })();
  const bound = Bun.sleep(streamEndBoundMs).then(() => "bound" as const);
  return { events, ended: Promise.race([read, bound]) };
}

test(`a partitioned node's and a paused node's watch streams end with event: unavailable (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({ nodes: 3, leaseMs, testHooks: true, shards: 2 });
  const c = cluster;
  const urls = c.urls();
  const recorder = new Recorder();
  let stop = false;
  const load = startLoad({ urls, recorder, keys, counters, clientsPerNode: 2, seed, stop: () => stop, opsMax: 40_000 });

  // Partition: node 2 is cut off its peers and evicted.
  const cut = openWatch(urls[2]!);
  await waitFor("the watch on node 2 synced", () => cut.events.some((e) => e.event === "synced"), 15_000);
  await c.isolate(2);
  expect(await cut.ended, `node 2's stream ended\n${c.logs()}`).toBe("ended");
  expect(cut.events.at(-1)?.event).toBe("unavailable");
  await c.heal();
  await c.waitMembers([0, 1, 2], 60_000);

  // Pause: node 1 is stopped (SIGSTOP) for three leases, then continued.
  const paused = openWatch(urls[1]!);
  await waitFor("the watch on node 1 synced", () => paused.events.some((e) => e.event === "synced"), 15_000);
  c.node(1).pause();
  await Bun.sleep(3 * leaseMs);
  c.node(1).resume();
  expect(await paused.ended, `node 1's stream ended\n${c.logs()}`).toBe("ended");
  expect(paused.events.at(-1)?.event).toBe("unavailable");
  await c.waitMembers([0, 1, 2], 60_000);

  stop = true;
  await load.done;
  const { converged, answers } = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 900);
  expect(converged, `nodes disagree: ${JSON.stringify([...answers])}`).toBe(true);
  console.error(`watch faults: ${recorder.tallyText()}`);
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), () => c.logs());
}, 240_000);
