// The simulated transport (tests only): a Transport whose medium is a simulated network supplied by
// the test. `send` hands a copy of the real encoded frame to the network, which decides (from its
// seeded PRNG, in simulated time) whether, when and how often it arrives, and calls `deliver` on
// the receiving endpoint; `poll` hands delivered frames to the shard. So the simulator applies its
// loss, duplication, reordering, delay and partitions to the frames the real codec produced, and
// the shard loop decodes them as it would from a socket.
//
// Nothing here reads a clock, sets a timer or opens a socket: time and randomness belong to the
// network object, which keeps runs deterministic per seed. whenReadable() settles when a frame is
// delivered (or on close), but a simulation calls Shard.turn() itself and never awaits it.
//
// After the handler returns, a polled frame's bytes are overwritten (as a socket transport reuses
// its receive buffer), so a consumer that keeps a view of a frame past the call reads garbage and
// the simulation's oracles see it.

import { assert } from "../base/assert.ts";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { DropRule, DropRuleTarget } from "./drop-rule.ts";
import type { FrameHandler, Transport, TransportStats } from "./transport.ts";

/** The simulated medium, implemented by the test. */
export interface SimNetwork {
  /**
   * A frame from `from` to `to`. `frame` is the network's own copy. The network later calls
   * `deliver(from, frame)` on `to`'s endpoint zero or more times (loss, duplication), at simulated
   * times of its choosing. Returns false to refuse the frame (no credit): the sender counts it in
   * sendsRefused and keeps nothing.
   */
  send(from: NodeId, to: NodeId, frame: Uint8Array): boolean;
}

export interface SimTransportOptions {
  self: NodeId;
  frameBytesMax: number;
  network: SimNetwork;
  /** Delivered frames waiting for poll(); a delivery beyond it is dropped (a full socket buffer). */
  inboxFramesMax?: number;
}

export const simInboxFramesMaxDefault = 4096;

/** The address a sim endpoint publishes: its node id, so that connect() can check it. */
export function simAddress(id: NodeId): string {
  return `sim:${id}`;
}

export class SimTransport implements Transport, DropRuleTarget {
  readonly kind = "sim" as const;
  readonly self: NodeId;
  readonly address: string;
  readonly frameBytesMax: number;
  readonly inboxFramesMax: number;
  readonly #network: SimNetwork;
  readonly #peers = new Set<NodeId>();
  /** Delivered frames and their senders, in delivery order, until the next poll. */
  readonly #inbox: Uint8Array[] = [];
  readonly #inboxFrom: NodeId[] = [];
  /** Frames in the inbox per sender (lets a network grant credits per link). */
  readonly #inboxPerPeer = new Uint32Array(nodeIdMax + 1);
  #dropRule: DropRule | null = null;
  #closed = false;
  #wake: (() => void) | null = null;
  #readable: Promise<void> | null = null;
  readonly #stats: TransportStats = {
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    sendsRefused: 0,
    framesDropped: 0,
  };

  constructor(options: SimTransportOptions) {
    assert(Number.isInteger(options.self) && options.self >= 0 && options.self <= nodeIdMax, "self must be a NodeId");
    assert(
      Number.isInteger(options.frameBytesMax) && options.frameBytesMax > 0,
      "frameBytesMax must be a positive integer",
    );
    const inboxFramesMax = options.inboxFramesMax ?? simInboxFramesMaxDefault;
    assert(Number.isInteger(inboxFramesMax) && inboxFramesMax > 0, "inboxFramesMax must be a positive integer");
    this.self = options.self;
    this.address = simAddress(options.self);
    this.frameBytesMax = options.frameBytesMax;
    this.inboxFramesMax = inboxFramesMax;
    this.#network = options.network;
  }

  connect(peer: NodeId, address: string): void {
    assert(
      Number.isInteger(peer) && peer >= 0 && peer <= nodeIdMax && peer !== this.self,
      "peer must be another NodeId",
    );
    assert(address === simAddress(peer), "a sim peer's address names its node id");
    this.#peers.add(peer);
  }

  disconnect(peer: NodeId): void {
    this.#peers.delete(peer);
  }

  send(peer: NodeId, frame: Uint8Array): boolean {
    assert(frame.length > 0 && frame.length <= this.frameBytesMax, "frame larger than frameBytesMax, or empty");
    const stats = this.#stats;
    if (this.#closed || !this.#peers.has(peer) || (this.#dropRule !== null && this.#dropRule(this.self, peer))) {
      stats.framesDropped++;
      return true;
    }
    // The interface lets the caller reuse `frame` at once: the network gets its own copy.
    if (!this.#network.send(this.self, peer, frame.slice())) {
      stats.sendsRefused++;
      return false;
    }
    stats.framesSent++;
    stats.bytesSent += frame.length;
    return true;
  }

  flush(): void {
    // Frames went to the network in send(): the simulated medium has no send batching.
  }

  /**
   * Called by the network: `frame` arrives from `from` now. The endpoint takes a copy. Frames from
   * a peer this endpoint does not know (never connected, or disconnected) are dropped and counted.
   */
  deliver(from: NodeId, frame: Uint8Array): void {
    assert(Number.isInteger(from) && from >= 0 && from <= nodeIdMax, "from must be a NodeId");
    if (
      this.#closed ||
      !this.#peers.has(from) ||
      this.#inbox.length >= this.inboxFramesMax ||
      (this.#dropRule !== null && this.#dropRule(from, this.self))
    ) {
      this.#stats.framesDropped++;
      return;
    }
    this.#inbox.push(frame.slice());
    this.#inboxFrom.push(from);
    this.#inboxPerPeer[from]!++;
    const wake = this.#wake;
    if (wake !== null) {
      this.#wake = null;
      this.#readable = null;
      wake();
    }
  }

  /** Frames delivered and not yet polled. */
  get pending(): number {
    return this.#inbox.length;
  }

  /** Frames from `peer` delivered and not yet polled. */
  pendingFrom(peer: NodeId): number {
    return this.#inboxPerPeer[peer] ?? 0;
  }

  poll(handler: FrameHandler): number {
    const inbox = this.#inbox;
    const senders = this.#inboxFrom;
    const count = inbox.length;
    if (count === 0) return 0;
    const stats = this.#stats;
    // Frames delivered during the handlers (none today: delivery is a simulation event) wait for
    // the next poll, as frames arriving on a socket during a poll do.
    for (let i = 0; i < count; i++) {
      const frame = inbox[i]!;
      this.#inboxPerPeer[senders[i]!]!--;
      stats.framesReceived++;
      stats.bytesReceived += frame.length;
      handler(senders[i]!, frame);
      frame.fill(0xa5); // the frame was valid only during the call
    }
    inbox.splice(0, count);
    senders.splice(0, count);
    return count;
  }

  whenReadable(): Promise<void> {
    if (this.#inbox.length > 0 || this.#closed) return Promise.resolve();
    if (this.#readable === null) this.#readable = new Promise((resolve) => (this.#wake = resolve));
    return this.#readable;
  }

  setDropRule(rule: DropRule | null): void {
    this.#dropRule = rule;
  }

  stats(): TransportStats {
    return { ...this.#stats };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#inbox.length = 0;
    this.#inboxFrom.length = 0;
    this.#inboxPerPeer.fill(0);
    const wake = this.#wake;
    this.#wake = null;
    this.#readable = null;
    wake?.();
  }
}
