// The RDMA transport: the shared transport suite over UD on a real device (Soft-RoCE in the guest
// of scripts/rdma-vm.sh), then what only RDMA has: coalescing into datagrams, credits and credit
// requests, identity by QP number and GID, limits. On a host without a device the device tests
// skip (RDMA_TEST_REQUIRE_DEVICE=1 turns that into a failure). The pure parts (address, credit
// window, reassembly, layout, options) have device-free tests in test/transport.

import { afterEach, describe, expect, test } from "bun:test";
import { listDevices, gidFromHex } from "../../ffi/ibverbs/verbs.ts";
import { RdmaTransport, rdmaDeviceAvailable } from "../../src/transport/rdma.ts";
import { formatRdmaAddress, parseRdmaAddress } from "../../src/transport/rdma-address.ts";
import { rdmaFrameBytesLimit, type RdmaOptions } from "../../src/transport/rdma-options.ts";
import { createTransport } from "../../src/transport/factory.ts";
import { transportSuite } from "../transport/suite.ts";
import { checkFrame, makeFrame } from "../transport/frames.ts";

const required = process.env.RDMA_TEST_REQUIRE_DEVICE === "1";
const device: string | null = process.env.RDMA_DEVICE || rdmaDeviceAvailable();
const gidIndex = process.env.RDMA_GID_INDEX ? Number(process.env.RDMA_GID_INDEX) : undefined;
const roundsMax = 4000;
const largeFrameBytes = 60 * 1024;

test.skipIf(device !== null)("without a device the availability probe says null, not an error", () => {
  expect(listDevices()).toEqual([]);
  expect(rdmaDeviceAvailable()).toBeNull();
  expect(() => new RdmaTransport({ self: 1 })).toThrow(/no RDMA device/);
});

