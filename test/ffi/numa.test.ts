// ffi/numa on this machine: availability, CPU-to-node, pinning, node-local native buffers.

import { describe, expect, test } from "bun:test";
import { NativeError } from "../../ffi/libc.ts";
import {
  allocNativeBuffer,
  currentCpu,
  nativeBufferBytesMax,
  numaAvailable,
  numaMaxNode,
  numaNodeCount,
  numaNodeOfCpu,
  numaUnavailableReason,
  pinThreadToNode,
} from "../../ffi/numa/numa.ts";

const EINVAL = 22;
const pageBytes = 4096;

test("availability and its reason agree", () => {
  expect(numaUnavailableReason() === null).toBe(numaAvailable());
  expect(numaNodeCount()).toBeGreaterThanOrEqual(1);
  expect(numaMaxNode()).toBeGreaterThanOrEqual(0);
});

test("the current CPU belongs to an existing node", () => {
  const node = numaNodeOfCpu(currentCpu());
  expect(node).toBeGreaterThanOrEqual(0);
  expect(node).toBeLessThanOrEqual(numaMaxNode());
});

test("argument errors name the function", () => {
  expect(() => numaNodeOfCpu(-1)).toThrow(/numaNodeOfCpu/);
  expect(() => pinThreadToNode(numaMaxNode() + 1)).toThrow(
    numaAvailable() ? /node \d+ does not exist/ : /NUMA is not available/,
  );
  expect(() => allocNativeBuffer(0)).toThrow(/allocNativeBuffer/);
  expect(() => allocNativeBuffer(nativeBufferBytesMax + 1)).toThrow(/allocNativeBuffer/);
});

describe.skipIf(!numaAvailable())("with libnuma", () => {
  test("a CPU that does not exist is an error carrying the call and errno", () => {
    let error: unknown;
    try {
      numaNodeOfCpu(1 << 20);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NativeError);
    expect((error as NativeError).call).toBe("numa_node_of_cpu");
    expect((error as NativeError).errno).toBe(EINVAL);
    expect((error as NativeError).message).toContain("Invalid argument");
  });

  test("pinning the calling thread keeps it on the node's CPUs", async () => {
    // In a Worker, as the transport workers do, so the test runner's own thread is left alone.
    const worker = new Worker(new URL("./numa-pin-worker.ts", import.meta.url));
    try {
      const result = await new Promise<{ node: number; cpuNode: number } | { error: string }>((resolve, reject) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => reject(new Error(e.message));
        worker.postMessage(numaNodeOfCpu(currentCpu()));
      });
      expect(result).toEqual({ node: numaNodeOfCpu(currentCpu()), cpuNode: numaNodeOfCpu(currentCpu()) });
    } finally {
      worker.terminate();
    }
  });

  test("a node-local buffer is zeroed, page-aligned, writable, and freed by close()", () => {
    const bytes = 1 << 20;
    const b = allocNativeBuffer(bytes, 0);
    expect(b.source).toBe("numa");
    expect(b.node).toBe(0);
    expect(b.address % pageBytes).toBe(0);
    const view = new Uint8Array(b.buffer);
    expect(view.length).toBe(bytes);
    expect(view.every((x) => x === 0)).toBe(true);
    view[0] = 1;
    view[bytes - 1] = 2;
    expect(new Uint8Array(b.buffer)[bytes - 1]).toBe(2);
    b.close();
    b.close(); // idempotent
    expect(b.closed).toBe(true);
    // The view was detached before the memory was freed: it reads as empty instead of faulting.
    expect(view.length).toBe(0);
    expect(() => b.buffer).toThrow(/after close/);
    expect(() => b.address).toThrow(/after close/);
  });

  test("allocating on a node that does not exist is refused", () => {
    expect(() => allocNativeBuffer(4096, numaMaxNode() + 1)).toThrow(/does not exist/);
  });
});

test("without a node the buffer comes from mmap, and Symbol.dispose frees it", () => {
  let view: Uint8Array;
  {
    using b = allocNativeBuffer(3 * pageBytes);
    expect(b.source).toBe("mmap");
    expect(b.node).toBeNull();
    expect(b.address % pageBytes).toBe(0);
    view = new Uint8Array(b.buffer);
    view.fill(7);
    expect(view[3 * pageBytes - 1]).toBe(7);
  }
  expect(view.length).toBe(0);
});
