// The UDP transport: the shared suite, then what only UDP has: sender identity by source address,
// the datagram size check, the per-flush budget, the receive queue limit and the enlarged buffer.

import { afterEach, describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { UdpTransport, udpFrameBytesLimit, udpRcvbufBytesDefault, type UdpOptions } from "../../src/transport/udp.ts";
import { createTransport } from "../../src/transport/factory.ts";
import { findBoundSocketFds, socketBufferBytes, SOCK_DGRAM } from "../../ffi/socket.ts";
import { transportSuite } from "./suite.ts";
import { checkFrame, makeFrame } from "./frames.ts";

const host = "127.0.0.1";
const frameBytesMax = 4096;
const roundsMax = 2000;

transportSuite("udp", (self) => createTransport("udp", { host, port: 0, self, frameBytesMax }));

describe("udp only", () => {
  const opened: { close(): void }[] = [];
  afterEach(() => {
    for (const t of opened) t.close();
    opened.length = 0;
  });

  async function open(self: number, extra: Partial<UdpOptions> = {}): Promise<UdpTransport> {
    const t = await UdpTransport.open({ host, port: 0, self, frameBytesMax, ...extra });
    opened.push(t);
    return t;
  }

  async function raw(h = host): Promise<udp.Socket<"buffer">> {
    const s = await Bun.udpSocket({ hostname: h, port: 0 });
    opened.push(s);
    return s;
  }

  /** Poll `t` for up to roundsMax rounds until `done`; returns the frames it handed out. */
  async function collect(t: UdpTransport, done: (got: [number, Uint8Array][]) => boolean, flush: UdpTransport[] = []) {
    const got: [number, Uint8Array][] = [];
    for (let r = 0; r < roundsMax && !done(got); r++) {
      for (const f of flush) f.flush();
      await Bun.sleep(1);
      t.poll((from, frame) => void got.push([from, frame.slice()]));
    }
    return got;
  }

  test("the receive buffer is enlarged over FFI, and the size granted is reported", async () => {
    const t = await open(1);
    const port = Number(t.address.split(":")[1]);
    const fds = findBoundSocketFds(SOCK_DGRAM, port, host);
    expect(fds.length).toBe(1);
    // What the kernel says now is what the transport reports.
    expect(socketBufferBytes(fds[0]!, "receive")).toBe(t.rcvbufBytes);
    expect(t.stats().rcvbufBytes).toBe(t.rcvbufBytes);
    expect(socketBufferBytes(fds[0]!, "send")).toBe(t.sndbufBytes);
    if (process.getuid?.() === 0) {
      // As root SO_RCVBUFFORCE ignores rmem_max; Linux reports twice the request.
      expect(t.rcvbufBytes).toBeGreaterThanOrEqual(udpRcvbufBytesDefault);
    } else {
      expect(t.rcvbufBytes).toBeGreaterThan(0);
    }
  });

  test("a datagram is the frame: its sender is the connect()ed peer at its source address", async () => {
    const t = await open(1);
    const s5 = await raw();
    const stranger = await raw();
    t.connect(5, `${host}:${s5.port}`);
    const f = makeFrame(5, 1, 7, 100);
    stranger.send(f, Number(t.address.split(":")[1]), host);
    s5.send(f, Number(t.address.split(":")[1]), host);
    const got = await collect(t, (g) => g.length >= 1 && t.stats().unknownSourceDrops >= 1);
    expect(got.length).toBe(1);
    expect(got[0]![0]).toBe(5);
    expect(checkFrame(got[0]![1])).toEqual({ from: 5, to: 1, seq: 7, length: 100 });
    expect(t.stats().unknownSourceDrops).toBe(1);
    expect(t.stats().framesDropped).toBe(1);
  });

  test("a datagram larger than frameBytesMax is dropped and counted; frameBytesMax passes", async () => {
    const t = await open(1);
    const s5 = await raw();
    t.connect(5, `${host}:${s5.port}`);
    const port = Number(t.address.split(":")[1]);
    s5.send(makeFrame(5, 1, 1, frameBytesMax + 1), port, host);
    s5.send(makeFrame(5, 1, 2, frameBytesMax), port, host);
    const got = await collect(t, (g) => g.length >= 1 && t.stats().oversizeDrops >= 1);
    expect(got.map(([from, f]) => [from, checkFrame(f).seq])).toEqual([[5, 2]]);
    expect(t.stats().oversizeDrops).toBe(1);
  });

  test("connect with a new address moves the peer: the old source is unknown from then on", async () => {
    const t = await open(1);
    const old = await raw();
    const now = await raw();
    const port = Number(t.address.split(":")[1]);
    t.connect(5, `${host}:${old.port}`);
    t.connect(5, `${host}:${now.port}`);
    old.send(makeFrame(5, 1, 1, 64), port, host);
    now.send(makeFrame(5, 1, 2, 64), port, host);
    const got = await collect(t, (g) => g.length >= 1 && t.stats().unknownSourceDrops >= 1);
    expect(got.map(([from, f]) => [from, checkFrame(f).seq])).toEqual([[5, 2]]);
  });

  test("the budget is per peer and per flush: refused beyond windowFrames until flush, without the receiver", async () => {
    const a = await open(1, { windowFrames: 16 });
    const b = await open(2);
    const c = await open(3);
    a.connect(2, b.address);
    a.connect(3, c.address);
    for (let i = 0; i < 16; i++) expect(a.send(2, makeFrame(1, 2, i, 64))).toBe(true);
    expect(a.send(2, makeFrame(1, 2, 16, 64))).toBe(false);
    // Another peer has its own budget.
    expect(a.send(3, makeFrame(1, 3, 0, 64))).toBe(true);
    a.flush();
    // The kernel took the batch: the budget is back although b has polled nothing.
    expect(a.send(2, makeFrame(1, 2, 16, 64))).toBe(true);
    expect(a.stats().framesSent).toBe(17);
    expect(a.stats().sendsRefused).toBe(1);
  });

  test("the receive queue is bounded: frames beyond recvQueueFramesMax are dropped and counted", async () => {
    const a = await open(1);
    const b = await open(2, { recvQueueFramesMax: 10 });
    a.connect(2, b.address);
    b.connect(1, a.address);
    for (let i = 0; i < 30; i++) expect(a.send(2, makeFrame(1, 2, i, 64))).toBe(true);
    a.flush();
    // b does not poll until all 30 are accounted for: 10 queued, 20 dropped.
    for (let r = 0; r < roundsMax && b.stats().recvQueueDrops < 20; r++) await Bun.sleep(1);
    expect(b.stats().recvQueueDrops).toBe(20);
    expect(b.stats().framesDropped).toBe(20);
    const seqs: number[] = [];
    expect(b.poll((_from, f) => void seqs.push(checkFrame(f).seq))).toBe(10);
    expect(seqs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("IPv6 loopback works, with sources matched in their compressed form", async () => {
    const a = await open(1, { host: "::1" });
    const b = await open(2, { host: "::1" });
    expect(a.address).toMatch(/^\[::1\]:\d+$/);
    a.connect(2, b.address);
    b.connect(1, "[0:0:0:0:0:0:0:1]:" + a.address.split("]:")[1]);
    expect(a.send(2, makeFrame(1, 2, 1, 64))).toBe(true);
    expect(b.send(1, makeFrame(2, 1, 2, 64))).toBe(true);
    const atB = await collect(b, (g) => g.length >= 1, [a, b]);
    const atA = await collect(a, (g) => g.length >= 1, [a, b]);
    expect(atB.map(([from, f]) => [from, checkFrame(f).seq])).toEqual([[1, 1]]);
    expect(atA.map(([from, f]) => [from, checkFrame(f).seq])).toEqual([[2, 2]]);
  });

  test("bad options and addresses are refused up front", async () => {
    await expect(UdpTransport.open({ host: "localhost", port: 0, self: 1, frameBytesMax })).rejects.toThrow(RangeError);
    await expect(open(1, { frameBytesMax: udpFrameBytesLimit + 1 })).rejects.toThrow(RangeError);
    await expect(open(32)).rejects.toThrow(RangeError);
    await expect(open(1, { windowFrames: 2 })).rejects.toThrow(RangeError);
    const t = await open(1);
    expect(() => t.connect(2, "localhost:7000")).toThrow(RangeError);
    expect(() => t.connect(2, "127.0.0.1")).toThrow(RangeError);
    expect(() => t.connect(2, "127.0.0.1:0")).toThrow(RangeError);
    expect(() => t.connect(1, "127.0.0.1:7000")).toThrow(RangeError);
    expect(() => t.connect(40, "127.0.0.1:7000")).toThrow(RangeError);
  });
});
