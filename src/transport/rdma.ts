// The RDMA transport: the Transport interface over ibverbs Unreliable Datagram (UD) queue pairs.
// This file holds the verbs calls and the wiring; the pure parts have their own modules and tests:
// rdma-options.ts (settings), rdma-layout.ts (native memory), rdma-wire.ts (datagram format),
// rdma-address.ts (the published address), credit-window.ts (credits and acks) and reassembly.ts
// (frames larger than a datagram).
//
// Why UD and not RC. Hermes tolerates loss (INVs are retransmitted, stuck keys replayed), and its
// reference implementation (ease-lab/Hermes, "wings") uses UD. With UD one queue pair per endpoint
// talks to every peer, so the address the membership publishes is one string and connect(peer,
// address) is purely local: create an address handle, no handshake. RC would need a queue pair per
// peer whose numbers both sides exchange before either can send, which does not fit one published
// address, and its reliability (retries, RNR waits, a QP in error on a dead peer) buys nothing the
// protocol needs. The price of UD: a datagram is at most one path MTU (4096 bytes on RoCE over a
// 64 KiB-MTU loopback, 1024 on a 1500-byte Ethernet). Frames larger than one datagram are cut into
// fragments and reassembled (reassembly.ts), so frameBytesMax is whatever the caller asks for, up
// to rdmaFrameBytesLimit.
//
// Memory. All datagram buffers live in one NativeBuffer (node-local when a NUMA node is given),
// registered once as one memory region; work requests and scatter entries are pre-built in a
// second native buffer, one per slot (rdma-layout.ts), so the data path only patches lengths,
// address handles and `next` links with 32-bit stores: nothing is allocated per message except the
// frame view handed to poll's handler (the interface's shape).
//
// Coalescing. send() appends the frame to the peer's open datagram ([u16 length][bytes] after a
// 16-byte header) while it fits, else opens a new one. flush() finalises every open datagram and
// posts all of them, for every peer, as one chain in a single ibv_post_send.
//
// Credits. A datagram that finds no posted receive buffer is silently dropped by the NIC, so each
// peer gets `windowDatagrams` receive buffers' worth of credit (credit-window.ts). Data datagrams
// carry a sequence number; every datagram also carries `ack`, the receiver's "I am done with all
// your datagrams up to here" (it is set on processing, and buffers are re-posted at once). Acks
// ride on data going the other way (Hermes traffic is two-way: INV -> ACK); an idle receiver sends
// a control datagram once half a window is unacknowledged. A sender refused for want of credit asks
// for it (a flag on the datagram that uses the last credit, then a control datagram every
// creditProbeMs until the credits the refused send needed are back), so a lost ack can only
// delay, never deadlock. Control datagrams use `controlSlackPerPeer` receive buffers per peer
// beyond the window.
//
// Identity. A datagram is accepted from peer P only if its header names P as sender and this node
// as receiver, its source QP number is P's, and (when it carries a GRH) its source address is P's
// GID. The qkey in the address is random per endpoint: a restarted peer publishes a new address.
//
// Errors. The device, a failed post or a work completion in error are operating errors: thrown as
// NativeError from the verbs wrappers, or counted in stats. A broken invariant of this file's own
// bookkeeping is asserted and kills the worker.

