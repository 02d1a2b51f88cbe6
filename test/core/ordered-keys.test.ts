// The ordered keys of the key store (a B+tree of key ids in byte order) against a sorted model:
// random binary keys (shared prefixes, empty-ish and long ones, bytes 0x00 and 0xff, keys that share
// their first 8 bytes, which the tree keeps as numbers, and keys shorter than that, whose padded
// numbers tie) inserted in random order across index growths; after each batch the tree's
// whole-state check passes and seeks (inclusive and exclusive, at present and absent keys) walk
// exactly the model's order. The prefix numbers alone never order two keys against byte order.
// Leaves take new keys at their end and are put in order when a seek or scan first reaches them:
// seeks and scans between single inserts match the model at every point. The keys' common start,
// which the tree keeps for the nodes at its edges, shortens when a key outside it arrives at any
// height, is cut to orderedStartBytesMax, and probes outside it land before or after every key.

import { describe, expect, test } from "bun:test";
import { KeyStore, type StoreSide } from "../../src/core/key-store.ts";
import { keyPrefixWord, OrderedCursor, orderedPrefixBytes, orderedStartBytesMax } from "../../src/core/ordered-keys.ts";
import { Prng, testSeed } from "../lib/prng.ts";

class Side implements StoreSide {
  id = 0;
  slot = -1;
}

