// The RDMA transport's settings and native memory layout (src/transport/rdma-options.ts,
// rdma-layout.ts), without a device: defaults and bounds of every option, regions that neither
// overlap nor overflow their buffers for every MTU, the window raised for fragmented frames, the
// device limits, and the pre-built work requests.

import { describe, expect, test } from "bun:test";
import { ibv, ibvRecvWr, ibvSendWr, ibvSge, ibvWc } from "../../ffi/ibverbs/layout.ts";
import { AssertionError } from "../../src/base/assert.ts";
import { nodeIdMax } from "../../src/base/ids.ts";
import {
  rdmaCreditProbeMsDefault,
  rdmaFrameBytesLimit,
  rdmaPeersMaxDefault,
  rdmaReadableCheckMsDefault,
  rdmaWindowDatagramsDefault,
  rdmaWindowDatagramsMax,
  rdmaWindowDatagramsMin,
  validateRdmaOptions,
} from "../../src/transport/rdma-options.ts";
import {
  checkDeviceLimits,
  completionsPerPollMax,
  controlSlackPerPeer,
  rdmaLayout,
  slotAlignBytes,
  writeWorkRequests,
  type RdmaLayout,
} from "../../src/transport/rdma-layout.ts";
import { fragmentHeaderBytes, frameLengthBytes, grhBytes, headerBytes } from "../../src/transport/rdma-wire.ts";

const mtus = [256, 512, 1024, 2048, 4096];

describe("validateRdmaOptions", () => {
  test("fills in the defaults", () => {
    expect(validateRdmaOptions({ self: 3 })).toEqual({
      self: 3,
      device: null,
      port: 1,
      gidIndex: null,
      frameBytesMax: null,
      peersMax: rdmaPeersMaxDefault,
      windowDatagrams: rdmaWindowDatagramsDefault,
      creditProbeMs: rdmaCreditProbeMsDefault,
      readableCheckMs: rdmaReadableCheckMsDefault,
      numaNode: null,
    });
  });

  test("accepts every bound exactly", () => {
    for (const opts of [
      { windowDatagrams: rdmaWindowDatagramsMin },
      { windowDatagrams: rdmaWindowDatagramsMax },
      { peersMax: 1 },
      { peersMax: nodeIdMax },
      { frameBytesMax: 1 },
      { frameBytesMax: rdmaFrameBytesLimit },
      { port: 255 },
      { gidIndex: 0 },
      { self: 0 },
      { self: nodeIdMax },
    ]) {
      expect(() => validateRdmaOptions({ self: 1, ...opts }), JSON.stringify(opts)).not.toThrow();
    }
  });

  test("refuses every option out of bounds with a RangeError, before any device is touched", () => {
    for (const opts of [
      { windowDatagrams: rdmaWindowDatagramsMin - 1 },
      { windowDatagrams: rdmaWindowDatagramsMax + 1 },
      { windowDatagrams: 2.5 },
      { peersMax: 0 },
      { peersMax: nodeIdMax + 1 },
      { frameBytesMax: 0 },
      { frameBytesMax: rdmaFrameBytesLimit + 1 },
      { frameBytesMax: 100.5 },
      { port: 0 },
      { port: 256 },
      { gidIndex: -1 },
      { creditProbeMs: 0 },
      { creditProbeMs: Number.NaN },
      { readableCheckMs: -1 },
      { self: nodeIdMax + 1 },
      { self: -1 },
    ]) {
      expect(() => validateRdmaOptions({ self: 1, ...opts }), JSON.stringify(opts)).toThrow(RangeError);
    }
  });
});

/** [start, end) regions of one buffer must be disjoint and inside [0, bytes). */
function expectDisjointWithin(regions: [string, number, number][], bytes: number): void {
  const sorted = [...regions].sort((a, b) => a[1] - b[1]);
  for (const [name, start, end] of sorted) {
    expect(start, name).toBeGreaterThanOrEqual(0);
    expect(end, name).toBeGreaterThanOrEqual(start);
    expect(end, name).toBeLessThanOrEqual(bytes);
  }
  for (let i = 1; i < sorted.length; i++)
    expect(sorted[i]![1], `${sorted[i]![0]} after ${sorted[i - 1]![0]}`).toBeGreaterThanOrEqual(sorted[i - 1]![2]);
}

