// The RDMA transport: the Transport interface over ibverbs Unreliable Datagram (UD) queue pairs.
//
// Why UD and not RC. Hermes tolerates loss (INVs are retransmitted, stuck keys replayed), and its
// reference implementation (ease-lab/Hermes, "wings") uses UD. With UD one queue pair per endpoint
// talks to every peer, so the address the membership publishes is one string and connect(peer,
// address) is purely local: create an address handle, no handshake. RC would need a queue pair per
// peer whose numbers both sides exchange before either can send, which does not fit one published
// address, and its reliability (retries, RNR waits, a QP in error on a dead peer) buys nothing the
// protocol needs. The price of UD: a datagram is at most one path MTU (4096 bytes on RoCE over a
// 64 KiB-MTU loopback, 1024 on a 1500-byte Ethernet), so frameBytesMax is the MTU minus our header.
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
// control datagram once half a window is unacknowledged. A sender that runs out asks for credit
// (a flag on the datagram that uses the last credit, then a control datagram every creditProbeMs
// while starved), so a lost ack can only delay, never deadlock. Acks are cumulative and the newest
// wins, so loss, duplication and a peer that restarted heal by themselves. Control datagrams use
// `controlSlackPerPeer` receive buffers per peer beyond the window.
//
// Identity. A datagram is accepted from peer P only if its header names P as sender and this node
// as receiver, its source QP number is P's, and (when it carries a GRH) its source address is P's
// GID. The qkey in the address is random per endpoint: a restarted peer publishes a new address.

import type { Pointer } from "bun:ffi";
import { nodeIdMax, type NodeId } from "../core/types.ts";
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
// 16 frames: u16 length, then the bytes, frameCount times
const magic = 0x4852; // "HR"
const wireVersion = 1;
const headerBytes = 16;
const frameLengthBytes = 2;
/** The datagram only carries acks and flags: no frames, no sequence number of its own. */
const flagControl = 1;
/** The sender is out of credit: answer with an ack even if nothing new was processed. */
const flagCreditRequest = 2;
/** UD receive buffers start with 40 bytes for the GRH (RoCE v2 over IPv4: the IP header at 20). */
const grhBytes = 40;
const grhIpv4SourceOffset = 20 + 12;
const grhSgidOffset = 8;

export const rdmaWindowDatagramsDefault = 16;
export const rdmaWindowDatagramsMin = 2;
export const rdmaPeersMaxDefault = 8;
export const rdmaCreditProbeMsDefault = 5;
/** Receive buffers per peer beyond the window, for acks and credit requests. */
const controlSlackPerPeer = 4;
/** Completions taken from a CQ per ibv_poll_cq call. */
const pollBatch = 32;
/** Slots are cache-line aligned. */
const slotAlignBytes = 64;

export interface RdmaOptions {
  self: NodeId;
  /** Device name (e.g. "rxe0", "mlx5_0"); default: the first device with an active port. */
  device?: string;
  /** Port number on the device (1-based). */
  port?: number;
  /** GID table index to send from and publish; default: RoCE v2 over IPv4, then RoCE v2, then the first. */
  gidIndex?: number;
  /** Cap on frame size; default and upper bound: the port's active MTU minus the header. */
  frameBytesMax?: number;
  /** Peers connected at once (sizes the receive ring). */
  peersMax?: number;
  /** Credits per peer, in datagrams (each carries many frames). */
  windowDatagrams?: number;
  /** While out of credit, ask the peer for an ack this often. */
  creditProbeMs?: number;
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
  /** The datagram send() is filling (-1: none). */
  openSlot: number;
  starved: boolean;
  lastCreditRequestMs: number;
  // Receive side.
  recvSeq: number;
  ackSentSeq: number;
  ackRequested: boolean;
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

  readonly #free: Int32Array;
  #freeTop: number;
  readonly #pending: Int32Array;
  #pendingCount = 0;
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
    const window = opts.windowDatagrams ?? rdmaWindowDatagramsDefault;
    const peersMax = opts.peersMax ?? rdmaPeersMaxDefault;
    this.#creditProbeMs = opts.creditProbeMs ?? rdmaCreditProbeMsDefault;
    if (!(Number.isInteger(window) && window >= rdmaWindowDatagramsMin && window <= 4096)) {
      throw new RangeError(`rdma: windowDatagrams ${window} must be an integer in ${rdmaWindowDatagramsMin}..4096`);
    }
    if (!(Number.isInteger(peersMax) && peersMax >= 1 && peersMax <= nodeIdMax)) {
      throw new RangeError(`rdma: peersMax ${peersMax} must be an integer in 1..${nodeIdMax}`);
    }
    if (!(this.#creditProbeMs > 0)) throw new RangeError(`rdma: creditProbeMs ${this.#creditProbeMs} must be positive`);
    this.windowDatagrams = window;
    this.peersMax = peersMax;
    this.#ackThreshold = Math.max(1, window >> 1);

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
      const frameLimit = this.datagramBytesMax - headerBytes - frameLengthBytes;
      const want = opts.frameBytesMax ?? frameLimit;
      if (!(Number.isInteger(want) && want >= 1)) throw new RangeError(`rdma: frameBytesMax ${want} must be a positive integer`);
      // A larger request is capped: UD cannot carry more than one MTU; callers read frameBytesMax.
      this.frameBytesMax = Math.min(want, frameLimit);

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
      const workBytes = this.#wcSendOff + pollBatch * ibvWc.size;

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
      starved: false,
      lastCreditRequestMs: -Infinity,
      recvSeq: 0,
      ackSentSeq: 0,
      ackRequested: false,
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

  /** Starts a data datagram to `p`; -1 when out of credit or send slots. */
  #openDatagram(p: Peer): number {
    if (this.#credits(p) <= 0) {
      p.starved = true;
      return -1;
    }
    const slot = this.#takeSlot(p);
    if (slot < 0) return -1;
    p.starved = false;
    p.nextSeq = u32(p.nextSeq + 1);
    const h = this.#sendOff + slot * this.#sendSlotBytes;
    this.#dv.setUint32(h + 8, p.nextSeq, true);
    // Using the last credit: ask for an ack with it rather than waiting to starve.
    this.#slotFlags[slot] = this.#credits(p) === 0 ? flagCreditRequest : 0;
    p.openSlot = slot;
    return slot;
  }

  /** A free send slot addressed to `p`, queued for the next flush; -1 if none is free. */
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
    this.#pending[this.#pendingCount++] = slot;
    return slot;
  }

