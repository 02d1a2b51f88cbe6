// The compact key store against a plain Map model: random inserts, overwrites of every size class
// (in place and moving), tombstones, timestamps and states, side objects attached and detached,
// growth of the index (rehash) with side objects following their keys, and the full-store edges
// (keysMax, bytesMax, the clients' reserve). After every step the store answers like the model, and
// its whole-state check (index, arena accounting, sides) passes at checkpoints.

import { describe, expect, test } from "bun:test";
import { KeyStore, itemHeaderBytes, type StoreSide } from "../../src/core/key-store.ts";
import { classCount, classOf, classSlotBytes, SlabArena, locNone } from "../../src/core/slab-arena.ts";
import { hashKey } from "../../src/core/key-hash.ts";
import { KeyIndex } from "../../src/core/key-index.ts";
import { AssertionError } from "../../src/base/assert.ts";
import { Prng, testSeed } from "../lib/prng.ts";

class Side implements StoreSide {
  id = 0;
  slot = -1;
  constructor(readonly name: string) {}
}

interface Entry {
  value: Uint8Array | null;
  version: number;
  writer: number;
  lastWriter: number;
  rmw: boolean;
  state: number;
  side: Side | null;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** Model + store side by side; every mutation goes to both, every read compares them. */
class Pair {
  readonly model = new Map<string, Entry>();
  readonly store: KeyStore<Side>;
  constructor(
    readonly random: Prng,
    keysMax: number,
    bytesMax: number,
    readonly valueBytesMax: number,
  ) {
    this.store = new KeyStore<Side>({ keysMax, bytesMax, valueBytesMax });
  }

  /** A key's bytes inside a larger buffer at a random offset (keys are read in place). */
  framed(key: Uint8Array): { bytes: Uint8Array; at: number } {
    const at = this.random.int(8);
    const bytes = new Uint8Array(at + key.length + this.random.int(8)).fill(0xee);
    bytes.set(key, at);
    return { bytes, at };
  }

  slotOf(key: Uint8Array): number {
    const { bytes, at } = this.framed(key);
    return this.store.find(bytes, at, key.length);
  }

  /** Insert if absent, with `value` given to the insert itself (null: absent). */
  insert(key: Uint8Array, reserveBytes = 0, value: Uint8Array | null = null): number {
    const { bytes, at } = this.framed(key);
    const found = this.store.find(bytes, at, key.length);
    if (found >= 0) return found;
    const valueAt = this.random.int(4);
    const framedValue = value === null ? null : new Uint8Array(valueAt + value.length + 2).fill(0xcc);
    framedValue?.set(value!, valueAt);
    const slot = this.store.insertMissed(bytes, at, key.length, framedValue, valueAt, value?.length ?? 0, reserveBytes);
    framedValue?.fill(0x44);
    if (slot >= 0)
      this.model.set(hex(key), {
        value: value === null ? null : value.slice(),
        version: 0,
        writer: 0,
        lastWriter: 0,
        rmw: false,
        state: 1,
        side: null,
      });
    return slot;
  }

  setValue(key: Uint8Array, value: Uint8Array | null, reserveBytes = 0): boolean {
    const slot = this.slotOf(key);
    expect(slot).toBeGreaterThanOrEqual(0);
    const at = this.random.int(4);
    const framed = value === null ? null : new Uint8Array(at + value.length + 3).fill(0xdd);
    framed?.set(value!, at);
    const ok = this.store.setValue(slot, framed, at, value?.length ?? 0, reserveBytes);
    if (ok) this.model.get(hex(key))!.value = value === null ? null : value.slice();
    // The source buffer is scribbled over: the store kept a copy, not a view.
    framed?.fill(0x55);
    return ok;
  }

