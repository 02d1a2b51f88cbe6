// The ordered keys of the key store (a B+tree of key ids in byte order) against a sorted model:
// random binary keys (shared prefixes, empty-ish and long ones, bytes 0x00 and 0xff) inserted in
// random order across index growths; after each batch the tree's whole-state check passes and
// seeks (inclusive and exclusive, at present and absent keys) walk exactly the model's order.

import { describe, expect, test } from "bun:test";
import { KeyStore, type StoreSide } from "../../src/core/key-store.ts";
import { OrderedCursor, orderedFanoutMax } from "../../src/core/ordered-keys.ts";
import { Prng, testSeed } from "../lib/prng.ts";

class Side implements StoreSide {
  id = 0;
  slot = -1;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function byteOrder(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function randomKey(random: Prng): Uint8Array {
  // Few distinct bytes and shared prefixes make equal-prefix comparisons common.
  const length = 1 + random.int(random.int(4) === 0 ? 40 : 6);
  const key = new Uint8Array(length);
  for (let i = 0; i < length; i++) key[i] = [0x00, 0x2f, 0x61, 0x62, 0xff][random.int(5)]!;
  return key;
}

/** The keys from the cursor on, as hex, up to `max`. */
function walk(store: KeyStore<Side>, cursor: OrderedCursor, max: number): string[] {
  const out: string[] = [];
  for (
    let slot = store.slotAt(cursor);
    slot >= 0 && out.length < max;
    store.nextOrdered(cursor), slot = store.slotAt(cursor)
  ) {
    const at = store.keyAt(slot);
    out.push(hex(store.page(slot).subarray(at, at + store.keyBytes(slot))));
  }
  return out;
}

describe("ordered keys", () => {
  test("random inserts keep byte order through index growths; seeks match a sorted model", () => {
    const random = new Prng(testSeed(1207));
    const store = new KeyStore<Side>({ keysMax: 100_000, bytesMax: 64 << 20, valueBytesMax: 1024 });
    const model: Uint8Array[] = [];
    const seen = new Set<string>();
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 400; i++) {
        const key = randomKey(random);
        if (seen.has(hex(key))) continue;
        seen.add(hex(key));
        expect(store.find(key, 0, key.length)).toBe(-1);
        expect(store.insertMissed(key, 0, key.length, null, 0, 0, 0)).toBeGreaterThanOrEqual(0);
        model.push(key);
      }
      store.checkInvariants();
      const sorted = model.slice().sort(byteOrder).map(hex);
      const cursor = new OrderedCursor();
      store.seekOrdered(cursor, new Uint8Array(0), 0, 0, false);
      expect(walk(store, cursor, Infinity)).toEqual(sorted);
      for (let probe = 0; probe < 50; probe++) {
        const at = random.int(3) === 0 ? model[random.int(model.length)]! : randomKey(random);
        const exclusive = random.int(2) === 0;
        store.seekOrdered(cursor, at, 0, at.length, exclusive);
        const expected = model
          .filter((k) => (exclusive ? byteOrder(k, at) > 0 : byteOrder(k, at) >= 0))
          .sort(byteOrder)
          .slice(0, 20)
          .map(hex);
        expect(walk(store, cursor, 20)).toEqual(expected);
      }
    }
    // Enough keys for three levels (leaves split at half of orderedFanoutMax).
    expect(model.length).toBeGreaterThan((orderedFanoutMax * orderedFanoutMax) / 2);
  });

  test("ascending and descending insert orders (the split edges) stay ordered", () => {
    for (const descending of [false, true]) {
      const store = new KeyStore<Side>({ keysMax: 20_000, bytesMax: 16 << 20, valueBytesMax: 64 });
      const keys = Array.from({ length: 9000 }, (_, i) => new TextEncoder().encode(`k/${String(i).padStart(5, "0")}`));
      if (descending) keys.reverse();
      for (const key of keys) {
        expect(store.find(key, 0, key.length)).toBe(-1);
        store.insertMissed(key, 0, key.length, null, 0, 0, 0);
      }
      store.checkInvariants();
      const cursor = new OrderedCursor();
      store.seekOrdered(cursor, new Uint8Array(0), 0, 0, false);
      const listed = walk(store, cursor, Infinity);
      expect(listed).toEqual(keys.slice().sort(byteOrder).map(hex));
    }
  });

  test("a store without ordered keys refuses ordered scans", () => {
    const store = new KeyStore<Side>({ keysMax: 10, bytesMax: 1 << 20, valueBytesMax: 64, ordered: false });
    expect(store.ordered).toBe(false);
    expect(() => store.seekOrdered(new OrderedCursor(), new Uint8Array(0), 0, 0, false)).toThrow();
  });
});
