// The TCP transport: Bun.listen for inbound links, Bun.connect for outbound ones.
//
// Connections: one per ordered pair. Endpoint A dials B and writes its frames to B on that
// connection; B dials A for its own frames. The extra connection per pair buys simplicity where it
// matters: no tie-break for simultaneous opens, each side owns exactly the connection it writes data on
// (so only the dialer reconnects, with its own backoff), and the reverse byte stream of each
// connection is free for the receiver's credit returns.
//
// Wire format (little-endian), dialer -> acceptor: a 12-byte hello
//   u32 magic "HKVT" | u16 version | u16 from | u16 to | u16 reserved
// then frames as u32 length | bytes. Acceptor -> dialer: credit records, u32 count each.
// The hello names the sender of every frame on the connection; a hello with a bad magic or version,
// or addressed to another node, closes the connection. Frames from a sender this endpoint has not
// connect()ed (or has disconnect()ed) are dropped and counted, like unknown UDP sources.
//
// Coalescing: send() appends length-prefixed frames to the peer's pre-allocated send buffer
// (sendBufferBytes, a named limit); flush() hands the whole buffer to the socket in ONE write. A
// partial write keeps the rest, which is written from the drain callback together with anything sent
// meanwhile.
//
// Credits: each outbound connection starts with `windowFrames` credits; every frame queued costs
// one, and send() refuses (returns false) at zero. The receiver returns a frame's credit when poll()
// hands it out (or when it drops it), in batches of windowFrames/4 written from poll(). So a sender
// has at most windowFrames frames queued, in flight or waiting in the receiver's queue: with the
// receive queue sized for (peers * windowFrames) frames it never overflows. Batching cannot stall:
// credits held back are fewer than a batch, so the sender always has some left, its frames arrive,
// and the batch fills. Credits restart at windowFrames on every new connection.
//
// Failures: when an outbound connection breaks, frames still queued for it are dropped and counted,
// and it is redialled after a backoff that doubles from tcpReconnectDelayMsMin to
// tcpReconnectDelayMsMax (reset once the new connection returns its first credit, i.e. the peer
// accepted the hello). While it is down, send() drops and counts (the protocol tolerates loss);
// while it is being (re)dialled, frames are queued as usual and go out when it opens.

import type { Socket, TCPSocketListener } from "bun";
import { assert } from "../base/assert.ts";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { FrameHandler, Transport } from "./transport.ts";
import type { DropRule, DropRuleTarget } from "./drop-rule.ts";
import { RecvQueue } from "./recv-queue.ts";
import { assertNodeId, formatHostPort, parseHostPort } from "./net-address.ts";
import { assertSendable, commodityLimits, zeroStats, type CommodityOptions, type CommodityStats } from "./commodity.ts";

export const tcpFrameBytesLimit = 16 << 20;
export const tcpHelloMagic = 0x54564b48; // "HKVT" read as a little-endian u32
export const tcpHelloVersion = 1;
export const tcpHelloBytes = 12;
const frameHeaderBytes = 4;
const creditRecordBytes = 4;
export const tcpReconnectDelayMsMin = 10;
export const tcpReconnectDelayMsMax = 1000;
/** Accepted connections at once: two per possible peer leaves room for a peer's reconnect overlap. */
export const tcpInboundConnectionsMax = 2 * (nodeIdMax + 1);
/** Default cap on a peer's send buffer; the buffer is windowFrames maximal frames when that is smaller. */
export const tcpSendBufferBytesMaxDefault = 4 << 20;
/** An inbound connection must complete its 12-byte hello within this time. */
export const tcpHelloDeadlineMs = 1000;

/** Pending credit records per inbound connection (the reverse stream carries nothing else). */
const creditOutBytes = 64;
const keepAliveDelayMs = 10_000;

export interface TcpOptions extends CommodityOptions {
  /** Per-peer send buffer (length prefixes included); default min(window maximal frames, 4 MiB). */
  sendBufferBytes?: number;
}

export interface TcpStats extends CommodityStats {
  /** Outbound connections currently open. */
  connectionsUp: number;
  /** Outbound dials made after a failure or a broken connection. */
  reconnects: number;
  /** Writes the kernel took only partly (finished from the drain callback). */
  partialWrites: number;
  /** Connections closed for a bad hello, a bad length or bogus credits. */
  protocolErrors: number;
  /** Frames from a sender that is not connect()ed (also in framesDropped). */
  unknownSenderDrops: number;
  /** Frames longer than frameBytesMax (also in framesDropped). */
  oversizeDrops: number;
}

