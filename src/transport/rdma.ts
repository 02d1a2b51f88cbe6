// The RDMA transport: the Transport interface over ibverbs Unreliable Datagram (UD) queue pairs.
//
// Why UD and not RC. Hermes tolerates loss (INVs are retransmitted, stuck keys replayed), and its
// reference implementation (ease-lab/Hermes, "wings") uses UD. With UD one queue pair per endpoint
// talks to every peer, so the address the membership publishes is one string and connect(peer,
// address) is purely local: create an address handle, no handshake. RC would need a queue pair per
// peer whose numbers both sides exchange before either can send, which does not fit one published
// address, and its reliability (retries, RNR waits, a QP in error on a dead peer) buys nothing the
// protocol needs. The price of UD: a datagram is at most one path MTU (4096 bytes on RoCE over a
// 64 KiB-MTU loopback, 1024 on a 1500-byte Ethernet). Frames larger than one datagram are cut into
// fragments and reassembled (one frame in progress per peer: a peer's datagrams arrive in order on
// one path); losing any fragment loses the frame, which the protocol tolerates like any loss. So
// frameBytesMax is whatever the caller asks for, up to rdmaFrameBytesLimit.
//
// Memory. All datagram buffers live in one NativeBuffer (node-local when a NUMA node is given),
// registered once as one memory region: R receive slots (40 bytes of GRH space, then one MTU) and
// S send slots (one MTU). Work requests and scatter entries are pre-built in a second native
// buffer, one per slot, so the data path only patches lengths, address handles and `next` links
// with 32-bit stores: nothing is allocated per message except the frame view handed to poll's
// handler (the interface's shape).
//
// Coalescing. send() appends the frame to the peer's open datagram ([u16 length][bytes] after a
// 16-byte header) while it fits, else opens a new one. flush() finalises every open datagram and
// posts all of them, for every peer, as one chain in a single ibv_post_send.
//
// Credits. A datagram that finds no posted receive buffer is silently dropped by the NIC, so each
// peer gets `windowDatagrams` receive buffers' worth of credit. Data datagrams carry a sequence
// number; every datagram also carries `ack`, the receiver's "I am done with all your datagrams up to
// here" (it is set on processing, and buffers are re-posted at once). A sender may have at most
// windowDatagrams data datagrams between its next sequence number and the latest ack. Acks ride on
// data going the other way (Hermes traffic is two-way: INV -> ACK); an idle receiver sends a
// control datagram once half a window is unacknowledged. A sender refused for want of credit asks
// for it (a flag on the datagram that uses the last credit, then a control datagram every
// creditProbeMs until the credits the refused send needed are back), so a lost ack can only
// delay, never deadlock. Acks are cumulative and the newest
// wins, so loss, duplication and a peer that restarted heal by themselves. Control datagrams use
// `controlSlackPerPeer` receive buffers per peer beyond the window.
//
// Identity. A datagram is accepted from peer P only if its header names P as sender and this node
// as receiver, its source QP number is P's, and (when it carries a GRH) its source address is P's
// GID. The qkey in the address is random per endpoint: a restarted peer publishes a new address.

import type { Pointer } from "bun:ffi";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import { ibv, ibvRecvWr, ibvSendWr, ibvSge, ibvWc } from "../../ffi/ibverbs/layout.ts";
import {
  gidFromHex,
  gidIsIpv4Mapped,
  gidToHex,
  listDevices,
  openDevice,
  type AddressHandle,
  type CompletionQueue,
  type Context,
  type GidEntry,
  type MemoryRegion,
  type QueuePair,
} from "../../ffi/ibverbs/verbs.ts";
import { allocNativeBuffer, type NativeBuffer } from "../../ffi/numa/numa.ts";
import type { FrameHandler, Transport, TransportStats } from "./transport.ts";
import type { DropRule, DropRuleTarget } from "./drop-rule.ts";
import { assertNodeId } from "./net-address.ts";

// ---- wire format of one datagram (little-endian) -----------------------------------------------
//  0 u16 magic | 2 u8 version | 3 u8 flags | 4 u8 from | 5 u8 to | 6 u16 frameCount
//  8 u32 seqEnd: data: this datagram's sequence number + 1; control: the sender's next sequence
// 12 u32 ack: the sender has processed every datagram of the receiver's below this sequence
// 16 frames: u16 length, then the bytes, frameCount times; or, with flagFragment, one piece of a
//    frame: u16 index | u16 count | u32 frame bytes | the piece (frameCount: 1 on the last piece)
const magic = 0x4852; // "HR"
const wireVersion = 1;
const headerBytes = 16;
const frameLengthBytes = 2;
/** The datagram only carries acks and flags: no frames, no sequence number of its own. */
const flagControl = 1;
/** The sender is out of credit: answer with an ack even if nothing new was processed. */
const flagCreditRequest = 2;
/** The datagram carries one piece of a frame larger than a datagram. */
const flagFragment = 4;
const fragmentHeaderBytes = 8;
/** Reassembly states besides "expecting piece n" (n >= 0). */
const fragIdle = -1;
const fragDiscarding = -2;
/** UD receive buffers start with 40 bytes for the GRH (RoCE v2 over IPv4: the IP header at 20). */
const grhBytes = 40;
const grhIpv4SourceOffset = 20 + 12;
const grhSgidOffset = 8;

export const rdmaWindowDatagramsDefault = 16;
/** Largest frame the transport accepts (fragmented): 64 datagrams at a 4 KiB MTU, 256 at 1 KiB. */
export const rdmaFrameBytesLimit = 256 * 1024;
export const rdmaWindowDatagramsMin = 2;
export const rdmaPeersMaxDefault = 8;
export const rdmaCreditProbeMsDefault = 5;
/** How often an idle whenReadable() looks at the receive queue (the worker's idle wait is 1 ms too). */
export const rdmaReadableCheckMsDefault = 1;
/** Receive buffers per peer beyond the window, for acks and credit requests. */
const controlSlackPerPeer = 4;
/** Completions taken from a CQ per ibv_poll_cq call. */
const pollBatch = 32;
/** Slots are cache-line aligned. */
const slotAlignBytes = 64;
/**
 * Address handles of forgotten peers waiting for their sends to complete. UD sends complete within
 * microseconds, so more than this many means completions stopped: an invariant is broken.
 */
const retiredAddressHandlesMax = 64;

