// libnuma through bun:ffi: is NUMA available, which node a CPU belongs to, pinning the calling
// thread to a node, and node-local native buffers for the transports.
//
// libnuma is optional. When libnuma.so.1 is absent or numa_available() says no, `numaAvailable()` is
// false, pinning is refused with an error, and `allocNativeBuffer` falls back to anonymous mmap
// (page-aligned, zeroed, registered with RDMA just as well). Callers decide whether to warn.
//
// Native memory is handed to JavaScript as an external ArrayBuffer (toArrayBuffer): zero copy, and
// stable addresses, which RDMA memory registration requires. close() first detaches that
// ArrayBuffer (ArrayBuffer.prototype.transfer(0)), so a view kept past close() reads as empty
// instead of touching freed memory, then frees the memory.

import { dlopen, FFIType, toArrayBuffer, type Pointer } from "bun:ffi";
import { NativeError, errno } from "../libc.ts";

const { i32, u64, ptr, void: voidType } = FFIType;

function openLibnuma() {
  try {
    return dlopen("libnuma.so.1", {
      numa_available: { args: [], returns: i32 },
      numa_max_node: { args: [], returns: i32 },
      numa_num_configured_nodes: { args: [], returns: i32 },
      numa_num_configured_cpus: { args: [], returns: i32 },
      numa_node_of_cpu: { args: [i32], returns: i32 },
      numa_run_on_node: { args: [i32], returns: i32 },
      numa_set_preferred: { args: [i32], returns: voidType },
      numa_alloc_onnode: { args: [u64, i32], returns: ptr },
      numa_free: { args: [ptr, u64], returns: voidType },
    });
  } catch {
    return null;
  }
}

const libc = dlopen("libc.so.6", {
  sched_getcpu: { args: [], returns: i32 },
  mmap: { args: [ptr, u64, i32, i32, i32, i32], returns: ptr },
  munmap: { args: [ptr, u64], returns: i32 },
}).symbols;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
/** mmap's MAP_FAILED, as bun:ffi hands back the pointer: (void *)-1. */
const mapFailed = 2 ** 64 - 1;

const libnuma = openLibnuma();
// numa_available() must be called before any other libnuma function (numa(3)).
const available = libnuma !== null && libnuma.symbols.numa_available() >= 0;
const numa = available ? libnuma!.symbols : null;

/** True when libnuma is loaded and the kernel supports NUMA policy. */
export function numaAvailable(): boolean {
  return available;
}

/** Why NUMA is not available, or null when it is. For a single "running unpinned" log line. */
export function numaUnavailableReason(): string | null {
  if (libnuma === null) return "libnuma.so.1 could not be loaded";
  if (!available) return "numa_available() returned -1 (no NUMA support in this kernel)";
  return null;
}

/** Number of configured NUMA nodes (1 when NUMA is unavailable: all memory is one node). */
export function numaNodeCount(): number {
  return numa === null ? 1 : numa.numa_num_configured_nodes();
}

/** Highest node number (0 when NUMA is unavailable). */
export function numaMaxNode(): number {
  return numa === null ? 0 : numa.numa_max_node();
}

/** The CPU the calling thread is running on right now (sched_getcpu). */
export function currentCpu(): number {
  const cpu = libc.sched_getcpu();
  if (cpu < 0) throw new NativeError("sched_getcpu", errno());
  return cpu;
}

/** The node `cpu` belongs to. Throws NativeError (EINVAL) for a CPU that does not exist. */
export function numaNodeOfCpu(cpu: number): number {
  if (!Number.isInteger(cpu) || cpu < 0)
    throw new RangeError(`numaNodeOfCpu: cpu must be a non-negative integer, got ${cpu}`);
  if (numa === null) return 0;
  const node = numa.numa_node_of_cpu(cpu);
  if (node < 0) throw new NativeError("numa_node_of_cpu", errno(), `cpu ${cpu}`);
  return node;
}

function checkNode(call: string, node: number): void {
  // libnuma prints a warning to stderr for unknown nodes; refuse them before calling it.
  if (!Number.isInteger(node) || node < 0 || node > numaMaxNode()) {
    throw new RangeError(`${call}: node ${node} does not exist (nodes 0..${numaMaxNode()})`);
  }
}

