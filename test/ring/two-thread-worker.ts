// Worker side of the two-thread ring test: consumes sequenced requests, checks each one, and answers
// each with a sequenced completion. It blocks with the synchronous `wait` when the request ring is
// empty, and now and then holds a completion until the main thread sleeps, so that the worker's
// commit has to wake it (the sleep/notify path in both directions).

import { OpCompletionWriter, OpRequestReader } from "../../src/ring/op-ring.ts";
import {
  checkRequest,
  completionStatus,
  completionValue,
  completionVersion,
  type TwoThreadInit,
  type TwoThreadReport,
} from "./two-thread-records.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<TwoThreadInit>) => {
  const { requestRing, completionRing, total, holdEvery, batchMax } = event.data;
  const requests = new OpRequestReader(requestRing);
  const completions = new OpCompletionWriter(completionRing);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let seq = 0;
  let holds = 0;
  while (seq < total) {
    let batch = 0;
    while (batch < batchMax && requests.next()) {
      checkRequest(requests, seq);
      if (holdEvery > 0 && seq % holdEvery === holdEvery - 1) {
        // Publish everything so far, then wait for the main thread to go to sleep on the
        // completion ring: the commit that follows must notify it.
        completions.commit();
        while (!completions.ring.readerSleeping) Atomics.wait(nap, 0, 0, 1);
        holds++;
      }
      if (!completions.push(seq, completionStatus(seq), completionValue(seq), completionVersion(seq), (seq * 5) % 32)) {
        throw new Error(`completion ring full at ${seq}: the main thread's window should prevent this`);
      }
      seq++;
      batch++;
    }
    requests.release();
    completions.commit();
    if (batch === 0) requests.wait(30_000);
  }
  const report: TwoThreadReport = {
    requestsChecked: seq,
    waitCount: requests.ring.waitCount,
    notifyCount: completions.ring.notifyCount,
    holds,
  };
  postMessage(report);
};
