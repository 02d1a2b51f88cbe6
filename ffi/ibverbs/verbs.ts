// Typed, owned wrappers over libibverbs: device list, context, protection domain, completion queue,
// queue pair (UD and RC), memory region and address handle.
//
// Ownership (rust-ibverbs, pyverbs): every handle holds its native pointer privately, strong
// references to its parents, and the set of handles that depend on it. close() is idempotent, closes
// the dependents first (QPs before the CQs and PD they use, everything before the context), and
// Symbol.dispose calls it. A handle used after close() throws instead of passing a dangling pointer.
//
// Errors are values with the failing call, errno and its text (NativeError from ffi/libc.ts).
//
// Data path: ibv_post_send, ibv_post_recv and ibv_poll_cq are static inline in verbs.h, so they are
// not in the .so. They are one indirect call through the context's ops table
// (qp->context->ops.post_send ...). The Context reads the three function pointers once, using the
// offsets generated from the headers (layout.ts), and wraps each in a CFunction shared by its QPs
// and CQs. The callers pass native addresses of work requests they keep in pre-allocated memory, so
// nothing is allocated per call.

import { CFunction, FFIType, read, type Pointer } from "bun:ffi";
import { NativeError, errno } from "../libc.ts";
import { allocNativeBuffer, type NativeBuffer } from "../numa/numa.ts";
import {
  ibv,
  ibvAhAttr,
  ibvContext,
  ibvCq,
  ibvDeviceAttr,
  ibvGidEntry,
  ibvMr,
  ibvPortAttr,
  ibvQp,
  ibvQpAttr,
  ibvQpInitAttr,
} from "./layout.ts";
import { verbsLibrary, verbsLibraryMissing, type VerbsSymbols } from "./symbols.ts";

const ENOSYS = 38;
const ENODEV = 19;

/** bun:ffi types pointer results as Pointer | bigint | null; on x86_64 Linux they arrive as numbers. */
function pointerOrNull(p: Pointer | bigint | null): Pointer | null {
  return p === null ? null : ((typeof p === "bigint" ? Number(p) : p) as Pointer);
}

function lib(): VerbsSymbols {
  const l = verbsLibrary();
  if (l === null) throw new Error(verbsLibraryMissing() ?? "libibverbs.so.1 could not be loaded");
  return l;
}

/**
 * The errno of a verbs call that returns an int: rdma-core returns the error number itself
 * (positive, or negated by some providers); a few paths return -1 and set errno.
 */
function rcErrno(rc: number): number {
  if (rc === -1) return errno() || 1;
  return Math.abs(rc);
}

// ---------------------------------------------------------------------------------------------
// Devices

/**
 * Names of the RDMA devices on this machine. Empty when there are none, which on a machine without
 * RDMA support shows as ibv_get_device_list returning NULL with errno ENOSYS, or when libibverbs.so.1
 * is not installed (verbsLibraryMissing() says so). Other failures throw NativeError.
 */
export function listDevices(): string[] {
  const l = verbsLibrary();
  if (l === null) return [];
  const count = new Int32Array(1);
  const list = pointerOrNull(l.ibv_get_device_list(count));
  if (list === null) {
    const code = errno();
    if (code === ENOSYS || code === ENODEV || code === 0) return [];
    throw new NativeError("ibv_get_device_list", code);
  }
  try {
    const names: string[] = [];
    for (let i = 0; i < count[0]!; i++) {
      const device = read.ptr(list, i * 8) as Pointer;
      names.push(String(l.ibv_get_device_name(device)));
    }
    return names;
  } finally {
    l.ibv_free_device_list(list);
  }
}

/**
 * Opens a device by name, or the first device when no name is given. Throws NativeError with
 * ENODEV when there is no (such) device.
 */
