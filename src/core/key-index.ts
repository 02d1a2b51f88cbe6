// The key store's hash index: open addressing with linear probing over one Int32Array of
// (tag, loc) pairs. The tag is the key's 32-bit hash (0 is made 1, since 0 marks an empty slot),
// so a probe compares the key's bytes only when all 32 bits match, and a rehash needs no key
// bytes. Tags and locs are kept as int32 bit patterns (a loc of 2^31 or more reads back negative;
// `loc >>> pageAddressBits` and `loc & offsetMask` decode either form): the engine reads an
// Int32Array as integers, where a Uint32Array yields doubles for half of all hashes. Keys are
// never removed (a deleted key keeps its tombstone and timestamp), so there are no deletion
// markers and a probe for an absent key stops at the first empty slot.
//
// The index grows by doubling at 3/4 load, up to the capacity that keeps `entriesMax` keys under
// that load. A slot's position is the store's handle for a key (stable while the index does not
// grow); `generation` counts growths so that holders of positions can tell.
//
// Beside each slot the index keeps the key's id (`ids`): a number that never changes for a key
// (the store numbers keys in insertion order), so that structures outside the index, such as the
// ordered keys, can name a key across growths and moves.

import { assert } from "../base/assert.ts";
import { locNone } from "./slab-arena.ts";

/** The index grows when more than loadNumerator/loadDenominator of its slots are filled. */
const loadNumerator = 3;
const loadDenominator = 4;
/** The first capacity (slots): small, for the many small replicas of the tests. */
const capacityFirst = 16;

/** The tag stored for a hash: never 0 (the empty marker). */
export function tagOf(hash: number): number {
  return hash === 0 ? 1 : hash;
}

function capacityFor(entries: number): number {
  let capacity = capacityFirst;
  while (capacity * loadNumerator < entries * loadDenominator) capacity *= 2;
  return capacity;
}

export class KeyIndex {
  /** Keys the index can hold: its capacity stops growing at the size that holds these. */
  readonly entriesMax: number;
  readonly capacityMax: number;
  /** Slot i is slots[2i] (tag, 0 = empty) and slots[2i + 1] (the item's loc). */
  #slots: Int32Array;
  /** ids[i]: the id of the key in slot i (meaningless for an empty slot). */
  #ids: Int32Array;
  #mask: number;
  #count = 0;
  #growAt: number;
  /** Bumped by every growth: slot positions taken before are stale. */
  generation = 0;

  constructor(entriesMax: number) {
    assert(Number.isSafeInteger(entriesMax), "the index's entriesMax is an integer");
    assert(entriesMax > 0, "the index holds at least one key");
    this.entriesMax = entriesMax;
    this.capacityMax = capacityFor(entriesMax);
    assert(this.capacityMax <= 2 ** 30, "the index's capacity fits a typed array");
    this.#slots = new Int32Array(capacityFirst * 2);
    this.#ids = new Int32Array(capacityFirst);
    this.#mask = capacityFirst - 1;
    this.#growAt = (capacityFirst * loadNumerator) / loadDenominator;
  }

  /** The (tag, loc) pairs as int32; read-only outside this class. Replaced by a growth. */
  get slots(): Int32Array {
    return this.#slots;
  }
  /** The key ids by slot; read-only outside this class. Replaced by a growth. */
  get ids(): Int32Array {
    return this.#ids;
  }
  get mask(): number {
    return this.#mask;
  }
  get capacity(): number {
    return this.#mask + 1;
  }
  get count(): number {
    return this.#count;
  }
  get full(): boolean {
    return this.#count >= this.entriesMax;
  }
  /** The next fill() grows the index (and so moves every slot). */
  get growsOnNextFill(): boolean {
    return this.#count + 1 > this.#growAt && this.capacity < this.capacityMax;
  }

  /** Fill the empty slot `slot`, found by a probe for `tag`. Grows the index if it is now too loaded. */
  fill(slot: number, tag: number, loc: number, id: number): void {
    assert(this.#count < this.entriesMax, "the index holds at most entriesMax keys");
    assert(this.#slots[2 * slot] === 0, "a key goes into an empty slot");
    assert(tag !== 0, "a tag is never 0");
    this.#slots[2 * slot] = tag;
    this.#slots[2 * slot + 1] = loc;
    this.#ids[slot] = id;
    this.#count++;
    if (this.#count > this.#growAt && this.capacity < this.capacityMax) this.#grow();
  }

  /** Point filled slot `slot` at a moved item. */
  move(slot: number, loc: number): void {
    assert(this.#slots[2 * slot] !== 0, "only a filled slot moves");
    this.#slots[2 * slot + 1] = loc;
  }

  /** The slot holding (tag, loc), after a growth (`loc` in either form). -1 if none. */
  slotOf(tag: number, loc: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let s = tag & mask; ; s = (s + 1) & mask) {
      const t = slots[2 * s];
      if (t === 0) return -1;
      if (t === tag && slots[2 * s + 1] === (loc | 0)) return s;
    }
  }

  #grow(): void {
    const old = this.#slots;
    const capacity = (this.#mask + 1) * 2;
    const slots = new Int32Array(capacity * 2);
    const oldIds = this.#ids;
    const ids = new Int32Array(capacity);
    const mask = capacity - 1;
    for (let i = 0; i < old.length; i += 2) {
      const tag = old[i];
      if (tag === 0) continue;
      let s = tag & mask;
      while (slots[2 * s] !== 0) s = (s + 1) & mask;
      slots[2 * s] = tag;
      slots[2 * s + 1] = old[i + 1];
      ids[s] = oldIds[i >>> 1];
    }
    this.#slots = slots;
    this.#ids = ids;
    this.#mask = mask;
    this.#growAt = (capacity * loadNumerator) / loadDenominator;
    this.generation++;
  }

  /**
   * Whole-state check for tests (O(capacity)); throws AssertionError. Every filled slot is
   * reachable by a probe from its home slot (no empty slot between), and the count is exact.
   * `eachEntry` is called with every filled slot, its loc unsigned (the store checks the item and its hash).
   */
  checkInvariants(eachEntry: (slot: number, tag: number, loc: number) => void): void {
    const slots = this.#slots;
    const capacity = this.#mask + 1;
    assert((capacity & this.#mask) === 0, "the capacity is a power of two");
    assert(capacity <= this.capacityMax, "the index grows at most to capacityMax");
    assert(this.#count <= this.entriesMax, "the index holds at most entriesMax keys");
    assert(
      this.#count * loadDenominator <= capacity * loadNumerator || capacity === this.capacityMax,
      "the index grows before it is more than 3/4 full",
    );
    let count = 0;
    for (let s = 0; s < capacity; s++) {
      const tag = slots[2 * s]!;
      if (tag === 0) continue;
      count++;
      assert(slots[2 * s + 1] !== (locNone | 0), "a filled slot names an item");
      for (let p = tag & this.#mask; p !== s; p = (p + 1) & this.#mask) {
        assert(slots[2 * p] !== 0, "no empty slot lies between a key's home slot and its slot (probes find it)");
      }
      eachEntry(s, tag, slots[2 * s + 1]! >>> 0);
    }
    assert(count === this.#count, "the index counts exactly its filled slots");
  }
}
