// The simulated transport passes the shared transport suite, over the simplest network: every
// frame is delivered at once, in order, with a credit window per link (frames from one sender
// waiting in the receiver's inbox). The simulator (test/sim, --mode shard) supplies its own lossy
// network instead; what it relies on from the endpoint is checked here.

import { expect, test } from "bun:test";
import type { NodeId } from "../../src/base/ids.ts";
import { SimTransport, type SimNetwork } from "../../src/transport/sim.ts";
import { transportSuite } from "./suite.ts";

const frameBytesMax = 4096;
const linkWindowFrames = 64;

/** An in-order, lossless network with per-link credits: the endpoints of one test run. */
class InstantNetwork implements SimNetwork {
  readonly endpoints = new Map<NodeId, SimTransport>();

  send(from: NodeId, to: NodeId, frame: Uint8Array): boolean {
    const target = this.endpoints.get(to);
    if (target === undefined) return true; // nobody there: lost
    if (target.pendingFrom(from) >= linkWindowFrames) return false;
    target.deliver(from, frame);
    return true;
  }

  open(self: NodeId): SimTransport {
    const t = new SimTransport({ self, frameBytesMax, network: this });
    this.endpoints.set(self, t);
    return t;
  }
}

// One network for the whole suite: it closes endpoints after each test and reuses ids, so a new
// endpoint replaces the old one under its id.
const network = new InstantNetwork();
transportSuite("sim", async (self) => network.open(self), { reliable: true });

test("a polled frame is overwritten after the handler returns (as a reused receive buffer)", () => {
  const net = new InstantNetwork();
  const a = net.open(1);
  const b = net.open(2);
  a.connect(2, b.address);
  b.connect(1, a.address);
  expect(a.send(2, new Uint8Array([1, 2, 3]))).toBe(true);
  let kept: Uint8Array | null = null;
  expect(
    b.poll((from, frame) => {
      expect(from).toBe(1);
      expect([...frame]).toEqual([1, 2, 3]);
      kept = frame;
    }),
  ).toBe(1);
  expect([...kept!]).toEqual([0xa5, 0xa5, 0xa5]);
});

test("the network gets its own copy: the sender may reuse its buffer at once", () => {
  const got: Uint8Array[] = [];
  const a = new SimTransport({
    self: 1,
    frameBytesMax,
    network: { send: (_from, _to, frame) => (got.push(frame), true) },
  });
  a.connect(2, "sim:2");
  const buffer = new Uint8Array([7, 7]);
  a.send(2, buffer);
  buffer.fill(0);
  expect([...got[0]!]).toEqual([7, 7]);
  expect(() => a.connect(3, "sim:4")).toThrow(); // an address names its node
});

test("a full inbox drops and counts further frames; a refusing network is counted as sendsRefused", () => {
  const b = new SimTransport({ self: 2, frameBytesMax, network: { send: () => false }, inboxFramesMax: 2 });
  b.connect(1, "sim:1");
  for (let i = 0; i < 3; i++) b.deliver(1, new Uint8Array([i]));
  expect(b.pending).toBe(2);
  expect(b.stats().framesDropped).toBe(1);
  expect(b.send(1, new Uint8Array([9]))).toBe(false);
  expect(b.stats().sendsRefused).toBe(1);
});
