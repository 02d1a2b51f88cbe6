// The address an RDMA endpoint publishes through the membership, "rdma:<qpn>:<gid>:<qkey>:<lid>",
// and the GID it puts there. Pure: no device is needed to format, parse or choose.
//
// UD needs nothing else to reach a peer: the QP number and qkey name its queue pair, the GID (and
// on InfiniBand the LID) its port. The qkey doubles as the endpoint's incarnation: it is random, so
// a restarted peer publishes a new address and its old datagrams stop being accepted.

import { gidFromHex, gidIsIpv4Mapped, gidToHex, type GidEntry } from "../../ffi/ibverbs/verbs.ts";
import { assert } from "../base/assert.ts";

export interface RdmaAddress {
  qpn: number;
  /** 16 bytes. */
  gid: Uint8Array;
  qkey: number;
  lid: number;
}

/** QP numbers are 24 bits; 0 is the subnet management QP, never a UD endpoint of ours. */
export const rdmaQpnMin = 1;
export const rdmaQpnMax = 0xffffff;
/** Bit 31 marks a controlled qkey that only privileged processes may send with: we never publish one. */
export const rdmaQkeyMax = 0x7fffffff;
export const rdmaLidMax = 0xffff;
export const gidBytes = 16;

const addressPattern = /^rdma:(\d{1,8}):([0-9a-f]{32}):(\d{1,10}):(\d{1,5})$/;

/** The address text; every field must be in range (the endpoint built it from its own QP). */
export function formatRdmaAddress(a: RdmaAddress): string {
  assert(Number.isInteger(a.qpn) && a.qpn >= rdmaQpnMin, "an address names a QP number of at least 1");
  assert(a.qpn <= rdmaQpnMax, "QP numbers are 24 bits");
  assert(Number.isInteger(a.qkey) && a.qkey >= 0, "a qkey is a non-negative integer");
  assert(a.qkey <= rdmaQkeyMax, "a published qkey is never a controlled (privileged) one");
  assert(Number.isInteger(a.lid) && a.lid >= 0 && a.lid <= rdmaLidMax, "a LID is 16 bits");
  assert(a.gid.length === gidBytes, "a GID is 16 bytes");
  return `rdma:${a.qpn}:${gidToHex(a.gid)}:${a.qkey}:${a.lid}`;
}

/**
 * Parses an address made by formatRdmaAddress. Addresses come from the membership, so a bad one
 * is the caller's input error: RangeError, never an assertion.
 */
export function parseRdmaAddress(address: string): RdmaAddress {
  const m = addressPattern.exec(address);
  if (m === null) throw new RangeError(`bad RDMA address "${address}": want rdma:<qpn>:<gid hex>:<qkey>:<lid>`);
  const qpn = Number(m[1]);
  const qkey = Number(m[3]);
  const lid = Number(m[4]);
  if (qpn < rdmaQpnMin || qpn > rdmaQpnMax) throw new RangeError(`bad RDMA address "${address}": qpn out of range`);
  if (qkey > rdmaQkeyMax) throw new RangeError(`bad RDMA address "${address}": qkey out of range`);
  if (lid > rdmaLidMax) throw new RangeError(`bad RDMA address "${address}": lid out of range`);
  return { qpn, gid: gidFromHex(m[2]!), qkey, lid };
}

/** A fresh random qkey for a new endpoint (its incarnation); never a controlled one. */
export function randomQkey(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]! & rdmaQkeyMax;
}

/** The GID to publish: RoCE v2 over IPv4 first (what routed RoCE uses), then RoCE v2, then any. */
export function chooseGid(entries: readonly GidEntry[]): GidEntry | null {
  return (
    entries.find((e) => e.type === "roce-v2" && gidIsIpv4Mapped(e.gid)) ??
    entries.find((e) => e.type === "roce-v2") ??
    entries[0] ??
    null
  );
}
