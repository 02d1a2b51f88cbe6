// The UDP transport: one Bun.udpSocket per endpoint, one datagram per frame.
//
// Sender identity: a datagram carries nothing but the frame; its sender is the peer whose
// connect()ed address equals the datagram's source address. Unknown sources are dropped and counted.
// This needs IP literals in addresses and a socket bound to the published host (not 0.0.0.0 on a
// multi-homed machine), so that the source address the kernel picks is the published one.
//
// Coalescing: send() copies the frame into a pre-allocated send slab; flush() pushes everything
// queued, for every peer, in ONE sendMany (sendmmsg) call.
//
// Flow control: a per-peer, per-flush budget of `windowFrames` frames. send() refuses a peer's
// frame once that many are queued and not yet taken by the kernel; flush() gives the budget back as
// the kernel accepts them. The receiver returns no credits: this only bounds the burst one flush puts
// into a receiver's socket buffer (windowFrames * frameBytesMax per sender, sized to fit the enlarged
// receive buffer). Overflow beyond that is loss, and Hermes already retransmits INVs and replays, so a
// credit channel would add a round trip to every window for nothing the protocol needs.
//
// Receive buffer: Bun cannot size it, and the default 208 KiB drops most bursts
// (notes/bun-toolchain.md §7). We find the socket's fd with getsockname() over FFI and set
// SO_RCVBUFFORCE (works as root), falling back to SO_RCVBUF (capped by net.core.rmem_max). The size
// granted is `rcvbufBytes` and in stats(); failures are logged once per process.

import { isIP } from "node:net";
import type { udp } from "bun";
import { assert } from "../base/assert.ts";
import type { NodeId } from "../base/ids.ts";
import { findBoundSocketFds, setSocketBufferBytes, SOCK_DGRAM } from "../../ffi/socket.ts";
import type { FrameHandler, Transport } from "./transport.ts";
import type { DropRule, DropRuleTarget } from "./drop-rule.ts";
import { RecvQueue } from "./recv-queue.ts";
import { assertNodeId, formatHostPort, parseHostPort } from "./net-address.ts";
import {
  assertSendable,
  commodityLimits,
  warnOnce,
  zeroStats,
  type CommodityOptions,
  type CommodityStats,
} from "./commodity.ts";

/** Largest UDP payload over IPv4. Frames above the path MTU are fragmented by IP: keep them small off loopback. */
export const udpFrameBytesLimit = 65507;
export const udpRcvbufBytesDefault = 32 << 20;
export const udpSndbufBytesDefault = 4 << 20;
export const udpSendQueueFramesMaxDefault = 4096;
export const udpSendQueueBytesDefault = 4 << 20;

export interface UdpOptions extends CommodityOptions {
  /** Frames queued by send() and not yet taken by the kernel, all peers together. */
  sendQueueFramesMax?: number;
  /** Bytes of the send slab holding those frames. */
  sendQueueBytes?: number;
  /** Socket buffer sizes to ask the kernel for. */
  rcvbufBytes?: number;
  sndbufBytes?: number;
}

export interface UdpStats extends CommodityStats {
  /** Receive/send buffer sizes the kernel granted (0: could not be set, the OS default applies). */
  rcvbufBytes: number;
  sndbufBytes: number;
  /** Datagrams whose source address is no connect()ed peer (also in framesDropped). */
  unknownSourceDrops: number;
  /** Datagrams larger than frameBytesMax or truncated by the kernel (also in framesDropped). */
  oversizeDrops: number;
  /** Errors the socket reported (e.g. ICMP port unreachable after sending to a closed port). */
  socketErrors: number;
}

interface UdpPeer {
  readonly id: NodeId;
  readonly host: string;
  readonly port: number;
  /** Frames in the send queue for this peer: the per-flush budget used so far. */
  queued: number;
}

type Sock = udp.Socket<"buffer">;

export class UdpTransport implements Transport, DropRuleTarget {
  readonly kind = "udp" as const;
  readonly address: string;
  readonly frameBytesMax: number;
  readonly self: NodeId;
  readonly windowFrames: number;
  readonly rcvbufBytes: number;
  readonly sndbufBytes: number;