export function openDevice(name?: string): Context {
  const l = lib();
  const count = new Int32Array(1);
  const list = pointerOrNull(l.ibv_get_device_list(count));
  if (list === null) {
    const code = errno();
    if (code === ENOSYS || code === ENODEV || code === 0)
      throw new NativeError("ibv_get_device_list", ENODEV, "no RDMA devices");
    throw new NativeError("ibv_get_device_list", code);
  }
  try {
    const names: string[] = [];
    for (let i = 0; i < count[0]!; i++) {
      const device = read.ptr(list, i * 8) as Pointer;
      const deviceName = String(l.ibv_get_device_name(device));
      names.push(deviceName);
      if (name !== undefined && deviceName !== name) continue;
      // The device must be opened before the list is freed (ibv_get_device_list(3)).
      const ctx = pointerOrNull(l.ibv_open_device(device));
      if (ctx === null) throw new NativeError("ibv_open_device", errno(), deviceName);
      return new Context(ctx, deviceName);
    }
    const detail =
      name === undefined ? "no RDMA devices" : `no device named ${name} (have: ${names.join(", ") || "none"})`;
    throw new NativeError("ibv_open_device", ENODEV, detail);
  } finally {
    l.ibv_free_device_list(list);
  }
}

// ---------------------------------------------------------------------------------------------
// Ownership

/** Base of every verbs handle: the pointer, the parents, the dependents, idempotent close. */
abstract class VerbsHandle {
  #address: number;
  readonly #parents: VerbsHandle[];
  readonly #children = new Set<VerbsHandle>();

  protected constructor(address: number, parents: VerbsHandle[]) {
    this.#address = address;
    this.#parents = parents;
    for (const p of parents) {
      if (p.closed) throw new Error(`${this.constructor.name}: parent ${p.constructor.name} is closed`);
      p.#children.add(this);
    }
  }

  get closed(): boolean {
    return this.#address === 0;
  }

