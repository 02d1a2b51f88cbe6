// Ring microbenchmarks (mitata): raw byte-ring push/pop on one thread (one record per commit vs.
// 64 per commit), op-record encode/decode, and round trips through a real Worker that echoes
// requests as completions (the HTTP thread -> worker -> HTTP thread path, sleep/notify included).
//
//   bun bench/ring.bench.ts
//
// This file is also the echo worker's entry (Bun.isMainThread decides), so the benchmark is one file.

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { OpKind, OpStatus } from "../src/base/kinds.ts";
import { OpCompletionReader, OpCompletionWriter, OpRequestReader, OpRequestWriter } from "../src/ring/op-ring.ts";
import { createRing, RingReader, RingWriter } from "../src/ring/spsc-ring.ts";

declare const self: Worker;

/** opId that tells the echo worker to stop. */
const stopOpId = 0xffff_ffff;

function echoWorker(): void {
  self.onmessage = (event: MessageEvent<{ requestRing: SharedArrayBuffer; completionRing: SharedArrayBuffer }>) => {
    const requests = new OpRequestReader(event.data.requestRing);
    const completions = new OpCompletionWriter(event.data.completionRing);
    for (;;) {
      let count = 0;
      while (requests.next()) {
        if (requests.opId === stopOpId) return;
        if (!completions.push(requests.opId, OpStatus.Ok, null, requests.expectedVersion, requests.expectedWriter)) {
          throw new Error("completion ring full: the benchmark keeps at most 64 ops in flight");
        }
        count++;
      }
      requests.release();
      completions.commit();
      if (count === 0) requests.wait(1000);
    }
  };
}

async function main(): Promise<void> {
  const payload = new Uint8Array(64).fill(7);
  const key = "user:000000001234"; // 17 bytes, ASCII: the common case
  const value32 = new Uint8Array(32).fill(1);

  summary(() => {
    group("byte ring, one thread, 64-byte records", () => {
      const sab = createRing(1 << 16);
      const w = new RingWriter(sab);
      const r = new RingReader(sab);
      let sum = 0;
      bench("push+commit / next+release, 1 record", () => {
        w.push(payload);
        w.commit();
        const at = r.next();
        sum += r.bytes[at];
        r.release();
        do_not_optimize(sum);
      });
      bench("64 records: push x64, commit, next x64, release", () => {
        for (let i = 0; i < 64; i++) w.push(payload);
        w.commit();
        let at: number;
        while ((at = r.next()) >= 0) sum += r.bytes[at];
        r.release();
        do_not_optimize(sum);
      });
    });
  });

  summary(() => {
    group("op records, one thread, batches of 64", () => {
      const sab = createRing(1 << 16);
      const w = new OpRequestWriter(sab);
      const r = new OpRequestReader(sab);
      let sum = 0;
      bench("64 write requests (17-byte key, 32-byte value): encode + decode", () => {
        for (let i = 0; i < 64; i++) w.push(i, OpKind.Write, key, value32, 0, 0, 0);
        w.commit();
        while (r.next()) sum += r.key.length + r.value!.length;
        r.release();
        do_not_optimize(sum);
      });
      bench("64 read requests (17-byte key): encode + decode", () => {
        for (let i = 0; i < 64; i++) w.push(i, OpKind.Read, key, null, 0, 0, 0);
        w.commit();
        while (r.next()) sum += r.key.length;
        r.release();
        do_not_optimize(sum);
      });
      const csab = createRing(1 << 16);
      const cw = new OpCompletionWriter(csab);
      const cr = new OpCompletionReader(csab);
      bench("64 completions (32-byte value): encode + decode", () => {
        for (let i = 0; i < 64; i++) cw.push(i, OpStatus.Ok, value32, 2 ** 33, 1);
        cw.commit();
        while (cr.next()) sum += cr.value!.length;
        cr.release();
        do_not_optimize(sum);
      });
    });
  });

  const requestRing = createRing(1 << 16);
  const completionRing = createRing(1 << 16);
  const requests = new OpRequestWriter(requestRing);
  const completions = new OpCompletionReader(completionRing);
  const worker = new Worker(new URL(import.meta.url));
  worker.addEventListener("error", (e) => {
    console.error("echo worker failed:", e.message);
    process.exit(1);
  });
  worker.postMessage({ requestRing, completionRing });

  /** Sends `count` read requests in one commit and blocks until all completions are back. */
  const roundTrip = (count: number): void => {
    for (let i = 0; i < count; i++) requests.push(i, OpKind.Read, key, null, 2, 1, 0);
    requests.commit();
    let received = 0;
    while (received < count) {
      while (completions.next()) received++;
      completions.release();
      if (received < count) completions.wait(1000);
    }
  };

  summary(() => {
    group("round trip through a Worker (requests -> echo -> completions)", () => {
      bench("1 op per round trip", () => roundTrip(1));
      bench("64 ops per round trip", () => roundTrip(64));
    });
  });

  await run({ colors: false });
  requests.push(stopOpId, OpKind.Read, "", null, 0, 0, 0);
  requests.commit();
  worker.terminate();
}

if (Bun.isMainThread) await main();
else echoWorker();