function expectSound(L: RdmaLayout): void {
  expectDisjointWithin(
    [
      ["receive slots", L.recvOff, L.recvOff + L.recvSlots * L.recvSlotBytes],
      ["send slots", L.sendOff, L.sendOff + L.sendSlots * L.sendSlotBytes],
    ],
    L.dataBytes,
  );
  expectDisjointWithin(
    [
      ["receive WRs", L.recvWrOff, L.recvWrOff + L.recvSlots * ibvRecvWr.size],
      ["receive SGEs", L.recvSgeOff, L.recvSgeOff + L.recvSlots * ibvSge.size],
      ["send WRs", L.sendWrOff, L.sendWrOff + L.sendSlots * ibvSendWr.size],
      ["send SGEs", L.sendSgeOff, L.sendSgeOff + L.sendSlots * ibvSge.size],
      ["receive WCs", L.wcRecvOff, L.wcRecvOff + completionsPerPollMax * ibvWc.size],
      ["send WCs", L.wcSendOff, L.wcSendOff + completionsPerPollMax * ibvWc.size],
      ["stashed WCs", L.wcStashOff, L.wcStashOff + completionsPerPollMax * ibvWc.size],
    ],
    L.workBytes,
  );
  // A receive slot holds the GRH and one MTU; a send slot one MTU; both start on cache lines.
  expect(L.recvSlotBytes).toBeGreaterThanOrEqual(grhBytes + L.datagramBytesMax);
  expect(L.sendSlotBytes).toBeGreaterThanOrEqual(L.datagramBytesMax);
  for (const offset of [L.recvOff, L.sendOff, L.recvSlotBytes, L.sendSlotBytes, L.sendWrOff, L.wcRecvOff]) {
    expect(offset % slotAlignBytes).toBe(0);
  }
  expect(L.recvSlots).toBe(L.sendSlots);
  // Every credit has a receive buffer, and control datagrams have their slack.
  expect(L.recvSlots % (L.windowDatagrams + controlSlackPerPeer)).toBe(0);
  expect(L.ackEveryDatagrams).toBe(Math.max(1, L.windowDatagrams >> 1));
}

describe("rdmaLayout", () => {
  test("regions neither overlap nor overflow, for every MTU, window and peer count", () => {
    for (const mtu of mtus) {
      for (const windowDatagrams of [rdmaWindowDatagramsMin, 3, 16, rdmaWindowDatagramsMax]) {
        for (const peersMax of [1, 8, nodeIdMax]) {
          const L = rdmaLayout({ datagramBytesMax: mtu, frameBytesMax: null, windowDatagrams, peersMax });
          expectSound(L);
          expect(L.recvSlots).toBe(peersMax * (windowDatagrams + controlSlackPerPeer));
        }
      }
    }
  });

  test("by default a frame is what one datagram holds; the window is as asked", () => {
    for (const mtu of mtus) {
      const L = rdmaLayout({ datagramBytesMax: mtu, frameBytesMax: null, windowDatagrams: 4, peersMax: 2 });
      expect(L.wholeFrameBytesMax).toBe(mtu - headerBytes - frameLengthBytes);
      expect(L.wholeFrameBytesMax).toBe(mtu - 18);
      expect(L.pieceBytesMax).toBe(mtu - headerBytes - fragmentHeaderBytes);
      expect(L.frameBytesMax).toBe(L.wholeFrameBytesMax);
      expect(L.windowDatagrams).toBe(4);
    }
  });

  test("frames larger than a datagram raise the window to the pieces of two of them", () => {
    for (const mtu of mtus) {
      const frameBytesMax = 60 * 1024;
      const L = rdmaLayout({ datagramBytesMax: mtu, frameBytesMax, windowDatagrams: 2, peersMax: 3 });
      expect(L.windowDatagrams).toBe(2 * Math.ceil(frameBytesMax / (mtu - 24)));
      expectSound(L);
      // A window already large enough stays.
      const wide = rdmaLayout({
        datagramBytesMax: mtu,
        frameBytesMax,
        windowDatagrams: rdmaWindowDatagramsMax,
        peersMax: 1,
      });
      expect(wide.windowDatagrams).toBe(rdmaWindowDatagramsMax);
    }
    // One byte over a whole frame already needs two pieces per frame.
    const L = rdmaLayout({ datagramBytesMax: 1024, frameBytesMax: 1024 - 18 + 1, windowDatagrams: 2, peersMax: 1 });
    expect(L.windowDatagrams).toBe(4);
    // The largest frame in the smallest datagrams still fits the window limit.
    const worst = rdmaLayout({
      datagramBytesMax: 256,
      frameBytesMax: rdmaFrameBytesLimit,
      windowDatagrams: 2,
      peersMax: 1,
    });
    expect(worst.windowDatagrams).toBe(2 * Math.ceil(rdmaFrameBytesLimit / 232));
    expect(worst.windowDatagrams).toBeLessThanOrEqual(rdmaWindowDatagramsMax);
  });

  test("inputs that validation should have refused are broken invariants", () => {
    const ok = { datagramBytesMax: 1024, frameBytesMax: null, windowDatagrams: 4, peersMax: 2 };
    for (const bad of [
      { ...ok, datagramBytesMax: 128 },
      { ...ok, datagramBytesMax: 8192 },
      { ...ok, windowDatagrams: 1 },
      { ...ok, peersMax: 0 },
      { ...ok, frameBytesMax: rdmaFrameBytesLimit + 1 },
    ]) {
      expect(() => rdmaLayout(bad)).toThrow(AssertionError);
    }
  });

  test("device limits: at most max_qp_wr work requests and max_cqe completions", () => {
    const L = rdmaLayout({ datagramBytesMax: 4096, frameBytesMax: null, windowDatagrams: 16, peersMax: 8 });
    expect(L.recvSlots).toBe(160);
    expect(() => checkDeviceLimits(L, { maxQpWr: 160, maxCqe: 160 })).not.toThrow();
    expect(() => checkDeviceLimits(L, { maxQpWr: 159, maxCqe: 1 << 20 })).toThrow(/max_qp_wr 159/);
    expect(() => checkDeviceLimits(L, { maxQpWr: 1 << 20, maxCqe: 159 })).toThrow(RangeError);
  });
});

