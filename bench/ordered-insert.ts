// What the ordered key index (issue 12) adds to an insert into one shard's KeyStore: key-creating
// inserts (find, then insertMissed) into a store with the index against one without
// (`ordered: false`), in the same process, alternating store by store so that the machine's load
// falls on both alike. Each round builds a fresh pair of stores and times them in batches of 5 k
// keys up to `keys`, the first batch of each store serving as warm-up, and prints the ratio of the
// totals and the median of the batches' ratios (each batch's pair ran back to back, so a load
// spike on the shared machine moves one pair, not the median). Three key shapes:
// - scattered: `nk-<hash>-<n>` as in bench/core.bench.ts (the first 8 bytes mostly differ);
// - shared start: `tenant/0042/user/<hash>` (the first 8 bytes are all alike: every comparison
//   falls back to the arena, the index's worst case before the tree kept its keys' common start);
// - bench: `bench-<n>` in a scattered order, the keys `hermes-kv bench` writes (src/worker/bench-clients.ts):
//   short, a 6-byte common start, then decimal digits.
// Measures; asserts nothing but that every insert happened.
//
//   bun bench/ordered-insert.ts            300,000 keys, 3 rounds
//   bun bench/ordered-insert.ts 1000000 5  other sizes
//   bun bench/ordered-insert.ts 1000000 5 bench  one shape
// After each round, what the first listings after the burst of inserts pay (leaves are put in order
// when a seek or scan first reaches them): `seeks` seeks to keys of the store, each followed by a
// scan of 100 keys, timed once and then again over the same keys.
//
//   ORDERED_BASE=/work/base bun bench/ordered-insert.ts 1000000 1
//       also times the KeyStore of another checkout (with its index) in the same process, batch by
//       batch beside the two stores here, and prints the median of the batches' this/base ratios

import { loadavg } from "node:os";
import { KeyStore, type StoreSide } from "../src/core/key-store.ts";
import { OrderedCursor } from "../src/core/ordered-keys.ts";

class Side implements StoreSide {
  id = 0;
  slot = -1;
}

const keys = Number(process.argv[2] ?? 300_000);
const rounds = Number(process.argv[3] ?? 3);
const batch = 5_000;
/** Seeks timed after each round's inserts. */
const seeks = 1000;
const encoder = new TextEncoder();
const scratch = new Uint8Array(64);

function keyText(shape: string, n: number): string {
  const hash = (Math.imul(n, 0x9e3779b1) >>> 0).toString(16);
  // n -> n * prime mod keys is a permutation of 0..keys-1 (the prime, 2654435761, divides no size used here).
  if (shape === "bench") return `bench-${(n * 2654435761) % keys}`;
  return shape === "scattered" ? `nk-${hash}-${n}` : `tenant/0042/user/${hash}-${n}`;
}

/** Pre-encoded keys (encoding is not what is measured), as one buffer and offsets. */
function encodeAll(shape: string): { bytes: Uint8Array; at: Uint32Array } {
  const bytes = new Uint8Array(keys * 40);
  const at = new Uint32Array(keys + 1);
  let used = 0;
  for (let n = 0; n < keys; n++) {
    const written = encoder.encodeInto(keyText(shape, n), scratch).written;
    bytes.set(scratch.subarray(0, written), used);
    at[n] = used;
    used += written;
  }
  at[keys] = used;
  return { bytes, at };
}

/** The other checkout's KeyStore (ORDERED_BASE), or null. */
const baseDir = process.env.ORDERED_BASE;
const BaseStore: typeof KeyStore | null =
  baseDir === undefined ? null : (await import(`${baseDir}/src/core/key-store.ts`)).KeyStore;

function newStore(ordered: boolean, Store: typeof KeyStore = KeyStore): KeyStore<Side> {
  return new Store<Side>({ keysMax: keys + batch, bytesMax: keys * 128 + (64 << 20), valueBytesMax: 64, ordered });
}

function median(values: number[]): number {
  return values.slice().sort((a, b) => a - b)[values.length >> 1]!;
}