  flush(): void {
    if (this.#closed) return;
    this.#reapSends();
    let now = -1;
    // Control datagrams: acks an idle receiver owes, and credit requests of a starved sender.
    for (let id = 0; id <= nodeIdMax; id++) {
      const p = this.#peers[id];
      if (p === undefined || p.openSlot >= 0) continue; // a data datagram will carry the ack
      let flags = 0;
      if (p.starved) {
        if (this.#credits(p) > 0) p.starved = false;
        else {
          if (now < 0) now = performance.now();
          if (now - p.lastCreditRequestMs >= this.#creditProbeMs) flags = flagControl | flagCreditRequest;
        }
      }
      if (flags === 0 && (p.ackRequested || u32(p.recvSeq - p.ackSentSeq) >= this.#ackThreshold)) flags = flagControl;
      if (flags === 0) continue;
      const slot = this.#takeSlot(p);
      if (slot < 0) break; // every slot is in flight: the next flush tries again
      this.#slotFlags[slot] = flags;
    }
    const n = this.#pendingCount;
    if (n === 0) return;
    const dv = this.#dv;
    const s = this.#stats;
    for (let i = 0; i < n; i++) {
      const slot = this.#pending[i]!;
      const p = this.#peers[this.#slotPeer[slot]!];
      if (p === undefined) throw new Error(`rdma flush: datagram queued for forgotten peer ${this.#slotPeer[slot]}`);
      const h = this.#sendOff + slot * this.#sendSlotBytes;
      const flags = this.#slotFlags[slot]!;
      const frames = this.#slotFrames[slot]!;
      if ((flags & flagControl) !== 0) {
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
      this.#store64(wr + ibvSendWr.next, i + 1 < n ? this.#sendWrAddress(this.#pending[i + 1]!) : 0);
    }
    for (let id = 0; id <= nodeIdMax; id++) {
      const p = this.#peers[id];
      if (p !== undefined) p.openSlot = -1;
    }
    this.#pendingCount = 0;
    s.datagramsSent += n;
    this.#postedCount += n;
    this.#qp.postSend(this.#sendWrAddress(this.#pending[0]!) as Pointer);
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
        this.#free[this.#freeTop++] = w32[(wc + ibvWc.wr_id) >>> 2]!;
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
    const w32 = this.#w32;
    const dv = this.#dv;
    const bytes = this.#bytes;
    const s = this.#stats;
    const self = this.self;
    let delivered = 0;
    let budget = this.#recvSlots;
    // Consumed slots are chained (first..last) and re-posted with one call at the end.
    let first = -1;
    let last = -1;
    try {
      while (budget > 0) {
        const n = this.#recvCq.poll(Math.min(pollBatch, budget), (this.#workBase + this.#wcRecvOff) as Pointer);
        budget -= n;
        for (let i = 0; i < n; i++) {
          const wc = this.#wcRecvOff + i * ibvWc.size;
          const slot = w32[(wc + ibvWc.wr_id) >>> 2]!;
          if (first < 0) first = slot;
          else this.#linkRecv(last, slot);
          last = slot;
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
          // The buffer is re-posted by the end of this call: count it as free (newest wins).
          p.recvSeq = dv.getUint32(h + 8, true);
          const ack = dv.getUint32(h + 12, true);
          // Only an ack inside [ackedSeq, nextSeq] is news; older or foreign ones are ignored.
          if (u32(ack - p.ackedSeq) <= u32(p.nextSeq - p.ackedSeq)) p.ackedSeq = ack;
          const flags = dv.getUint8(h + 3);
          if ((flags & flagCreditRequest) !== 0) p.ackRequested = true;
          if ((flags & flagControl) !== 0) continue;
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
            handler(from, bytes.subarray(off, off + len));
            off += len;
          }
        }
        if (n < pollBatch) break;
      }
    } finally {
      // The handler may have closed the endpoint; then the QP is gone and nothing is re-posted.
      if (first >= 0 && !this.#closed) {
        this.#linkRecv(last, -1);
        this.#qp.postRecv(this.#recvWrAddress(first));
      }
    }
    return delivered;
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
    for (const p of this.#peers) if (p !== undefined && p.starved) starved++;
    return { ...this.#stats, sendSlotsFree: this.#freeTop, peersStarved: starved };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#peers.fill(undefined);
    this.#peerCount = 0;
    this.#pendingCount = 0;
    this.#retired.length = 0;
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