  /** The native pointer. Throws after close(). */
  get address(): Pointer {
    if (this.#address === 0) throw new Error(`${this.constructor.name}: used after close()`);
    return this.#address as Pointer;
  }

  /** How many live handles depend on this one (for tests and leak reports). */
  get dependentCount(): number {
    return this.#children.size;
  }

  /** The verbs call that destroys this handle, for error messages. */
  protected abstract readonly destroyCall: string;
  /** Destroys the native object; returns the call's int result (0 = success). */
  protected abstract destroy(address: Pointer): number;
  /** Releases JavaScript-side resources after a successful destroy. */
  protected afterClose(): void {}

  /**
   * Closes the dependents (newest first), then this handle. Idempotent. If the destroy call fails
   * the handle stays open and the NativeError is thrown, so the caller can see why and retry.
   */
  close(): void {
    if (this.#address === 0) return;
    const children = [...this.#children];
    for (let i = children.length - 1; i >= 0; i--) children[i]!.close();
    const rc = this.destroy(this.#address as Pointer);
    if (rc !== 0) throw new NativeError(this.destroyCall, rcErrno(rc), this.constructor.name);
    this.#address = 0;
    for (const p of this.#parents) p.#children.delete(this);
    this.afterClose();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Attributes

export type LinkLayer = "infiniband" | "ethernet" | "unspecified";
export type GidType = "ib" | "roce-v1" | "roce-v2";

export interface PortAttributes {
  /** IBV_PORT_* value; ibv.PORT_ACTIVE when usable. */
  state: number;
  active: boolean;
  /** IBV_MTU_* enum values and the active MTU in bytes (the largest UD message). */
  maxMtu: number;
  activeMtu: number;
  activeMtuBytes: number;
  gidTableLength: number;
  lid: number;
  linkLayer: LinkLayer;
  maxMessageBytes: number;
}

export interface DeviceAttributes {
  maxMrBytes: number;
  maxQp: number;
  maxQpWr: number;
  maxSge: number;
  maxCq: number;
  maxCqe: number;
  portCount: number;
}

export interface GidEntry {
  index: number;
  gid: Uint8Array;
  type: GidType;
}

/** Bytes of an IBV_MTU_* enum value (IBV_MTU_256 = 1 ... IBV_MTU_4096 = 5). */
export function mtuBytes(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < ibv.MTU_256 || mtu > ibv.MTU_4096)
    throw new RangeError(`not an IBV_MTU value: ${mtu}`);
  return 256 << (mtu - ibv.MTU_256);
}

/** A GID as 32 lowercase hex digits. */
export function gidToHex(gid: Uint8Array): string {
  if (gid.length !== 16) throw new RangeError(`a GID is 16 bytes, got ${gid.length}`);
  return Buffer.from(gid.buffer, gid.byteOffset, 16).toString("hex");
}

/** Parses 32 hex digits (colons allowed, as in sysfs) into a GID. */
export function gidFromHex(text: string): Uint8Array {
  const hex = text.replaceAll(":", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`not a GID (32 hex digits): ${JSON.stringify(text)}`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** True for an IPv4-mapped GID (::ffff:a.b.c.d), the form RoCE v2 over IPv4 uses. */
export function gidIsIpv4Mapped(gid: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (gid[i] !== 0) return false;
  return gid[10] === 0xff && gid[11] === 0xff;
}

/** The text of a work completion status (ibv_wc_status_str). */
export function wcStatusString(status: number): string {
  return String(lib().ibv_wc_status_str(status));
}

/** Destination of packets, for address handles (UD) and for connecting RC queue pairs. */
export interface AddressVector {
  port: number;
  /** Destination LID (InfiniBand); 0 on RoCE. */
  dlid?: number;
  sl?: number;
  /** Destination GID; when given the packets carry a GRH (always on RoCE). */
  dgid?: Uint8Array | null;
  sgidIndex?: number;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
}

function writeAddressVector(view: DataView, base: number, av: AddressVector): void {
  view.setUint16(base + ibvAhAttr.dlid, av.dlid ?? 0, true);
  view.setUint8(base + ibvAhAttr.sl, av.sl ?? 0);
  view.setUint8(base + ibvAhAttr.port_num, av.port);
  if (av.dgid !== undefined && av.dgid !== null) {
    if (av.dgid.length !== 16) throw new RangeError(`dgid must be 16 bytes, got ${av.dgid.length}`);
    view.setUint8(base + ibvAhAttr.is_global, 1);
    for (let i = 0; i < 16; i++) view.setUint8(base + ibvAhAttr.grh_dgid + i, av.dgid[i]!);
    view.setUint32(base + ibvAhAttr.grh_flow_label, av.flowLabel ?? 0, true);
    view.setUint8(base + ibvAhAttr.grh_sgid_index, av.sgidIndex ?? 0);
    // A hop limit of 1 keeps RoCE v2 packets in the local subnet unless the caller says otherwise.
    view.setUint8(base + ibvAhAttr.grh_hop_limit, av.hopLimit ?? 1);
    view.setUint8(base + ibvAhAttr.grh_traffic_class, av.trafficClass ?? 0);
  }
}

/** Queue pair attributes for ibv_modify_qp; the attribute mask is derived from the fields present. */
export interface QpAttributes {
  state?: number;
  pkeyIndex?: number;
  port?: number;
  qkey?: number;
  accessFlags?: number;
  pathMtu?: number;
  destQpn?: number;
  rqPsn?: number;
  sqPsn?: number;
  maxRdAtomic?: number;
  maxDestRdAtomic?: number;
  minRnrTimer?: number;
  timeout?: number;
  retryCount?: number;
  rnrRetry?: number;
  addressVector?: AddressVector;
}

// ---------------------------------------------------------------------------------------------
// Context

type DataPathFn = (...args: unknown[]) => number;

/**
 * The three data-path verbs of one context, as CFunctions over the provider's ops table:
 * ops.post_send(qp, wr, bad_wr), ops.post_recv(qp, wr, bad_wr) and ops.poll_cq(cq, n, wc).
 * Exported for the tests and benchmarks, which drive it against a fake provider's table.
 */
export class OpsTable {
  readonly postSend: DataPathFn;
  readonly postRecv: DataPathFn;
  readonly pollCq: DataPathFn;
  #closed = false;

  /** `context` is a struct ibv_context pointer whose ops table the provider filled in. */
  constructor(context: Pointer, label: string) {
    const fn = (offset: number, what: string): Pointer => {
      const p = read.ptr(context, offset);
      if (p === 0) throw new Error(`${label}: the provider's ops table has no ${what}`);
      return p as Pointer;
    };
    const { ptr, i32 } = FFIType;
    this.postSend = CFunction({
      ptr: fn(ibvContext.ops_post_send, "post_send"),
      args: [ptr, ptr, ptr],
      returns: i32,
    }) as unknown as DataPathFn;
    this.postRecv = CFunction({
      ptr: fn(ibvContext.ops_post_recv, "post_recv"),
      args: [ptr, ptr, ptr],
      returns: i32,
    }) as unknown as DataPathFn;
    this.pollCq = CFunction({
      ptr: fn(ibvContext.ops_poll_cq, "poll_cq"),
      args: [ptr, i32, ptr],
      returns: i32,
    }) as unknown as DataPathFn;
  }

  /** Frees the CFunction trampolines. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const f of [this.postSend, this.postRecv, this.pollCq]) (f as unknown as { close(): void }).close();
  }
}

/** An open device (struct ibv_context). Owns its protection domains and completion queues. */
export class Context extends VerbsHandle {
  readonly deviceName: string;
  protected readonly destroyCall = "ibv_close_device";
  readonly #ops: OpsTable;
  /** Native scratch memory for the bad_wr out-parameter of post calls (one word). */
  readonly #scratch: NativeBuffer;

  /** Use openDevice. */
  constructor(address: Pointer, deviceName: string) {
    super(address, []);
    this.deviceName = deviceName;
    let ops: OpsTable | null = null;
    try {
      this.#ops = ops = new OpsTable(address, deviceName);
      this.#scratch = allocNativeBuffer(4096);
    } catch (e) {
      // Not yet an owned handle that close() could undo: release the device here.
      ops?.close();
      lib().ibv_close_device(address);
      throw e;
    }
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_close_device(address);
  }

  protected override afterClose(): void {
    this.#ops.close();
    this.#scratch.close();
  }

  /** @internal data-path entry points for QueuePair and CompletionQueue. */
  dataPath(): { postSend: DataPathFn; postRecv: DataPathFn; pollCq: DataPathFn; badWr: Pointer } {
    const ops = this.#ops;
    return { postSend: ops.postSend, postRecv: ops.postRecv, pollCq: ops.pollCq, badWr: this.#scratch.address };
  }

  queryDevice(): DeviceAttributes {
    const buf = new Uint8Array(ibvDeviceAttr.size);
    const rc = lib().ibv_query_device(this.address, buf);
    if (rc !== 0) throw new NativeError("ibv_query_device", rcErrno(rc), this.deviceName);
    const v = new DataView(buf.buffer);
    return {
      maxMrBytes: Number(v.getBigUint64(ibvDeviceAttr.max_mr_size, true)),
      maxQp: v.getInt32(ibvDeviceAttr.max_qp, true),
      maxQpWr: v.getInt32(ibvDeviceAttr.max_qp_wr, true),
      maxSge: v.getInt32(ibvDeviceAttr.max_sge, true),
      maxCq: v.getInt32(ibvDeviceAttr.max_cq, true),
      maxCqe: v.getInt32(ibvDeviceAttr.max_cqe, true),
      portCount: v.getUint8(ibvDeviceAttr.phys_port_cnt),
    };
  }

  queryPort(port = 1): PortAttributes {
    // Room beyond sizeof(struct ibv_port_attr): the exported call writes the compat layout, which
    // is shorter; the slack guards against a provider writing a newer, longer one.
    const buf = new Uint8Array(ibvPortAttr.size + 64);
    const rc = lib().ibv_query_port(this.address, port, buf);
    if (rc !== 0) throw new NativeError("ibv_query_port", rcErrno(rc), `${this.deviceName} port ${port}`);
    const v = new DataView(buf.buffer);
    const state = v.getUint32(ibvPortAttr.state, true);
    const activeMtu = v.getUint32(ibvPortAttr.active_mtu, true);
    const ll = v.getUint8(ibvPortAttr.link_layer);
    return {
      state,
      active: state === ibv.PORT_ACTIVE,
      maxMtu: v.getUint32(ibvPortAttr.max_mtu, true),
      activeMtu,
      activeMtuBytes: mtuBytes(activeMtu),
      gidTableLength: v.getInt32(ibvPortAttr.gid_tbl_len, true),
      lid: v.getUint16(ibvPortAttr.lid, true),
      linkLayer:
        ll === ibv.LINK_LAYER_ETHERNET ? "ethernet" : ll === ibv.LINK_LAYER_INFINIBAND ? "infiniband" : "unspecified",
      maxMessageBytes: v.getUint32(ibvPortAttr.max_msg_sz, true),
    };
  }

  queryGid(port: number, index: number): Uint8Array {
    const gid = new Uint8Array(16);
    const rc = lib().ibv_query_gid(this.address, port, index, gid);
    if (rc !== 0) throw new NativeError("ibv_query_gid", rcErrno(rc), `${this.deviceName} port ${port} index ${index}`);
    return gid;
  }

  /**
   * The populated GID table entries of a port, at most `entriesMax` of them (the table can have
   * hundreds of empty slots; each query is a system call).
   */
  gidEntries(port = 1, entriesMax = 16): GidEntry[] {
    const length = Math.min(this.queryPort(port).gidTableLength, entriesMax);
    const entries: GidEntry[] = [];
    const buf = new Uint8Array(ibvGidEntry.size);
    const v = new DataView(buf.buffer);
    for (let index = 0; index < length; index++) {
      buf.fill(0);
      // Empty slots answer ENODATA (or EINVAL on older kernels): skip them.
      if (lib()._ibv_query_gid_ex(this.address, port, index, buf, 0, ibvGidEntry.size) !== 0) continue;
      const gid = buf.slice(ibvGidEntry.gid, ibvGidEntry.gid + 16);
      if (gid.every((b) => b === 0)) continue;
      const t = v.getUint32(ibvGidEntry.gid_type, true);
      entries.push({
        index,
        gid,
        type: t === ibv.GID_TYPE_ROCE_V2 ? "roce-v2" : t === ibv.GID_TYPE_ROCE_V1 ? "roce-v1" : "ib",
      });
    }
    return entries;
  }

  allocPd(): ProtectionDomain {
    const p = pointerOrNull(lib().ibv_alloc_pd(this.address));
    if (p === null) throw new NativeError("ibv_alloc_pd", errno(), this.deviceName);
    return new ProtectionDomain(p, this);
  }

  /** A completion queue with room for at least `entries` completions (no completion channel). */
  createCq(entries: number): CompletionQueue {
    if (!Number.isInteger(entries) || entries < 1)
      throw new RangeError(`createCq: entries must be a positive integer, got ${entries}`);
    const p = pointerOrNull(lib().ibv_create_cq(this.address, entries, null, null, 0));
    if (p === null) throw new NativeError("ibv_create_cq", errno(), `${entries} entries on ${this.deviceName}`);
    return new CompletionQueue(p, this);
  }
}

// ---------------------------------------------------------------------------------------------
// Protection domain, memory region, address handle

export class ProtectionDomain extends VerbsHandle {
  readonly context: Context;
  protected readonly destroyCall = "ibv_dealloc_pd";

  /** Use Context.allocPd. */
  constructor(address: Pointer, context: Context) {
    super(address, [context]);
    this.context = context;
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_dealloc_pd(address);
  }

  /**
   * Registers `bytes` of native memory at `address` (e.g. a NativeBuffer's). The memory must
   * outlive the region: close the region before freeing it. Default access: local write only.
   */
  registerMemory(address: Pointer, bytes: number, access: number = ibv.ACCESS_LOCAL_WRITE): MemoryRegion {
    if (!Number.isInteger(bytes) || bytes <= 0)
      throw new RangeError(`registerMemory: bytes must be a positive integer, got ${bytes}`);
    const p = pointerOrNull(lib().ibv_reg_mr(this.address, address, bytes, access));
    if (p === null) throw new NativeError("ibv_reg_mr", errno(), `${bytes} bytes`);
    return new MemoryRegion(p, this);
  }

  createQp(options: QpOptions): QueuePair {
    const attr = new Uint8Array(ibvQpInitAttr.size);
    const v = new DataView(attr.buffer);
    v.setBigUint64(ibvQpInitAttr.send_cq, BigInt(options.sendCq.address), true);
    v.setBigUint64(ibvQpInitAttr.recv_cq, BigInt(options.recvCq.address), true);
    v.setUint32(ibvQpInitAttr.cap_max_send_wr, options.sendWrMax, true);
    v.setUint32(ibvQpInitAttr.cap_max_recv_wr, options.recvWrMax, true);
    v.setUint32(ibvQpInitAttr.cap_max_send_sge, options.sendSgeMax ?? 1, true);
    v.setUint32(ibvQpInitAttr.cap_max_recv_sge, options.recvSgeMax ?? 1, true);
    v.setUint32(ibvQpInitAttr.cap_max_inline_data, options.inlineBytesMax ?? 0, true);
    v.setUint32(ibvQpInitAttr.qp_type, options.type === "ud" ? ibv.QPT_UD : ibv.QPT_RC, true);
    v.setInt32(ibvQpInitAttr.sq_sig_all, options.signalAll ? 1 : 0, true);
    const p = pointerOrNull(lib().ibv_create_qp(this.address, attr));
    if (p === null)
      throw new NativeError(
        "ibv_create_qp",
        errno(),
        `${options.type} qp, ${options.sendWrMax} send / ${options.recvWrMax} recv WRs`,
      );
    return new QueuePair(p, this, options);
  }

  createAh(av: AddressVector): AddressHandle {
    const attr = new Uint8Array(ibvAhAttr.size);
    writeAddressVector(new DataView(attr.buffer), 0, av);
    const p = pointerOrNull(lib().ibv_create_ah(this.address, attr));
    if (p === null) throw new NativeError("ibv_create_ah", errno());
    return new AddressHandle(p, this);
  }
}

export class MemoryRegion extends VerbsHandle {
  readonly pd: ProtectionDomain;
  readonly lkey: number;
  readonly rkey: number;
  /** The registered range. */
  readonly start: number;
  readonly bytes: number;
  protected readonly destroyCall = "ibv_dereg_mr";

  /** Use ProtectionDomain.registerMemory. */
  constructor(address: Pointer, pd: ProtectionDomain) {
    super(address, [pd]);
    this.pd = pd;
    this.lkey = read.u32(address, ibvMr.lkey);
    this.rkey = read.u32(address, ibvMr.rkey);
    this.start = read.ptr(address, ibvMr.addr);
    this.bytes = Number(read.u64(address, ibvMr.length));
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_dereg_mr(address);
  }
}

export class AddressHandle extends VerbsHandle {
  protected readonly destroyCall = "ibv_destroy_ah";

  /** Use ProtectionDomain.createAh. */
  constructor(address: Pointer, pd: ProtectionDomain) {
    super(address, [pd]);
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_destroy_ah(address);
  }
}

// ---------------------------------------------------------------------------------------------
// Completion queue

export class CompletionQueue extends VerbsHandle {
  readonly context: Context;
  /** The capacity the provider granted (≥ the requested entries). */
  readonly entries: number;
  protected readonly destroyCall = "ibv_destroy_cq";
  readonly #poll: DataPathFn;
  #cq: number;

  /** Use Context.createCq. */
  constructor(address: Pointer, context: Context) {
    super(address, [context]);
    this.context = context;
    this.entries = read.i32(address, ibvCq.cqe);
    this.#poll = context.dataPath().pollCq;
    this.#cq = address;
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_destroy_cq(address);
  }

  protected override afterClose(): void {
    this.#cq = 0;
  }

  /**
   * ibv_poll_cq: moves up to `count` completions into the struct ibv_wc array at `wcArray`
   * (native memory of count * ibvWc.size bytes); returns how many.
   */
  poll(count: number, wcArray: Pointer): number {
    if (this.#cq === 0) throw new Error("CompletionQueue: used after close()");
    const n = this.#poll(this.#cq, count, wcArray);
    if (n < 0) throw new NativeError("ibv_poll_cq", rcErrno(n));
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Queue pair

export type QpType = "ud" | "rc";

export interface QpOptions {
  type: QpType;
  sendCq: CompletionQueue;
  recvCq: CompletionQueue;
  sendWrMax: number;
  recvWrMax: number;
  sendSgeMax?: number;
  recvSgeMax?: number;
  inlineBytesMax?: number;
  /** Every send work request produces a completion (sq_sig_all). */
  signalAll?: boolean;
}

/** The local half of an RC connection's parameters that the peer needs. */
export interface RcRemote {
  qpn: number;
  psn: number;
  /** Destination: port, LID and/or GID of the remote port. */
  addressVector: AddressVector;
}

export class QueuePair extends VerbsHandle {
  readonly pd: ProtectionDomain;
  readonly type: QpType;
  /** The queue pair number peers address. */
  readonly qpn: number;
  protected readonly destroyCall = "ibv_destroy_qp";
  readonly #postSend: DataPathFn;
  readonly #postRecv: DataPathFn;
  readonly #badWr: Pointer;
  #qp: number;

  /** Use ProtectionDomain.createQp. */
  constructor(address: Pointer, pd: ProtectionDomain, options: QpOptions) {
    // Parents: the PD and both CQs, so closing a CQ first closes the QPs that use it
    // (ibv_destroy_cq fails with EBUSY while a QP still refers to it).
    super(address, options.sendCq === options.recvCq ? [pd, options.sendCq] : [pd, options.sendCq, options.recvCq]);
    this.pd = pd;
    this.type = options.type;
    this.qpn = read.u32(address, ibvQp.qp_num);
    const dp = pd.context.dataPath();
    this.#postSend = dp.postSend;
    this.#postRecv = dp.postRecv;
    this.#badWr = dp.badWr;
    this.#qp = address;
  }

  protected destroy(address: Pointer): number {
    return lib().ibv_destroy_qp(address);
  }

  protected override afterClose(): void {
    this.#qp = 0;
  }

  /** The current state (IBV_QPS_*) as recorded in struct ibv_qp. */
  get state(): number {
    return read.u32(this.address, ibvQp.state);
  }

  /** ibv_modify_qp with the mask derived from the attributes given. */
  modify(a: QpAttributes): void {
    const attr = new Uint8Array(ibvQpAttr.size);
    const v = new DataView(attr.buffer);
    let mask = 0;
    const u8 = (off: number, x: number | undefined, bit: number) => {
      if (x !== undefined) (v.setUint8(off, x), (mask |= bit));
    };
    const u16 = (off: number, x: number | undefined, bit: number) => {
      if (x !== undefined) (v.setUint16(off, x, true), (mask |= bit));
    };
    const u32 = (off: number, x: number | undefined, bit: number) => {
      if (x !== undefined) (v.setUint32(off, x >>> 0, true), (mask |= bit));
    };
    u32(ibvQpAttr.qp_state, a.state, ibv.QP_STATE);
    u16(ibvQpAttr.pkey_index, a.pkeyIndex, ibv.QP_PKEY_INDEX);
    u8(ibvQpAttr.port_num, a.port, ibv.QP_PORT);
    u32(ibvQpAttr.qkey, a.qkey, ibv.QP_QKEY);
    u32(ibvQpAttr.qp_access_flags, a.accessFlags, ibv.QP_ACCESS_FLAGS);
    u32(ibvQpAttr.path_mtu, a.pathMtu, ibv.QP_PATH_MTU);
    u32(ibvQpAttr.dest_qp_num, a.destQpn, ibv.QP_DEST_QPN);
    u32(ibvQpAttr.rq_psn, a.rqPsn, ibv.QP_RQ_PSN);
    u32(ibvQpAttr.sq_psn, a.sqPsn, ibv.QP_SQ_PSN);
    u8(ibvQpAttr.max_rd_atomic, a.maxRdAtomic, ibv.QP_MAX_QP_RD_ATOMIC);
    u8(ibvQpAttr.max_dest_rd_atomic, a.maxDestRdAtomic, ibv.QP_MAX_DEST_RD_ATOMIC);
    u8(ibvQpAttr.min_rnr_timer, a.minRnrTimer, ibv.QP_MIN_RNR_TIMER);
    u8(ibvQpAttr.timeout, a.timeout, ibv.QP_TIMEOUT);
    u8(ibvQpAttr.retry_cnt, a.retryCount, ibv.QP_RETRY_CNT);
    u8(ibvQpAttr.rnr_retry, a.rnrRetry, ibv.QP_RNR_RETRY);
    if (a.addressVector !== undefined) {
      writeAddressVector(v, ibvQpAttr.ah_attr, a.addressVector);
      mask |= ibv.QP_AV;
    }
    const rc = lib().ibv_modify_qp(this.address, attr, mask);
    if (rc !== 0) throw new NativeError("ibv_modify_qp", rcErrno(rc), `qp ${this.qpn}, mask 0x${mask.toString(16)}`);
  }

  /** UD: RESET -> INIT -> RTR -> RTS, receiving datagrams that carry `qkey`. */
  readyUd(port: number, qkey: number, pkeyIndex = 0): void {
    if (this.type !== "ud") throw new Error(`readyUd on a ${this.type} queue pair`);
    this.modify({ state: ibv.QPS_INIT, pkeyIndex, port, qkey });
    this.modify({ state: ibv.QPS_RTR });
    this.modify({ state: ibv.QPS_RTS, sqPsn: 0 });
  }

  /**
   * RC: RESET -> INIT -> RTR -> RTS towards `remote`, with remote write/read allowed into regions
   * registered with those rights.
   */
  connectRc(port: number, localPsn: number, pathMtu: number, remote: RcRemote): void {
    if (this.type !== "rc") throw new Error(`connectRc on a ${this.type} queue pair`);
    const access = ibv.ACCESS_LOCAL_WRITE | ibv.ACCESS_REMOTE_WRITE | ibv.ACCESS_REMOTE_READ;
    this.modify({ state: ibv.QPS_INIT, pkeyIndex: 0, port, accessFlags: access });
    this.modify({
      state: ibv.QPS_RTR,
      pathMtu,
      destQpn: remote.qpn,
      rqPsn: remote.psn,
      maxDestRdAtomic: 1,
      minRnrTimer: 12,
      addressVector: remote.addressVector,
    });
    this.modify({ state: ibv.QPS_RTS, sqPsn: localPsn, timeout: 14, retryCount: 7, rnrRetry: 7, maxRdAtomic: 1 });
  }

  /**
   * ibv_post_send of the work request chain at `wr` (native memory). Throws NativeError with the
   * provider's error (ENOMEM when the send queue is full, EINVAL for a malformed request).
   */
  postSend(wr: Pointer): void {
    if (this.#qp === 0) throw new Error("QueuePair: used after close()");
    const rc = this.#postSend(this.#qp, wr, this.#badWr);
    if (rc !== 0) throw new NativeError("ibv_post_send", rcErrno(rc), `qp ${this.qpn}`);
  }

  /** ibv_post_recv of the work request chain at `wr` (native memory). */
  postRecv(wr: Pointer): void {
    if (this.#qp === 0) throw new Error("QueuePair: used after close()");
    const rc = this.#postRecv(this.#qp, wr, this.#badWr);
    if (rc !== 0) throw new NativeError("ibv_post_recv", rcErrno(rc), `qp ${this.qpn}`);
  }
}