  readonly #sock: Sock;
  readonly #peers: (UdpPeer | undefined)[] = [];
  /** Source port -> bit mask of the peers at that port (ids fit 32 bits: nodeIdMax = 31). */
  readonly #byPort = new Map<number, number>();
  readonly #recv: RecvQueue<null>;
  readonly #stats = zeroStats();
  #unknownSourceDrops = 0;
  #oversizeDrops = 0;
  #socketErrors = 0;
  #dropRule: DropRule | null = null;
  #closed = false;

  // The send queue: frames in arrival order, bytes bump-allocated in one slab that is reset when
  // the queue empties (every flush the kernel takes whole).
  readonly #sendSlab: Uint8Array;
  readonly #qPeer: Int32Array;
  readonly #qOff: Int32Array;
  readonly #qLen: Int32Array;
  #qCount = 0;
  #sendTop = 0;
  /** sendMany's argument list (view, port, host triples), reused across flushes. */
  readonly #args: (Uint8Array | number | string)[] = [];

  #pollHandler: FrameHandler | null = null;
  #pollDelivered = 0;

  /** Bind a UDP endpoint on `opts.host:opts.port`. */
  static async open(opts: UdpOptions): Promise<UdpTransport> {
    if (isIP(opts.host) === 0) throw new RangeError(`udp: host "${opts.host}" must be an IP literal`);
    const box: { t: UdpTransport | null } = { t: null };
    const sock = await Bun.udpSocket({
      hostname: opts.host,
      port: opts.port,
      socket: {
        data: (_s, buf, port, address, flags) => box.t?.onDatagram(buf, port, address, flags.truncated),
        drain: () => box.t?.onDrain(),
        error: () => box.t?.onSocketError(),
      },
    });
    try {
      box.t = new UdpTransport(opts, sock);
    } catch (e) {
      sock.close();
      throw e;
    }
    return box.t;
  }

  private constructor(opts: UdpOptions, sock: Sock) {
    const limits = commodityLimits(opts, udpFrameBytesLimit);
    this.self = opts.self;
    this.frameBytesMax = opts.frameBytesMax;
    this.windowFrames = limits.windowFrames;
    this.#recv = new RecvQueue<null>(limits.recvQueueFramesMax, limits.recvQueueBytes);
    const sendFrames = opts.sendQueueFramesMax ?? udpSendQueueFramesMaxDefault;
    const sendBytes = Math.max(opts.sendQueueBytes ?? udpSendQueueBytesDefault, 2 * opts.frameBytesMax);
    if (!(Number.isInteger(sendFrames) && sendFrames >= limits.windowFrames)) {
      throw new RangeError(`udp: sendQueueFramesMax ${sendFrames} must be >= windowFrames ${limits.windowFrames}`);
    }
    this.#sendSlab = new Uint8Array(sendBytes);
    this.#qPeer = new Int32Array(sendFrames);
    this.#qOff = new Int32Array(sendFrames);
    this.#qLen = new Int32Array(sendFrames);
    this.#sock = sock;
    this.address = formatHostPort(opts.host, sock.port);
    const granted = enlargeBuffers(
      sock.port,
      opts.host,
      opts.rcvbufBytes ?? udpRcvbufBytesDefault,
      opts.sndbufBytes ?? udpSndbufBytesDefault,
    );
    this.rcvbufBytes = granted.rcvbufBytes;
    this.sndbufBytes = granted.sndbufBytes;
  }

  setDropRule(rule: DropRule | null): void {
    this.#dropRule = rule;
  }