import type { Pointer } from "bun:ffi";
import { assert } from "../base/assert.ts";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import { ibv, ibvRecvWr, ibvSendWr, ibvSge, ibvWc } from "../../ffi/ibverbs/layout.ts";
import {
  gidIsIpv4Mapped,
  listDevices,
  openDevice,
  type AddressHandle,
  type CompletionQueue,
  type Context,
  type GidEntry,
  type QueuePair,
} from "../../ffi/ibverbs/verbs.ts";
import { allocNativeBuffer, type NativeBuffer } from "../../ffi/numa/numa.ts";
import type { FrameHandler, Transport, TransportStats } from "./transport.ts";
import type { DropRule, DropRuleTarget } from "./drop-rule.ts";
import { assertNodeId } from "./net-address.ts";
import { assertSendable } from "./commodity.ts";
import { chooseGid, formatRdmaAddress, parseRdmaAddress, randomQkey } from "./rdma-address.ts";
import { validateRdmaOptions, type RdmaOptions, type RdmaSettings } from "./rdma-options.ts";
import {
  checkDeviceLimits,
  completionsPerPollMax,
  rdmaLayout,
  store64,
  writeWorkRequests,
  type RdmaLayout,
} from "./rdma-layout.ts";
import { AckDebt, CreditWindow } from "./credit-window.ts";
import { Reassembly, pieceCount, pieceOf } from "./reassembly.ts";
import {
  ackOffset,
  datagramMagic,
  datagramVersion,
  flagControl,
  flagCreditRequest,
  flagFragment,
  flagsOffset,
  fragmentHeaderBytes,
  frameCountOffset,
  frameLengthBytes,
  fromOffset,
  grhBytes,
  grhIpv4SourceOffset,
  grhSgidOffset,
  headerBytes,
  magicOffset,
  pieceCountOffset,
  pieceFrameBytesOffset,
  pieceIndexOffset,
  seqEndOffset,
  toOffset,
  versionOffset,
} from "./rdma-wire.ts";

/**
 * Address handles of forgotten peers waiting for their sends to complete. UD sends complete within
 * microseconds, so more than this many means completions stopped: an invariant is broken.
 */
const retiredAddressHandlesMax = 64;
/** Enough for routed RoCE v2; within one subnet any value works. */
const hopLimit = 64;

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

/** The verbs resources of one endpoint and what was learnt while acquiring them. */
interface Endpoint {
  readonly deviceName: string;
  readonly ctx: Context;
  readonly data: NativeBuffer;
  readonly work: NativeBuffer;
  readonly sendCq: CompletionQueue;
  readonly recvCq: CompletionQueue;
  readonly qp: QueuePair;
  readonly gid: GidEntry;
  readonly layout: RdmaLayout;
  readonly address: string;
}

/**
 * Opens the device and builds a ready UD endpoint with every receive buffer posted. Everything
 * created after openDevice is owned by the context (or is one of the two buffers), so on failure
 * one close() of each undoes a half-built endpoint.
 */