export interface RdmaOptions {
  self: NodeId;
  /** Device name (e.g. "rxe0", "mlx5_0"); default: the first device with an active port. */
  device?: string;
  /** Port number on the device (1-based). */
  port?: number;
  /** GID table index to send from and publish; default: RoCE v2 over IPv4, then RoCE v2, then the first. */
  gidIndex?: number;
  /**
   * Largest frame send() accepts, up to rdmaFrameBytesLimit; default: what one datagram holds
   * (the port's active MTU minus 18 bytes). Larger frames travel as fragments.
   */
  frameBytesMax?: number;
  /** Peers connected at once (sizes the receive ring). */
  peersMax?: number;
  /**
   * Credits per peer, in datagrams (each carries many small frames, or one piece of a large one).
   * Raised to the pieces of two largest frames if lower, so that such frames can always go.
   */
  windowDatagrams?: number;
  /** While out of credit, ask the peer for an ack this often. */
  creditProbeMs?: number;
  /** While whenReadable() is pending, look for received datagrams this often. */
  readableCheckMs?: number;
  /** Allocate the buffers on this NUMA node (ffi/numa); null: wherever mmap puts them. */
  numaNode?: number | null;
}

export interface RdmaStats extends TransportStats {
  datagramsSent: number;
  datagramsReceived: number;
  /** Control datagrams sent (acks without data, credit requests). */
  controlSent: number;
  /** Frames accepted by send() for a peer that is not connected (never sent). */
  sendDrops: number;
  /** Datagrams whose sender is not a connected peer (their frames are in framesDropped). */
  unknownSenderDrops: number;
  /** Datagrams that fail the header checks (counted once in framesDropped). */
  malformedDrops: number;
  /** Frames sent or received in fragments, and fragmented frames lost to a missing piece. */
  framesFragmentedSent: number;
  framesReassembled: number;
  fragmentLosses: number;
  /** Work completions with an error status. */
  sendErrors: number;
  recvErrors: number;
  /** Current free send slots and the peers currently out of credit. */
  sendSlotsFree: number;
  peersStarved: number;
}

/** What an RDMA address names: "rdma:<qpn>:<gid, 32 hex digits>:<qkey>:<lid>". */
export interface RdmaAddress {
  qpn: number;
  gid: Uint8Array;
  qkey: number;
  lid: number;
}

export function formatRdmaAddress(a: RdmaAddress): string {
  return `rdma:${a.qpn}:${gidToHex(a.gid)}:${a.qkey}:${a.lid}`;
}

/** Parses an address made by formatRdmaAddress; throws RangeError otherwise. */
export function parseRdmaAddress(address: string): RdmaAddress {
  const m = /^rdma:(\d{1,8}):([0-9a-f]{32}):(\d{1,10}):(\d{1,5})$/.exec(address);
  if (m === null) throw new RangeError(`bad RDMA address "${address}": want rdma:<qpn>:<gid hex>:<qkey>:<lid>`);
  const qpn = Number(m[1]);
  const qkey = Number(m[3]);
  const lid = Number(m[4]);
  if (qpn < 1 || qpn > 0xffffff) throw new RangeError(`bad RDMA address "${address}": qpn out of range`);
  if (qkey > 0x7fffffff) throw new RangeError(`bad RDMA address "${address}": qkey out of range`);
  if (lid > 0xffff) throw new RangeError(`bad RDMA address "${address}": lid out of range`);
  return { qpn, gid: gidFromHex(m[2]!), qkey, lid };
}

/** Opens an RDMA endpoint (the worker-facing factory; same as RdmaTransport.open). */
export async function createRdmaTransport(opts: RdmaOptions): Promise<RdmaTransport> {
  return new RdmaTransport(opts);
}

/**
 * The name of the first RDMA device with an active port 1, or null (no libibverbs, no device, or no
 * usable port). For `--transport auto`. Never throws.
 */
export function rdmaDeviceAvailable(): string | null {
  try {
    for (const name of listDevices()) {
      try {
        using ctx = openDevice(name);
        if (ctx.queryPort(1).active) return name;
      } catch {
        // A device that cannot be opened or queried is not available; try the next.
      }
    }
  } catch {
    // listDevices failing for a reason other than "no devices": nothing usable either.
  }
  return null;
}

/** The GID to publish: RoCE v2 over IPv4 first (what routed RoCE uses), then RoCE v2, then any. */
export function chooseGid(entries: readonly GidEntry[]): GidEntry | null {
  return (
    entries.find((e) => e.type === "roce-v2" && gidIsIpv4Mapped(e.gid)) ??
    entries.find((e) => e.type === "roce-v2") ??
    entries[0] ??
    null
  );
}

interface Peer {
  readonly id: NodeId;
  readonly address: string;
  readonly qpn: number;
  readonly qkey: number;
  readonly gid: Uint8Array;
  readonly gidIpv4: boolean;
  readonly ah: AddressHandle;
  /** ah.address, low and high 32 bits, for the work request stores. */
  readonly ahLo: number;
  readonly ahHi: number;
  // Send side.
  nextSeq: number;
  ackedSeq: number;
  /** The datagram send() is filling (-1: none), and the data datagrams queued for the next flush. */
  openSlot: number;
  queued: number;
  /** Credits a refused send() needed (1, or the pieces of a large frame); 0: not starved. */
  creditsNeeded: number;
  lastCreditRequestMs: number;
  // Receive side.
  recvSeq: number;
  ackSentSeq: number;
  ackRequested: boolean;
  /** Reassembly of this peer's fragmented frame: the buffer (frameBytesMax), the next piece expected (or fragIdle, fragDiscarding), the frame's piece count and bytes, the bytes so far. */
  readonly reassembly: Uint8Array;
  fragNext: number;
  fragCount: number;
  fragBytes: number;
  fragFilled: number;
}

const u32 = (x: number) => x >>> 0;

export class RdmaTransport implements Transport, DropRuleTarget {
  readonly kind = "rdma" as const;
  readonly address: string;
  readonly frameBytesMax: number;
  readonly self: NodeId;
  readonly deviceName: string;
  readonly gidIndex: number;
  readonly windowDatagrams: number;
  readonly peersMax: number;
  /** The largest datagram: the port's active MTU. */
  readonly datagramBytesMax: number;

  readonly #ctx: Context;
  readonly #qp: QueuePair;
  readonly #sendCq: CompletionQueue;
  readonly #recvCq: CompletionQueue;
  readonly #mr: MemoryRegion;
  readonly #data: NativeBuffer;
  readonly #work: NativeBuffer;
  readonly #port: number;
  readonly #gid: Uint8Array;
  readonly #creditProbeMs: number;
  readonly #ackThreshold: number;
  /** The largest frame that travels whole in one datagram, and the largest piece of a larger one. */
  readonly #wholeFrameBytesMax: number;
  readonly #pieceBytesMax: number;