describe("writeWorkRequests", () => {
  test("one WR and SGE per slot, pointing at its slot; receives chained in order", () => {
    const L = rdmaLayout({ datagramBytesMax: 512, frameBytesMax: null, windowDatagrams: 2, peersMax: 2 });
    const w32 = new Uint32Array(L.workBytes / 4);
    // Fake native addresses above 2^32, to check that both halves of every pointer are written.
    const workBase = 0x7f12_0000_0000;
    const dataBase = 0x7f34_0000_1000;
    const lkey = 0xabcd;
    writeWorkRequests(w32, workBase, dataBase, lkey, L);
    const u64 = (byteOffset: number) => w32[byteOffset >>> 2]! + w32[(byteOffset >>> 2) + 1]! * 2 ** 32;
    for (let i = 0; i < L.recvSlots; i++) {
      const wr = L.recvWrOff + i * ibvRecvWr.size;
      const sge = L.recvSgeOff + i * ibvSge.size;
      expect(u64(wr + ibvRecvWr.wr_id)).toBe(i);
      expect(u64(wr + ibvRecvWr.sg_list)).toBe(workBase + sge);
      expect(u64(wr + ibvRecvWr.next)).toBe(i + 1 < L.recvSlots ? workBase + wr + ibvRecvWr.size : 0);
      expect(w32[(wr + ibvRecvWr.num_sge) >>> 2]).toBe(1);
      expect(u64(sge + ibvSge.addr)).toBe(dataBase + L.recvOff + i * L.recvSlotBytes);
      expect(w32[(sge + ibvSge.length) >>> 2]).toBe(grhBytes + 512);
      expect(w32[(sge + ibvSge.lkey) >>> 2]).toBe(lkey);
    }
    for (let i = 0; i < L.sendSlots; i++) {
      const wr = L.sendWrOff + i * ibvSendWr.size;
      const sge = L.sendSgeOff + i * ibvSge.size;
      expect(u64(wr + ibvSendWr.wr_id)).toBe(i);
      expect(u64(wr + ibvSendWr.sg_list)).toBe(workBase + sge);
      expect(w32[(wr + ibvSendWr.opcode) >>> 2]).toBe(ibv.WR_SEND);
      expect(w32[(wr + ibvSendWr.send_flags) >>> 2]).toBe(ibv.SEND_SIGNALED);
      expect(u64(sge + ibvSge.addr)).toBe(dataBase + L.sendOff + i * L.sendSlotBytes);
      expect(w32[(sge + ibvSge.lkey) >>> 2]).toBe(lkey);
    }
    expect(() => writeWorkRequests(new Uint32Array(4), workBase, dataBase, lkey, L)).toThrow(AssertionError);
  });
});
