// The RDMA transport's credit arithmetic (src/transport/credit-window.ts), without a device:
// window full, acks that are late, repeated or foreign, starvation and credit requests, and
// sequence numbers wrapping past 2^32.

import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../src/base/assert.ts";
import { AckDebt, CreditWindow } from "../../src/transport/credit-window.ts";
import { below, prng, testSeed } from "../lib/prng.ts";

const u32 = (x: number) => x >>> 0;
const nearWrap = 0xfffffffe;

describe("CreditWindow", () => {
  test("a window of n admits n datagrams, then refuses until an ack returns credit", () => {
    const w = new CreditWindow(4);
    expect(w.credits()).toBe(4);
    const ends = [w.take(), w.take(), w.take(), w.take()];
    expect(ends).toEqual([1, 2, 3, 4]);
    expect(w.credits()).toBe(0);
    expect(w.inFlight()).toBe(4);
    expect(w.admits(1)).toBe(false);
    expect(w.starved).toBe(true);
    expect(w.acknowledge(2)).toBe(true);
    expect(w.credits()).toBe(2);
    expect(w.starved).toBe(false);
    expect(w.admits(2)).toBe(true);
  });

  test("taking a datagram without a credit, or asking for more than the window, is a bug", () => {
    const w = new CreditWindow(2);
    w.take();
    w.take();
    expect(() => w.take()).toThrow(AssertionError);
    expect(() => new CreditWindow(2).admits(3)).toThrow(AssertionError);
    expect(() => new CreditWindow(2).admits(0)).toThrow(AssertionError);
    expect(() => new CreditWindow(0)).toThrow(AssertionError);
    expect(() => new CreditWindow(2 ** 31)).toThrow(AssertionError);
    expect(() => new CreditWindow(2, 2 ** 32)).toThrow(AssertionError);
  });

  test("only an ack inside [acked, next] is news: late, repeated and foreign acks change nothing", () => {
    const w = new CreditWindow(8);
    for (let i = 0; i < 6; i++) w.take();
    expect(w.acknowledge(4)).toBe(true);
    expect(w.credits()).toBe(6);
    expect(w.acknowledge(4)).toBe(true); // repeated: same state
    expect(w.credits()).toBe(6);
    expect(w.acknowledge(3)).toBe(false); // late (reordered behind a newer one)
    expect(w.ackedSeq).toBe(4);
    expect(w.acknowledge(7)).toBe(false); // beyond what was sent: a stale incarnation's
    expect(w.acknowledge(0xffffffff)).toBe(false);
    expect(w.ackedSeq).toBe(4);
    expect(w.acknowledge(6)).toBe(true);
    expect(w.credits()).toBe(8);
    expect(() => w.acknowledge(-1)).toThrow(AssertionError);
  });

  test("sequence numbers wrap past 2^32 without losing or inventing credit", () => {
    const w = new CreditWindow(4, nearWrap);
    expect(w.take()).toBe(0xffffffff);
    expect(w.take()).toBe(0);
    expect(w.take()).toBe(1);
    expect(w.nextSeq).toBe(1);
    expect(w.inFlight()).toBe(3);
    expect(w.credits()).toBe(1);
    // An ack from before the wrap, then one after it.
    expect(w.acknowledge(0xffffffff)).toBe(true);
    expect(w.credits()).toBe(2);
    expect(w.acknowledge(0xfffffffe)).toBe(false);
    expect(w.acknowledge(1)).toBe(true);
    expect(w.credits()).toBe(4);
    expect(w.acknowledge(2)).toBe(false);
  });

  test("starved until the credits the refused send needed are back, not merely some", () => {
    const w = new CreditWindow(6);
    for (let i = 0; i < 5; i++) w.take();
    expect(w.admits(4)).toBe(false); // the pieces of a large frame go together
    expect(w.starved).toBe(true);
    w.acknowledge(2);
    expect(w.credits()).toBe(3);
    expect(w.starved).toBe(true);
    w.acknowledge(3);
    expect(w.starved).toBe(false);
    // A successful take clears the need too.
    expect(w.admits(4)).toBe(true);
    w.take();
    expect(w.starved).toBe(false);
  });

  test("credit requests are due every probe interval while starved, never when not", () => {
    const probeMs = 5;
    const w = new CreditWindow(2);
    expect(w.creditRequestDue(0, probeMs)).toBe(false);
    w.take();
    w.take();
    expect(w.creditRequestDue(0, probeMs)).toBe(false); // full, but nobody was refused yet
    expect(w.admits(1)).toBe(false);
    expect(w.creditRequestDue(100, probeMs)).toBe(true);
    w.creditRequested(100);
    expect(w.creditRequestDue(104, probeMs)).toBe(false);
    expect(w.creditRequestDue(105, probeMs)).toBe(true);
    w.acknowledge(1);
    expect(w.creditRequestDue(200, probeMs)).toBe(false);
  });

  test("against a model with unbounded counters: random sends and lost, repeated, reordered acks", () => {
    const seed = testSeed(0xc4ed17);
    const rand = prng(seed);
    for (let run = 0; run < 50; run++) {
      const window = 2 + below(rand, 30);
      const start = run % 2 === 0 ? u32(nearWrap - below(rand, 100)) : below(rand, 1000);
      const w = new CreditWindow(window, start);
      let sent = 0; // data datagrams numbered, unbounded
      let processed = 0; // of those, processed by the receiver
      let acked = 0; // the newest ack the sender has taken
      const inTransit: number[] = []; // acks on their way back, as processed counts
      for (let step = 0; step < 2000; step++) {
        const r = rand();
        if (r < 0.4) {
          const want = 1 + below(rand, Math.min(window, 4));
          const ok = w.admits(want);
          expect(ok, `seed ${seed} run ${run} step ${step}`).toBe(window - (sent - acked) >= want);
          if (ok) for (let i = 0; i < want; i++) expect(w.take()).toBe(u32(start + ++sent));
        } else if (r < 0.6) {
          if (processed < sent) processed += 1 + below(rand, sent - processed);
          inTransit.push(processed);
        } else if (inTransit.length > 0) {
          // Deliver any ack in transit (reordering), sometimes keeping it to deliver again.
          const i = below(rand, inTransit.length);
          const ack = inTransit[i]!;
          if (rand() < 0.7) inTransit.splice(i, 1);
          const news = w.acknowledge(u32(start + ack));
          expect(news).toBe(ack >= acked);
          if (news) acked = ack;
        }
        expect(w.credits()).toBe(window - (sent - acked));
        expect(w.ackedSeq).toBe(u32(start + acked));
        expect(w.nextSeq).toBe(u32(start + sent));
      }
    }
  });
});

describe("AckDebt", () => {
  test("an idle receiver owes an ack after the threshold, or at once when asked", () => {
    const d = new AckDebt(3);
    expect(d.due()).toBe(false);
    d.received(2);
    expect(d.due()).toBe(false);
    d.received(3);
    expect(d.due()).toBe(true);
    expect(d.pay()).toBe(3);
    expect(d.due()).toBe(false);
    d.requested();
    expect(d.due()).toBe(true);
    expect(d.pay()).toBe(3); // nothing new: the same ack again
    expect(d.due()).toBe(false);
  });

  test("the threshold counts across the 2^32 wrap", () => {
    const d = new AckDebt(2);
    d.received(0xffffffff);
    d.pay();
    d.received(0);
    expect(d.due()).toBe(false);
    d.received(1);
    expect(d.due()).toBe(true);
    expect(d.pay()).toBe(1);
  });

  test("the newest seqEnd wins even backwards: a restarted peer numbers from 0 again", () => {
    const d = new AckDebt(4);
    d.received(1000);
    d.pay();
    d.received(1);
    expect(d.pay()).toBe(1);
    expect(() => d.received(2 ** 32)).toThrow(AssertionError);
    expect(() => new AckDebt(0)).toThrow(AssertionError);
  });
});