  verify(key: Uint8Array): void {
    const slot = this.slotOf(key);
    const e = this.model.get(hex(key));
    if (e === undefined) {
      expect(slot).toBe(-1);
      return;
    }
    expect(slot).toBeGreaterThanOrEqual(0);
    const s = this.store;
    expect(s.keyBytes(slot)).toBe(key.length);
    expect(hex(s.page(slot).subarray(s.keyAt(slot), s.keyAt(slot) + key.length))).toBe(hex(key));
    expect(s.hasValue(slot)).toBe(e.value !== null);
    expect(s.copyValue(slot) === null ? null : hex(s.copyValue(slot)!)).toBe(e.value === null ? null : hex(e.value));
    expect([s.version(slot), s.writer(slot), s.lastWriter(slot), s.rmw(slot), s.state(slot)]).toEqual([
      e.version,
      e.writer,
      e.lastWriter,
      e.rmw,
      e.state,
    ]);
    expect(s.side(slot)).toBe(e.side);
    if (e.side !== null) expect(e.side.slot).toBe(slot);
  }

  verifyAll(): void {
    for (const k of this.model.keys()) this.verify(Buffer.from(k, "hex"));
    expect(this.store.keyCount).toBe(this.model.size);
    this.store.checkInvariants();
  }
}

function randomKey(random: Prng, pool: Uint8Array[]): Uint8Array {
  // Reuse a key often (overwrites), sometimes a prefix/extension of one (same hash prefix, other length).
  if (pool.length > 0 && random.chance(0.6)) return random.pick(pool);
  if (pool.length > 0 && random.chance(0.1)) {
    const base = random.pick(pool);
    return random.chance(0.5)
      ? base.subarray(0, Math.max(0, base.length - 1)).slice()
      : Uint8Array.from([...base, random.int(256)]);
  }
  const key = new Uint8Array(random.chance(0.05) ? 0 : 1 + random.int(random.chance(0.1) ? 300 : 24));
  for (let i = 0; i < key.length; i++) key[i] = random.chance(0.7) ? 0x61 + random.int(4) : random.int(256);
  pool.push(key);
  return key;
}

/** Values of every size class, often the same size as before (in place), sometimes a tombstone. */
function randomValue(random: Prng, valueBytesMax: number, previous: Uint8Array | null): Uint8Array | null {
  if (random.chance(0.1)) return null;
  let length: number;
  if (previous !== null && random.chance(0.4)) length = previous.length;
  else if (random.chance(0.6)) length = random.int(80);
  else if (random.chance(0.8)) length = random.int(2000);
  else length = random.int(valueBytesMax + 1);
  const value = new Uint8Array(length);
  for (let i = 0; i < length; i++) value[i] = random.int(256);
  return value;
}

describe("KeyStore against a Map model", () => {
  for (const seed of [1, 2, 3, 4, 5].map((s) => testSeed(s * 7919))) {
    test(`random inserts, overwrites, tombstones, timestamps and sides (seed ${seed})`, () => {
      const random = new Prng(seed);
      const pair = new Pair(random, 20_000, 64 * 1024 * 1024, 20_000);
      const pool: Uint8Array[] = [];
      const sides: Side[] = [];
      for (let step = 0; step < 6000; step++) {
        const key = randomKey(random, pool);
        const roll = random.float();
        if (!pair.model.has(hex(key)) || roll < 0.2) {
          const value = random.chance(0.5) ? randomValue(random, pair.valueBytesMax, null) : null;
          expect(pair.insert(key, 0, value)).toBeGreaterThanOrEqual(0);
        } else if (roll < 0.7) {
          expect(pair.setValue(key, randomValue(random, pair.valueBytesMax, pair.model.get(hex(key))!.value))).toBe(
            true,
          );
        } else if (roll < 0.85) {
          const e = pair.model.get(hex(key))!;
          e.version = random.chance(0.1) ? 2 ** 53 - 1 - random.int(4) : random.int(1e9);
          // A first process's writer id (its node id), or any u32 writer id (src/base/ids.ts).
          e.writer = random.chance(0.5) ? random.int(32) : random.int(2 ** 32);
          e.lastWriter = random.int(32);
          e.rmw = random.chance(0.5);
          pair.store.setTs(pair.slotOf(key), e.version, e.writer, e.rmw, e.lastWriter);
          e.state = 1 + random.int(5);
          pair.store.setState(pair.slotOf(key), e.state);
        } else {
          const e = pair.model.get(hex(key))!;
          const slot = pair.slotOf(key);
          if (e.side === null) {
            const side = sides.pop() ?? new Side(hex(key));
            pair.store.attachSide(slot, side);
            e.side = side;
          } else {
            pair.store.detachSide(e.side);
            sides.push(e.side);
            e.side = null;
          }
        }
        pair.verify(key);
        if (step % 500 === 0) pair.verifyAll();
      }
      pair.verifyAll();
      // Every size class the values reached was used, in place and moving.
      expect(pair.store.arena.stats().slotsFree).toBeGreaterThan(0);
    });
  }

  test("the index grows from 16 slots to hold 100 000 keys; side objects follow their keys through every rehash", () => {
    const random = new Prng(testSeed(42));
    const pair = new Pair(random, 100_000, 64 * 1024 * 1024, 64);
    const withSides: Uint8Array[] = [];
    const generations: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      const key = new TextEncoder().encode(`key-${i}`);
      const slot = pair.insert(key);
      expect(slot).toBeGreaterThanOrEqual(0);
      if (i % 997 === 0) {
        const side = new Side(`key-${i}`);
        pair.store.attachSide(slot, side);
        pair.model.get(hex(key))!.side = side;
        withSides.push(key);
      }
      if (i % 3 === 0) pair.setValue(key, new Uint8Array(32).fill(i & 0xff));
      generations.push(pair.store.generation);
      // The side objects stay on their keys after each growth.
      if (generations.length > 1 && generations.at(-1) !== generations.at(-2))
        for (const k of withSides) pair.verify(k);
    }
    expect(pair.store.generation).toBe(Math.log2(pair.store.indexCapacity / 16));
    expect(pair.store.keyCount * 4).toBeLessThanOrEqual(pair.store.indexCapacity * 3);
    pair.verifyAll();
  });

  test("keysMax is a hard bound: the insert after it fails and changes nothing", () => {
    const random = new Prng(testSeed(5));
    const pair = new Pair(random, 100, 1024 * 1024, 64);
    for (let i = 0; i < 100; i++) expect(pair.insert(Uint8Array.of(i, 1))).toBeGreaterThanOrEqual(0);
    expect(pair.store.full).toBe(true);
    expect(pair.insert(Uint8Array.of(200, 1))).toBe(-1);
    expect(pair.insert(Uint8Array.of(5, 1))).toBeGreaterThanOrEqual(0); // present keys are still found
    pair.verifyAll();
  });

  test("a full arena refuses the insert or the growing overwrite and changes nothing; same-class overwrites and freed slots still work", () => {
    const random = new Prng(testSeed(6));
    const bytesMax = 64 * 1024; // the first pages: 16 KiB, then 32 KiB, then no more (48 KiB + 64 KiB > bytesMax)
    const pair = new Pair(random, 100_000, bytesMax, 4096);
    const keys: Uint8Array[] = [];
    let valueless: Uint8Array | null = null;
    for (let i = 0; ; i++) {
      const key = Uint8Array.of(i & 0xff, i >> 8, 7);
      if (pair.insert(key) < 0) break;
      // A key may get no room for its value: it stays absent (and is no "40-byte" key).
      if (!pair.setValue(key, new Uint8Array(40).fill(i & 0xff))) {
        valueless = key;
        break;
      }
      keys.push(key);
    }
    pair.verifyAll();
    expect(pair.store.arena.stats().pageBytes).toBeLessThanOrEqual(bytesMax);
    // Overwrites within the class keep working when nothing can be allocated.
    for (const key of keys) expect(pair.setValue(key, new Uint8Array(40).fill(9))).toBe(true);
    // A larger value needs a new slot: refused, and the old value stays.
    const before = pair.store.copyValue(pair.slotOf(keys[0]!));
    expect(pair.setValue(keys[0]!, new Uint8Array(3000).fill(1))).toBe(false);
    expect(pair.store.copyValue(pair.slotOf(keys[0]!))).toEqual(before);
    // Tombstones move items to the smaller class of key-only items (while it has room) and free
    // their 40-byte-value slots, which the next values of that class reuse.
    const tombstoned = keys.filter((key) => pair.setValue(key, null));
    expect(tombstoned.length).toBeGreaterThan(0);
    const slotsFree = pair.store.arena.stats().slotsFree;
    expect(slotsFree).toBeGreaterThan(0);
    if (valueless !== null) expect(pair.setValue(valueless, new Uint8Array(40).fill(3))).toBe(true);
    expect(pair.setValue(tombstoned[0]!, new Uint8Array(40).fill(4))).toBe(true);
    pair.verifyAll();
  });

  test("a reserve keeps the last pages for inserts made without one (clients leave room for the protocol)", () => {
    const random = new Prng(testSeed(7));
    const pair = new Pair(random, 100_000, 64 * 1024, 64);
    const reserve = 32 * 1024;
    let withReserve = 0;
    while (pair.insert(Uint8Array.of(withReserve & 0xff, withReserve >> 8, 1), reserve) >= 0) withReserve++;
    expect(pair.store.arena.pageBytes).toBeLessThanOrEqual(64 * 1024 - reserve);
    let without = 0;
    while (pair.insert(Uint8Array.of(without & 0xff, without >> 8, 2), 0) >= 0) without++;
    expect(without).toBeGreaterThan(0);
    pair.verifyAll();
  });

  test("versions up to 2^53 - 1 are exact", () => {
    const store = new KeyStore<Side>({ keysMax: 10, bytesMax: 1 << 20, valueBytesMax: 16 });
    const key = Uint8Array.of(1, 2, 3);
    expect(store.find(key, 0, 3)).toBe(-1);
    const slot = store.insertMissed(key, 0, 3, null, 0, 0, 0);
    for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 2, 2 ** 53 - 1]) {
      store.setTs(slot, v, 31, true, 30);
      expect(store.version(slot)).toBe(v);
    }
    // The writer is a u32 and the last writer a node id 0..31, packed beside the flags: each keeps
    // its own bits, and the value flag survives both.
    for (const [writer, lastWriter] of [
      [2 ** 32 - 1, 31],
      [0, 0],
      [33, 1],
    ] as const) {
      for (const rmw of [true, false]) {
        store.setTs(slot, 7, writer, rmw, lastWriter);
        expect([store.writer(slot), store.lastWriter(slot), store.rmw(slot), store.hasValue(slot)]).toEqual([
          writer,
          lastWriter,
          rmw,
          false,
        ]);
      }
    }
    store.setLastWriter(slot, 17);
    expect([store.writer(slot), store.lastWriter(slot), store.rmw(slot)]).toEqual([33, 17, false]);
    expect(() => store.setTs(slot, 7, 2 ** 32, false, 0)).toThrow(AssertionError);
    expect(() => store.setTs(slot, 7, 1, false, 32)).toThrow(AssertionError);
    store.checkInvariants();
  });

  test("the whole-state check catches a corrupted index, header and free list", () => {
    const fresh = (): { store: KeyStore<Side>; slot: number } => {
      const store = new KeyStore<Side>({ keysMax: 100, bytesMax: 1 << 20, valueBytesMax: 64 });
      let slot = -1;
      for (let i = 0; i < 10; i++) {
        const key = Uint8Array.of(i, 9);
        store.find(key, 0, 2);
        slot = store.insertMissed(key, 0, 2, null, 0, 0, 0);
        store.setValue(slot, new Uint8Array(i * 5), 0, i * 5, 0);
      }
      store.checkInvariants();
      return { store, slot };
    };
    {
      const { store, slot } = fresh();
      store.page(slot)[store.keyAt(slot)] ^= 1; // the key's bytes no longer hash to its tag
      expect(() => store.checkInvariants()).toThrow(AssertionError);
    }
    {
      const { store, slot } = fresh();
      store.setState(slot, 9);
      expect(() => store.checkInvariants()).toThrow("an item's state byte is a KeyState");
    }
    {
      const { store, slot } = fresh();
      store.setTs(slot, 1.5, 0, false, 0);
      expect(() => store.checkInvariants()).toThrow("an item's version is a safe integer");
    }
    {
      // A slot freed behind the store's back: the arena's counts no longer match the index.
      const { store, slot } = fresh();
      const cls = classOf(itemHeaderBytes + 2 + store.valueBytes(slot));
      const arena = store.arena;
      const loc = arena.allocate(cls, 0);
      expect(loc).not.toBe(locNone);
      expect(() => store.checkInvariants()).toThrow(
        "a class's used slots are exactly the items of that class in the index",
      );
    }
  });
});

