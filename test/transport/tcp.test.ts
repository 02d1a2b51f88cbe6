// The TCP transport: the shared suite (reliable), then what only TCP has: the hello, the byte-stream
// framing (frames split anywhere), partial writes, credits on the reverse stream, the send buffer
// limit, and reconnection after the peer comes back.

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Socket } from "bun";
import { TcpTransport, tcpHelloMagic, tcpHelloVersion, type TcpOptions } from "../../src/transport/tcp.ts";
import { createTransport } from "../../src/transport/factory.ts";
import { transportSuite } from "./suite.ts";
import { checkFrame, makeFrame } from "./frames.ts";

const host = "127.0.0.1";
const frameBytesMax = 4096;
const roundsMax = 3000;

transportSuite("tcp", (self) => createTransport("tcp", { host, port: 0, self, frameBytesMax }), { reliable: true });

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function hello(from: number, to: number, magic = tcpHelloMagic): Uint8Array {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(magic, 0);
  b.writeUInt16LE(tcpHelloVersion, 4);
  b.writeUInt16LE(from, 6);
  b.writeUInt16LE(to, 8);
  return b;
}

function framed(frame: Uint8Array): Uint8Array {
  const b = Buffer.alloc(4 + frame.length);
  b.writeUInt32LE(frame.length, 0);
  b.set(frame, 4);
  return b;
}

/** A hand-driven dialer, to speak the wire format directly. */
interface Raw {
  sock: Socket<undefined>;
  closed: boolean;
  /** Sum of the credit records received. */
  credits: number;
}