function openEndpoint(settings: RdmaSettings): Endpoint {
  const deviceName = settings.device ?? rdmaDeviceAvailable();
  if (deviceName === null) {
    throw new Error(`rdma: no RDMA device with an active port (devices: ${listDevices().join(", ") || "none"})`);
  }
  const port = settings.port;
  const ctx = openDevice(deviceName);
  let data: NativeBuffer | null = null;
  let work: NativeBuffer | null = null;
  try {
    const portAttr = ctx.queryPort(port);
    if (!portAttr.active) throw new Error(`rdma: ${deviceName} port ${port} is not active (state ${portAttr.state})`);
    const entries = ctx.gidEntries(port);
    const gid = settings.gidIndex === null ? chooseGid(entries) : entries.find((e) => e.index === settings.gidIndex);
    if (gid === undefined || gid === null) {
      const asked = settings.gidIndex === null ? "" : `populated GID at index ${settings.gidIndex}, nor any `;
      throw new Error(`rdma: ${deviceName} port ${port} has no ${asked}usable GID`);
    }
    const layout = rdmaLayout({
      datagramBytesMax: portAttr.activeMtuBytes,
      frameBytesMax: settings.frameBytesMax,
      windowDatagrams: settings.windowDatagrams,
      peersMax: settings.peersMax,
    });
    checkDeviceLimits(layout, ctx.queryDevice());
    data = allocNativeBuffer(layout.dataBytes, settings.numaNode);
    work = allocNativeBuffer(layout.workBytes, settings.numaNode);
    const pd = ctx.allocPd();
    const mr = pd.registerMemory(data.address, layout.dataBytes, ibv.ACCESS_LOCAL_WRITE);
    const sendCq = ctx.createCq(layout.sendSlots);
    const recvCq = ctx.createCq(layout.recvSlots);
    const qp = pd.createQp({
      type: "ud",
      sendCq,
      recvCq,
      sendWrMax: layout.sendSlots,
      recvWrMax: layout.recvSlots,
      signalAll: true,
    });
    const qkey = randomQkey();
    qp.readyUd(port, qkey);
    writeWorkRequests(new Uint32Array(work.buffer), work.address as number, data.address as number, mr.lkey, layout);
    // Every receive buffer is posted up front, as one chain.
    qp.postRecv((work.address + layout.recvWrOff) as Pointer);
    const address = formatRdmaAddress({ qpn: qp.qpn, gid: gid.gid, qkey, lid: portAttr.lid });
    return { deviceName, ctx, data, work, sendCq, recvCq, qp, gid, layout, address };
  } catch (e) {
    ctx.close();
    data?.close();
    work?.close();
    throw e;
  }
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
  readonly credit: CreditWindow;
  /** The datagram send() is filling (-1: none), and the data datagrams queued for the next flush. */
  openSlot: number;
  queued: number;
  // Receive side.
  readonly acks: AckDebt;
  readonly reassembly: Reassembly;
}

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

  readonly #settings: RdmaSettings;
  readonly #layout: RdmaLayout;
  readonly #ctx: Context;
  readonly #qp: QueuePair;
  readonly #sendCq: CompletionQueue;
  readonly #recvCq: CompletionQueue;
  readonly #data: NativeBuffer;
  readonly #work: NativeBuffer;

  // Views of the native memory.
  readonly #bytes: Uint8Array;
  readonly #dv: DataView;
  readonly #w32: Uint32Array;
  readonly #workBase: number;

  // Send slots: a stack of free ones, the data datagrams queued for the next flush, and per slot
  // the peer, frame count, bytes so far (header included), payload bytes and flags.
  readonly #free: Int32Array;
  #freeTop: number;
  readonly #pending: Int32Array;
  #pendingCount = 0;
  /** Control datagrams poll() sends at once (at most one per peer). */
  readonly #controlList = new Int32Array(nodeIdMax + 1);
  readonly #slotPeer: Int8Array;
  readonly #slotFrames: Uint16Array;
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
  /** Completions whenReadable() took from the receive CQ, at wcStashOff, for the next poll. */
  #stashCount = 0;
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
    const settings = validateRdmaOptions(opts);
    const endpoint = openEndpoint(settings);
    const layout = endpoint.layout;
    this.#settings = settings;
    this.#layout = layout;
    this.self = settings.self;
    this.peersMax = settings.peersMax;
    this.deviceName = endpoint.deviceName;
    this.gidIndex = endpoint.gid.index;
    this.address = endpoint.address;
    this.frameBytesMax = layout.frameBytesMax;
    this.windowDatagrams = layout.windowDatagrams;
    this.datagramBytesMax = layout.datagramBytesMax;

    this.#ctx = endpoint.ctx;
    this.#qp = endpoint.qp;
    this.#sendCq = endpoint.sendCq;
    this.#recvCq = endpoint.recvCq;
    this.#data = endpoint.data;
    this.#work = endpoint.work;
    this.#bytes = new Uint8Array(this.#data.buffer);
    this.#dv = new DataView(this.#data.buffer);
    this.#w32 = new Uint32Array(this.#work.buffer);
    this.#workBase = this.#work.address as number;

    const sendSlots = layout.sendSlots;
    this.#free = new Int32Array(sendSlots);
    this.#pending = new Int32Array(sendSlots);
    this.#slotPeer = new Int8Array(sendSlots);
    this.#slotFrames = new Uint16Array(sendSlots);
    this.#slotBytes = new Uint16Array(sendSlots);
    this.#slotPayloadBytes = new Uint32Array(sendSlots);
    this.#slotFlags = new Uint8Array(sendSlots);
    this.#freeTop = 0;
    for (let i = sendSlots - 1; i >= 0; i--) this.#free[this.#freeTop++] = i;
  }

  // ---- native work-request tables --------------------------------------------------------------

  #recvWrAddress(slot: number): Pointer {
    return (this.#workBase + this.#layout.recvWrOff + slot * ibvRecvWr.size) as Pointer;
  }

  #sendWrAddress(slot: number): number {
    return this.#workBase + this.#layout.sendWrOff + slot * ibvSendWr.size;
  }

  #sendSlotOffset(slot: number): number {
    return this.#layout.sendOff + slot * this.#layout.sendSlotBytes;
  }

  /** Points receive WR `slot` at `next` (-1: end of chain). */
  #linkRecv(slot: number, next: number): void {
    const wr = this.#layout.recvWrOff + slot * ibvRecvWr.size;
    store64(this.#w32, wr + ibvRecvWr.next, next < 0 ? 0 : (this.#recvWrAddress(next) as number));
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
      throw new RangeError(
        `rdma connect: already ${this.#peerCount} peers, the limit (peersMax) the receive ring is sized for`,
      );
    }
    if (old !== undefined) this.#forget(old);
    const ah = this.#qp.pd.createAh({
      port: this.#settings.port,
      dlid: a.lid,
      dgid: a.gid,
      sgidIndex: this.gidIndex,
      hopLimit,
    });
    const ahAddress = ah.address as number;
    const layout = this.#layout;
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
      credit: new CreditWindow(layout.windowDatagrams),
      openSlot: -1,
      queued: 0,
      acks: new AckDebt(layout.ackEveryDatagrams),
      // Connecting is the control path: the reassembly buffer is allocated here, once per peer.
      reassembly: new Reassembly(
        layout.frameBytesMax > layout.wholeFrameBytesMax ? layout.frameBytesMax : 0,
        this.#stats,
      ),
    };
    this.#peerCount++;
    assert(this.#peerCount <= this.peersMax, "never more peers than the receive ring is sized for");
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
      if (this.#slotPeer[slot] === p.id) this.#releaseSlot(slot);
      else this.#pending[kept++] = slot;
    }
    this.#pendingCount = kept;
    // Posted sends may still use the handle: destroy it once they have completed.
    if (this.#retired.length >= retiredAddressHandlesMax) this.#reapSends();
    assert(
      this.#retired.length < retiredAddressHandlesMax,
      "send completions keep coming, so retired handles get destroyed",
    );
    this.#retired.push({ ah: p.ah, postedBefore: this.#postedCount });
    this.#peers[p.id] = undefined;
    this.#peerCount--;
    assert(this.#peerCount >= 0, "forgetting a peer that was connected");
  }

  send(peer: NodeId, frame: Uint8Array): boolean {
    assertSendable(frame, this.frameBytesMax);
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
    const len = frame.length;
    if (len > this.#layout.wholeFrameBytesMax) return this.#sendPieces(p, frame);
    let slot = p.openSlot;
    if (slot < 0 || this.#slotBytes[slot]! + frameLengthBytes + len > this.datagramBytesMax) {
      slot = this.#openDatagram(p);
      if (slot < 0) {
        s.sendsRefused++;
        return false;
      }
    }
    const used = this.#slotBytes[slot]!;
    const at = this.#sendSlotOffset(slot) + used;
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
    const pieceBytesMax = this.#layout.pieceBytesMax;
    const count = pieceCount(frame.length, pieceBytesMax);
    if (!p.credit.admits(count) || !this.#slotsFree(count)) {
      this.#stats.sendsRefused++;
      return false;
    }
    // Later small frames go into a new datagram, behind the pieces (a peer's frames stay in order).
    p.openSlot = -1;
    const dv = this.#dv;
    for (let i = 0; i < count; i++) {
      const slot = this.#takeSlot(p);
      assert(slot >= 0, "the send slots counted free are free");
      const h = this.#queueData(p, slot);
      const piece = pieceOf(frame, i, pieceBytesMax);
      const last = i === count - 1;
      dv.setUint16(h + pieceIndexOffset, i, true);
      dv.setUint16(h + pieceCountOffset, count, true);
      dv.setUint32(h + pieceFrameBytesOffset, frame.length, true);
      this.#bytes.set(piece, h + headerBytes + fragmentHeaderBytes);
      this.#slotBytes[slot] = headerBytes + fragmentHeaderBytes + piece.length;
      // The frame is counted (frames and bytes sent) with its last piece.
      this.#slotFrames[slot] = last ? 1 : 0;
      this.#slotPayloadBytes[slot] = last ? frame.length : 0;
      this.#slotFlags[slot] = flagFragment | (last && p.credit.credits() === 0 ? flagCreditRequest : 0);
    }
    this.#stats.framesFragmentedSent++;
    return true;
  }

  /** Starts a data datagram to `p`; -1 when out of credit or send slots. */
  #openDatagram(p: Peer): number {
    if (!p.credit.admits(1)) return -1;
    const slot = this.#takeSlot(p);
    if (slot < 0) return -1;
    this.#queueData(p, slot);
    // Using the last credit: ask for an ack with it rather than waiting to starve.
    this.#slotFlags[slot] = p.credit.credits() === 0 ? flagCreditRequest : 0;
    p.openSlot = slot;
    return slot;
  }

  /** Queues `slot` as `p`'s next data datagram, numbered with one credit; returns its header offset. */
  #queueData(p: Peer, slot: number): number {
    assert(this.#pendingCount < this.#layout.sendSlots, "no more datagrams queued than there are send slots");
    this.#pending[this.#pendingCount++] = slot;
    p.queued++;
    const h = this.#sendSlotOffset(slot);
    this.#dv.setUint32(h + seqEndOffset, p.credit.take(), true);
    return h;
  }

  /** Whether `count` send slots are free, reaping send completions if needed. */
  #slotsFree(count: number): boolean {
    if (this.#freeTop < count) this.#reapSends();
    return this.#freeTop >= count;
  }

  /** A free send slot addressed to `p` (the caller queues it); -1 if none is free. */
  #takeSlot(p: Peer): number {
    if (!this.#slotsFree(1)) return -1;
    const slot = this.#free[--this.#freeTop]!;
    const wr = this.#layout.sendWrOff + slot * ibvSendWr.size;
    const w32 = this.#w32;
    w32[(wr + ibvSendWr.wr_ud_ah) >>> 2] = p.ahLo;
    w32[((wr + ibvSendWr.wr_ud_ah) >>> 2) + 1] = p.ahHi;
    w32[(wr + ibvSendWr.wr_ud_remote_qpn) >>> 2] = p.qpn;
    w32[(wr + ibvSendWr.wr_ud_remote_qkey) >>> 2] = p.qkey;
    const h = this.#sendSlotOffset(slot);
    const dv = this.#dv;
    dv.setUint16(h + magicOffset, datagramMagic, true);
    dv.setUint8(h + versionOffset, datagramVersion);
    dv.setUint8(h + fromOffset, this.self);
    dv.setUint8(h + toOffset, p.id);
    this.#slotPeer[slot] = p.id;
    this.#slotFrames[slot] = 0;
    this.#slotBytes[slot] = headerBytes;
    this.#slotPayloadBytes[slot] = 0;
    return slot;
  }

  /** Puts a slot back on the free stack (its send completed, or it was never posted). */
  #releaseSlot(slot: number): void {
    assert(slot >= 0 && slot < this.#layout.sendSlots, "a send slot index is in range");
    assert(this.#freeTop < this.#layout.sendSlots, "a slot is released at most once per use");
    this.#free[this.#freeTop++] = slot;
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
    let nowMs = -1;
    for (let id = 0; id <= nodeIdMax; id++) {
      const p = this.#peers[id];
      if (p === undefined || p.queued > 0) continue;
      let flags = 0;
      // Starved until the credits the refused send needed are back (a large frame needs all its
      // pieces' worth at once, so "some credit" is not enough).
      if (p.credit.starved) {
        if (nowMs < 0) nowMs = performance.now();
        if (p.credit.creditRequestDue(nowMs, this.#settings.creditProbeMs)) flags = flagControl | flagCreditRequest;
      }
      if (flags === 0 && p.acks.due()) flags = flagControl;
      if (flags === 0) continue;
      const slot = this.#takeSlot(p);
      if (slot < 0) break; // every slot is in flight: the next call tries again
      assert(count < list.length, "the control list has room for one datagram per peer");
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
    const sendSgeOff = this.#layout.sendSgeOff;
    let nowMs = -1;
    for (let i = 0; i < n; i++) {
      const slot = list[i]!;
      const p = this.#peers[this.#slotPeer[slot]!];
      assert(p !== undefined, "no datagram stays queued for a forgotten peer (#forget drops them)");
      const h = this.#sendSlotOffset(slot);
      const flags = this.#slotFlags[slot]!;
      const frames = this.#slotFrames[slot]!;
      if ((flags & flagControl) !== 0) {
        // No data datagram of this peer is queued (queueControl skips those), so nextSeq is the
        // end of what was posted: the receiver may count everything before it as done.
        dv.setUint32(h + seqEndOffset, p.credit.nextSeq, true);
        s.controlSent++;
      } else {
        s.framesSent += frames;
        s.bytesSent += this.#slotPayloadBytes[slot]!;
      }
      if ((flags & flagCreditRequest) !== 0) {
        if (nowMs < 0) nowMs = performance.now();
        p.credit.creditRequested(nowMs);
      }
      dv.setUint8(h + flagsOffset, flags);
      dv.setUint16(h + frameCountOffset, frames, true);
      dv.setUint32(h + ackOffset, p.acks.pay(), true);
      const wr = this.#layout.sendWrOff + slot * ibvSendWr.size;
      this.#w32[(sendSgeOff + slot * ibvSge.size + ibvSge.length) >>> 2] = this.#slotBytes[slot]!;
      store64(this.#w32, wr + ibvSendWr.next, i + 1 < n ? this.#sendWrAddress(list[i + 1]!) : 0);
    }
    s.datagramsSent += n;
    this.#postedCount += n;
    this.#qp.postSend(this.#sendWrAddress(list[0]!) as Pointer);
  }

  /** Takes send completions: their slots become free; retired address handles are destroyed. */
  #reapSends(): void {
    const w32 = this.#w32;
    const wcSendOff = this.#layout.wcSendOff;
    let recover = false;
    for (;;) {
      const n = this.#sendCq.poll(completionsPerPollMax, (this.#workBase + wcSendOff) as Pointer);
      for (let i = 0; i < n; i++) {
        const wc = wcSendOff + i * ibvWc.size;
        const status = w32[(wc + ibvWc.status) >>> 2]!;
        if (status !== ibv.WC_SUCCESS) {
          this.#stats.sendErrors++;
          if (status !== ibv.WC_WR_FLUSH_ERR) recover = true;
        }
        // wr_id is the slot index we wrote; anything else means a corrupted completion.
        this.#releaseSlot(w32[(wc + ibvWc.wr_id) >>> 2]!);
      }
      this.#completedCount += n;
      if (n < completionsPerPollMax) break;
    }
    assert(this.#completedCount <= this.#postedCount, "no more send completions than sends posted");
    // A UD send error leaves the send queue in the SQE state; RTS resumes it.
    if (recover) {
      try {
        this.#qp.modify({ state: ibv.QPS_RTS });
      } catch {
        // Still in error: later sends complete with errors and are counted; nothing else to do.
      }
    }
    while (this.#retired.length > 0 && this.#retired[0]!.postedBefore <= this.#completedCount)
      this.#retired.shift()!.ah.close();
  }

  poll(handler: FrameHandler): number {
    if (this.#closed) return 0;
    const wcRecvOff = this.#layout.wcRecvOff;
    let delivered = 0;
    let budget = this.#layout.recvSlots;
    try {
      // Completions whenReadable() already took from the CQ come first: they arrived first.
      if (this.#stashCount > 0) {
        const n = this.#stashCount;
        this.#stashCount = 0;
        budget -= n;
        delivered += this.#receive(this.#layout.wcStashOff, n, handler);
      }
      while (budget > 0) {
        const n = this.#recvCq.poll(Math.min(completionsPerPollMax, budget), (this.#workBase + wcRecvOff) as Pointer);
        budget -= n;
        delivered += this.#receive(wcRecvOff, n, handler);
        if (n < completionsPerPollMax) break;
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
    const layout = this.#layout;
    let delivered = 0;
    for (let i = 0; i < n; i++) {
      const wc = wcOff + i * ibvWc.size;
      const slot = w32[(wc + ibvWc.wr_id) >>> 2]!;
      assert(slot < layout.recvSlots, "a receive completion's wr_id is one of our receive slots");
      // Chain the buffer for re-posting first, whatever happens to its content.
      if (this.#repostFirst < 0) this.#repostFirst = slot;
      else this.#linkRecv(this.#repostLast, slot);
      this.#repostLast = slot;
      if (w32[(wc + ibvWc.status) >>> 2] !== ibv.WC_SUCCESS) {
        this.#stats.recvErrors++;
        continue;
      }
      this.#stats.datagramsReceived++;
      const base = layout.recvOff + slot * layout.recvSlotBytes;
      const length = w32[(wc + ibvWc.byte_len) >>> 2]! - grhBytes;
      const p = this.#acceptDatagram(wc, base, length);
      if (p !== null) delivered += this.#deliverFrames(p, base + grhBytes, length, handler);
    }
    return delivered;
  }

  /**
   * Checks the header and the sender of the datagram in the receive slot at `base` (`length`
   * bytes after the GRH) and takes its ack and credit request. Returns the sender when the
   * datagram carries frames, null when it was dropped (and counted) or only carried control.
   */
  #acceptDatagram(wc: number, base: number, length: number): Peer | null {
    const dv = this.#dv;
    const s = this.#stats;
    const h = base + grhBytes;
    if (
      length < headerBytes ||
      dv.getUint16(h + magicOffset, true) !== datagramMagic ||
      dv.getUint8(h + versionOffset) !== datagramVersion ||
      dv.getUint8(h + toOffset) !== this.self
    ) {
      s.malformedDrops++;
      s.framesDropped++;
      return null;
    }
    const from = dv.getUint8(h + fromOffset);
    const p = from <= nodeIdMax ? this.#peers[from] : undefined;
    const w32 = this.#w32;
    if (
      p === undefined ||
      p.qpn !== w32[(wc + ibvWc.src_qp) >>> 2] ||
      ((w32[(wc + ibvWc.wc_flags) >>> 2]! & ibv.WC_GRH) !== 0 && !this.#sourceIs(p, base))
    ) {
      s.unknownSenderDrops++;
      s.framesDropped += dv.getUint16(h + frameCountOffset, true);
      return null;
    }
    // The buffer is re-posted by the end of this poll: count it as processed (the newest wins).
    p.acks.received(dv.getUint32(h + seqEndOffset, true));
    p.credit.acknowledge(dv.getUint32(h + ackOffset, true));
    const flags = dv.getUint8(h + flagsOffset);
    if ((flags & flagCreditRequest) !== 0) p.acks.requested();
    return (flags & flagControl) !== 0 ? null : p;
  }

  /** Hands out the frames of `p`'s data datagram (header at `h`, `length` bytes); returns how many. */
  #deliverFrames(p: Peer, h: number, length: number, handler: FrameHandler): number {
    const dv = this.#dv;
    const s = this.#stats;
    if ((dv.getUint8(h + flagsOffset) & flagFragment) !== 0) return this.#receivePiece(p, h, length, handler);
    const frames = dv.getUint16(h + frameCountOffset, true);
    if (this.#dropRule !== null && this.#dropRule(p.id, this.self)) {
      s.framesDropped += frames;
      return 0;
    }
    let delivered = 0;
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
      handler(p.id, this.#bytes.subarray(off, off + len));
      off += len;
    }
    return delivered;
  }

  /**
   * One piece of a fragmented frame from `p`; hands the frame out when the piece completes it and
   * returns 1, else 0. A piece the drop rule drops is lost like a piece the network lost.
   */
  #receivePiece(p: Peer, h: number, length: number, handler: FrameHandler): number {
    const dv = this.#dv;
    const frame = p.reassembly.accept(
      dv.getUint32(h + seqEndOffset, true),
      dv.getUint16(h + pieceIndexOffset, true),
      dv.getUint16(h + pieceCountOffset, true),
      dv.getUint32(h + pieceFrameBytesOffset, true),
      this.#bytes.subarray(h + headerBytes + fragmentHeaderBytes, h + length),
      this.#dropRule !== null && this.#dropRule(p.id, this.self),
    );
    if (frame === null) return 0;
    this.#stats.framesReceived++;
    this.#stats.bytesReceived += frame.length;
    handler(p.id, frame);
    return 1;
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
    const t = setTimeout(this.#checkReadable, this.#settings.readableCheckMs);
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
    if (this.#stashCount === 0) {
      this.#stashCount = this.#recvCq.poll(
        completionsPerPollMax,
        (this.#workBase + this.#layout.wcStashOff) as Pointer,
      );
    }
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
    for (const p of this.#peers) if (p !== undefined && p.credit.starved) starved++;
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
