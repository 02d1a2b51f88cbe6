// Where a worker thread runs. With libnuma (ffi/numa) the worker pins itself to a NUMA node so that
// its transport buffers are node-local; without it, it runs unpinned and says so once.

import {
  currentCpu,
  numaAvailable,
  numaNodeOfCpu,
  numaUnavailableReason,
  pinThreadToNode,
} from "../../ffi/numa/numa.ts";

export interface Placement {
  node: number | null;
  cpu: number | null;
  pinned: boolean;
}

let warned = false;

/** Pin to `numaNode` (-1: do not pin) and report where the thread runs. */
export function placeThread(numaNode: number): Placement {
  if (!numaAvailable()) {
    if (!warned) {
      warned = true;
      console.error(`hermes-kv: workers run unpinned: ${numaUnavailableReason() ?? "libnuma unavailable"}`);
    }
    return { node: null, cpu: currentCpu(), pinned: false };
  }
  let pinned = false;
  if (numaNode >= 0) {
    pinThreadToNode(numaNode);
    pinned = true;
  }
  const cpu = currentCpu();
  return { node: numaNodeOfCpu(cpu), cpu, pinned };
}
