// The rounds of the core's microbenchmarks (bench/core.bench.ts measures them with mitata,
// bench/core-profile.ts runs one in a loop under the profiler): a local read, and a full write round
// (coordinator + 2 followers in one thread: INV, ACK, VAL) with an in-memory message queue that
// reuses its slots (bench/memory-cluster.ts). Keys go in as UTF-8 bytes, as the worker's bench
// clients and the wire hand them over.

import { Replica } from "../src/core/replica.ts";
import { OpKind } from "../src/base/kinds.ts";
import { SlotQueue, drain as drainQueue, memoryCluster } from "./memory-cluster.ts";

export let completed = 0;
const completions = { complete: () => void completed++ };
const queue = new SlotQueue();
/** With the ordered key index (issue 12), as the product runs. */
const replicas = memoryCluster(Replica, queue, completions, { orderedKeys: true });
const unorderedReplicas = memoryCluster(Replica, queue, completions, { orderedKeys: false });

function drain(replicas: Replica[]): void {
  drainQueue(queue, replicas);
}

const encoder = new TextEncoder();
const keys = Array.from({ length: 1024 }, (_, i) => encoder.encode(`key-${i}`));
const counters = Array.from({ length: 64 }, (_, i) => encoder.encode(`n-${i}`));
const value = new Uint8Array(32).fill(7);
for (const key of keys) {
  replicas[0]!.submitKey(0, OpKind.Write, key, 0, key.length, value, 0, 0, 0, 0);
  drain(replicas);
}

// New keys in a scattered order (a multiplicative hash of a counter): every write round creates a
// key, so the ordered index takes one insert per replica. Both clusters start with 200 k keys, so
// the tree is three levels deep as in a loaded store.
const newKeyBytes = new Uint8Array(24);
let newKeys = 0;
function newKey(): number {
  const text = `nk-${(Math.imul(newKeys++, 0x9e3779b1) >>> 0).toString(16)}-${newKeys}`;
  return encoder.encodeInto(text, newKeyBytes).written;
}
for (const set of [replicas, unorderedReplicas])
  for (let i = 0; i < 200_000; i++) {
    const length = newKey();
    set[0]!.submitKey(0, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
    drain(set);
  }

let k = 0;

export function readRound(): void {
  const key = keys[k++ & 1023]!;
  replicas[1]!.submitKey(1, OpKind.Read, key, 0, key.length, null, 0, 0, 0, 0);
}
export function writeRound(): void {
  const key = keys[k++ & 1023]!;
  replicas[k % 3]!.submitKey(2, OpKind.Write, key, 0, key.length, value, 0, 0, 0, 0);
  drain(replicas);
}
export function incrRound(): void {
  const key = counters[k++ & 63]!;
  replicas[k % 3]!.submitKey(3, OpKind.Incr, key, 0, key.length, null, 0, 0, 1, 0);
  drain(replicas);
}
/** A write round that creates a key: the ordered index takes one insert per replica. */
export function createRound(): void {
  const length = newKey();
  replicas[k++ % 3]!.submitKey(2, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
  drain(replicas);
}
/** createRound without the ordered key index. */
export function createRoundUnordered(): void {
  const length = newKey();
  unorderedReplicas[k++ % 3]!.submitKey(2, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
  drain(unorderedReplicas);
}
