// "host:port" addresses as published in the membership, shared by the UDP and TCP transports.

import { isIP } from "node:net";
import { nodeIdMax, type NodeId } from "../base/ids.ts";

export interface HostPort {
  /** IPv4 dotted quad, IPv6 in its compressed form (no brackets), or a host name. */
  host: string;
  port: number;
}

/** Parse "1.2.3.4:7001", "[::1]:7001" or "name:7001". Throws RangeError on anything else. */
export function parseHostPort(address: string): HostPort {
  const colon = address.lastIndexOf(":");
  if (colon <= 0 || colon === address.length - 1) throw new RangeError(`bad address "${address}": want host:port`);
  let host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new RangeError(`bad address "${address}": port must be 1..65535`);
  }
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host.includes(":")) {
    if (isIP(host) !== 6) throw new RangeError(`bad address "${address}": bad IPv6 host`);
    host = normalizeIp6(host);
  }
  return { host, port };
}

/** Format a host and port the way parseHostPort reads them back. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${normalizeIp6(host)}]:${port}` : `${host}:${port}`;
}

/** The compressed form of an IPv6 address (what Bun reports for datagram sources). */
export function normalizeIp6(host: string): string {
  return new URL(`http://[${host}]/`).hostname.slice(1, -1);
}

/** Throws unless `id` is a valid NodeId. */
export function assertNodeId(id: NodeId, what: string): void {
  if (!(Number.isInteger(id) && id >= 0 && id <= nodeIdMax)) {
    throw new RangeError(`${what}: node id ${id} is not an integer in 0..${nodeIdMax}`);
  }
}
