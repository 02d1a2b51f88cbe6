// monotonicMs() is one scale for every thread of the process: the main thread grants leases on it
// and shard workers check them on it. A reading taken in a Worker must fall between two readings of
// the main thread taken before and after it, within the calibration's microseconds (a per-thread
// clock such as performance.now() is off by the worker's start time and fails), and readings never
// go back within a thread.

import { expect, test } from "bun:test";
import { monotonicMs } from "../../src/base/clock.ts";

/**
 * Each thread reads CLOCK_MONOTONIC and its own performance.now() one after the other, so threads
 * agree within a few microseconds, not exactly; a per-thread clock would be off by the 100 ms the
 * worker started late.
 */
const calibrationToleranceMs = 1;

const workerSource = `
import { monotonicMs } from ${JSON.stringify(new URL("../../src/base/clock.ts", import.meta.url).pathname)};
self.onmessage = () => postMessage(monotonicMs());
`;

test("a worker's reading falls between the main thread's readings before and after it", async () => {
  const file = `${process.env.TMPDIR ?? "/tmp"}/hermes-clock-worker-${process.pid}.ts`;
  await Bun.write(file, workerSource);
  const worker = new Worker(file);
  try {
    await Bun.sleep(100); // the worker started well after this thread: a per-thread origin would show
    for (let round = 0; round < 20; round++) {
      const before = monotonicMs();
      const answer = new Promise<number>((resolve) => (worker.onmessage = (e) => resolve(e.data as number)));
      worker.postMessage(0);
      const inWorker = await answer;
      const after = monotonicMs();
      expect(inWorker).toBeGreaterThanOrEqual(before - calibrationToleranceMs);
      expect(inWorker).toBeLessThanOrEqual(after + calibrationToleranceMs);
    }
  } finally {
    worker.terminate();
  }
});

test("readings never go back within a thread", () => {
  let last = monotonicMs();
  for (let i = 0; i < 100_000; i++) {
    const now = monotonicMs();
    expect(now >= last).toBe(true);
    last = now;
  }
});