  // Views of the native memory.
  readonly #bytes: Uint8Array;
  readonly #dv: DataView;
  readonly #w32: Uint32Array;
  readonly #workBase: number;

  // Receive ring: slot i at #recvOff + i * #recvSlotBytes; its WR at #recvWrOff + i * ibvRecvWr.size.
  readonly #recvSlots: number;
  readonly #recvSlotBytes: number;
  readonly #recvOff = 0;
  readonly #recvWrOff = 0;
  // Send ring.
  readonly #sendSlots: number;
  readonly #sendSlotBytes: number;
  readonly #sendOff: number;
  readonly #sendWrOff: number;
  readonly #wcRecvOff: number;
  readonly #wcSendOff: number;
  readonly #wcStashOff: number;

  readonly #free: Int32Array;
  #freeTop: number;
  readonly #pending: Int32Array;
  #pendingCount = 0;
  /** Control datagrams poll() sends at once (at most one per peer). */
  readonly #controlList = new Int32Array(nodeIdMax + 1);
  readonly #slotPeer: Int8Array;
  readonly #slotFrames: Uint16Array;
  /** Bytes of the datagram in each send slot so far (header included). */
  readonly #slotBytes: Uint16Array;
  readonly #slotPayloadBytes: Uint32Array;
  readonly #slotFlags: Uint8Array;

  readonly #peers: (Peer | undefined)[] = new Array(nodeIdMax + 1).fill(undefined);
  #peerCount = 0;
  /** Address handles of forgotten peers, destroyed once every send posted before is complete. */
  readonly #retired: { ah: AddressHandle; postedBefore: number }[] = [];
  #postedCount = 0;
  #completedCount = 0;
  #dropRule: DropRule | null = null;
  #closed = false;
  /** Receive buffers consumed by the current poll, chained for one re-post (-1: none). */
  #repostFirst = -1;
  #repostLast = -1;
  /** Completions whenReadable() took from the receive CQ, at #wcStashOff, for the next poll. */
  #stashCount = 0;
  readonly #readableCheckMs: number;
  #readable: Promise<void> | null = null;
  #resolveReadable: (() => void) | null = null;
  #readableTimer: ReturnType<typeof setTimeout> | null = null;

