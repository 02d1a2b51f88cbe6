// Two real threads over two rings: the main thread (the HTTP thread's role) pushes 100k sequenced
// requests to a Bun Worker and awaits its 100k sequenced completions, checking every field of every
// record both ways. Pauses (main waits for the worker to sleep before committing) and holds (the
// worker waits for main to sleep before committing) make both directions go through the
// sleep-flag / Atomics.notify path deterministically, not just by chance of timing.

import { expect, test } from "bun:test";
import { OpCompletionReader, OpRequestWriter } from "../../src/ring/op-ring.ts";
import { createRing } from "../../src/ring/spsc-ring.ts";
import {
  checkCompletion,
  requestBy,
  requestExpectedVersion,
  requestKey,
  requestKind,
  requestValue,
  type TwoThreadInit,
  type TwoThreadReport,
} from "./two-thread-records.ts";

const total = 100_000;
/** Requests in flight at most: the node's per-shard op limit plays this role. It also bounds the
 * completion ring's use (128 completions of <= 176 bytes), so the worker never finds it full. */
const windowOps = 128;
const pauseEvery = 9_973;
const holdEvery = 10_007;
/** Waits are long so that only a lost wake-up (a bug) could make one time out. */
const waitMs = 30_000;

test("100k sequenced requests and completions between two threads, sleep/notify both ways", async () => {
  const requestRing = createRing(64 * 1024);
  const completionRing = createRing(64 * 1024);
  const requests = new OpRequestWriter(requestRing);
  const completions = new OpCompletionReader(completionRing);

  const worker = new Worker(new URL("./two-thread-worker.ts", import.meta.url));
  let failure: unknown = null;
  let report: TwoThreadReport | null = null;
  worker.addEventListener("error", (event) => {
    failure = event.message ?? event;
  });
  worker.addEventListener("message", (event: MessageEvent<TwoThreadReport>) => {
    report = event.data;
  });
  const init: TwoThreadInit = { requestRing, completionRing, total, holdEvery, batchMax: 64 };
  worker.postMessage(init);

  let sent = 0;
  let completed = 0;
  let pauses = 0;
  let pauseAt = pauseEvery;
  const onCompletion = (c: OpCompletionReader) => {
    checkCompletion(c, completed);
    completed++;
  };
  try {
    while (completed < total) {
      if (failure !== null) throw new Error(`worker failed: ${String(failure)}`);
      if (sent === pauseAt && completed === sent) {
        // Everything so far is answered: let the worker go to sleep; the next commit must wake it.
        while (!requests.ring.readerSleeping) {
          if (failure !== null) throw new Error(`worker failed: ${String(failure)}`);
          await Bun.sleep(1);
        }
        pauses++;
        pauseAt += pauseEvery;
      }
      // A full request ring (push false) is backpressure: stop and come back after completions.
      while (sent < total && sent < pauseAt && sent - completed < windowOps) {
        const seq = sent;
        if (
          !requests.push(
            seq,
            requestKind(seq),
            requestKey(seq),
            requestValue(seq),
            requestExpectedVersion(seq),
            seq % 32,
            requestBy(seq),
          )
        )
          break;
        sent++;
      }
      requests.commit();
      if (completions.drain(onCompletion, 1024) === 0) await completions.waitAsync(waitMs);
    }
    const deadline = Date.now() + waitMs;
    while (report === null && failure === null && Date.now() < deadline) await Bun.sleep(1);
  } finally {
    worker.terminate();
  }
  if (failure !== null) throw new Error(`worker failed: ${String(failure)}`);
  expect(report).not.toBeNull();
  const r = report as unknown as TwoThreadReport;
  expect(completed).toBe(total);
  expect(r.requestsChecked).toBe(total);
  expect(completions.next()).toBe(false);
  // Every pause ended with a commit that found the worker asleep and notified it.
  expect(pauses).toBe(Math.floor((total - 1) / pauseEvery));
  expect(requests.ring.notifyCount).toBeGreaterThanOrEqual(pauses);
  expect(r.waitCount).toBeGreaterThanOrEqual(pauses);
  // Every hold ended with a worker commit that found the main thread asleep and notified it.
  expect(r.holds).toBe(Math.floor(total / holdEvery));
  expect(r.notifyCount).toBeGreaterThanOrEqual(r.holds);
  expect(completions.ring.waitCount).toBeGreaterThanOrEqual(r.holds);
});
