// createTransport: the one place that maps a transport kind to its implementation.

import type { NodeId } from "../base/ids.ts";
import type { Transport } from "./transport.ts";
import { UdpTransport, type UdpOptions } from "./udp.ts";
import { TcpTransport, type TcpOptions } from "./tcp.ts";

/** The kinds createTransport builds. ("sim" is built by the simulator itself, never here.) */
export type NetworkTransportKind = "udp" | "tcp";

export interface TransportOptions {
  /** Interface to bind and to publish (an IP literal for udp). */
  host: string;
  /** 0 = let the OS choose; the chosen port is then in `address`. */
  port: number;
  self: NodeId;
  frameBytesMax: number;
}

/**
 * Bind an endpoint of `kind`. `opts` may also carry the kind's tuning (UdpOptions, TcpOptions:
 * windowFrames, queue sizes, socket buffers); the defaults suit a Hermes worker.
 */
export async function createTransport(
  kind: NetworkTransportKind,
  opts: TransportOptions & Partial<UdpOptions> & Partial<TcpOptions>,
): Promise<Transport> {
  switch (kind) {
    case "udp":
      return UdpTransport.open(opts);
    case "tcp":
      return TcpTransport.open(opts);
    // case "rdma": the RDMA transport (src/transport/rdma.ts) plugs in here; add "rdma" to
    // NetworkTransportKind above.
    default: {
      const never: never = kind;
      throw new RangeError(`unknown transport kind "${String(never)}"`);
    }
  }
}