  connect(peer: NodeId, address: string): void {
    assertNodeId(peer, "udp connect");
    if (peer === this.self) throw new RangeError(`udp connect: peer ${peer} is this endpoint`);
    if (this.#closed) return;
    const { host, port } = parseHostPort(address);
    if (isIP(host) === 0) throw new RangeError(`udp connect: "${address}" needs an IP literal to match sources`);
    const old = this.#peers[peer];
    if (old !== undefined && old.host === host && old.port === port) return;
    if (old !== undefined) this.#forgetPeer(old);
    this.#peers[peer] = { id: peer, host, port, queued: 0 };
    this.#byPort.set(port, (this.#byPort.get(port) ?? 0) | (1 << peer));
  }

  disconnect(peer: NodeId): void {
    assertNodeId(peer, "udp disconnect");
    const p = this.#peers[peer];
    if (p !== undefined) this.#forgetPeer(p);
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
    if (
      p.queued >= this.windowFrames ||
      this.#qCount === this.#qPeer.length ||
      this.#sendTop + len > this.#sendSlab.length
    ) {
      s.sendsRefused++;
      return false;
    }
    const i = this.#qCount;
    this.#sendSlab.set(frame, this.#sendTop);
    this.#qPeer[i] = peer;
    this.#qOff[i] = this.#sendTop;
    this.#qLen[i] = len;
    this.#sendTop += len;
    this.#qCount = i + 1;
    p.queued++;
    assert(p.queued <= this.windowFrames, "a peer never has more than its window queued");
    return true;
  }

  flush(): void {
    const n = this.#qCount;
    if (this.#closed || n === 0) return;
    const args = this.#args;
    args.length = 3 * n;
    for (let i = 0; i < n; i++) {
      const p = this.#peers[this.#qPeer[i]!];
      assert(p !== undefined, "no frame stays queued for a forgotten peer (#forgetPeer purges them)");
      const off = this.#qOff[i]!;
      args[3 * i] = this.#sendSlab.subarray(off, off + this.#qLen[i]!);
      args[3 * i + 1] = p.port;
      args[3 * i + 2] = p.host;
    }
    let sent: number;
    try {
      sent = this.#sock.sendMany(args);
    } catch (e) {
      // The kernel refused the batch outright (e.g. no route): lossy medium, drop and count.
      warnOnce("udp-sendmany", `udp: sendMany failed, dropping the batch: ${(e as Error).message}`);
      sent = -1;
    }
    args.length = 0; // release the views
    if (sent < 0) {
      this.#stats.sendDrops += n;
      this.#dequeue(n, false);
      return;
    }
    assert(Number.isInteger(sent) && sent <= n, "sendMany reports at most the datagrams it was given");
    // A short count is kernel backpressure: the rest stays queued (and keeps its budget) until
    // the drain callback or the next flush.
    this.#dequeue(sent, true);
  }

  poll(handler: FrameHandler): number {
    if (this.#closed || this.#recv.count === 0) return 0;
    this.#pollHandler = handler;
    this.#pollDelivered = 0;
    try {
      this.#recv.drain(this.#visit);
    } finally {
      this.#pollHandler = null;
    }
    return this.#pollDelivered;
  }

  stats(): UdpStats {
    return {
      ...this.#stats,
      rcvbufBytes: this.rcvbufBytes,
      sndbufBytes: this.sndbufBytes,
      unknownSourceDrops: this.#unknownSourceDrops,
      oversizeDrops: this.#oversizeDrops,
      socketErrors: this.#socketErrors,
    };
  }

  /**
   * Resolves when poll() has something to hand out. Not part of Transport: a worker with nothing
   * to do can await this (raced with its next timer) instead of spinning, which on a machine with
   * few cores leaves the CPU to the peers it is waiting for. close() resolves it too.
   */
  whenReadable(): Promise<void> {
    return this.#closed ? Promise.resolve() : this.#recv.whenNonEmpty();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.close();
    this.#recv.clear();
    this.#qCount = 0;
    this.#sendTop = 0;
    this.#peers.length = 0;
    this.#byPort.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Bun's data callback. */
  onDatagram(buf: Buffer, port: number, address: string, truncated: boolean): void {
    if (this.#closed) return;
    const s = this.#stats;
    const len = buf.length;
    if (truncated || len > this.frameBytesMax || len === 0) {
      s.framesDropped++;
      this.#oversizeDrops++;
      return;
    }
    const from = this.#sourcePeer(port, address);
    if (from < 0) {
      s.framesDropped++;
      this.#unknownSourceDrops++;
      return;
    }
    if (this.#dropRule !== null && this.#dropRule(from, this.self)) {
      s.framesDropped++;
      return;
    }
    if (!this.#recv.push(from, null, buf, 0, len)) {
      s.framesDropped++;
      s.recvQueueDrops++;
    }
  }

  /** @internal The kernel has room again after a short sendMany. */
  onDrain(): void {
    if (this.#qCount > 0) this.flush();
  }

  /** @internal Unconnected UDP sockets report ICMP errors (e.g. a peer that went away); loss is allowed. */
  onSocketError(): void {
    this.#socketErrors++;
  }

  readonly #visit = (from: NodeId, frame: Uint8Array): void => {
    // A peer forgotten after its frames were queued: disconnect() stops delivery at once.
    if (this.#peers[from] === undefined) {
      this.#stats.framesDropped++;
      return;
    }
    this.#stats.framesReceived++;
    this.#stats.bytesReceived += frame.length;
    this.#pollDelivered++;
    this.#pollHandler!(from, frame);
  };

  #sourcePeer(port: number, host: string): NodeId {
    let mask = this.#byPort.get(port);
    if (mask === undefined) return -1;
    while (mask !== 0) {
      const id = 31 - Math.clz32(mask);
      mask &= ~(1 << id);
      const p = this.#peers[id];
      assert(p !== undefined, "the port map names only connected peers");
      if (p.host === host) return id;
    }
    return -1;
  }

  /** Remove the first `k` queued frames (sent or dropped) and close the gap. */
  #dequeue(k: number, sent: boolean): void {
    assert(k >= 0 && k <= this.#qCount, "only queued frames are dequeued");
    const s = this.#stats;
    for (let i = 0; i < k; i++) {
      const p = this.#peers[this.#qPeer[i]!]!;
      p.queued--;
      assert(p.queued >= 0, "a peer's queued count never goes negative");
      if (sent) {
        s.framesSent++;
        s.bytesSent += this.#qLen[i]!;
      }
    }
    const rest = this.#qCount - k;
    if (rest > 0 && k > 0) {
      this.#qPeer.copyWithin(0, k, k + rest);
      this.#qOff.copyWithin(0, k, k + rest);
      this.#qLen.copyWithin(0, k, k + rest);
    }
    this.#qCount = rest;
    if (rest === 0) this.#sendTop = 0; // leftovers keep their bytes where they are until sent
  }

  #forgetPeer(p: UdpPeer): void {
    // Purge its queued frames so that flush never sees a forgotten peer.
    let w = 0;
    let purged = 0;
    for (let i = 0; i < this.#qCount; i++) {
      if (this.#qPeer[i] === p.id) {
        this.#stats.sendDrops++;
        purged++;
        continue;
      }
      this.#qPeer[w] = this.#qPeer[i]!;
      this.#qOff[w] = this.#qOff[i]!;
      this.#qLen[w] = this.#qLen[i]!;
      w++;
    }
    assert(purged === p.queued, "a peer's queued count equals its frames in the send queue");
    this.#qCount = w;
    if (w === 0) this.#sendTop = 0;
    const mask = (this.#byPort.get(p.port) ?? 0) & ~(1 << p.id);
    if (mask === 0) this.#byPort.delete(p.port);
    else this.#byPort.set(p.port, mask);
    this.#peers[p.id] = undefined;
  }
}

/** Set the socket buffers through FFI; returns what the kernel granted (0 = could not be set). */
function enlargeBuffers(port: number, host: string, rcvBytes: number, sndBytes: number) {
  const result = { rcvbufBytes: 0, sndbufBytes: 0 };
  // getsockname reports IPv6 uncompressed, so match IPv6 sockets on port and type only.
  const fds = findBoundSocketFds(SOCK_DGRAM, port, isIP(host) === 4 ? host : undefined);
  if (fds.length !== 1) {
    warnOnce(
      "udp-rcvbuf-fd",
      `udp: cannot size socket buffers: found ${fds.length} UDP fds bound to port ${port}` +
        " (need exactly one); the OS default receive buffer drops bursts",
    );
    return result;
  }
  const fd = fds[0]!;
  try {
    const r = setSocketBufferBytes(fd, "receive", rcvBytes);
    result.rcvbufBytes = r.bytes;
    if (!r.forced) {
      warnOnce(
        "udp-rcvbuf-cap",
        `udp: SO_RCVBUFFORCE refused (not root?); receive buffer is ${r.bytes} bytes, ` +
          `capped by net.core.rmem_max (asked ${rcvBytes})`,
      );
    }
    result.sndbufBytes = setSocketBufferBytes(fd, "send", sndBytes).bytes;
  } catch (e) {
    warnOnce("udp-rcvbuf", `udp: cannot size socket buffers: ${(e as Error).message}`);
  }
  return result;
}