/**
 * Restricts the calling thread (a Bun Worker calls this for itself) to the CPUs of `node` and makes
 * its allocations prefer that node. Throws when NUMA is unavailable, for an unknown node, or with
 * the errno of numa_run_on_node.
 */
export function pinThreadToNode(node: number): void {
  if (numa === null) throw new Error(`pinThreadToNode: NUMA is not available: ${numaUnavailableReason()}`);
  checkNode("pinThreadToNode", node);
  if (numa.numa_run_on_node(node) !== 0) throw new NativeError("numa_run_on_node", errno(), `node ${node}`);
  numa.numa_set_preferred(node);
}

/** How a NativeBuffer's memory was obtained. */
export type NativeBufferSource = "numa" | "mmap";

/**
 * Page-aligned, zero-filled native memory owned by this object, seen from JavaScript as `buffer`.
 * `address` is stable for the object's life (it never moves), so it can be registered as an RDMA
 * memory region and written into work requests.
 */
export class NativeBuffer {
  readonly bytes: number;
  /** The node the memory was bound to, or null when it came from plain mmap. */
  readonly node: number | null;
  readonly source: NativeBufferSource;
  #address: number;
  #buffer: ArrayBuffer | null;

  /** Use allocNativeBuffer. */
  constructor(address: number, bytes: number, node: number | null, source: NativeBufferSource) {
    this.#address = address;
    this.bytes = bytes;
    this.node = node;
    this.source = source;
    this.#buffer = toArrayBuffer(address as Pointer, 0, bytes);
  }

  get closed(): boolean {
    return this.#buffer === null;
  }

  /** The native address. Throws after close(). */
  get address(): Pointer {
    if (this.#buffer === null) throw new Error("NativeBuffer: used after close()");
    return this.#address as Pointer;
  }

  /** The memory as an ArrayBuffer (zero copy). Throws after close(). */
  get buffer(): ArrayBuffer {
    if (this.#buffer === null) throw new Error("NativeBuffer: used after close()");
    return this.#buffer;
  }

  /** Detaches the ArrayBuffer (views become empty) and frees the memory. Idempotent. */
  close(): void {
    const buffer = this.#buffer;
    if (buffer === null) return;
    this.#buffer = null;
    buffer.transfer(0);
    if (this.source === "numa") {
      numa!.numa_free(this.#address as Pointer, this.bytes);
    } else if (libc.munmap(this.#address as Pointer, this.bytes) !== 0) {
      throw new NativeError("munmap", errno());
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** bun:ffi types pointer results as Pointer | bigint | null; on x86_64 Linux they arrive as numbers. */
function pointerOrNull(p: Pointer | bigint | null): Pointer | null {
  return p === null ? null : ((typeof p === "bigint" ? Number(p) : p) as Pointer);
}

/** Largest single native buffer (a limit, not a tuning knob: transports need a few MiB). */
export const nativeBufferBytesMax = 1 << 30;

/**
 * Allocates `bytes` of zeroed, page-aligned memory on `node` (numa_alloc_onnode) when NUMA is
 * available and a node is given; otherwise with anonymous mmap. Throws NativeError on failure.
 */
export function allocNativeBuffer(bytes: number, node: number | null = null): NativeBuffer {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > nativeBufferBytesMax) {
    throw new RangeError(`allocNativeBuffer: bytes must be an integer in 1..${nativeBufferBytesMax}, got ${bytes}`);
  }
  if (node !== null && numa !== null) {
    checkNode("allocNativeBuffer", node);
    const p = pointerOrNull(numa.numa_alloc_onnode(bytes, node));
    if (p === null) throw new NativeError("numa_alloc_onnode", errno(), `${bytes} bytes on node ${node}`);
    return new NativeBuffer(p, bytes, node, "numa");
  }
  const p = pointerOrNull(libc.mmap(null, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p === null || p === mapFailed) throw new NativeError("mmap", errno(), `${bytes} bytes`);
  return new NativeBuffer(p, bytes, null, "mmap");
}