/** A byte buffer written to a socket from `start`; appended at `end`; compacted when it needs room. */
class ByteQueue {
  readonly buf: Uint8Array;
  start = 0;
  end = 0;
  constructor(bytes: number) {
    this.buf = new Uint8Array(bytes);
  }
  get size(): number {
    return this.end - this.start;
  }
  /** True when `n` more bytes fit (compacting first if that makes them fit). */
  room(n: number): boolean {
    assert(n >= 0, "room is asked for a byte count");
    if (this.end + n <= this.buf.length) return true;
    if (this.start > 0) {
      // Safe even mid partial-write: Bun keeps no reference to bytes it did not take.
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    return this.end + n <= this.buf.length;
  }
  putU32(v: number): void {
    const b = this.buf;
    const e = this.end;
    assert(e + 4 <= b.length, "bytes are only put after room() said they fit");
    b[e] = v & 0xff;
    b[e + 1] = (v >>> 8) & 0xff;
    b[e + 2] = (v >>> 16) & 0xff;
    b[e + 3] = (v >>> 24) & 0xff;
    this.end = e + 4;
  }
  putU16(v: number): void {
    assert(this.end + 2 <= this.buf.length, "bytes are only put after room() said they fit");
    this.buf[this.end] = v & 0xff;
    this.buf[this.end + 1] = (v >>> 8) & 0xff;
    this.end += 2;
  }
  put(bytes: Uint8Array): void {
    assert(this.end + bytes.length <= this.buf.length, "bytes are only put after room() said they fit");
    this.buf.set(bytes, this.end);
    this.end += bytes.length;
  }
  /** Write what is queued; true when all of it went. */
  writeTo(sock: Socket<unknown>): boolean {
    const n = sock.write(this.buf, this.start, this.end - this.start);
    if (n > 0) this.start += n;
    assert(this.start <= this.end, "a socket takes at most the bytes it is given");
    if (this.start < this.end) return false;
    this.start = 0;
    this.end = 0;
    return true;
  }
  reset(): void {
    this.start = 0;
    this.end = 0;
  }
}

const enum LinkState {
  Connecting = 1,
  Up = 2,
  Backoff = 3,
}

/** socket.data of an outbound socket: which link it serves, null once abandoned. */
interface Dial {
  link: OutLink | null;
}

/** This endpoint's connection to one peer, for its own frames. */
class OutLink {
  state: LinkState = LinkState.Connecting;
  sock: Socket<Dial> | null = null;
  dial: Dial | null = null;
  credits = 0;
  /** Frames (and their payload bytes) queued since the last write that included them. */
  framesPending = 0;
  bytesPending = 0;
  waitingDrain = false;
  backoffMs = tcpReconnectDelayMsMin;
  timer: ReturnType<typeof setTimeout> | null = null;
  /** Credit record bytes split across chunks. */
  readonly creditAcc = new Uint8Array(creditRecordBytes);
  creditAccLen = 0;
  constructor(
    readonly id: NodeId,
    readonly host: string,
    readonly port: number,
    readonly out: ByteQueue,
  ) {}
}

/** A peer's connection to this endpoint, carrying its frames. */
class InLink {
  /** The sender named by the hello; -1 until it is read. */
  from = -1;
  readonly hello = Buffer.alloc(tcpHelloBytes);
  helloLen = 0;
  readonly hdr = Buffer.alloc(frameHeaderBytes);
  hdrLen = 0;
  /** Length of the frame being read; -1 while reading its length prefix. */
  frameLen = -1;
  filled = 0;
  /** The frame being read is dropped (oversized, unknown sender, drop rule): skip its bytes. */
  skipping = false;
  /** Reassembly of frames split across chunks; allocated on the first one. */
  reasm: Buffer | null = null;
  /** Credits to return: frames handed out by poll or dropped. */
  owed = 0;
  readonly creditOut = new ByteQueue(creditOutBytes);
  waitingDrain = false;
  closed = false;
  constructor(readonly sock: Socket<InLink | null>) {}
}

export class TcpTransport implements Transport, DropRuleTarget {
  readonly kind = "tcp" as const;
  readonly address: string;
  readonly frameBytesMax: number;
  readonly self: NodeId;
  readonly windowFrames: number;
  readonly sendBufferBytes: number;
  /** Credits are returned once this many are owed on a connection. */
  readonly creditBatch: number;