describe("size classes and the hash", () => {
  test("classes are 8-byte aligned, increasing, and classOf picks the smallest that fits", () => {
    for (let c = 1; c < classCount; c++) {
      expect(classSlotBytes[c]! % 8).toBe(0);
      expect(classSlotBytes[c]!).toBeGreaterThan(classSlotBytes[c - 1]!);
    }
    for (let bytes = 1; bytes <= 1 << 20; bytes += bytes < 4096 ? 1 : 997) {
      const c = classOf(bytes);
      expect(classSlotBytes[c]!).toBeGreaterThanOrEqual(bytes);
      if (c > 0) expect(classSlotBytes[c - 1]!).toBeLessThan(bytes);
    }
    // A 9-byte key with a 31-byte value takes one 64-byte slot (the 24-byte header included).
    expect(classSlotBytes[classOf(itemHeaderBytes + 9 + 31)]).toBe(64);
  });

  test("an arena page of a class holds only that class's slots; a freed slot is the next one handed out", () => {
    const arena = new SlabArena(1 << 20);
    const a = arena.allocate(classOf(100), 0);
    const b = arena.allocate(classOf(100), 0);
    expect(b - a).toBe(classSlotBytes[classOf(100)]!);
    arena.free(a, classOf(100));
    expect(arena.allocate(classOf(100), 0)).toBe(a);
  });

  test("the hash reads the key in place and spreads short keys over the low bits", () => {
    const key = new TextEncoder().encode("k00000001");
    const framed = new Uint8Array(20);
    framed.set(key, 5);
    expect(hashKey(framed, 5, key.length)).toBe(hashKey(key, 0, key.length));
    const buckets = new Uint32Array(1024);
    for (let i = 0; i < 100_000; i++) {
      const k = new TextEncoder().encode(`k${i.toString().padStart(8, "0")}`);
      buckets[hashKey(k, 0, k.length) & 1023]++;
    }
    // 100 000 keys in 1024 buckets: about 98 each; a poor hash would leave buckets empty or crowded.
    expect(Math.min(...buckets)).toBeGreaterThan(50);
    expect(Math.max(...buckets)).toBeLessThan(150);
  });
});

