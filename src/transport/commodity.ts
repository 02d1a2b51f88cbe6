// What the two commodity transports (udp.ts, tcp.ts) share: options, extra stats, argument checks.

import type { NodeId } from "../base/ids.ts";
import type { TransportStats } from "./transport.ts";
import { assertNodeId } from "./net-address.ts";

/** Options common to createTransport's commodity kinds. */
export interface CommodityOptions {
  /** Interface to bind, an IP literal (e.g. "127.0.0.1"); it is also the host part of `address`. */
  host: string;
  /** Port to bind; 0 lets the OS choose (the real one is then in `address`). */
  port: number;
  self: NodeId;
  frameBytesMax: number;
  /** Per-peer window of frames (see each transport for what it bounds). */
  windowFrames?: number;
  /** Received frames waiting for poll(), and the bytes they may occupy. */
  recvQueueFramesMax?: number;
  recvQueueBytes?: number;
}

export const windowFramesDefault = 64;
/** The suite and the worker rely on batching: a window below this would make coalescing pointless. */
export const windowFramesMin = 8;
export const recvQueueFramesMaxDefault = 8192;
export const recvQueueBytesDefault = 8 << 20;

/** TransportStats plus what the commodity transports count beyond the interface. */
export interface CommodityStats extends TransportStats {
  /**
   * Frames accepted by send() that never reached the network: the peer was unknown or forgotten,
   * its connection was down or broke with them still queued, or the socket reported an error.
   */
  sendDrops: number;
  /** Received frames dropped because the receive queue was full (also counted in framesDropped). */
  recvQueueDrops: number;
}

export function zeroStats(): CommodityStats {
  return {
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    sendsRefused: 0,
    framesDropped: 0,
    sendDrops: 0,
    recvQueueDrops: 0,
  };
}

/**
 * A frame `send` can never carry is a bug in the caller (the codec must never build one), not
 * backpressure: returning false would tell the caller to retry something that can never succeed.
 */
export function assertSendable(frame: Uint8Array, frameBytesMax: number): void {
  if (frame.length === 0 || frame.length > frameBytesMax) {
    throw new RangeError(`send: frame of ${frame.length} bytes, must be 1..${frameBytesMax}`);
  }
}

/** Validate the options shared by both transports and fill in the defaults. */
export function commodityLimits(opts: CommodityOptions, frameBytesLimit: number) {
  assertNodeId(opts.self, "transport self");
  if (!(Number.isInteger(opts.frameBytesMax) && opts.frameBytesMax >= 1 && opts.frameBytesMax <= frameBytesLimit)) {
    throw new RangeError(`frameBytesMax ${opts.frameBytesMax}: must be an integer in 1..${frameBytesLimit}`);
  }
  if (!(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535)) throw new RangeError(`port ${opts.port}`);
  const windowFrames = opts.windowFrames ?? windowFramesDefault;
  if (!(Number.isInteger(windowFrames) && windowFrames >= windowFramesMin)) {
    throw new RangeError(`windowFrames ${windowFrames}: must be an integer >= ${windowFramesMin}`);
  }
  const recvQueueFramesMax = opts.recvQueueFramesMax ?? recvQueueFramesMaxDefault;
  // The slab must hold at least a few maximal frames or large frames could never be received.
  const recvQueueBytes = Math.max(opts.recvQueueBytes ?? recvQueueBytesDefault, 4 * opts.frameBytesMax);
  return { windowFrames, recvQueueFramesMax, recvQueueBytes };
}

const warned = new Set<string>();

/** Log `message` once per process for `key` (e.g. a socket option this machine refuses). */
export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(message);
}
