// What the ordered key index (issue 12) adds to a key-creating write round of the core (3 replicas
// in one thread, INV, ACK, VAL in memory, as in bench/core.bench.ts), measured as a ratio that the
// shared machine's load spikes do not move much: the clusters (with the index, without it, and
// with ORDERED_BASE set the other checkout's with its index) take turns, batch by batch, and the
// median of the batches' ratios is printed beside the totals. mitata's rounds in core.bench.ts run
// one benchmark after the other, so a spike lands on one side of the ratio. Each cluster starts with
// `prefill` keys (the tree three levels deep); every timed round creates a new key in a scattered
// order. Measures; throws only if no op completed.
//
//   bun bench/ordered-round.ts                         200,000 keys first, 100 batches of 2,000 rounds
//   ORDERED_BASE=/work/base bun bench/ordered-round.ts 200000 100

import { loadavg } from "node:os";
import { Replica } from "../src/core/replica.ts";
import { OpKind } from "../src/base/kinds.ts";
import { SlotQueue, drain as drainQueue, memoryCluster } from "./memory-cluster.ts";

let completed = 0;
const completions = { complete: () => void completed++ };
const queue = new SlotQueue();

/** Three replicas of one cluster (Replica of this checkout or ORDERED_BASE's), with or without the index, sharing `queue`. */
function cluster(ReplicaOf: typeof Replica, orderedKeys: boolean): Replica[] {
  return memoryCluster(ReplicaOf, queue, completions, { orderedKeys });
}
function drain(replicas: Replica[]): void {
  drainQueue(queue, replicas);
}

const prefill = Number(process.argv[2] ?? 200_000);
const batches = Number(process.argv[3] ?? 100);
const batch = 2_000;
const baseDir = process.env.ORDERED_BASE;
const BaseReplica: typeof Replica | null =
  baseDir === undefined ? null : (await import(`${baseDir}/src/core/replica.ts`)).Replica;

const encoder = new TextEncoder();
const value = new Uint8Array(32).fill(7);
const newKeyBytes = new Uint8Array(24);
/** Keys created per cluster: each cluster creates the same keys in the same order. */
const created: number[] = [];
function newKey(cluster: number): number {
  const n = created[cluster]!++;
  return encoder.encodeInto(`nk-${(Math.imul(n, 0x9e3779b1) >>> 0).toString(16)}-${n}`, newKeyBytes).written;
}

const clusters = [cluster(Replica, true), cluster(Replica, false)];
if (BaseReplica !== null) clusters.push(cluster(BaseReplica, true));
for (let c = 0; c < clusters.length; c++) {
  created.push(0);
  for (let i = 0; i < prefill; i++) {
    const length = newKey(c);
    clusters[c]![0]!.submitKey(0, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
    drain(clusters[c]!);
  }
}

console.log(
  `ordered-round: ${prefill} keys first, ${batches} batches of ${batch} key-creating rounds, load ${loadAverage()}`,
);
let k = 0;
const ns = clusters.map(() => 0);
const ratios: number[] = [];
const baseRatios: number[] = [];
for (let b = 0; b < batches; b++) {
  // The cluster that goes first changes from batch to batch: going first or last in a batch has
  // its own cost (caches, the other clusters' garbage), which must not fall on one side.
  const took = clusters.map(() => 0);
  for (let turn = 0; turn < clusters.length; turn++) {
    const c = (b + turn) % clusters.length;
    const replicas = clusters[c]!;
    const start = Bun.nanoseconds();
    for (let i = 0; i < batch; i++) {
      const length = newKey(c);
      replicas[k++ % 3]!.submitKey(2, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
      drain(replicas);
    }
    took[c] = Bun.nanoseconds() - start;
  }
  if (b === 0) continue; // warm-up
  for (let c = 0; c < clusters.length; c++) ns[c]! += took[c]!;
  ratios.push(took[0]! / took[1]!);
  if (BaseReplica !== null) baseRatios.push(took[0]! / took[2]!);
}
if (completed === 0) throw new Error("no op completed: the benchmark measured nothing");
const rounds = batch * (batches - 1);
const us = (c: number): string => (ns[c]! / rounds / 1000).toFixed(2);
console.log(
  `key-creating write round: with index ${us(0)} µs, without ${us(1)} µs, ratio ${(ns[0]! / ns[1]!).toFixed(2)}, ` +
    `median batch ratio ${median(ratios).toFixed(2)}` +
    (BaseReplica === null
      ? ""
      : `; base with index ${us(2)} µs, median batch ratio this/base ${median(baseRatios).toFixed(2)}, ` +
        `base/without ${median(ratios.map((r, i) => r / baseRatios[i]!)).toFixed(2)}`),
);
console.log(`load ${loadAverage()}`);

function median(values: number[]): number {
  return values.slice().sort((a, b) => a - b)[values.length >> 1]!;
}

function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}