describe("lookups by hash and words", () => {
  test("keys whose 32-bit hashes collide are told apart by their bytes, at any offset, with a random seed", () => {
    const random = new Prng(testSeed(4242));
    const seed = random.int(2 ** 32) | 0;
    // Find pairs of distinct 7-byte keys (a full word and a partial one) with the same hash: about
    // one per 2^16.5 keys drawn (the birthday bound).
    const byHash = new Map<number, Uint8Array>();
    const pairs: [Uint8Array, Uint8Array][] = [];
    for (let drawn = 0; pairs.length < 4; drawn++) {
      expect(drawn).toBeLessThan(4_000_000);
      const key = new Uint8Array(7);
      for (let j = 0; j < key.length; j++) key[j] = random.int(256);
      const hash = hashKey(key, 0, key.length, seed);
      const earlier = byHash.get(hash);
      if (earlier === undefined) byHash.set(hash, key);
      else if (!earlier.every((b, j) => b === key[j])) pairs.push([earlier, key]);
    }
    const store = new KeyStore<Side>({ keysMax: 100, bytesMax: 1024 * 1024, valueBytesMax: 16, hashSeed: seed });
    const framed = new Uint8Array(32);
    for (const [a, b] of pairs) {
      // The first of a pair is stored; the second has its tag but is absent until it is stored too.
      expect(store.find(a, 0, a.length)).toBe(-1);
      const slotA = store.insertMissed(a, 0, a.length, a, 0, a.length, 0);
      const at = random.int(framed.length - b.length);
      framed.set(b, at);
      expect(store.find(framed, at, b.length)).toBe(-1);
      const slotB = store.insertMissed(framed, at, b.length, b, 0, b.length, 0);
      expect(slotB).not.toBe(slotA);
      expect(store.find(a, 0, a.length)).toBe(slotA);
      expect(store.find(framed, at, b.length)).toBe(slotB);
      expect(store.copyValue(slotA)).toEqual(a);
      expect(store.copyValue(slotB)).toEqual(b);
      // A prefix of a stored key, which shares its first word: absent.
      expect(store.find(a, 0, a.length - 1)).toBe(-1);
    }
    store.checkInvariants();
  });

  test("the same keys under two seeds: different index order, the same contents", () => {
    const stores = [1, 2].map(
      (seed) => new KeyStore<Side>({ keysMax: 1000, bytesMax: 1024 * 1024, valueBytesMax: 16, hashSeed: seed }),
    );
    const encoder = new TextEncoder();
    for (let i = 0; i < 500; i++) {
      const key = encoder.encode(`key-${i}`);
      for (const store of stores) {
        expect(store.find(key, 0, key.length)).toBe(-1);
        store.insertMissed(key, 0, key.length, key, 0, key.length, 0);
      }
    }
    const order = (store: KeyStore<Side>) => {
      const keys: string[] = [];
      for (let s = store.nextSlot(0); s >= 0; s = store.nextSlot(s + 1)) keys.push(store.keyString(s));
      return keys;
    };
    expect(order(stores[0]!)).not.toEqual(order(stores[1]!));
    expect(order(stores[0]!).sort()).toEqual(order(stores[1]!).sort());
    for (const store of stores) store.checkInvariants();
    expect(
      () => new KeyStore<Side>({ keysMax: 10, bytesMax: 1024 * 1024, valueBytesMax: 16, hashSeed: 2 ** 31 }),
    ).toThrow(AssertionError);
  });
});