  readonly #listener: TCPSocketListener<InLink | null>;
  readonly #links: (OutLink | undefined)[] = [];
  readonly #inLinks = new Set<InLink>();
  readonly #recv: RecvQueue<InLink>;
  readonly #stats = zeroStats();
  readonly #extra = { reconnects: 0, partialWrites: 0, protocolErrors: 0, unknownSenderDrops: 0, oversizeDrops: 0 };
  /** Sum of InLink.owed, so that poll() skips the credit scan when nothing is owed. */
  #owedTotal = 0;
  #dropRule: DropRule | null = null;
  #closed = false;
  #pollHandler: FrameHandler | null = null;
  #pollDelivered = 0;

  /** Listen on `opts.host:opts.port`. */
  static async open(opts: TcpOptions): Promise<TcpTransport> {
    const box: { t: TcpTransport | null } = { t: null };
    const listener = Bun.listen<InLink | null>({
      hostname: opts.host,
      port: opts.port,
      data: null,
      socket: {
        open: (s) => {
          if (box.t !== null) box.t.onInOpen(s);
          else s.terminate(); // nobody can know our port yet: a stray connection
        },
        data: (s, chunk) => box.t?.onInData(s, chunk),
        drain: (s) => box.t?.onInDrain(s),
        close: (s) => box.t?.onInClose(s),
        error: () => {}, // close follows
      },
    });
    try {
      box.t = new TcpTransport(opts, listener);
    } catch (e) {
      listener.stop(true);
      throw e;
    }
    return box.t;
  }

  private constructor(opts: TcpOptions, listener: TCPSocketListener<InLink | null>) {
    const limits = commodityLimits(opts, tcpFrameBytesLimit);
    this.self = opts.self;
    this.frameBytesMax = opts.frameBytesMax;
    this.windowFrames = limits.windowFrames;
    this.creditBatch = Math.max(1, Math.floor(limits.windowFrames / 4));
    const maximal = frameHeaderBytes + opts.frameBytesMax;
    this.sendBufferBytes = Math.max(
      opts.sendBufferBytes ?? Math.min(limits.windowFrames * maximal, tcpSendBufferBytesMaxDefault),
      tcpHelloBytes + maximal,
    );
    this.#recv = new RecvQueue<InLink>(limits.recvQueueFramesMax, limits.recvQueueBytes);
    this.#listener = listener;
    this.address = formatHostPort(opts.host, listener.port);
  }

  setDropRule(rule: DropRule | null): void {
    this.#dropRule = rule;
  }

