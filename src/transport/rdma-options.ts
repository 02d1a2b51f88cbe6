// The RDMA transport's options, their defaults and limits, and their validation: everything about
// the caller's settings that can be decided before a device is opened.

import type { NodeId } from "../base/ids.ts";
import { nodeIdMax } from "../base/ids.ts";
import { assertNodeId } from "./net-address.ts";

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

export const rdmaWindowDatagramsDefault = 16;
/** Two, so that a sender can use one credit while the ack for the other is on its way. */
export const rdmaWindowDatagramsMin = 2;
/**
 * Far above what a worker needs (the default is 16), and a bound on registered memory: every
 * credit is a receive and a send slot of one MTU per peer, so 8 peers at this window and a 4 KiB
 * MTU already pin about 270 MiB.
 */
export const rdmaWindowDatagramsMax = 4096;
/** Largest frame the transport accepts (fragmented): 64 datagrams at a 4 KiB MTU, 256 at 1 KiB. */
export const rdmaFrameBytesLimit = 256 * 1024;
export const rdmaPeersMaxDefault = 8;
export const rdmaPortDefault = 1;
/** Port numbers are a u8 in verbs, and 0 is not a port. */
export const rdmaPortMax = 255;
export const rdmaCreditProbeMsDefault = 5;
/** How often an idle whenReadable() looks at the receive queue (the worker's idle wait is 1 ms too). */
export const rdmaReadableCheckMsDefault = 1;

/** RdmaOptions checked, with every default filled in (null: decided by the device). */
export interface RdmaSettings {
  self: NodeId;
  device: string | null;
  port: number;
  gidIndex: number | null;
  /** null: what one datagram holds, known once the port's MTU is. */
  frameBytesMax: number | null;
  peersMax: number;
  /** As asked; the layout may raise it for fragmented frames. */
  windowDatagrams: number;
  creditProbeMs: number;
  readableCheckMs: number;
  numaNode: number | null;
}

/** `value` if it is an integer in min..max; a RangeError naming the option otherwise. */
function integerIn(option: string, value: number, min: number, max: number): number {
  if (!(Number.isInteger(value) && value >= min && value <= max)) {
    throw new RangeError(`rdma: ${option} ${value} must be an integer in ${min}..${max}`);
  }
  return value;
}

function positive(option: string, value: number): number {
  if (!(value > 0)) throw new RangeError(`rdma: ${option} ${value} must be positive`);
  return value;
}

/**
 * Checks the options and fills in the defaults. Throws RangeError for a bad option: the caller's
 * configuration is wrong, which is an input error, not a broken invariant.
 */
export function validateRdmaOptions(opts: RdmaOptions): RdmaSettings {
  assertNodeId(opts.self, "rdma transport self");
  const gidIndex = opts.gidIndex ?? null;
  // No upper bound here: GID table sizes differ per device, which says whether the index exists.
  if (gidIndex !== null && !(Number.isInteger(gidIndex) && gidIndex >= 0)) {
    throw new RangeError(`rdma: gidIndex ${gidIndex} must be a non-negative integer`);
  }
  const frameBytesMax = opts.frameBytesMax ?? null;
  return {
    self: opts.self,
    device: opts.device ?? null,
    port: integerIn("port", opts.port ?? rdmaPortDefault, 1, rdmaPortMax),
    gidIndex,
    frameBytesMax: frameBytesMax === null ? null : integerIn("frameBytesMax", frameBytesMax, 1, rdmaFrameBytesLimit),
    peersMax: integerIn("peersMax", opts.peersMax ?? rdmaPeersMaxDefault, 1, nodeIdMax),
    windowDatagrams: integerIn(
      "windowDatagrams",
      opts.windowDatagrams ?? rdmaWindowDatagramsDefault,
      rdmaWindowDatagramsMin,
      rdmaWindowDatagramsMax,
    ),
    creditProbeMs: positive("creditProbeMs", opts.creditProbeMs ?? rdmaCreditProbeMsDefault),
    readableCheckMs: positive("readableCheckMs", opts.readableCheckMs ?? rdmaReadableCheckMsDefault),
    numaNode: opts.numaNode ?? null,
  };
}