describe("the index's int32 slots", () => {
  test("locs of 2^31 and above (arenas past 2 GiB) survive the int32 slots, growth and the checks", () => {
    const index = new KeyIndex(100);
    // Locs on pages 2048 and 4094 (of 1 MiB address span each): their int32 forms are negative.
    const locs = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 2048 : 4094) * 2 ** 20 + 8 * i);
    const tags: number[] = [];
    for (let i = 0; i < locs.length; i++) {
      const tag = Math.imul(i + 1, 0x9e3779b1) | 0 || 1;
      tags.push(tag);
      let s = tag & index.mask;
      while (index.slots[2 * s] !== 0) s = (s + 1) & index.mask;
      index.fill(s, tag, locs[i]!, i);
    }
    expect(index.generation).toBeGreaterThan(0); // it grew with such locs inside
    for (let i = 0; i < locs.length; i++) {
      const slot = index.slotOf(tags[i]!, locs[i]!);
      expect(slot).toBeGreaterThanOrEqual(0);
      expect(index.slots[2 * slot + 1]! >>> 0).toBe(locs[i]!);
      expect(index.slots[2 * slot + 1]! >>> 20).toBe(locs[i]! >>> 20);
      expect(index.ids[slot]).toBe(i);
    }
    const seen: number[] = [];
    index.checkInvariants((_slot, _tag, loc) => seen.push(loc));
    expect(seen.sort((a, b) => a - b)).toEqual([...locs].sort((a, b) => a - b));
  });
});