describe("tcp only", () => {
  const opened: { close(): void }[] = [];
  afterEach(() => {
    for (const t of opened) t.close();
    opened.length = 0;
  });

  async function open(self: number, extra: Partial<TcpOptions> = {}): Promise<TcpTransport> {
    const t = await TcpTransport.open({ host, port: 0, self, frameBytesMax, ...extra });
    opened.push(t);
    return t;
  }

  async function dialRaw(port: number): Promise<Raw> {
    const raw: Raw = { sock: null as unknown as Socket<undefined>, closed: false, credits: 0 };
    const pending: number[] = [];
    raw.sock = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data(_s, chunk) {
          for (const byte of chunk) pending.push(byte);
          while (pending.length >= 4) raw.credits += Buffer.from(pending.splice(0, 4)).readUInt32LE(0);
        },
        close() {
          raw.closed = true;
        },
      },
    });
    raw.sock.setNoDelay(true);
    opened.push({ close: () => raw.sock.end() });
    return raw;
  }

  async function until(done: () => boolean, step: () => void = () => {}): Promise<boolean> {
    for (let r = 0; r < roundsMax && !done(); r++) {
      step();
      await Bun.sleep(1);
    }
    return done();
  }

  function collector(t: TcpTransport) {
    const got: [number, number][] = [];
    const poll = () => void t.poll((from, f) => void got.push([from, checkFrame(f).seq]));
    return { got, poll };
  }

  test("a frame split at every byte, hello included, is reassembled; credits come back on the same connection", async () => {
    const t = await open(1);
    t.connect(5, "127.0.0.1:9"); // known sender; dialling it back fails and backs off, harmless
    const raw = await dialRaw(portOf(t.address));
    const frames = Array.from({ length: 20 }, (_, i) => makeFrame(5, 1, i, 20 + 37 * i));
    const bytes = Buffer.concat([hello(5, 1), ...frames.map(framed)]);
    const c = collector(t);
    // The first 200 bytes one write each (header, hello and frame boundaries all split), then the rest.
    for (let i = 0; i < 200; i++) {
      raw.sock.write(bytes.subarray(i, i + 1));
      if (i % 8 === 0) {
        await Bun.sleep(0);
        c.poll();
      }
    }
    raw.sock.write(bytes.subarray(200));
    expect(await until(() => c.got.length >= 20, c.poll)).toBe(true);
    expect(c.got).toEqual(frames.map((_, i) => [5, i]));
    // 20 frames polled, batch 16: at least one credit record went back, never more than was sent.
    expect(await until(() => raw.credits >= 16, c.poll)).toBe(true);
    expect(raw.credits).toBeLessThanOrEqual(20);
    expect(t.stats().protocolErrors).toBe(0);
  });

  test("an oversized frame is skipped and counted; the frames around it arrive; its credit returns", async () => {
    const t = await open(1);
    t.connect(5, "127.0.0.1:9");
    const raw = await dialRaw(portOf(t.address));
    const frames = [
      makeFrame(5, 1, 0, 100),
      makeFrame(5, 1, 1, frameBytesMax + 1000),
      makeFrame(5, 1, 2, frameBytesMax),
    ];
    raw.sock.write(Buffer.concat([hello(5, 1), ...frames.map(framed)]));
    for (let i = 3; i < 16; i++) raw.sock.write(framed(makeFrame(5, 1, i, 64)));
    const c = collector(t);
    expect(await until(() => c.got.length >= 15, c.poll)).toBe(true);
    expect(c.got).toEqual([0, 2, ...Array.from({ length: 13 }, (_, i) => i + 3)].map((s) => [5, s]));
    expect(t.stats().oversizeDrops).toBe(1);
    expect(t.stats().framesDropped).toBe(1);
    // 15 delivered + 1 dropped = 16 owed = one batch.
    expect(await until(() => raw.credits >= 16, c.poll)).toBe(true);
    expect(raw.credits).toBe(16);
  });

  test("a bad hello closes the connection and is counted", async () => {
    const t = await open(1);
    t.connect(5, "127.0.0.1:9");
    const badMagic = await dialRaw(portOf(t.address));
    badMagic.sock.write(hello(5, 1, 0x12345678));
    const wrongTo = await dialRaw(portOf(t.address));
    wrongTo.sock.write(hello(5, 2));
    const fromSelf = await dialRaw(portOf(t.address));
    fromSelf.sock.write(hello(1, 1));
    expect(await until(() => badMagic.closed && wrongTo.closed && fromSelf.closed)).toBe(true);
    expect(t.stats().protocolErrors).toBe(3);
  });

  test("frames larger than the socket buffer go out through partial writes, in order and intact", async () => {
    const big = 1 << 20;
    const a = await open(1, { frameBytesMax: big, windowFrames: 32, sendBufferBytes: 34 << 20 });
    const b = await open(2, { frameBytesMax: big, windowFrames: 32, recvQueueBytes: 40 << 20 });
    a.connect(2, b.address);
    b.connect(1, a.address);
    let n = 0;
    while (a.send(2, makeFrame(1, 2, n, big - (n % 3)))) n++;
    expect(n).toBe(32); // the credit window, not the buffer, is the limit here
    a.flush(); // 32 MiB in one write: more than any loopback socket buffer takes at once
    const c = collector(b);
    expect(await until(() => c.got.length >= n, c.poll)).toBe(true);
    expect(c.got).toEqual(Array.from({ length: n }, (_, i) => [1, i]));
    const wmemMax = Number(readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").trim().split(/\s+/)[2]);
    if (wmemMax < 32 << 20) expect(a.stats().partialWrites).toBeGreaterThanOrEqual(1);
    expect(b.stats().bytesReceived).toBe(a.stats().bytesSent);
  }, 30_000);

  test("the send buffer is a hard limit: send refuses when it is full, flush makes room", async () => {
    // Room for exactly three 1000-byte frames (4-byte length prefix each) besides the 12-byte hello.
    const a = await open(1, { frameBytesMax: 1000, sendBufferBytes: 12 + 3 * 1004 });
    const b = await open(2);
    a.connect(2, b.address);
    b.connect(1, a.address);
    const c = collector(b);
    // Wait for the connection so that the hello has left the buffer.
    expect(await until(() => a.stats().connectionsUp === 1)).toBe(true);
    a.flush();
    for (let i = 0; i < 3; i++) expect(a.send(2, makeFrame(1, 2, i, 1000))).toBe(true);
    expect(a.send(2, makeFrame(1, 2, 3, 1000))).toBe(false);
    a.flush();
    expect(a.send(2, makeFrame(1, 2, 3, 1000))).toBe(true);
    a.flush();
    expect(await until(() => c.got.length >= 4, c.poll)).toBe(true);
    expect(c.got).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
    ]);
  });

  test("when the peer goes away frames are dropped and counted; when it comes back the link is redialled", async () => {
    const a = await open(1);
    let b = await open(2);
    const bPort = portOf(b.address);
    a.connect(2, b.address);
    b.connect(1, a.address);
    let c = collector(b);
    let seq = 0;
    const sendOne = () => {
      if (a.send(2, makeFrame(1, 2, seq, 64))) seq++;
      a.flush();
    };
    expect(
      await until(
        () => c.got.length >= 5,
        () => (sendOne(), c.poll()),
      ),
    ).toBe(true);
    b.close();
    // a notices, drops what it is given meanwhile, and keeps redialling with backoff.
    expect(await until(() => a.stats().sendDrops >= 5 && a.stats().reconnects >= 2, sendOne)).toBe(true);
    expect(a.stats().connectionsUp).toBe(0);
    // b comes back on the same port (a new process would): the link comes back by itself.
    b = await open(2, { port: bPort });
    b.connect(1, a.address);
    c = collector(b);
    const resumedAt = seq;
    expect(
      await until(
        () => c.got.some(([, s]) => s >= resumedAt),
        () => (sendOne(), c.poll()),
      ),
    ).toBe(true);
    expect(a.stats().connectionsUp).toBe(1);
    // Whatever arrived on the new connection is in order and from a.
    const seqs = c.got.map(([from, s]) => (expect(from).toBe(1), s));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
  }, 30_000);

  test("bad options are refused up front", async () => {
    await expect(open(1, { frameBytesMax: (16 << 20) + 1 })).rejects.toThrow(RangeError);
    await expect(open(32)).rejects.toThrow(RangeError);
    const t = await open(1);
    expect(() => t.connect(2, "127.0.0.1")).toThrow(RangeError);
    expect(() => t.connect(1, "127.0.0.1:7000")).toThrow(RangeError);
  });
});
