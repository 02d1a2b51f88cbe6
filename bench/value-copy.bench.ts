// The value a local read hands out (ClientOps.complete), three ways, for 64 reads of 32-byte
// values as one batch does: its own copy (slice, what ships), a view into the store (subarray: no
// copy, but lent, so a later write would change it) and a copy carved from a shared 64 KiB chunk
// (subarray of the chunk plus a byte loop). Shows what a batch's value copy costs: the object per
// value, not the bytes; a view costs as much as a copy, so only a result without a Uint8Array per
// value would be cheaper.
//
//   bun bench/value-copy.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";

const reads = 64;
const valueBytes = 32;
const store = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
const at = Array.from({ length: reads }, (_, i) => (i * 4099) % (store.length - valueBytes));

const chunkBytes = 64 * 1024;
let chunk = new Uint8Array(chunkBytes);
let used = 0;
function carve(from: number, length: number): Uint8Array {
  if (used + length > chunkBytes) {
    chunk = new Uint8Array(chunkBytes);
    used = 0;
  }
  const out = chunk.subarray(used, used + length);
  for (let i = 0; i < length; i++) chunk[used + i] = store[from + i]!;
  used += length;
  return out;
}

group(`${reads} values of ${valueBytes} bytes`, () => {
  summary(() => {
    bench("slice (own copy)", () => {
      for (let i = 0; i < reads; i++) do_not_optimize(store.slice(at[i]!, at[i]! + valueBytes));
    });
    bench("subarray (lent view)", () => {
      for (let i = 0; i < reads; i++) do_not_optimize(store.subarray(at[i]!, at[i]! + valueBytes));
    });
    bench("carved from a 64 KiB chunk", () => {
      for (let i = 0; i < reads; i++) do_not_optimize(carve(at[i]!, valueBytes));
    });
  });
});

await run();