  connect(peer: NodeId, address: string): void {
    assertNodeId(peer, "tcp connect");
    if (peer === this.self) throw new RangeError(`tcp connect: peer ${peer} is this endpoint`);
    if (this.#closed) return;
    const { host, port } = parseHostPort(address);
    const old = this.#links[peer];
    if (old !== undefined && old.host === host && old.port === port) return;
    if (old !== undefined) this.#dropLink(old);
    const link = new OutLink(peer, host, port, new ByteQueue(this.sendBufferBytes));
    this.#links[peer] = link;
    this.#dial(link);
  }

  disconnect(peer: NodeId): void {
    assertNodeId(peer, "tcp disconnect");
    const link = this.#links[peer];
    if (link !== undefined) this.#dropLink(link);
  }

  send(peer: NodeId, frame: Uint8Array): boolean {
    assertSendable(frame, this.frameBytesMax);
    const s = this.#stats;
    if (this.#closed) {
      s.sendsRefused++;
      return false;
    }
    const link = this.#links[peer];
    if (link === undefined || link.state === LinkState.Backoff) {
      // Unknown peer, or its connection is down: retrying cannot help now, the protocol resends.
      s.sendDrops++;
      return true;
    }
    if (this.#dropRule !== null && this.#dropRule(this.self, peer)) {
      s.framesDropped++;
      return true;
    }
    const len = frame.length;
    if (link.credits === 0 || !link.out.room(frameHeaderBytes + len)) {
      s.sendsRefused++;
      return false;
    }
    link.out.putU32(len);
    link.out.put(frame);
    // Credits are refused at exactly 0 above: a negative count would never refuse again.
    assert(link.credits > 0, "an outbound link's credits never go negative");
    link.credits--;
    link.framesPending++;
    link.bytesPending += len;
    return true;
  }

  flush(): void {
    if (this.#closed) return;
    const links = this.#links;
    for (let i = 0; i < links.length; i++) {
      const l = links[i];
      if (l !== undefined && l.state === LinkState.Up && !l.waitingDrain && l.out.size > 0) this.#writeLink(l);
    }
  }

  poll(handler: FrameHandler): number {
    if (this.#closed) return 0;
    this.#pollDelivered = 0;
    if (this.#recv.count > 0) {
      this.#pollHandler = handler;
      try {
        this.#recv.drain(this.#visit);
      } finally {
        this.#pollHandler = null;
      }
    }
    if (this.#owedTotal >= this.creditBatch) {
      for (const link of this.#inLinks) if (link.owed >= this.creditBatch) this.#returnCredit(link);
    }
    return this.#pollDelivered;
  }

  stats(): TcpStats {
    let up = 0;
    for (const l of this.#links) if (l !== undefined && l.state === LinkState.Up) up++;
    return { ...this.#stats, ...this.#extra, connectionsUp: up };
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
    for (const l of this.#links) if (l !== undefined) this.#dropLink(l);
    this.#links.length = 0;
    for (const link of this.#inLinks) link.closed = true;
    this.#inLinks.clear();
    this.#owedTotal = 0;
    this.#listener.stop(true);
    this.#recv.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  readonly #visit = (from: NodeId, frame: Uint8Array, link: InLink | null): void => {
    assert(link !== null, "every queued TCP frame is tagged with the connection that owes its credit");
    this.#owe(link, 1);
    // A sender forgotten after its frames were queued: disconnect() stops delivery at once.
    if (this.#links[from] === undefined) {
      this.#stats.framesDropped++;
      this.#extra.unknownSenderDrops++;
      return;
    }
    this.#stats.framesReceived++;
    this.#stats.bytesReceived += frame.length;
    this.#pollDelivered++;
    this.#pollHandler!(from, frame);
  };

  // ---- outbound links ----

  #dial(link: OutLink): void {
    link.timer = null;
    const dial: Dial = { link };
    link.dial = dial;
    link.state = LinkState.Connecting;
    link.sock = null;
    link.waitingDrain = false;
    link.credits = this.windowFrames;
    link.framesPending = 0;
    link.bytesPending = 0;
    link.creditAccLen = 0;
    link.out.reset();
    link.out.putU32(tcpHelloMagic);
    link.out.putU16(tcpHelloVersion);
    link.out.putU16(this.self);
    link.out.putU16(link.id);
    link.out.putU16(0);
    const fail = () => {
      if (dial.link === link) this.#linkDown(link);
    };
    try {
      Bun.connect<Dial>({
        hostname: link.host,
        port: link.port,
        data: dial,
        socket: {
          open: (s) => this.#onOutOpen(s),
          data: (s, chunk) => this.#onOutData(s, chunk),
          drain: (s) => this.#onOutDrain(s),
          close: (s) => {
            if (s.data.link !== null) fail();
          },
          connectError: fail,
          error: () => {}, // close follows
        },
      }).catch(fail); // connectError has normally handled it; fail() is idempotent per dial
    } catch {
      fail();
    }
  }

  #onOutOpen(s: Socket<Dial>): void {
    const link = s.data.link;
    if (link === null || this.#closed) {
      s.terminate();
      return;
    }
    link.sock = s;
    link.state = LinkState.Up;
    s.setNoDelay(true);
    s.setKeepAlive(true, keepAliveDelayMs);
    this.#writeLink(link); // the hello, and whatever was queued while connecting
  }

  #onOutData(s: Socket<Dial>, chunk: Buffer): void {
    const link = s.data.link;
    if (link === null) return;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      let count: number;
      if (link.creditAccLen === 0 && n - i >= creditRecordBytes) {
        count = chunk.readUInt32LE(i);
        i += creditRecordBytes;
      } else {
        link.creditAcc[link.creditAccLen++] = chunk[i++]!;
        if (link.creditAccLen < creditRecordBytes) continue;
        link.creditAccLen = 0;
        const a = link.creditAcc;
        count = (a[0]! | (a[1]! << 8) | (a[2]! << 16) | (a[3]! << 24)) >>> 0;
      }
      if (count === 0 || link.credits + count > this.windowFrames) {
        // More credit than frames sent on this connection: a confused peer. Start over.
        this.#extra.protocolErrors++;
        s.data.link = null;
        s.terminate();
        this.#linkDown(link);
        return;
      }
      link.credits += count;
      assert(link.credits <= this.windowFrames, "credits returned never exceed the window (checked above)");
      link.backoffMs = tcpReconnectDelayMsMin; // the peer took our hello and our frames
    }
  }

  #onOutDrain(s: Socket<Dial>): void {
    const link = s.data.link;
    if (link === null || !link.waitingDrain) return;
    link.waitingDrain = false;
    this.#writeLink(link);
  }

  #writeLink(link: OutLink): void {
    assert(link.state === LinkState.Up && link.sock !== null, "only an open link is written");
    const s = this.#stats;
    s.framesSent += link.framesPending;
    s.bytesSent += link.bytesPending;
    link.framesPending = 0;
    link.bytesPending = 0;
    if (!link.out.writeTo(link.sock!)) {
      link.waitingDrain = true;
      this.#extra.partialWrites++;
    }
  }

  /** The connection broke or could not be made: drop what is queued, redial after a backoff. */
  #linkDown(link: OutLink): void {
    if (link.dial !== null) link.dial.link = null;
    link.dial = null;
    link.sock = null;
    this.#stats.sendDrops += link.framesPending;
    link.framesPending = 0;
    link.bytesPending = 0;
    link.out.reset();
    link.credits = 0;
    link.waitingDrain = false;
    if (this.#closed || this.#links[link.id] !== link) return;
    link.state = LinkState.Backoff;
    link.timer = setTimeout(() => {
      this.#extra.reconnects++;
      this.#dial(link);
    }, link.backoffMs);
    link.backoffMs = Math.min(2 * link.backoffMs, tcpReconnectDelayMsMax);
  }

  /** Forget a link for good (disconnect, readdress, close). */
  #dropLink(link: OutLink): void {
    if (this.#links[link.id] === link) this.#links[link.id] = undefined;
    if (link.timer !== null) clearTimeout(link.timer);
    link.timer = null;
    const sock = link.sock;
    this.#linkDown(link); // not redialled: no longer in #links
    sock?.end();
  }

  // ---- inbound links ----

  /** @internal */
  onInOpen(s: Socket<InLink | null>): void {
    if (this.#closed || this.#inLinks.size >= tcpInboundConnectionsMax) {
      s.terminate();
      return;
    }
    const link = new InLink(s);
    s.data = link;
    this.#inLinks.add(link);
    s.setNoDelay(true);
    s.setKeepAlive(true, keepAliveDelayMs);
    // A connection that does not finish its hello in time is closed, so that half-open or hostile
    // connections cannot hold the tcpInboundConnectionsMax slots and lock a restarted peer out.
    setTimeout(() => {
      if (!link.closed && link.helloLen < tcpHelloBytes) {
        this.#extra.protocolErrors++;
        s.terminate();
      }
    }, tcpHelloDeadlineMs).unref();
  }

  /** @internal */
  onInClose(s: Socket<InLink | null>): void {
    const link = s.data;
    if (link === null || link.closed) return;
    link.closed = true;
    this.#owedTotal -= link.owed;
    link.owed = 0;
    assert(this.#owedTotal >= 0, "credits owed never go negative");
    this.#inLinks.delete(link);
  }

  /** @internal */
  onInDrain(s: Socket<InLink | null>): void {
    const link = s.data;
    if (link === null || link.closed || !link.waitingDrain) return;
    link.waitingDrain = !link.creditOut.writeTo(s);
  }

  /** @internal Parse hello and frames out of a chunk; frames may span chunks. */
  onInData(s: Socket<InLink | null>, chunk: Buffer): void {
    const link = s.data;
    if (link === null || link.closed || this.#closed) return;
    const n = chunk.length;
    let i = 0;
    while (i < n && !link.closed) {
      if (link.from < 0) {
        i = this.#readHello(link, chunk, i);
      } else if (link.frameLen < 0) {
        i = this.#readLength(link, chunk, i);
      } else if (link.filled === 0 && n - i >= link.frameLen) {
        // The whole frame is in this chunk: queue it straight from Bun's buffer.
        if (!link.skipping) this.#arrived(link, chunk, i, i + link.frameLen);
        i += link.frameLen;
        this.#endFrame(link);
      } else {
        const take = Math.min(link.frameLen - link.filled, n - i);
        assert(take > 0, "a frame in progress still needs bytes");
        if (!link.skipping) {
          link.reasm ??= Buffer.alloc(this.frameBytesMax);
          chunk.copy(link.reasm, link.filled, i, i + take);
        }
        link.filled += take;
        i += take;
        if (link.filled === link.frameLen) {
          if (!link.skipping) this.#arrived(link, link.reasm!, 0, link.frameLen);
          this.#endFrame(link);
        }
      }
    }
  }

  #readHello(link: InLink, chunk: Buffer, i: number): number {
    const take = Math.min(tcpHelloBytes - link.helloLen, chunk.length - i);
    chunk.copy(link.hello, link.helloLen, i, i + take);
    link.helloLen += take;
    if (link.helloLen < tcpHelloBytes) return i + take;
    const h = link.hello;
    const from = h.readUInt16LE(6);
    const ok =
      h.readUInt32LE(0) === tcpHelloMagic &&
      h.readUInt16LE(4) === tcpHelloVersion &&
      from <= nodeIdMax &&
      from !== this.self &&
      h.readUInt16LE(8) === this.self;
    if (!ok) {
      this.#protocolError(link);
      return chunk.length;
    }
    link.from = from;
    return i + take;
  }

  #readLength(link: InLink, chunk: Buffer, i: number): number {
    let len: number;
    if (link.hdrLen === 0 && chunk.length - i >= frameHeaderBytes) {
      len = chunk.readUInt32LE(i);
      i += frameHeaderBytes;
    } else {
      link.hdr[link.hdrLen++] = chunk[i++]!;
      if (link.hdrLen < frameHeaderBytes) return i;
      link.hdrLen = 0;
      len = link.hdr.readUInt32LE(0);
    }
    if (len === 0) {
      // Our senders never write an empty frame: the stream is not what we think it is.
      this.#protocolError(link);
      return chunk.length;
    }
    link.frameLen = len;
    link.filled = 0;
    link.skipping = true;
    const s = this.#stats;
    if (len > this.frameBytesMax) {
      this.#extra.oversizeDrops++;
    } else if (this.#links[link.from] === undefined) {
      this.#extra.unknownSenderDrops++;
    } else if (this.#dropRule !== null && this.#dropRule(link.from, this.self)) {
      // counted below
    } else {
      link.skipping = false;
      return i;
    }
    s.framesDropped++;
    this.#owe(link, 1); // a dropped frame's credit goes back at once
    return i;
  }

  #arrived(link: InLink, buf: Buffer, start: number, end: number): void {
    // #readLength skips empty and oversized frames: only frames send() could have sent get here.
    assert(end - start >= 1 && end - start <= this.frameBytesMax, "a received frame is within 1..frameBytesMax");
    if (this.#recv.push(link.from, link, buf, start, end)) return; // credit returned when polled
    this.#stats.framesDropped++;
    this.#stats.recvQueueDrops++;
    this.#owe(link, 1);
  }

  #endFrame(link: InLink): void {
    link.frameLen = -1;
    link.filled = 0;
    link.skipping = false;
  }

  #owe(link: InLink, k: number): void {
    assert(k > 0, "credit is owed for at least one frame");
    if (link.closed) return; // its sender's credits died with the connection
    link.owed += k;
    this.#owedTotal += k;
    assert(this.#owedTotal >= link.owed, "the total owed includes every link's");
  }

  #returnCredit(link: InLink): void {
    if (link.closed || link.waitingDrain || !link.creditOut.room(creditRecordBytes)) return;
    link.creditOut.putU32(link.owed);
    this.#owedTotal -= link.owed;
    link.owed = 0;
    assert(this.#owedTotal >= 0, "credits owed never go negative");
    link.waitingDrain = !link.creditOut.writeTo(link.sock);
  }

  #protocolError(link: InLink): void {
    this.#extra.protocolErrors++;
    this.#owedTotal -= link.owed;
    link.owed = 0;
    assert(this.#owedTotal >= 0, "credits owed never go negative");
    link.closed = true;
    this.#inLinks.delete(link);
    link.sock.terminate();
  }
}