if (device === null) {
  if (required) {
    test("an RDMA device is present (RDMA_TEST_REQUIRE_DEVICE=1)", () => {
      throw new Error(`no RDMA device with an active port (devices: ${listDevices().join(", ") || "none"})`);
    });
  } else {
    test.skip("rdma transport suite: no RDMA device on this machine", () => {});
  }
} else {
  const deviceName = device;
  const make = (self: number) => RdmaTransport.open({ self, device: deviceName, gidIndex });
  transportSuite(`rdma (UD over ${device})`, make, { reliable: false });
  // Again with frames larger than a datagram (the node's default frame size), sent in pieces, and
  // built the way a worker builds its endpoint: through the transport factory.
  const makeLarge = (self: number) =>
    createTransport("rdma", {
      host: "",
      port: 0,
      self,
      frameBytesMax: largeFrameBytes,
      rdma: { device: deviceName, gidIndex },
    });
  transportSuite(`rdma (UD over ${device}, ${largeFrameBytes}-byte frames in pieces)`, makeLarge, { reliable: false });

  describe(`rdma only (${device})`, () => {
    const opened: RdmaTransport[] = [];
    afterEach(() => {
      for (const t of opened) t.close();
      opened.length = 0;
    });
    function open(self: number, extra: Partial<RdmaOptions> = {}): RdmaTransport {
      const t = new RdmaTransport({ self, device: deviceName, gidIndex, ...extra });
      opened.push(t);
      return t;
    }
    function pair(extra: Partial<RdmaOptions> = {}): [RdmaTransport, RdmaTransport] {
      const a = open(1, extra);
      const b = open(2, extra);
      a.connect(2, b.address);
      b.connect(1, a.address);
      return [a, b];
    }
    /** Rounds of flush, 1 ms, poll on `ts` until `done`; frames b... are collected per receiver. */
    async function pumpUntil(
      ts: RdmaTransport[],
      done: () => boolean,
      got?: Map<RdmaTransport, [number, number][]>,
    ): Promise<boolean> {
      for (let r = 0; r < roundsMax && !done(); r++) {
        for (const t of ts) t.flush();
        await Bun.sleep(1);
        for (const t of ts) t.poll((from, f) => void got?.get(t)?.push([from, checkFrame(f).seq]));
      }
      return done();
    }

    test("the address names this endpoint's QP and GID; frame size and window follow the MTU", () => {
      const t = open(1);
      const a = parseRdmaAddress(t.address);
      expect(a.qpn).toBeGreaterThan(0);
      // By default a frame is what one datagram holds.
      expect(t.frameBytesMax).toBe(t.datagramBytesMax - 18);
      expect([256, 512, 1024, 2048, 4096]).toContain(t.datagramBytesMax);
      expect(open(2, { frameBytesMax: 100 }).frameBytesMax).toBe(100);
      // Larger frames go in pieces: the window is raised to hold the pieces of one largest frame.
      const large = open(3, { frameBytesMax: largeFrameBytes, windowDatagrams: 2 });
      expect(large.frameBytesMax).toBe(largeFrameBytes);
      expect(large.windowDatagrams).toBe(2 * Math.ceil(largeFrameBytes / (large.datagramBytesMax - 24)));
      expect(() => open(4, { frameBytesMax: rdmaFrameBytesLimit + 1 })).toThrow(RangeError);
      // Every endpoint has its own qkey (its incarnation).
      expect(parseRdmaAddress(open(5).address).qkey).not.toBe(a.qkey);
    });

    test("frames larger than a datagram arrive whole and in order with small ones", async () => {
      const [a, b] = pair({ frameBytesMax: largeFrameBytes });
      const whole = a.datagramBytesMax - 18;
      const sizes = [64, largeFrameBytes, 100, whole, whole + 1, 64, 2 * (a.datagramBytesMax - 24) + 1, 20];
      const got = new Map([[b, [] as [number, number][]]]);
      let next = 0;
      expect(
        await pumpUntil(
          [a, b],
          () => {
            while (next < sizes.length && a.send(2, makeFrame(1, 2, next, sizes[next]!))) next++;
            return got.get(b)!.length >= sizes.length;
          },
          got,
        ),
      ).toBe(true);
      // checkFrame verified every byte; order is kept across pieces and whole frames.
      expect(got.get(b)!).toEqual(sizes.map((_, i) => [1, i]));
      expect(a.stats().framesFragmentedSent).toBe(3);
      expect(b.stats().framesReassembled).toBe(3);
      expect(b.stats().bytesReceived).toBe(sizes.reduce((x, y) => x + y, 0));
    });

    test("a lost piece loses its frame, counted once; the frames around it arrive", async () => {
      const [a, b] = pair({ frameBytesMax: largeFrameBytes });
      // b's network "loses" the 3rd datagram it sees from a: the 2nd piece of frame 1.
      let seen = 0;
      b.setDropRule((from) => from === 1 && ++seen === 3);
      const sizes = [64, 3 * (a.datagramBytesMax - 24), 64, 3 * (a.datagramBytesMax - 24)];
      const got = new Map([[b, [] as [number, number][]]]);
      let next = 0;
      expect(
        await pumpUntil(
          [a, b],
          () => {
            while (next < sizes.length && a.send(2, makeFrame(1, 2, next, sizes[next]!))) next++;
            return got.get(b)!.length >= 3;
          },
          got,
        ),
      ).toBe(true);
      expect(got.get(b)!.map(([, seq]) => seq)).toEqual([0, 2, 3]);
      expect(b.stats().fragmentLosses).toBe(1);
      expect(b.stats().framesDropped).toBe(1);
      expect(b.stats().framesReassembled).toBe(1);
    });

    test("coalescing: many frames queued to one peer travel in few datagrams, in order", async () => {
      const [a, b] = pair();
      const n = 200;
      for (let i = 0; i < n; i++) expect(a.send(2, makeFrame(1, 2, i, 64))).toBe(true);
      a.flush();
      const got = new Map([[b, [] as [number, number][]]]);
      expect(await pumpUntil([a, b], () => got.get(b)!.length >= n, got)).toBe(true);
      expect(got.get(b)!).toEqual(Array.from({ length: n }, (_, i) => [1, i]));
      // 66 bytes per frame: ~60 per 4 KiB datagram, ~15 per 1 KiB one.
      const perDatagram = Math.floor((a.datagramBytesMax - 16) / 66);
      expect(a.stats().datagramsSent).toBe(Math.ceil(n / perDatagram));
      expect(b.stats().datagramsReceived).toBe(Math.ceil(n / perDatagram));
    });

    test("credits: a receiver that does not poll stops the sender after one window; its ack reopens it", async () => {
      const window = 4;
      const [a, b] = pair({ windowDatagrams: window });
      const max = a.frameBytesMax;
      // Maximal frames: one datagram each.
      let accepted = 0;
      while (accepted < 100 && a.send(2, makeFrame(1, 2, accepted, max))) accepted++;
      expect(accepted).toBe(window);
      expect(a.stats().peersStarved).toBe(1);
      a.flush();
      for (let r = 0; r < 50; r++) {
        a.flush();
        await Bun.sleep(1);
        expect(a.send(2, makeFrame(1, 2, accepted, max))).toBe(false);
      }
      // b takes the datagrams; the last one asked for credit, so b's next flush acks at once.
      const got = new Map([[b, [] as [number, number][]]]);
      expect(
        await pumpUntil([a, b], () => got.get(b)!.length >= window && a.send(2, makeFrame(1, 2, accepted, max)), got),
      ).toBe(true);
      expect(got.get(b)!.map(([, seq]) => seq)).toEqual([0, 1, 2, 3]);
      expect(a.stats().peersStarved).toBe(0);
      expect(b.stats().controlSent).toBeGreaterThanOrEqual(1);
    });

    test("a receiver that polls but never flushes still returns credit (acks go out from poll)", async () => {
      const window = 4;
      const [a, b] = pair({ windowDatagrams: window });
      const n = 5 * window;
      let sent = 0;
      let got = 0;
      for (let r = 0; r < roundsMax && got < n; r++) {
        while (sent < n && a.send(2, makeFrame(1, 2, sent, a.frameBytesMax))) sent++;
        a.flush();
        await Bun.sleep(1);
        a.poll(() => {});
        got += b.poll((_from, f) => void checkFrame(f));
      }
      expect(got).toBe(n);
      expect(b.stats().controlSent).toBeGreaterThan(0);
    });

    test("a sender starved by a receiver that did not know it recovers through credit requests", async () => {
      const window = 4;
      const a = open(1, { windowDatagrams: window, creditProbeMs: 2 });
      const b = open(2, { windowDatagrams: window });
      a.connect(2, b.address);
      // b does not know a yet: a's window of datagrams is dropped there, and no ack comes back.
      let sent = 0;
      expect(
        await pumpUntil([a, b], () => {
          if (a.send(2, makeFrame(1, 2, sent, a.frameBytesMax))) sent++;
          return b.stats().unknownSenderDrops >= window && a.stats().peersStarved === 1;
        }),
      ).toBe(true);
      expect(sent).toBe(window);
      // Once b learns a, a's next credit request tells b where a's sequence is; b's ack frees a.
      b.connect(1, a.address);
      const got = new Map([[b, [] as [number, number][]]]);
      expect(
        await pumpUntil(
          [a, b],
          () => {
            if (sent < window + 3 && a.send(2, makeFrame(1, 2, sent, 64))) sent++;
            return got.get(b)!.length >= 3;
          },
          got,
        ),
      ).toBe(true);
      expect(got.get(b)!.map(([, seq]) => seq)).toEqual([window, window + 1, window + 2]);
      expect(a.stats().controlSent).toBeGreaterThanOrEqual(1);
    });

    test("a restarted peer (new QP, new address) replaces the old one, whose datagrams are then dropped", async () => {
      const [a, b] = pair();
      const b2 = open(2);
      b2.connect(1, a.address);
      a.connect(2, b2.address);
      expect(b.send(1, makeFrame(2, 1, 1, 64))).toBe(true); // the old incarnation
      expect(b2.send(1, makeFrame(2, 1, 2, 64))).toBe(true);
      const got = new Map([[a, [] as [number, number][]]]);
      expect(await pumpUntil([a, b, b2], () => got.get(a)!.length >= 1 && a.stats().unknownSenderDrops >= 1, got)).toBe(
        true,
      );
      expect(got.get(a)!).toEqual([[2, 2]]);
    });

    test("a datagram from the right QP number but another GID is not accepted", async () => {
      const a = open(1);
      const b = open(2);
      a.connect(2, b.address);
      // b believes node 1 lives at a's QP number on another host (GID ::ffff:127.0.0.2).
      const fake = parseRdmaAddress(a.address);
      fake.gid = gidFromHex("00000000000000000000ffff7f000002");
      b.connect(1, formatRdmaAddress(fake));
      expect(a.send(2, makeFrame(1, 2, 1, 64))).toBe(true);
      const got = new Map([[b, [] as [number, number][]]]);
      expect(await pumpUntil([a, b], () => b.stats().unknownSenderDrops >= 1, got)).toBe(true);
      expect(got.get(b)!).toEqual([]);
      // With the true address the same datagram passes.
      b.connect(1, a.address);
      expect(a.send(2, makeFrame(1, 2, 2, 64))).toBe(true);
      expect(await pumpUntil([a, b], () => got.get(b)!.length >= 1, got)).toBe(true);
      expect(got.get(b)!).toEqual([[1, 2]]);
    });

    test("limits and bad arguments are refused up front", () => {
      expect(() => open(32)).toThrow(RangeError);
      expect(() => open(1, { windowDatagrams: 1 })).toThrow(RangeError);
      expect(() => open(1, { peersMax: 0 })).toThrow(RangeError);
      expect(() => open(1, { gidIndex: 999 })).toThrow(/GID/);
      const t = open(1, { peersMax: 2 });
      const others = [open(2), open(3), open(4)];
      expect(() => t.connect(1, others[0]!.address)).toThrow(RangeError);
      expect(() => t.connect(2, "127.0.0.1:7000")).toThrow(RangeError);
      t.connect(2, others[0]!.address);
      t.connect(3, others[1]!.address);
      expect(() => t.connect(4, others[2]!.address)).toThrow(/peersMax/);
      // Replacing a peer's address does not count as another peer.
      t.connect(3, others[2]!.address);
      expect(() => t.send(2, new Uint8Array(t.frameBytesMax + 1))).toThrow(RangeError);
    });

    test("close releases the verbs resources and is idempotent; the endpoint stays inert", () => {
      const t = open(1);
      const b = open(2);
      t.connect(2, b.address);
      expect(t.send(2, makeFrame(1, 2, 0, 64))).toBe(true);
      t.close();
      t.close();
      expect(t.send(2, makeFrame(1, 2, 1, 64))).toBe(false);
      t.flush();
      expect(t.poll(() => {})).toBe(0);
      expect(t.stats().sendsRefused).toBe(1);
    });
  });
}
