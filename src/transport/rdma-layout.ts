// Where everything of an RDMA endpoint lives in native memory, worked out from the port's MTU and
// the settings before anything is allocated. Pure: the transport allocates what this says, and the
// tests check it without a device.
//
// Two buffers. The data buffer is registered once as one memory region: R receive slots (40 bytes
// of GRH space, then one MTU) and then S send slots (one MTU). The work buffer is never seen by the
// NIC as data: R receive work requests, then their scatter entries; S send work requests, then
// theirs; then three arrays of completionsPerPollMax work completions (receive, send, and the stash
// whenReadable() fills for the next poll). Slots and arrays start on cache lines.

import { ibv, ibvRecvWr, ibvSendWr, ibvSge, ibvWc } from "../../ffi/ibverbs/layout.ts";
import { assert } from "../base/assert.ts";
import { rdmaFrameBytesLimit, rdmaWindowDatagramsMax, rdmaWindowDatagramsMin } from "./rdma-options.ts";
import { grhBytes, pieceBytesMax, wholeFrameBytesMax } from "./rdma-wire.ts";
import { pieceCount } from "./reassembly.ts";

/** Receive buffers per peer beyond the window, for acks and credit requests. */
export const controlSlackPerPeer = 4;
/** Completions taken from a CQ per ibv_poll_cq call. */
export const completionsPerPollMax = 32;
/** Slots are cache-line aligned. */
export const slotAlignBytes = 64;
/** IB MTUs are 256..4096 bytes (ibv_mtu); the layout needs room for headers in the smallest. */
export const datagramBytesMin = 256;
export const datagramBytesMax = 4096;

export interface RdmaLayoutInput {
  /** The port's active MTU: the largest datagram. */
  datagramBytesMax: number;
  /** As asked; null: what one datagram holds. */
  frameBytesMax: number | null;
  windowDatagrams: number;
  peersMax: number;
}

export interface RdmaLayout {
  datagramBytesMax: number;
  /** The largest frame that travels whole in one datagram, and the largest piece of a larger one. */
  wholeFrameBytesMax: number;
  pieceBytesMax: number;
  frameBytesMax: number;
  /** Credits per peer, raised to hold the pieces of two largest frames. */
  windowDatagrams: number;
  /** An idle receiver acks after half a window. */
  ackEveryDatagrams: number;

  recvSlots: number;
  sendSlots: number;
  recvSlotBytes: number;
  sendSlotBytes: number;
  /** The data buffer (registered): receive slots, then send slots. */
  recvOff: number;
  sendOff: number;
  dataBytes: number;
  /** The work buffer: work requests, scatter entries, completion arrays. */
  recvWrOff: number;
  recvSgeOff: number;
  sendWrOff: number;
  sendSgeOff: number;
  wcRecvOff: number;
  wcSendOff: number;
  wcStashOff: number;
  workBytes: number;
}

const align = (n: number) => Math.ceil(n / slotAlignBytes) * slotAlignBytes;

export function rdmaLayout(input: RdmaLayoutInput): RdmaLayout {
  const mtu = input.datagramBytesMax;
  assert(
    Number.isInteger(mtu) && mtu >= datagramBytesMin && mtu <= datagramBytesMax,
    "a port's MTU is 256..4096 bytes",
  );
  assert(input.windowDatagrams >= rdmaWindowDatagramsMin, "the window was validated (minimum)");
  assert(input.windowDatagrams <= rdmaWindowDatagramsMax, "the window was validated (maximum)");
  assert(Number.isInteger(input.peersMax) && input.peersMax >= 1, "the peer count was validated");
  const whole = wholeFrameBytesMax(mtu);
  const piece = pieceBytesMax(mtu);
  const frameBytesMax = input.frameBytesMax ?? whole;
  assert(frameBytesMax >= 1 && frameBytesMax <= rdmaFrameBytesLimit, "frameBytesMax was validated");
  // One largest frame must fit a window, or it could never be sent; two, so that the next one can
  // go while the receiver acknowledges the last.
  let windowDatagrams = input.windowDatagrams;
  if (frameBytesMax > whole) windowDatagrams = Math.max(windowDatagrams, 2 * pieceCount(frameBytesMax, piece));
  // rdmaFrameBytesLimit in 256-byte datagrams needs 2 * 1130 pieces: still within the window limit.
  assert(windowDatagrams <= rdmaWindowDatagramsMax, "a raised window stays within the window limit");

  const recvSlots = input.peersMax * (windowDatagrams + controlSlackPerPeer);
  const sendSlots = recvSlots;
  const recvSlotBytes = align(grhBytes + mtu);
  const sendSlotBytes = align(mtu);
  const recvOff = 0;
  const sendOff = recvOff + recvSlots * recvSlotBytes;
  const dataBytes = sendOff + sendSlots * sendSlotBytes;

  const recvWrOff = 0;
  const recvSgeOff = recvWrOff + recvSlots * ibvRecvWr.size;
  const sendWrOff = align(recvSgeOff + recvSlots * ibvSge.size);
  const sendSgeOff = sendWrOff + sendSlots * ibvSendWr.size;
  const wcRecvOff = align(sendSgeOff + sendSlots * ibvSge.size);
  const wcSendOff = wcRecvOff + completionsPerPollMax * ibvWc.size;
  const wcStashOff = wcSendOff + completionsPerPollMax * ibvWc.size;
  const workBytes = wcStashOff + completionsPerPollMax * ibvWc.size;

  return {
    datagramBytesMax: mtu,
    wholeFrameBytesMax: whole,
    pieceBytesMax: piece,
    frameBytesMax,
    windowDatagrams,
    ackEveryDatagrams: Math.max(1, windowDatagrams >> 1),
    recvSlots,
    sendSlots,
    recvSlotBytes,
    sendSlotBytes,
    recvOff,
    sendOff,
    dataBytes,
    recvWrOff,
    recvSgeOff,
    sendWrOff,
    sendSgeOff,
    wcRecvOff,
    wcSendOff,
    wcStashOff,
    workBytes,
  };
}

