// The Transport interface shared by every transport (udp, tcp, rdma, sim).
// A transport moves opaque frames between worker i of this node and worker i of the other nodes.
// It need not be reliable: Hermes retransmits INVs and replays, so loss only costs latency.

import type { NodeId } from "../base/ids.ts";
import type { TransportKind } from "../base/transport-kind.ts";

/** Called for each received frame. `frame` is only valid during the call: copy what you keep. */
export type FrameHandler = (from: NodeId, frame: Uint8Array) => void;

export interface TransportStats {
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Frames not sent for want of credit or buffer space (the caller may retry). */
  sendsRefused: number;
  /** Frames dropped on receive before the codec saw them (oversized, unknown sender, drop rule). */
  framesDropped: number;
}

export interface Transport {
  readonly kind: TransportKind;
  /** This endpoint's address as published in the membership (e.g. "127.0.0.1:7001", or QPN/GID for RDMA). */
  readonly address: string;
  /** Largest frame `send` accepts. */
  readonly frameBytesMax: number;
  /** Learn (or update) where a peer's matching endpoint is. */
  connect(peer: NodeId, address: string): void;
  /** Forget a peer (removed from the membership). Pending frames to it may be dropped. */
  disconnect(peer: NodeId): void;
  /**
   * Queue one frame (many protocol messages coalesced by the caller) for a peer. The frame is
   * copied: the caller may reuse it at once. Returns false and keeps nothing when the peer has no
   * credit or buffer space left. Frames to unknown peers are dropped and counted (returns true).
   */
  send(peer: NodeId, frame: Uint8Array): boolean;
  /** Push queued frames to the network (one syscall batch per peer where the medium allows). */
  flush(): void;
  /** Hand every frame received since the last call to `handler`; returns how many. Never blocks. */
  poll(handler: FrameHandler): number;
  /**
   * Resolves when `poll` has a frame to hand out (or on close). An idle worker races it with its
   * request ring, so that neither a sleeping worker misses frames nor a busy one spins.
   */
  whenReadable(): Promise<void>;
  stats(): TransportStats;
  /** Idempotent. */
  close(): void;
}
