// The one test suite every Transport passes (udp, tcp and rdma). It knows nothing of any
// particular medium: endpoints come from `make`, addresses from `address`, partitions from the
// drop rule, and the only capability it asks about is whether delivery is reliable.
//
// Frames carry sender, receiver, sequence number and a CRC (frames.ts), and every received frame is
// checked. The interface allows loss, so tests that need every frame resend missing ones after a
// number of quiet rounds (as the protocol does), keep the rate to one window per round, and wait a
// bounded number of rounds. Exact, in-order, exactly-once delivery is asserted only with
// `caps.reliable` (TCP, RDMA RC); otherwise: every frame eventually, intact, identified by sender,
// and a lower bound on the first pass. No test measures time.

import { afterEach, describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/base/ids.ts";
import type { FrameHandler, Transport } from "../../src/transport/transport.ts";
import { dropRuleTarget, partition, setDropRuleAll } from "../../src/transport/drop-rule.ts";
import { checkFrame, makeFrame, testFrameBytesMin } from "./frames.ts";

export interface SuiteCaps {
  /** On an established link, every frame send() accepts arrives exactly once and in order. */
  reliable: boolean;
}

/** Bound on every wait: a round is flush all, yield to the event loop for ~1 ms, poll all. */
const roundsMax = 4000;
/** An unacknowledged frame is resent after this many rounds (the protocol's retransmit, in rounds). */
const resendAfterRounds = 25;
/** Rounds run after a condition that should have let stray frames through, to catch them. */
const settleRounds = 30;
/** Probe frames (link warm-up) use sequence numbers from here, apart from the data frames. */
const probeSeqBase = 0x40000000;
/** The suite needs a transport to accept at least this many frames to one peer between flushes. */
const windowFramesMin = 8;
const testTimeoutMs = 60_000;

/** One endpoint under test and everything it has received. */
class Endpoint {
  readonly errors: string[] = [];
  /** Sequence numbers received from each sender, in arrival order. */
  readonly #got = new Map<NodeId, number[]>();
  readonly #seen = new Map<NodeId, Set<number>>();
  handlerCalls = 0;
  handlerBytes = 0;
  pollReturned = 0;

  constructor(
    readonly id: NodeId,
    readonly t: Transport,
  ) {}

  readonly handler: FrameHandler = (from, frame) => {
    this.handlerCalls++;
    this.handlerBytes += frame.length;
    try {
      const h = checkFrame(frame);
      if (h.from !== from) this.errors.push(`frame written by ${h.from} reported as from ${from}`);
      if (h.to !== this.id) this.errors.push(`frame for ${h.to} delivered to ${this.id}`);
      if (!this.#got.has(from)) {
        this.#got.set(from, []);
        this.#seen.set(from, new Set());
      }
      this.#got.get(from)!.push(h.seq);
      this.#seen.get(from)!.add(h.seq);
    } catch (e) {
      this.errors.push(`from ${from}: ${(e as Error).message}`);
    }
  };

  has(from: NodeId, seq: number): boolean {
    return this.#seen.get(from)?.has(seq) ?? false;
  }

  /** Data frames (below the probe range) received from `from` with seq in [lo, hi), arrival order. */
  seqs(from: NodeId, lo = 0, hi = probeSeqBase): number[] {
    return (this.#got.get(from) ?? []).filter((s) => s >= lo && s < hi);
  }

  /** How many frames with seq in [lo, hi) arrived from `from` (duplicates included). */
  count(from: NodeId, lo = 0, hi = probeSeqBase): number {
    return this.seqs(from, lo, hi).length;
  }

  send(to: Endpoint, seq: number, length: number): boolean {
    return this.t.send(to.id, makeFrame(this.id, to.id, seq, length));
  }
}

/** A mix of sizes from the smallest test frame up to frameBytesMax exactly. */
function sizeFor(seq: number, frameBytesMax: number): number {
  const sizes = [testFrameBytesMin, 64, 333, 1024, 1500, frameBytesMax];
  return Math.min(sizes[seq % sizes.length]!, frameBytesMax);
}

async function round(eps: readonly Endpoint[]): Promise<void> {
  for (const e of eps) e.t.flush();
  await Bun.sleep(1);
  for (const e of eps) e.pollReturned += e.t.poll(e.handler);
}

/** Run rounds until `done()` holds; false if it still does not after roundsMax. */
async function pumpUntil(eps: readonly Endpoint[], done: () => boolean, rounds = roundsMax): Promise<boolean> {
  for (let r = 0; r < rounds; r++) {
    if (done()) return true;
    await round(eps);
  }
  return done();
}

async function pump(eps: readonly Endpoint[], rounds: number): Promise<void> {
  for (let r = 0; r < rounds; r++) await round(eps);
}

interface Flow {
  src: Endpoint;
  dst: Endpoint;
  lo: number;
  hi: number;
  /** Frames [lo, sentTo) were already sent by the test itself. */
  sentTo?: number;
}

function flowDone(f: Flow): boolean {
  for (let s = f.lo; s < f.hi; s++) if (!f.dst.has(f.src.id, s)) return false;
  return true;
}

/**
 * Get every frame of every flow across. Frames go out as fast as send() accepts them (one window
 * per round at most, since send refuses beyond it). Unreliable: a frame still missing after
 * resendAfterRounds rounds is sent again. Reliable: each accepted frame is sent exactly once.
 */
async function deliverAll(eps: readonly Endpoint[], flows: readonly Flow[], caps: SuiteCaps): Promise<void> {
  const next = flows.map((f) => f.sentTo ?? f.lo);
  const sentAt = flows.map((f) => {
    const m = new Map<number, number>();
    for (let s = f.lo; s < (f.sentTo ?? f.lo); s++) m.set(s, 0);
    return m;
  });
  for (let r = 0; r < roundsMax; r++) {
    let done = true;
    flows.forEach((f, k) => {
      if (!flowDone(f)) done = false;
      const max = f.src.t.frameBytesMax;
      while (next[k]! < f.hi && f.src.send(f.dst, next[k]!, sizeFor(next[k]!, max))) sentAt[k]!.set(next[k]!++, r);
      if (caps.reliable) return;
      for (const [seq, at] of sentAt[k]!) {
        if (f.dst.has(f.src.id, seq)) sentAt[k]!.delete(seq);
        else if (r - at >= resendAfterRounds) {
          if (!f.src.send(f.dst, seq, sizeFor(seq, max))) break;
          sentAt[k]!.set(seq, r);
        }
      }
    });
    if (done) return;
    await round(eps);
  }
  const missing = flows.filter((f) => !flowDone(f)).map((f) => `${f.src.id}->${f.dst.id}`);
  throw new Error(`flows ${missing.join(", ")} still missing frames after ${roundsMax} rounds`);
}

/** Every frame of the flow arrived intact; with a reliable medium exactly once and in order. */
function expectFlow(f: Flow, caps: SuiteCaps): void {
  const seqs = f.dst.seqs(f.src.id, f.lo, f.hi);
  const want = Array.from({ length: f.hi - f.lo }, (_, i) => f.lo + i);
  if (caps.reliable) expect(seqs).toEqual(want);
  else expect([...new Set(seqs)].sort((a, b) => a - b)).toEqual(want);
}

/** Send probes on each directed link until one crosses, so that later sends meet an established link. */
async function warmUp(eps: readonly Endpoint[], links: readonly [Endpoint, Endpoint][]): Promise<void> {
  let probe = probeSeqBase;
  const pending = new Map<string, { src: Endpoint; dst: Endpoint; seqs: number[]; at: number }>();
  for (const [src, dst] of links) pending.set(`${src.id}>${dst.id}`, { src, dst, seqs: [], at: -resendAfterRounds });
  for (let r = 0; r < roundsMax && pending.size > 0; r++) {
    for (const [key, p] of pending) {
      if (p.seqs.some((s) => p.dst.has(p.src.id, s))) pending.delete(key);
      else if (r - p.at >= resendAfterRounds && p.src.send(p.dst, probe, testFrameBytesMin)) {
        p.seqs.push(probe++);
        p.at = r;
      }
    }
    await round(eps);
  }
  if (pending.size > 0) throw new Error(`links ${[...pending.keys()].join(", ")} never carried a probe`);
}

function allLinks(eps: readonly Endpoint[]): [Endpoint, Endpoint][] {
  const links: [Endpoint, Endpoint][] = [];
  for (const a of eps) for (const b of eps) if (a !== b) links.push([a, b]);
  return links;
}

/** Counters every transport must keep exactly, whatever the medium. */
function expectConsistent(eps: readonly Endpoint[]): void {
  for (const e of eps) {
    expect(e.errors).toEqual([]);
    const s = e.t.stats();
    expect(e.pollReturned).toBe(e.handlerCalls);
    expect(s.framesReceived).toBe(e.handlerCalls);
    expect(s.bytesReceived).toBe(e.handlerBytes);
  }
}

function sum(eps: readonly Endpoint[], f: (e: Endpoint) => number): number {
  return eps.reduce((acc, e) => acc + f(e), 0);
}

/**
 * Register the shared transport tests under `describe(name)`. `make(self)` binds a fresh endpoint
 * for node `self` on an OS-chosen port of this machine.
 */
export function transportSuite(
  name: string,
  make: (self: NodeId) => Promise<Transport>,
  caps: SuiteCaps = { reliable: false },
): void {
  describe(name, () => {
    const opened: Transport[] = [];
    afterEach(() => {
      for (const t of opened) t.close();
      opened.length = 0;
    });

    async function mesh(ids: readonly NodeId[]): Promise<Endpoint[]> {
      const eps: Endpoint[] = [];
      for (const id of ids) {
        const t = await make(id);
        opened.push(t);
        eps.push(new Endpoint(id, t));
      }
      for (const a of eps) for (const b of eps) if (a !== b) a.t.connect(b.id, b.t.address);
      return eps;
    }

    test(
      "two endpoints exchange frames both ways, intact and identified by sender",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        const flows = [
          { src: a, dst: b, lo: 0, hi: 300 },
          { src: b, dst: a, lo: 0, hi: 300 },
        ];
        await deliverAll(eps, flows, caps);
        for (const f of flows) expectFlow(f, caps);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "three endpoints: every directed pair carries frames, each identified by sender",
      async () => {
        // Ids at both ends of the NodeId range.
        const eps = await mesh([0, 17, 31]);
        await warmUp(eps, allLinks(eps));
        const flows = allLinks(eps).map(([src, dst]) => ({ src, dst, lo: 0, hi: 120 }));
        await deliverAll(eps, flows, caps);
        for (const f of flows) expectFlow(f, caps);
        for (const e of eps) expect(e.seqs(e.id)).toEqual([]); // nothing to self
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "many frames queued before one flush arrive intact, identified by sender",
      async () => {
        const eps = await mesh([1, 2, 3]);
        const [a, b, c] = eps as [Endpoint, Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        // Fill a's window to b and c's window to b, then flush each once.
        let na = 0;
        while (na < 10_000 && a.send(b, na, sizeFor(na, a.t.frameBytesMax))) na++;
        let nc = 0;
        while (nc < 10_000 && c.send(b, nc, sizeFor(nc, c.t.frameBytesMax))) nc++;
        expect(na).toBeGreaterThanOrEqual(windowFramesMin);
        expect(nc).toBeGreaterThanOrEqual(windowFramesMin);
        a.t.flush();
        c.t.flush();
        await pumpUntil(eps, () => b.count(a.id) >= na && b.count(c.id) >= nc, 10 * resendAfterRounds);
        if (caps.reliable) {
          expect(b.seqs(a.id)).toEqual(Array.from({ length: na }, (_, i) => i));
          expect(b.seqs(c.id)).toEqual(Array.from({ length: nc }, (_, i) => i));
        } else {
          // One window into a sized socket buffer on loopback loses nothing; half leaves a wide margin.
          expect(b.count(a.id)).toBeGreaterThanOrEqual(na / 2);
          expect(b.count(c.id)).toBeGreaterThanOrEqual(nc / 2);
          const rest = [
            { src: a, dst: b, lo: 0, hi: na, sentTo: na },
            { src: c, dst: b, lo: 0, hi: nc, sentTo: nc },
          ];
          await deliverAll(eps, rest, caps);
        }
        expectFlow({ src: a, dst: b, lo: 0, hi: na }, caps);
        expectFlow({ src: c, dst: b, lo: 0, hi: nc }, caps);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "poll never blocks: it returns 0 when idle and the count it handed out otherwise",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        let calls = 0;
        const counting: FrameHandler = () => void calls++;
        // Idle endpoints: poll returns at once with nothing.
        for (let i = 0; i < 100; i++) expect(b.t.poll(counting)).toBe(0);
        expect(calls).toBe(0);
        await warmUp(eps, allLinks(eps));
        await deliverAll(eps, [{ src: a, dst: b, lo: 0, hi: 50 }], caps);
        // Everything was drained by the rounds: polling again hands out nothing.
        await pump(eps, 5);
        expect(b.t.poll(counting)).toBe(0);
        expect(calls).toBe(0);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "whenReadable, where offered, resolves once poll has a frame to hand out",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        const readable = (b.t as Partial<{ whenReadable(): Promise<void> }>).whenReadable?.bind(b.t);
        if (readable === undefined) return; // an optional extension of Transport
        await warmUp(eps, allLinks(eps));
        let woke = false;
        const waiting = readable().then(() => void (woke = true));
        await pump([a], 5); // a sends nothing and b is not polled: nothing to hand out
        expect(woke).toBe(false);
        a.send(b, 0, 64);
        a.t.flush();
        for (let r = 0; r < roundsMax && !woke; r++) await Bun.sleep(1);
        expect(woke).toBe(true);
        await waiting;
        // Already readable: resolves without waiting for any I/O.
        let atOnce = false;
        const again = readable().then(() => void (atOnce = true));
        await Promise.resolve();
        expect(atOnce).toBe(true);
        await again;
        b.pollReturned += b.t.poll(b.handler);
        expect(b.seqs(a.id)).toEqual([0]);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "send throws on frames larger than frameBytesMax and on empty frames; frameBytesMax fits",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        const max = a.t.frameBytesMax;
        const before = a.t.stats();
        expect(() => a.t.send(b.id, new Uint8Array(max + 1))).toThrow();
        expect(() => a.t.send(b.id, new Uint8Array(0))).toThrow();
        expect(a.t.stats().sendsRefused).toBe(before.sendsRefused);
        await warmUp(eps, allLinks(eps));
        // Sequence numbers whose size is exactly frameBytesMax (sizeFor's last slot).
        const flow = { src: a, dst: b, lo: 5, hi: 6 };
        expect(sizeFor(5, max)).toBe(max);
        await deliverAll(eps, [flow], caps);
        expectFlow(flow, caps);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "close is idempotent, and a closed endpoint neither delivers nor sends",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        a.t.close();
        a.t.close();
        // Every operation on a closed endpoint is harmless.
        a.send(b, 0, 64);
        a.t.flush();
        a.t.connect(b.id, b.t.address);
        a.t.disconnect(b.id);
        expect(a.t.poll(a.handler)).toBe(0);
        const aBefore = a.handlerCalls;
        for (let i = 0; i < 20; i++) b.send(a, 100 + i, 64);
        await pump([b], settleRounds);
        expect(a.t.poll(a.handler)).toBe(0);
        expect(a.handlerCalls).toBe(aBefore);
        expect(b.count(a.id)).toBe(0);
        b.t.close();
        b.t.close();
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "disconnect stops delivery both ways, and connect restores it",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        // b forgets a: frames a still sends must arrive and be dropped, never delivered.
        b.t.disconnect(a.id);
        const droppedBefore = b.t.stats().framesDropped;
        let sent = 0;
        const arrivedAndDropped = await pumpUntil(eps, () => {
          if (a.send(b, sent, 64)) sent++;
          return b.t.stats().framesDropped - droppedBefore >= 5;
        });
        expect(arrivedAndDropped).toBe(true);
        expect(b.count(a.id)).toBe(0);
        // a forgets b too: sending to a forgotten peer is harmless and delivers nothing.
        a.t.disconnect(b.id);
        for (let i = 0; i < 20; i++) a.send(b, 1000 + i, 64);
        await pump(eps, settleRounds);
        expect(b.count(a.id)).toBe(0);
        // Reconnect both ways: delivery resumes.
        a.t.connect(b.id, b.t.address);
        b.t.connect(a.id, a.t.address);
        const flows = [
          { src: a, dst: b, lo: 2000, hi: 2100 },
          { src: b, dst: a, lo: 2000, hi: 2100 },
        ];
        await warmUp(eps, allLinks(eps));
        await deliverAll(eps, flows, caps);
        for (const f of flows) expectFlow(f, caps);
        expect(b.count(a.id, 0, 2000)).toBe(0);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "a drop rule partitions endpoints, and removing it heals the partition",
      async () => {
        const eps = await mesh([1, 2, 3]);
        const [a, b, c] = eps as [Endpoint, Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        const droppedBefore = sum(eps, (e) => e.t.stats().framesDropped);
        setDropRuleAll(
          eps.map((e) => e.t),
          partition([a.id], [b.id, c.id]),
        );
        // Across the cut (a <-> b, a <-> c): accepted by send, never delivered.
        let crossing = 0;
        for (let seq = 0; seq < 20; seq++) {
          for (const [src, dst] of [
            [a, b],
            [b, a],
            [a, c],
            [c, a],
          ] as const)
            if (src.send(dst, seq, 64)) crossing++;
        }
        // Inside a side (b <-> c): delivered as usual.
        const inside = [
          { src: b, dst: c, lo: 0, hi: 50 },
          { src: c, dst: b, lo: 0, hi: 50 },
        ];
        await deliverAll(eps, inside, caps);
        for (const f of inside) expectFlow(f, caps);
        const dropsCounted = await pumpUntil(
          eps,
          () => sum(eps, (e) => e.t.stats().framesDropped) - droppedBefore >= crossing,
        );
        expect(dropsCounted).toBe(true);
        await pump(eps, settleRounds);
        expect(b.count(a.id) + c.count(a.id) + a.count(b.id) + a.count(c.id)).toBe(0);
        // Heal: frames cross again.
        setDropRuleAll(
          eps.map((e) => e.t),
          null,
        );
        const healed = [
          { src: a, dst: b, lo: 100, hi: 150 },
          { src: c, dst: a, lo: 100, hi: 150 },
        ];
        await deliverAll(eps, healed, caps);
        for (const f of healed) expectFlow(f, caps);
        // A one-way rule on the receiver alone: b stops hearing c, c still hears b.
        dropRuleTarget(b.t).setDropRule((from, to) => from === c.id && to === b.id);
        for (let seq = 200; seq < 220; seq++) c.send(b, seq, 64);
        const oneWay = { src: b, dst: c, lo: 200, hi: 220 };
        await deliverAll(eps, [oneWay], caps);
        expectFlow(oneWay, caps);
        await pump(eps, settleRounds);
        expect(b.count(c.id, 200, 220)).toBe(0);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "frames from a sender that was never connected are dropped and counted",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        // c knows b, but b does not know c.
        const tc = await make(3);
        opened.push(tc);
        const c = new Endpoint(3, tc);
        c.t.connect(b.id, b.t.address);
        const all = [a, b, c];
        const droppedBefore = b.t.stats().framesDropped;
        let sent = 0;
        const counted = await pumpUntil(all, () => {
          if (c.send(b, sent, 64)) sent++;
          return b.t.stats().framesDropped - droppedBefore >= 5;
        });
        expect(counted).toBe(true);
        await pump(all, settleRounds);
        expect(b.count(c.id)).toBe(0);
        // The others are unaffected.
        await warmUp(eps, allLinks(eps));
        const flow = { src: a, dst: b, lo: 0, hi: 30 };
        await deliverAll(all, [flow], caps);
        expectFlow(flow, caps);
        expectConsistent(all);
      },
      testTimeoutMs,
    );

    test(
      "flow control: send refuses once a peer's window is full, and accepts again after draining",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        await warmUp(eps, allLinks(eps));
        const refusedBefore = a.t.stats().sendsRefused;
        let accepted = 0;
        while (accepted < 100_000 && a.send(b, accepted, 64)) accepted++;
        expect(accepted).toBeGreaterThanOrEqual(windowFramesMin);
        expect(accepted).toBeLessThan(100_000);
        // Refused sends keep refusing until the window drains, and each one is counted.
        let refusals = 1;
        for (let i = 0; i < 5; i++) if (!a.send(b, accepted, 64)) refusals++;
        expect(refusals).toBe(6);
        expect(a.t.stats().sendsRefused - refusedBefore).toBe(refusals);
        const reopened = await pumpUntil(eps, () => a.send(b, accepted, 64));
        expect(reopened).toBe(true);
        const flow = { src: a, dst: b, lo: 0, hi: accepted + 1, sentTo: accepted + 1 };
        await deliverAll(eps, [flow], caps);
        expectFlow(flow, caps);
        expectConsistent(eps);
      },
      testTimeoutMs,
    );

    test(
      "stats count frames and bytes sent, received and refused",
      async () => {
        const eps = await mesh([1, 2]);
        const [a, b] = eps as [Endpoint, Endpoint];
        const zero = a.t.stats();
        expect([zero.framesSent, zero.framesReceived, zero.bytesSent, zero.bytesReceived]).toEqual([0, 0, 0, 0]);
        await warmUp(eps, allLinks(eps));
        const flows = [
          { src: a, dst: b, lo: 0, hi: 200 },
          { src: b, dst: a, lo: 0, hi: 100 },
        ];
        await deliverAll(eps, flows, caps);
        await pump(eps, settleRounds); // let stray resends and probes land before comparing
        const sa = a.t.stats();
        const sb = b.t.stats();
        // Every delivered frame was sent; the receiver counts exactly what poll handed out.
        expect(sa.framesSent).toBeGreaterThanOrEqual(b.handlerCalls);
        expect(sb.framesSent).toBeGreaterThanOrEqual(a.handlerCalls);
        expect(sa.bytesSent).toBeGreaterThanOrEqual(b.handlerBytes);
        expect(b.handlerCalls).toBeGreaterThanOrEqual(200);
        if (caps.reliable) {
          expect(sb.framesReceived).toBe(sa.framesSent);
          expect(sb.bytesReceived).toBe(sa.bytesSent);
          expect(sa.framesReceived).toBe(sb.framesSent);
          expect(sa.bytesReceived).toBe(sb.bytesSent);
        }
        expectConsistent(eps);
      },
      testTimeoutMs,
    );
  });
}