/** What the layout needs of the device (ibv_query_device). */
export interface RdmaDeviceLimits {
  maxQpWr: number;
  maxCqe: number;
}

/** Throws RangeError when the device cannot hold the layout's work requests: a configuration error. */
export function checkDeviceLimits(layout: RdmaLayout, device: RdmaDeviceLimits): void {
  const slots = Math.max(layout.recvSlots, layout.sendSlots);
  if (slots > device.maxQpWr || slots > device.maxCqe) {
    throw new RangeError(
      `rdma: ${slots} work requests exceed the device's limits (max_qp_wr ${device.maxQpWr}, max_cqe ${device.maxCqe})`,
    );
  }
}

/** Stores a native address or id (below 2^53) as two 32-bit halves: no BigInt on the data path. */
export function store64(w32: Uint32Array, byteOffset: number, value: number): void {
  w32[byteOffset >>> 2] = value % 0x100000000;
  w32[(byteOffset >>> 2) + 1] = Math.floor(value / 0x100000000);
}

/**
 * Fills the work buffer (`w32` over it, at native address `workBase`) with one work request and
 * scatter entry per slot of the data buffer at `dataBase`, so that the data path only patches
 * lengths, address handles and `next` links. wr_id is the slot index. The receive requests are
 * chained in slot order, ready to be posted all at once.
 */
export function writeWorkRequests(
  w32: Uint32Array,
  workBase: number,
  dataBase: number,
  lkey: number,
  layout: RdmaLayout,
): void {
  assert(w32.byteLength >= layout.workBytes, "the work buffer holds the layout");
  const L = layout;
  for (let i = 0; i < L.recvSlots; i++) {
    const wr = L.recvWrOff + i * ibvRecvWr.size;
    const sge = L.recvSgeOff + i * ibvSge.size;
    store64(w32, wr + ibvRecvWr.wr_id, i);
    store64(w32, wr + ibvRecvWr.next, i + 1 < L.recvSlots ? workBase + wr + ibvRecvWr.size : 0);
    store64(w32, wr + ibvRecvWr.sg_list, workBase + sge);
    w32[(wr + ibvRecvWr.num_sge) >>> 2] = 1;
    store64(w32, sge + ibvSge.addr, dataBase + L.recvOff + i * L.recvSlotBytes);
    w32[(sge + ibvSge.length) >>> 2] = grhBytes + L.datagramBytesMax;
    w32[(sge + ibvSge.lkey) >>> 2] = lkey;
  }
  for (let i = 0; i < L.sendSlots; i++) {
    const wr = L.sendWrOff + i * ibvSendWr.size;
    const sge = L.sendSgeOff + i * ibvSge.size;
    store64(w32, wr + ibvSendWr.wr_id, i);
    store64(w32, wr + ibvSendWr.sg_list, workBase + sge);
    w32[(wr + ibvSendWr.num_sge) >>> 2] = 1;
    w32[(wr + ibvSendWr.opcode) >>> 2] = ibv.WR_SEND;
    w32[(wr + ibvSendWr.send_flags) >>> 2] = ibv.SEND_SIGNALED;
    store64(w32, sge + ibvSge.addr, dataBase + L.sendOff + i * L.sendSlotBytes);
    w32[(sge + ibvSge.lkey) >>> 2] = lkey;
  }
}
