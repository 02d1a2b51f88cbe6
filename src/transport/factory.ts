// createTransport: the one place that maps a network transport kind to its implementation.
// ("sim" is built by the simulator itself, never here.)

import type { NodeId } from "../base/ids.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import type { Transport } from "./transport.ts";
import type { RdmaOptions } from "./rdma-options.ts";
import { UdpTransport, type UdpOptions } from "./udp.ts";
import { TcpTransport, type TcpOptions } from "./tcp.ts";

/** The kinds createTransport builds. */
export type NetworkTransportKind = "udp" | "tcp" | "rdma";

export function isNetworkTransportKind(kind: TransportKind): kind is NetworkTransportKind {
  return kind === "udp" || kind === "tcp" || kind === "rdma";
}

/** RDMA settings beyond the common ones (device, GID, window...); see RdmaOptions. */
export type RdmaTuning = Omit<RdmaOptions, "self" | "frameBytesMax" | "numaNode">;

export interface TransportOptions {
  /** Interface to bind and to publish (an IP literal for udp); rdma publishes its QP instead. */
  host: string;
  /** 0 = let the OS choose; the chosen port is then in `address`. Unused by rdma. */
  port: number;
  self: NodeId;
  frameBytesMax: number;
  /** NUMA node for the buffers the NIC reads and writes (rdma registers them); null: anywhere. */
  numaNode?: number | null;
  /** Only for rdma. */
  rdma?: RdmaTuning;
}

/**
 * Bind an endpoint of `kind`. `opts` may also carry the kind's tuning (UdpOptions, TcpOptions:
 * windowFrames, queue sizes, socket buffers; `rdma` for RDMA); the defaults suit a Hermes worker.
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
    case "rdma": {
      // Loaded only when asked for, so that nodes on udp or tcp never load the verbs wrappers.
      const { RdmaTransport } = await import("./rdma.ts");
      const { self, frameBytesMax, numaNode = null } = opts;
      return RdmaTransport.open({ ...opts.rdma, self, frameBytesMax, numaNode });
    }
    default: {
      const never: never = kind;
      throw new RangeError(`unknown transport kind "${String(never)}"`);
    }
  }
}