/** Time limit of the larger randomised tests (bun's default is 5 s; they take seconds on a loaded machine). */
const slowTestMs = 60_000;

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function byteOrder(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const symbols = [0x00, 0x01, 0x2f, 0x61, 0x62, 0x7f, 0x80, 0xfe, 0xff];
/** A long shared start: keys under it tie on the tree's prefix numbers and compare in the arena. */
const sharedStart = new TextEncoder().encode("tenant/0042/");

function randomKey(random: Prng): Uint8Array {
  // Few distinct bytes and shared prefixes make equal-prefix comparisons common; some keys are
  // shorter than the tree's 8 prefix bytes (their zero padding ties with real 0x00 bytes), some
  // share their first 12 bytes.
  const shared = random.int(3) === 0;
  const start = shared ? sharedStart.length : 0;
  const length = start + 1 + random.int(random.int(4) === 0 ? 40 : 9);
  const key = new Uint8Array(length);
  if (shared) key.set(sharedStart);
  for (let i = start; i < length; i++) key[i] = symbols[random.int(random.int(2) === 0 ? 3 : symbols.length)]!;
  return key;
}

/** The tree's prefix numbers of a key, compared as it compares them: 0 when they tie. */
function prefixOrder(a: Uint8Array, b: Uint8Array): number {
  for (let word = 0; word < 2; word++) {
    const x = keyPrefixWord(a, 0, a.length, 4 * word);
    const y = keyPrefixWord(b, 0, b.length, 4 * word);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
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
  test(
    "random inserts keep byte order through index growths; seeks match a sorted model",
    () => {
      const random = new Prng(testSeed(1207));
      const store = new KeyStore<Side>({ keysMax: 100_000, bytesMax: 64 << 20, valueBytesMax: 1024 });
      const model: Uint8Array[] = [];
      const seen = new Set<string>();
      for (let round = 0; round < 12; round++) {
        // The last round adds enough keys for three levels (inner nodes split too).
        for (let i = 0; i < (round === 11 ? 20_000 : 400); i++) {
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
      expect(store.orderedHeight).toBeGreaterThanOrEqual(3);
    },
    slowTestMs,
  );

  test("prefix numbers never contradict byte order; they tie only on equal first bytes", () => {
    const random = new Prng(testSeed(1208));
    let ties = 0;
    for (let i = 0; i < 20_000; i++) {
      const a = randomKey(random);
      const b = i % 2 === 0 ? randomKey(random) : a.subarray(0, random.int(a.length + 1));
      const order = prefixOrder(a, b);
      if (order === 0) {
        ties++;
        // A tie means the first 8 bytes are equal once the shorter key is padded with 0x00.
        for (let j = 0; j < orderedPrefixBytes; j++) expect(a[j] ?? 0).toBe(b[j] ?? 0);
      } else expect(order).toBe(Math.sign(byteOrder(a, b)));
    }
    expect(ties).toBeGreaterThan(0);
  });

  test("keys that tie on their padded first 8 bytes, in every insert order tried", () => {
    const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
    const keys = [
      bytes(0x00),
      bytes(0x00, 0x00),
      bytes(0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
      bytes(0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
      bytes(0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01),
      bytes(0x61),
      bytes(0x61, 0x00),
      bytes(0x61, 0x00, 0x00, 0x00, 0x00),
      bytes(0x61, 0x00, 0x00, 0x00, 0x00, 0x01),
      bytes(0x61, 0x62, 0x63, 0x64),
      bytes(0x61, 0x62, 0x63, 0x64, 0x00),
      bytes(0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68),
      bytes(0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x00),
      bytes(0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69),
      bytes(0x7f, 0xff, 0xff, 0xff),
      bytes(0x80),
      bytes(0x80, 0x00, 0x00, 0x00, 0x00),
      bytes(0xff, 0xff, 0xff, 0xff),
      bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
      bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
      bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00),
    ];
    const sorted = keys.slice().sort(byteOrder).map(hex);
    const random = new Prng(testSeed(1209));
    for (let order = 0; order < 40; order++) {
      const shuffled = keys.slice();
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const store = new KeyStore<Side>({ keysMax: 64, bytesMax: 1 << 20, valueBytesMax: 64 });
      for (const key of shuffled) {
        expect(store.find(key, 0, key.length)).toBe(-1);
        store.insertMissed(key, 0, key.length, null, 0, 0, 0);
      }
      store.checkInvariants();
      const cursor = new OrderedCursor();
      store.seekOrdered(cursor, new Uint8Array(0), 0, 0, false);
      expect(walk(store, cursor, Infinity)).toEqual(sorted);
      for (let i = 0; i < keys.length; i++) {
        store.seekOrdered(cursor, keys[i]!, 0, keys[i]!.length, true);
        const after = sorted.indexOf(hex(keys[i]!)) + 1;
        expect(walk(store, cursor, 3)).toEqual(sorted.slice(after, after + 3));
      }
    }
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
      expect(store.orderedHeight).toBeGreaterThanOrEqual(3);
    }
  });

  test(
    "seeks and scans between single inserts match a sorted model (leaves put in order when reached)",
    () => {
      const random = new Prng(testSeed(1210));
      const store = new KeyStore<Side>({ keysMax: 40_000, bytesMax: 64 << 20, valueBytesMax: 64 });
      const model: Uint8Array[] = []; // sorted
      const seen = new Set<string>();
      const cursor = new OrderedCursor();
      /** The model's first position whose key is >= probe (> probe when exclusive). */
      const modelSeek = (probe: Uint8Array, exclusive: boolean): number => {
        let lo = 0;
        let hi = model.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          const order = byteOrder(model[mid]!, probe);
          if (order < 0 || (exclusive && order === 0)) lo = mid + 1;
          else hi = mid;
        }
        return lo;
      };
      let seeks = 0;
      while (model.length < 16_000) {
        const key = randomKey(random);
        if (seen.has(hex(key))) continue;
        seen.add(hex(key));
        expect(store.find(key, 0, key.length)).toBe(-1);
        store.insertMissed(key, 0, key.length, null, 0, 0, 0);
        model.splice(modelSeek(key, false), 0, key);
        // Now and then (more often while the tree is small) a seek, and a scan of what follows.
        if (random.int(model.length < 2000 ? 3 : 25) !== 0) continue;
        seeks++;
        const probe = random.int(3) === 0 ? model[random.int(model.length)]! : randomKey(random);
        const exclusive = random.int(2) === 0;
        store.seekOrdered(cursor, probe, 0, probe.length, exclusive);
        const from = modelSeek(probe, exclusive);
        const max = random.int(4) === 0 ? 400 : 20;
        expect(walk(store, cursor, max)).toEqual(model.slice(from, from + max).map(hex));
        if (seeks % 100 === 0) store.checkInvariants();
      }
      store.checkInvariants();
      expect(store.orderedHeight).toBeGreaterThanOrEqual(3);
      store.seekOrdered(cursor, new Uint8Array(0), 0, 0, false);
      expect(walk(store, cursor, Infinity)).toEqual(model.map(hex));
    },
    slowTestMs,
  );

  test(
    "the keys' common start shortens at any height; probes outside it land before or after every key",
    () => {
      const encoder = new TextEncoder();
      const random = new Prng(testSeed(1211));
      for (const start of ["tenant/0042/user/", "x".repeat(orderedStartBytesMax + 30)]) {
        const store = new KeyStore<Side>({ keysMax: 40_000, bytesMax: 64 << 20, valueBytesMax: 64 });
        const model: Uint8Array[] = [];
        const insert = (text: string): void => {
          const key = encoder.encode(text);
          expect(store.find(key, 0, key.length)).toBe(-1);
          store.insertMissed(key, 0, key.length, null, 0, 0, 0);
          model.push(key);
        };
        const numbers = Array.from({ length: 14_000 }, (_, i) => i);
        for (let i = numbers.length - 1; i > 0; i--) {
          const j = random.int(i + 1);
          [numbers[i], numbers[j]] = [numbers[j]!, numbers[i]!];
        }
        for (const n of numbers) insert(`${start}${n}`);
        expect(store.orderedHeight).toBeGreaterThanOrEqual(3);
        const cursor = new OrderedCursor();
        const expectSeeks = (): void => {
          store.checkInvariants();
          const sorted = model.slice().sort(byteOrder);
          const probes = [
            "",
            start,
            start.slice(0, 4),
            start.slice(0, -1),
            `${start.slice(0, -1)}\u0000`,
            `${start.slice(0, -1)}~`,
            `${start}5`,
            `${start}19999`,
            `${start}~`,
            "a",
            "t",
            "tenant/0043",
            "~",
          ];
          for (const text of probes) {
            const probe = encoder.encode(text);
            for (const exclusive of [false, true]) {
              store.seekOrdered(cursor, probe, 0, probe.length, exclusive);
              const from = sorted.findIndex((k) => (exclusive ? byteOrder(k, probe) > 0 : byteOrder(k, probe) >= 0));
              const expected = from < 0 ? [] : sorted.slice(from, from + 5).map(hex);
              expect(walk(store, cursor, 5)).toEqual(expected);
            }
          }
          store.seekOrdered(cursor, new Uint8Array(0), 0, 0, false);
          expect(walk(store, cursor, Infinity)).toEqual(sorted.map(hex));
        };
        expectSeeks();
        // Keys outside the start, each shortening it: a sibling, a shorter prefix, then the ends.
        for (const text of [start.slice(0, -1) + "!", start.slice(0, 3), "tenant/0043", "a", "~", start.slice(0, -2)]) {
          if (model.some((k) => hex(k) === hex(encoder.encode(text)))) continue;
          insert(text);
          expectSeeks();
        }
        // More keys after the start shortened to nothing: the edges take their prefixes from byte 0.
        for (let n = 0; n < 3000; n++) insert(`${start}${n}/after`);
        expectSeeks();
      }
    },
    slowTestMs,
  );

  test("a store without ordered keys refuses ordered scans", () => {
    const store = new KeyStore<Side>({ keysMax: 10, bytesMax: 1 << 20, valueBytesMax: 64, ordered: false });
    expect(store.ordered).toBe(false);
    expect(() => store.seekOrdered(new OrderedCursor(), new Uint8Array(0), 0, 0, false)).toThrow();
  });
});