/** Insert keys [from, to) into `store`; returns the nanoseconds it took. */
function insertBatch(store: KeyStore<Side>, encoded: { bytes: Uint8Array; at: Uint32Array }, from: number, to: number) {
  const { bytes, at } = encoded;
  const start = Bun.nanoseconds();
  for (let n = from; n < to; n++) {
    const length = at[n + 1]! - at[n]!;
    if (store.find(bytes, at[n]!, length) >= 0) throw new Error("a key was already present");
    store.insertMissed(bytes, at[n]!, length, null, 0, 0, 0);
  }
  return Bun.nanoseconds() - start;
}

console.log(`ordered-insert: ${keys} keys per store, ${rounds} rounds, load ${loadAverage()}`);
const shapes = process.argv[4]?.split(",") ?? ["scattered", "shared start", "bench"];
for (const shape of shapes) {
  const encoded = encodeAll(shape);
  for (let round = 1; round <= rounds; round++) {
    // With the index, without it, and (ORDERED_BASE) the other checkout's with its index.
    const stores = [newStore(true), newStore(false)];
    if (BaseStore !== null) stores.push(newStore(true, BaseStore));
    const ns = stores.map(() => 0);
    const ratios: number[] = [];
    const baseRatios: number[] = [];
    for (let from = 0; from < keys; from += batch) {
      const to = Math.min(keys, from + batch);
      // The store that goes first changes from batch to batch (going first or last has its own cost).
      const took = stores.map(() => 0);
      for (let turn = 0; turn < stores.length; turn++) {
        const s = (from / batch + turn) % stores.length;
        took[s] = insertBatch(stores[s]!, encoded, from, to);
      }
      if (from === 0) continue;
      for (let s = 0; s < stores.length; s++) ns[s]! += took[s]!;
      ratios.push(took[0]! / took[1]!);
      if (BaseStore !== null) baseRatios.push(took[0]! / took[2]!);
    }
    for (const store of stores) if (store.keyCount !== keys) throw new Error("not every key was inserted");
    const timed = keys - batch;
    const withIndex = ns[0]! / timed;
    const without = ns[1]! / timed;
    const base =
      BaseStore === null
        ? ""
        : `, base with index ${(ns[2]! / timed / 1000).toFixed(3)} µs/insert, ` +
          `median batch ratio this/base ${median(baseRatios).toFixed(2)}, ` +
          `base/without ${median(ratios.map((r, i) => r / baseRatios[i]!)).toFixed(2)}`;
    const [first, again] = [seekAndScan(stores[0]!, encoded), seekAndScan(stores[0]!, encoded)];
    console.log(
      `${shape.padEnd(12)} round ${round}: seek and 100-key scan after the inserts ${first.toFixed(1)} µs, ` +
        `again ${again.toFixed(1)} µs`,
    );
    console.log(
      `${shape.padEnd(12)} round ${round}: with index ${(withIndex / 1000).toFixed(3)} µs/insert, ` +
        `without ${(without / 1000).toFixed(3)} µs/insert, ratio ${(withIndex / without).toFixed(2)}, ` +
        `median batch ratio ${median(ratios).toFixed(2)}, tree height ${stores[0]!.orderedHeight}${base}`,
    );
  }
}
console.log(`load ${loadAverage()}`);

/** Seeks to every (keys / seeks)-th key, each followed by a scan of 100 keys; returns µs per seek and scan. */
function seekAndScan(store: KeyStore<Side>, encoded: { bytes: Uint8Array; at: Uint32Array }): number {
  const { bytes, at } = encoded;
  const cursor = new OrderedCursor();
  const step = Math.max(1, Math.floor(keys / seeks));
  let scanned = 0;
  const start = Bun.nanoseconds();
  for (let n = 0; n < keys; n += step) {
    store.seekOrdered(cursor, bytes, at[n]!, at[n + 1]! - at[n]!, false);
    for (let i = 0; i < 100 && store.slotAt(cursor) >= 0; i++, scanned++) store.nextOrdered(cursor);
  }
  if (scanned === 0) throw new Error("the scans found no key");
  return (Bun.nanoseconds() - start) / 1000 / Math.ceil(keys / step);
}

function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}