  readonly #stats: RdmaStats = {
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    sendsRefused: 0,
    framesDropped: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    controlSent: 0,
    sendDrops: 0,
    unknownSenderDrops: 0,
    malformedDrops: 0,
    framesFragmentedSent: 0,
    framesReassembled: 0,
    fragmentLosses: 0,
    sendErrors: 0,
    recvErrors: 0,
    sendSlotsFree: 0,
    peersStarved: 0,
  };

  /** Opens the device and builds the endpoint (all verbs calls are synchronous). */
  static async open(opts: RdmaOptions): Promise<RdmaTransport> {
    return new RdmaTransport(opts);
  }

  constructor(opts: RdmaOptions) {
    assertNodeId(opts.self, "rdma transport self");
    this.self = opts.self;
    const port = opts.port ?? 1;
    let window = opts.windowDatagrams ?? rdmaWindowDatagramsDefault;
    const peersMax = opts.peersMax ?? rdmaPeersMaxDefault;
    this.#creditProbeMs = opts.creditProbeMs ?? rdmaCreditProbeMsDefault;
    this.#readableCheckMs = opts.readableCheckMs ?? rdmaReadableCheckMsDefault;
    if (!(Number.isInteger(window) && window >= rdmaWindowDatagramsMin && window <= 4096)) {
      throw new RangeError(`rdma: windowDatagrams ${window} must be an integer in ${rdmaWindowDatagramsMin}..4096`);
    }
    if (!(Number.isInteger(peersMax) && peersMax >= 1 && peersMax <= nodeIdMax)) {
      throw new RangeError(`rdma: peersMax ${peersMax} must be an integer in 1..${nodeIdMax}`);
    }
    if (!(this.#creditProbeMs > 0)) throw new RangeError(`rdma: creditProbeMs ${this.#creditProbeMs} must be positive`);
    if (!(this.#readableCheckMs > 0)) throw new RangeError(`rdma: readableCheckMs ${this.#readableCheckMs} must be positive`);
    this.peersMax = peersMax;

    const deviceName = opts.device ?? rdmaDeviceAvailable();
    if (deviceName === null) throw new Error(`rdma: no RDMA device with an active port (devices: ${listDevices().join(", ") || "none"})`);
    const ctx = openDevice(deviceName);
    // Everything created from here on is owned by ctx (or is one of the two buffers): on failure
    // one close() of each undoes a half-built endpoint.
    let data: NativeBuffer | null = null;
    let work: NativeBuffer | null = null;
    try {
      this.#ctx = ctx;
      this.deviceName = deviceName;
      this.#port = port;
      const portAttr = ctx.queryPort(port);
      if (!portAttr.active) throw new Error(`rdma: ${deviceName} port ${port} is not active (state ${portAttr.state})`);
      const entries = ctx.gidEntries(port);
      const gid = opts.gidIndex === undefined ? chooseGid(entries) : entries.find((e) => e.index === opts.gidIndex);
      if (gid === undefined || gid === null) {
        throw new Error(`rdma: ${deviceName} port ${port} has no ${opts.gidIndex === undefined ? "" : `populated GID at index ${opts.gidIndex}, nor any `}usable GID`);
      }
      this.gidIndex = gid.index;
      this.#gid = gid.gid;

      this.datagramBytesMax = portAttr.activeMtuBytes;
      this.#wholeFrameBytesMax = this.datagramBytesMax - headerBytes - frameLengthBytes;
      this.#pieceBytesMax = this.datagramBytesMax - headerBytes - fragmentHeaderBytes;
      this.frameBytesMax = opts.frameBytesMax ?? this.#wholeFrameBytesMax;
      if (!(Number.isInteger(this.frameBytesMax) && this.frameBytesMax >= 1 && this.frameBytesMax <= rdmaFrameBytesLimit)) {
        throw new RangeError(`rdma: frameBytesMax ${this.frameBytesMax} must be an integer in 1..${rdmaFrameBytesLimit}`);
      }
      // One largest frame must fit a window, or it could never be sent; two, so that the next one
      // can go while the receiver acknowledges the last.
      if (this.frameBytesMax > this.#wholeFrameBytesMax) window = Math.max(window, 2 * Math.ceil(this.frameBytesMax / this.#pieceBytesMax));
      this.windowDatagrams = window;
      this.#ackThreshold = Math.max(1, window >> 1);

      const dev = ctx.queryDevice();
      this.#recvSlots = peersMax * (window + controlSlackPerPeer);
      this.#sendSlots = peersMax * (window + controlSlackPerPeer);
      if (this.#recvSlots > dev.maxQpWr || this.#sendSlots > dev.maxQpWr || this.#recvSlots > dev.maxCqe) {
        throw new RangeError(`rdma: ${this.#recvSlots} work requests exceed the device's limits (max_qp_wr ${dev.maxQpWr}, max_cqe ${dev.maxCqe})`);
      }
      const align = (n: number) => Math.ceil(n / slotAlignBytes) * slotAlignBytes;
      this.#recvSlotBytes = align(grhBytes + this.datagramBytesMax);
      this.#sendSlotBytes = align(this.datagramBytesMax);
      this.#sendOff = this.#recvSlots * this.#recvSlotBytes;
      const dataBytes = this.#sendOff + this.#sendSlots * this.#sendSlotBytes;
      const recvWrBytes = this.#recvSlots * (ibvRecvWr.size + ibvSge.size);
      this.#sendWrOff = align(recvWrBytes);
      this.#wcRecvOff = align(this.#sendWrOff + this.#sendSlots * (ibvSendWr.size + ibvSge.size));
      this.#wcSendOff = this.#wcRecvOff + pollBatch * ibvWc.size;
      this.#wcStashOff = this.#wcSendOff + pollBatch * ibvWc.size;
      const workBytes = this.#wcStashOff + pollBatch * ibvWc.size;

      const node = opts.numaNode ?? null;
      this.#data = data = allocNativeBuffer(dataBytes, node);
      this.#work = work = allocNativeBuffer(workBytes, node);
      this.#bytes = new Uint8Array(this.#data.buffer);
      this.#dv = new DataView(this.#data.buffer);
      this.#w32 = new Uint32Array(this.#work.buffer);
      this.#workBase = this.#work.address;

      const pd = ctx.allocPd();
      this.#mr = pd.registerMemory(this.#data.address, dataBytes, ibv.ACCESS_LOCAL_WRITE);
      this.#sendCq = ctx.createCq(this.#sendSlots);
      this.#recvCq = ctx.createCq(this.#recvSlots);
      this.#qp = pd.createQp({
        type: "ud",
        sendCq: this.#sendCq,
        recvCq: this.#recvCq,
        sendWrMax: this.#sendSlots,
        recvWrMax: this.#recvSlots,
        signalAll: true,
      });
      // The qkey doubles as the endpoint's incarnation: random, so a restart changes the address.
      // Bit 31 set marks a controlled qkey that only privileged processes may send with.
      const qkey = crypto.getRandomValues(new Uint32Array(1))[0]! & 0x7fffffff;
      this.#qp.readyUd(port, qkey);
      this.address = formatRdmaAddress({ qpn: this.#qp.qpn, gid: this.#gid, qkey, lid: portAttr.lid });

      this.#free = new Int32Array(this.#sendSlots);
      this.#pending = new Int32Array(this.#sendSlots);
      this.#slotPeer = new Int8Array(this.#sendSlots);
      this.#slotFrames = new Uint16Array(this.#sendSlots);
      this.#slotBytes = new Uint16Array(this.#sendSlots);
      this.#slotPayloadBytes = new Uint32Array(this.#sendSlots);
      this.#slotFlags = new Uint8Array(this.#sendSlots);
      this.#freeTop = 0;
      for (let i = this.#sendSlots - 1; i >= 0; i--) this.#free[this.#freeTop++] = i;
      this.#buildWorkRequests();
      // Every receive buffer is posted up front, as one chain.
      for (let i = 0; i < this.#recvSlots; i++) this.#linkRecv(i, i + 1 < this.#recvSlots ? i + 1 : -1);
      this.#qp.postRecv(this.#recvWrAddress(0));
    } catch (e) {
      ctx.close();
      data?.close();
      work?.close();
      throw e;
    }
  }

  // ---- native work-request tables --------------------------------------------------------------

  #store64(byteOffset: number, value: number): void {
    // Native addresses and ids are below 2^53: two 32-bit stores, no BigInt on the data path.
    this.#w32[byteOffset >>> 2] = value % 0x100000000;
    this.#w32[(byteOffset >>> 2) + 1] = Math.floor(value / 0x100000000);
  }

  #recvWrAddress(slot: number): Pointer {
    return (this.#workBase + this.#recvWrOff + slot * ibvRecvWr.size) as Pointer;
  }

  #sendWrAddress(slot: number): number {
    return this.#workBase + this.#sendWrOff + slot * ibvSendWr.size;
  }

  #buildWorkRequests(): void {
    const dataBase = this.#data.address as number;
    const lkey = this.#mr.lkey;
    const recvSgeOff = this.#recvWrOff + this.#recvSlots * ibvRecvWr.size;
    for (let i = 0; i < this.#recvSlots; i++) {
      const wr = this.#recvWrOff + i * ibvRecvWr.size;
      const sge = recvSgeOff + i * ibvSge.size;
      this.#store64(wr + ibvRecvWr.wr_id, i);
      this.#store64(wr + ibvRecvWr.sg_list, this.#workBase + sge);
      this.#w32[(wr + ibvRecvWr.num_sge) >>> 2] = 1;
      this.#store64(sge + ibvSge.addr, dataBase + this.#recvOff + i * this.#recvSlotBytes);
      this.#w32[(sge + ibvSge.length) >>> 2] = grhBytes + this.datagramBytesMax;
      this.#w32[(sge + ibvSge.lkey) >>> 2] = lkey;
    }
    const sendSgeOff = this.#sendWrOff + this.#sendSlots * ibvSendWr.size;
    for (let i = 0; i < this.#sendSlots; i++) {
      const wr = this.#sendWrOff + i * ibvSendWr.size;
      const sge = sendSgeOff + i * ibvSge.size;
      this.#store64(wr + ibvSendWr.wr_id, i);
      this.#store64(wr + ibvSendWr.sg_list, this.#workBase + sge);
      this.#w32[(wr + ibvSendWr.num_sge) >>> 2] = 1;
      this.#w32[(wr + ibvSendWr.opcode) >>> 2] = ibv.WR_SEND;
      this.#w32[(wr + ibvSendWr.send_flags) >>> 2] = ibv.SEND_SIGNALED;
      this.#store64(sge + ibvSge.addr, dataBase + this.#sendOff + i * this.#sendSlotBytes);
      this.#w32[(sge + ibvSge.lkey) >>> 2] = lkey;
    }
  }

  /** Points receive WR `slot` at `next` (-1: end of chain). */
  #linkRecv(slot: number, next: number): void {
    this.#store64(this.#recvWrOff + slot * ibvRecvWr.size + ibvRecvWr.next, next < 0 ? 0 : (this.#recvWrAddress(next) as number));
  }

  // ---- Transport -------------------------------------------------------------------------------

  setDropRule(rule: DropRule | null): void {
    this.#dropRule = rule;
  }

  connect(peer: NodeId, address: string): void {
    assertNodeId(peer, "rdma connect");
    if (peer === this.self) throw new RangeError(`rdma connect: peer ${peer} is this endpoint`);
    const a = parseRdmaAddress(address);
    if (this.#closed) return;
    const old = this.#peers[peer];
    if (old !== undefined && old.address === address) return;
    if (old === undefined && this.#peerCount >= this.peersMax) {
      throw new RangeError(`rdma connect: already ${this.#peerCount} peers, the limit (peersMax) the receive ring is sized for`);
    }
    if (old !== undefined) this.#forget(old);
    const ah = this.#qp.pd.createAh({
      port: this.#port,
      dlid: a.lid,
      dgid: a.gid,
      sgidIndex: this.gidIndex,
      // Enough for routed RoCE v2; within one subnet any value works.
      hopLimit: 64,
    });
    const ahAddress = ah.address as number;
    this.#peers[peer] = {
      id: peer,
      address,
      qpn: a.qpn,
      qkey: a.qkey,
      gid: a.gid,
      gidIpv4: gidIsIpv4Mapped(a.gid),
      ah,
      ahLo: ahAddress % 0x100000000,
      ahHi: Math.floor(ahAddress / 0x100000000),
      nextSeq: 0,
      ackedSeq: 0,
      openSlot: -1,
      queued: 0,
      creditsNeeded: 0,
      lastCreditRequestMs: -Infinity,
      recvSeq: 0,
      ackSentSeq: 0,
      ackRequested: false,
      // Connecting is the control path: the reassembly buffer is allocated here, once per peer.
      reassembly: new Uint8Array(this.frameBytesMax > this.#wholeFrameBytesMax ? this.frameBytesMax : 0),
      fragNext: fragIdle,
      fragCount: 0,
      fragBytes: 0,
      fragFilled: 0,
    };
    this.#peerCount++;
  }

  disconnect(peer: NodeId): void {
    assertNodeId(peer, "rdma disconnect");
    if (this.#closed) return;
    const p = this.#peers[peer];
    if (p !== undefined) this.#forget(p);
  }

  /** Drops the peer's unsent datagrams and retires its address handle. */
  #forget(p: Peer): void {
    let kept = 0;
    for (let i = 0; i < this.#pendingCount; i++) {
      const slot = this.#pending[i]!;
      if (this.#slotPeer[slot] === p.id) this.#free[this.#freeTop++] = slot;
      else this.#pending[kept++] = slot;
    }
    this.#pendingCount = kept;
    // Posted sends may still use the handle: destroy it once they have completed.
    if (this.#retired.length >= retiredAddressHandlesMax) this.#reapSends();
    if (this.#retired.length >= retiredAddressHandlesMax) {
      throw new Error(`rdma: ${this.#retired.length} forgotten peers' address handles still wait for send completions`);
    }
    this.#retired.push({ ah: p.ah, postedBefore: this.#postedCount });
    this.#peers[p.id] = undefined;
    this.#peerCount--;
  }

  #credits(p: Peer): number {
    return this.windowDatagrams - u32(p.nextSeq - p.ackedSeq);
  }

  send(peer: NodeId, frame: Uint8Array): boolean {
    const len = frame.length;
    if (len === 0 || len > this.frameBytesMax) throw new RangeError(`send: frame of ${len} bytes, must be 1..${this.frameBytesMax}`);
    const s = this.#stats;
    if (this.#closed) {
      s.sendsRefused++;
      return false;
    }
    const p = this.#peers[peer];
    if (p === undefined) {
      // Unknown or forgotten peer (membership race): retrying cannot help, so drop, not refuse.
      s.sendDrops++;
      return true;
    }
    if (this.#dropRule !== null && this.#dropRule(this.self, peer)) {
      s.framesDropped++;
      return true;
    }
    if (len > this.#wholeFrameBytesMax) return this.#sendPieces(p, frame);
    let slot = p.openSlot;
    if (slot < 0 || this.#slotBytes[slot]! + frameLengthBytes + len > this.datagramBytesMax) {
      slot = this.#openDatagram(p);
      if (slot < 0) {
        s.sendsRefused++;
        return false;
      }
    }
    const used = this.#slotBytes[slot]!;
    const at = this.#sendOff + slot * this.#sendSlotBytes + used;
    this.#dv.setUint16(at, len, true);
    this.#bytes.set(frame, at + frameLengthBytes);
    this.#slotBytes[slot] = used + frameLengthBytes + len;
    this.#slotFrames[slot]!++;
    this.#slotPayloadBytes[slot]! += len;
    return true;
  }

  /**
   * A frame larger than one datagram: all its pieces are queued now, each a datagram of its own,
   * or none is (refused for want of credit or slots, like any frame).
   */
  #sendPieces(p: Peer, frame: Uint8Array): boolean {
    const s = this.#stats;
    const len = frame.length;
    const count = Math.ceil(len / this.#pieceBytesMax);
    if (this.#credits(p) < count) {
      p.creditsNeeded = count;
      s.sendsRefused++;
      return false;
    }
    if (this.#freeTop < count) this.#reapSends();
    if (this.#freeTop < count) {
      s.sendsRefused++;
      return false;
    }
    p.creditsNeeded = 0;
    // Later small frames go into a new datagram, behind the pieces (a peer's frames stay in order).
    p.openSlot = -1;
    const dv = this.#dv;
    for (let i = 0, off = 0; i < count; i++) {
      const slot = this.#takeSlot(p);
      if (slot < 0) throw new Error("rdma: a send slot counted free was not"); // checked above
      this.#pending[this.#pendingCount++] = slot;
      p.queued++;
      p.nextSeq = u32(p.nextSeq + 1);
      const h = this.#sendOff + slot * this.#sendSlotBytes;
      const piece = Math.min(this.#pieceBytesMax, len - off);
      const last = i === count - 1;
      dv.setUint32(h + 8, p.nextSeq, true);
      dv.setUint16(h + headerBytes, i, true);
      dv.setUint16(h + headerBytes + 2, count, true);
      dv.setUint32(h + headerBytes + 4, len, true);
      this.#bytes.set(frame.subarray(off, off + piece), h + headerBytes + fragmentHeaderBytes);
      off += piece;
      this.#slotBytes[slot] = headerBytes + fragmentHeaderBytes + piece;
      // The frame is counted (frames and bytes sent) with its last piece.
      this.#slotFrames[slot] = last ? 1 : 0;
      this.#slotPayloadBytes[slot] = last ? len : 0;
      this.#slotFlags[slot] = flagFragment | (last && this.#credits(p) === 0 ? flagCreditRequest : 0);
    }
    s.framesFragmentedSent++;
    return true;
  }

  /** Starts a data datagram to `p`; -1 when out of credit or send slots. */
  #openDatagram(p: Peer): number {
    if (this.#credits(p) <= 0) {
      p.creditsNeeded = 1;
      return -1;
    }
    const slot = this.#takeSlot(p);
    if (slot < 0) return -1;
    this.#pending[this.#pendingCount++] = slot;
    p.queued++;
    p.creditsNeeded = 0;
    p.nextSeq = u32(p.nextSeq + 1);
    const h = this.#sendOff + slot * this.#sendSlotBytes;
    this.#dv.setUint32(h + 8, p.nextSeq, true);
    // Using the last credit: ask for an ack with it rather than waiting to starve.
    this.#slotFlags[slot] = this.#credits(p) === 0 ? flagCreditRequest : 0;
    p.openSlot = slot;
    return slot;
  }

  /** A free send slot addressed to `p` (the caller queues it); -1 if none is free. */
  #takeSlot(p: Peer): number {
    if (this.#freeTop === 0) this.#reapSends();
    if (this.#freeTop === 0) return -1;
    const slot = this.#free[--this.#freeTop]!;
    const wr = this.#sendWrOff + slot * ibvSendWr.size;
    const w32 = this.#w32;
    w32[(wr + ibvSendWr.wr_ud_ah) >>> 2] = p.ahLo;
    w32[((wr + ibvSendWr.wr_ud_ah) >>> 2) + 1] = p.ahHi;
    w32[(wr + ibvSendWr.wr_ud_remote_qpn) >>> 2] = p.qpn;
    w32[(wr + ibvSendWr.wr_ud_remote_qkey) >>> 2] = p.qkey;
    const h = this.#sendOff + slot * this.#sendSlotBytes;
    const dv = this.#dv;
    dv.setUint16(h, magic, true);
    dv.setUint8(h + 2, wireVersion);
    dv.setUint8(h + 4, this.self);
    dv.setUint8(h + 5, p.id);
    this.#slotPeer[slot] = p.id;
    this.#slotFrames[slot] = 0;
    this.#slotBytes[slot] = headerBytes;
    this.#slotPayloadBytes[slot] = 0;
    return slot;
  }

  flush(): void {
    if (this.#closed) return;
    this.#reapSends();
    this.#pendingCount = this.#queueControl(this.#pending, this.#pendingCount);
    const n = this.#pendingCount;
    this.#pendingCount = 0;
    for (let id = 0; id <= nodeIdMax; id++) {
      const p = this.#peers[id];
      if (p !== undefined) {
        p.openSlot = -1;
        p.queued = 0;
      }
    }
    this.#post(this.#pending, n);
  }

  /**
   * Appends to `list` (from `count`) the control datagrams owed now: the credit requests of a
   * starved sender (every creditProbeMs) and the acks an idle receiver owes (asked for, or half a
   * window). Peers with data datagrams queued are skipped: those carry the ack. Returns the count.
   */
  #queueControl(list: Int32Array, count: number): number {
    let now = -1;
    for (let id = 0; id <= nodeIdMax; id++) {
      const p = this.#peers[id];
      if (p === undefined || p.queued > 0) continue;
      let flags = 0;
      if (p.creditsNeeded > 0) {
        // Starved until the credits the refused send needed are back (a large frame needs all its
        // pieces' worth at once, so "some credit" is not enough).
        if (this.#credits(p) >= p.creditsNeeded) p.creditsNeeded = 0;
        else {
          if (now < 0) now = performance.now();
          if (now - p.lastCreditRequestMs >= this.#creditProbeMs) flags = flagControl | flagCreditRequest;
        }
      }
      if (flags === 0 && (p.ackRequested || u32(p.recvSeq - p.ackSentSeq) >= this.#ackThreshold)) flags = flagControl;
      if (flags === 0) continue;
      const slot = this.#takeSlot(p);
      if (slot < 0) break; // every slot is in flight: the next call tries again
      this.#slotFlags[slot] = flags;
      list[count++] = slot;
    }
    return count;
  }

  /** Finishes the headers of the `n` datagrams in `list` and posts them as one chain. */
  #post(list: Int32Array, n: number): void {
    if (n === 0) return;
    const dv = this.#dv;
    const s = this.#stats;
    let now = -1;
    for (let i = 0; i < n; i++) {
      const slot = list[i]!;
      const p = this.#peers[this.#slotPeer[slot]!];
      if (p === undefined) throw new Error(`rdma: datagram queued for forgotten peer ${this.#slotPeer[slot]}`);
      const h = this.#sendOff + slot * this.#sendSlotBytes;
      const flags = this.#slotFlags[slot]!;
      const frames = this.#slotFrames[slot]!;
      if ((flags & flagControl) !== 0) {
        // No data datagram of this peer is queued (queueControl skips those), so nextSeq is the
        // end of what was posted: the receiver may count everything before it as done.
        dv.setUint32(h + 8, p.nextSeq, true);
        s.controlSent++;
      } else {
        s.framesSent += frames;
        s.bytesSent += this.#slotPayloadBytes[slot]!;
      }
      if ((flags & flagCreditRequest) !== 0) {
        if (now < 0) now = performance.now();
        p.lastCreditRequestMs = now;
      }
      dv.setUint8(h + 3, flags);
      dv.setUint16(h + 6, frames, true);
      dv.setUint32(h + 12, p.recvSeq, true);
      p.ackSentSeq = p.recvSeq;
      p.ackRequested = false;
      const wr = this.#sendWrOff + slot * ibvSendWr.size;
      const sge = this.#sendWrOff + this.#sendSlots * ibvSendWr.size + slot * ibvSge.size;
      this.#w32[(sge + ibvSge.length) >>> 2] = this.#slotBytes[slot]!;
      this.#store64(wr + ibvSendWr.next, i + 1 < n ? this.#sendWrAddress(list[i + 1]!) : 0);
    }
    s.datagramsSent += n;
    this.#postedCount += n;
    this.#qp.postSend(this.#sendWrAddress(list[0]!) as Pointer);
  }

  /** Takes send completions: their slots become free; retired address handles are destroyed. */
  #reapSends(): void {
    const w32 = this.#w32;
    let recover = false;
    for (;;) {
      const n = this.#sendCq.poll(pollBatch, (this.#workBase + this.#wcSendOff) as Pointer);
      for (let i = 0; i < n; i++) {
        const wc = this.#wcSendOff + i * ibvWc.size;
        const status = w32[(wc + ibvWc.status) >>> 2]!;
        if (status !== ibv.WC_SUCCESS) {
          this.#stats.sendErrors++;
          if (status !== ibv.WC_WR_FLUSH_ERR) recover = true;
        }
        const slot = w32[(wc + ibvWc.wr_id) >>> 2]!;
        // wr_id is the slot index we wrote; anything else means a corrupted completion.
        if (slot >= this.#sendSlots || this.#freeTop >= this.#sendSlots) throw new Error(`rdma: send completion for slot ${slot} (free ${this.#freeTop})`);
        this.#free[this.#freeTop++] = slot;
      }
      this.#completedCount += n;
      if (n < pollBatch) break;
    }
    // A UD send error leaves the send queue in the SQE state; RTS resumes it.
    if (recover) {
      try {
        this.#qp.modify({ state: ibv.QPS_RTS });
      } catch {
        // Still in error: later sends complete with errors and are counted; nothing else to do.
      }
    }
    while (this.#retired.length > 0 && this.#retired[0]!.postedBefore <= this.#completedCount) this.#retired.shift()!.ah.close();
  }

  poll(handler: FrameHandler): number {
    if (this.#closed) return 0;
    let delivered = 0;
    let budget = this.#recvSlots;
    try {
      // Completions whenReadable() already took from the CQ come first: they arrived first.
      if (this.#stashCount > 0) {
        const n = this.#stashCount;
        this.#stashCount = 0;
        budget -= n;
        delivered += this.#receive(this.#wcStashOff, n, handler);
      }
      while (budget > 0) {
        const n = this.#recvCq.poll(Math.min(pollBatch, budget), (this.#workBase + this.#wcRecvOff) as Pointer);
        budget -= n;
        delivered += this.#receive(this.#wcRecvOff, n, handler);
        if (n < pollBatch) break;
      }
    } finally {
      // Consumed buffers go back to the receive queue as one chain. The handler may have closed
      // the endpoint; then the QP is gone and nothing is re-posted.
      const first = this.#repostFirst;
      if (first >= 0 && !this.#closed) {
        this.#linkRecv(this.#repostLast, -1);
        this.#qp.postRecv(this.#recvWrAddress(first));
      }
      this.#repostFirst = -1;
      this.#repostLast = -1;
    }
    // Acks owed now go out now, not at the caller's next flush: a worker with nothing to send may
    // not flush for a while, and its peers would wait for credit meanwhile.
    if (!this.#closed) this.#post(this.#controlList, this.#queueControl(this.#controlList, 0));
    return delivered;
  }

  /** Handles `n` receive completions at work offset `wcOff`; returns the frames handed out. */
  #receive(wcOff: number, n: number, handler: FrameHandler): number {
    const w32 = this.#w32;
    const dv = this.#dv;
    const s = this.#stats;
    const self = this.self;
    let delivered = 0;
    for (let i = 0; i < n; i++) {
      const wc = wcOff + i * ibvWc.size;
      const slot = w32[(wc + ibvWc.wr_id) >>> 2]!;
      if (slot >= this.#recvSlots) throw new Error(`rdma: receive completion for slot ${slot} of ${this.#recvSlots}`);
      // Chain the buffer for re-posting first, whatever happens to its content.
      if (this.#repostFirst < 0) this.#repostFirst = slot;
      else this.#linkRecv(this.#repostLast, slot);
      this.#repostLast = slot;
      if (w32[(wc + ibvWc.status) >>> 2] !== ibv.WC_SUCCESS) {
        s.recvErrors++;
        continue;
      }
      s.datagramsReceived++;
      const base = this.#recvOff + slot * this.#recvSlotBytes;
      const h = base + grhBytes;
      const length = w32[(wc + ibvWc.byte_len) >>> 2]! - grhBytes;
      if (length < headerBytes || dv.getUint16(h, true) !== magic || dv.getUint8(h + 2) !== wireVersion || dv.getUint8(h + 5) !== self) {
        s.malformedDrops++;
        s.framesDropped++;
        continue;
      }
      const from = dv.getUint8(h + 4);
      const frames = dv.getUint16(h + 6, true);
      const p = from <= nodeIdMax ? this.#peers[from] : undefined;
      if (
        p === undefined ||
        p.qpn !== w32[(wc + ibvWc.src_qp) >>> 2] ||
        ((w32[(wc + ibvWc.wc_flags) >>> 2]! & ibv.WC_GRH) !== 0 && !this.#sourceIs(p, base))
      ) {
        s.unknownSenderDrops++;
        s.framesDropped += frames;
        continue;
      }
      // The buffer is re-posted by the end of this poll: count it as free (the newest wins).
      p.recvSeq = dv.getUint32(h + 8, true);
      const ack = dv.getUint32(h + 12, true);
      // Only an ack inside [ackedSeq, nextSeq] is news; older or foreign ones are ignored.
      if (u32(ack - p.ackedSeq) <= u32(p.nextSeq - p.ackedSeq)) p.ackedSeq = ack;
      const flags = dv.getUint8(h + 3);
      if ((flags & flagCreditRequest) !== 0) p.ackRequested = true;
      if ((flags & flagControl) !== 0) continue;
      if ((flags & flagFragment) !== 0) {
        if (this.#receivePiece(p, h, length, handler)) delivered++;
        continue;
      }
      if (this.#dropRule !== null && this.#dropRule(from, self)) {
        s.framesDropped += frames;
        continue;
      }
      let off = h + headerBytes;
      const end = h + length;
      for (let k = 0; k < frames; k++) {
        const len = off + frameLengthBytes <= end ? dv.getUint16(off, true) : 0;
        if (len === 0 || off + frameLengthBytes + len > end) {
          s.malformedDrops++;
          s.framesDropped += frames - k;
          break;
        }
        off += frameLengthBytes;
        s.framesReceived++;
        s.bytesReceived += len;
        delivered++;
        handler(from, this.#bytes.subarray(off, off + len));
        off += len;
      }
    }
    return delivered;
  }

  /**
   * One piece of a fragmented frame from `p` (datagram header at `h`, `length` bytes). Hands the
   * frame out when its last piece completes it; returns whether it did. A piece the drop rule
   * drops is lost like a piece the network lost. Every lost frame is counted once in
   * framesDropped, when the loss is first seen; its remaining pieces are then discarded.
   */
  #receivePiece(p: Peer, h: number, length: number, handler: FrameHandler): boolean {
    const dv = this.#dv;
    const s = this.#stats;
    const index = dv.getUint16(h + headerBytes, true);
    const count = dv.getUint16(h + headerBytes + 2, true);
    const total = dv.getUint32(h + headerBytes + 4, true);
    const piece = length - headerBytes - fragmentHeaderBytes;
    const last = index === count - 1;
    const dropped = this.#dropRule !== null && this.#dropRule(p.id, this.self);
    if (index === 0) {
      // A new frame; one still incomplete lost its last pieces.
      if (p.fragNext >= 0) this.#loseFragmented(p, fragIdle);
      if (total > p.reassembly.length || count < 2 || piece <= 0 || piece > total) {
        s.malformedDrops++;
        this.#loseFragmented(p, fragDiscarding);
        return false;
      }
      if (dropped) {
        this.#loseFragmented(p, fragDiscarding);
        return false;
      }
      p.fragNext = 0;
      p.fragCount = count;
      p.fragBytes = total;
      p.fragFilled = 0;
    } else if (dropped || p.fragNext < 0 || index !== p.fragNext || count !== p.fragCount || total !== p.fragBytes) {
      // This piece, or an earlier one of its frame, is lost.
      if (p.fragNext !== fragDiscarding) this.#loseFragmented(p, fragDiscarding);
      if (last) p.fragNext = fragIdle;
      return false;
    }
    if (piece <= 0 || p.fragFilled + piece > p.fragBytes || (last && p.fragFilled + piece !== p.fragBytes)) {
      s.malformedDrops++;
      this.#loseFragmented(p, last ? fragIdle : fragDiscarding);
      return false;
    }
    p.reassembly.set(this.#bytes.subarray(h + headerBytes + fragmentHeaderBytes, h + length), p.fragFilled);
    p.fragFilled += piece;
    p.fragNext++;
    if (!last) return false;
    p.fragNext = fragIdle;
    s.framesReassembled++;
    s.framesReceived++;
    s.bytesReceived += p.fragBytes;
    handler(p.id, p.reassembly.subarray(0, p.fragBytes));
    return true;
  }

  /** Counts the peer's fragmented frame in progress as lost and moves reassembly to `next`. */
  #loseFragmented(p: Peer, next: number): void {
    this.#stats.fragmentLosses++;
    this.#stats.framesDropped++;
    p.fragNext = next;
  }

  /**
   * Resolves when poll() has a datagram to look at (or on close); at once when one is waiting.
   *
   * Checked by peeking the receive CQ every readableCheckMs (completions taken are kept for the
   * next poll), not by a completion channel: Bun has no way to wait for an fd to become readable
   * without reading it, and reading the channel fd directly would bypass the provider's cq_event
   * hook (mlx4/mlx5 count arm sequence numbers in it). A worker only waits here when idle, and it
   * also wakes on its request ring, so the check interval bounds only the idle wake-up latency.
   */
  whenReadable(): Promise<void> {
    if (this.#closed || this.#peekRecv()) return Promise.resolve();
    if (this.#readable === null) {
      this.#readable = new Promise<void>((resolve) => (this.#resolveReadable = resolve));
      this.#scheduleReadableCheck();
    }
    return this.#readable;
  }

  #scheduleReadableCheck(): void {
    const t = setTimeout(this.#checkReadable, this.#readableCheckMs);
    // A pending wait must not keep the process alive.
    t.unref();
    this.#readableTimer = t;
  }

  readonly #checkReadable = (): void => {
    this.#readableTimer = null;
    if (this.#readable === null) return;
    if (!this.#closed && !this.#peekRecv()) {
      this.#scheduleReadableCheck();
      return;
    }
    const resolve = this.#resolveReadable!;
    this.#readable = null;
    this.#resolveReadable = null;
    resolve();
  };

  /** True when a receive completion is waiting; takes up to one batch into the stash. */
  #peekRecv(): boolean {
    if (this.#stashCount === 0) this.#stashCount = this.#recvCq.poll(pollBatch, (this.#workBase + this.#wcStashOff) as Pointer);
    return this.#stashCount > 0;
  }

  /** The datagram in receive slot `base` came from `p`'s GID (RoCE v2/IPv4: the IP source). */
  #sourceIs(p: Peer, base: number): boolean {
    const b = this.#bytes;
    const g = p.gid;
    if (p.gidIpv4) {
      const at = base + grhIpv4SourceOffset;
      return b[at] === g[12] && b[at + 1] === g[13] && b[at + 2] === g[14] && b[at + 3] === g[15];
    }
    const at = base + grhSgidOffset;
    for (let i = 0; i < 16; i++) if (b[at + i] !== g[i]) return false;
    return true;
  }

  stats(): RdmaStats {
    let starved = 0;
    for (const p of this.#peers) if (p !== undefined && p.creditsNeeded > 0) starved++;
    return { ...this.#stats, sendSlotsFree: this.#freeTop, peersStarved: starved };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#peers.fill(undefined);
    this.#peerCount = 0;
    this.#pendingCount = 0;
    this.#retired.length = 0;
    this.#stashCount = 0;
    if (this.#readableTimer !== null) clearTimeout(this.#readableTimer);
    this.#readableTimer = null;
    const resolve = this.#resolveReadable;
    this.#readable = null;
    this.#resolveReadable = null;
    resolve?.();
    // The context owns the QP, CQs, AHs, MR and PD and closes them children first; the memory
    // they used is freed only after the region is deregistered.
    this.#ctx.close();
    this.#data.close();
    this.#work.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
