// Memory for the key store's items: ArrayBuffer pages carved into fixed-size slots of size
// classes, with one free list per class (the memcached/Redis-jemalloc family, not a log with a
// cleaner). Why this and not a log-structured arena (MICA, RAMCloud):
// - Hermes overwrites in place far more than it creates: every write of a key after its first
//   keeps the value size (the benchmark's 32 B values, counters, flags), so the item stays in its
//   slot and nothing is allocated, copied or cleaned. A log appends on every write and needs a
//   cleaner to take the dead copies back, i.e. copying work in the shard loop proportional to the
//   write rate, with pauses when it falls behind.
// - Nothing outside the store points into the arena except the index, so freeing is O(1) and a
//   slot is reused by the next item of its class at once; the cost is internal fragmentation,
//   bounded by the class spacing (8 B up to 256 B items, then 12.5 %), and memory given to one
//   class stays with it (no page is returned, as with memcached's slabs; see docs/benchmarks.md).
//
// Addresses ("locs") are u32: page index * pageSpanBytes + byte offset. Every page spans 1 MiB of
// that address space whatever its real size: the first pages of a store are small (16 KiB, then
// doubling up to 1 MiB) so that the many small replicas of the tests stay small, while a large
// store uses 1 MiB pages. Slots start at multiples of 8 bytes, so each page also has aligned
// Uint16/Uint32/Int32/Float64 views for the item headers and keys.

import { assert } from "../base/assert.ts";

/** Address space of one page: a loc's page is loc >>> pageAddressBits. */
export const pageAddressBits = 20;
export const pageSpanBytes = 1 << pageAddressBits;
const pageOffsetMask = pageSpanBytes - 1;
/** The largest page (and so the largest item). */
export const pageBytesMax = pageSpanBytes;
/** The first page of a store; each new page doubles, up to pageBytesMax. */
const pageBytesFirst = 16 * 1024;
/** Pages a u32 address can name. */
export const pagesMax = 2 ** (32 - pageAddressBits);
/** The arena never grows beyond this: u32 addresses. */
export const arenaBytesLimit = pagesMax * pageSpanBytes - pageSpanBytes;
/** Slots start at multiples of this, so Float64 fields at the start of an item are aligned. */
export const slotAlignBytes = 8;
/** No item. (Not 8-aligned, so never a slot's address.) */
export const locNone = 0xffff_ffff;

/** Classes spaced by 8 bytes up to here (item headers plus short keys and values). */
const smallClassBytesMax = 256;
const smallestSlotBytes = 24;
/** Above smallClassBytesMax each class is this much larger than the previous (rounded to 8). */
const classGrowth = 1.125;

function buildClasses(): { sizes: Uint32Array; ofUnits: Uint8Array } {
  const sizes: number[] = [];
  for (let s = smallestSlotBytes; s <= smallClassBytesMax; s += slotAlignBytes) sizes.push(s);
  for (let s = smallClassBytesMax; s < pageBytesMax;) {
    s = Math.min(pageBytesMax, Math.ceil((s * classGrowth) / slotAlignBytes) * slotAlignBytes);
    sizes.push(s);
  }
  assert(sizes.length <= 255, "class numbers fit a byte");
  // For every size in 8-byte units, the smallest class that holds it.
  const ofUnits = new Uint8Array(pageBytesMax / slotAlignBytes + 1);
  let c = 0;
  for (let units = 0; units < ofUnits.length; units++) {
    while (sizes[c]! < units * slotAlignBytes) c++;
    ofUnits[units] = c;
  }
  return { sizes: Uint32Array.from(sizes), ofUnits };
}

const classes = buildClasses();
/** Slot bytes of each class. */
export const classSlotBytes: Readonly<Uint32Array> = classes.sizes;
export const classCount = classes.sizes.length;

/** The class of an item of `bytes` (1..pageBytesMax). */
export function classOf(bytes: number): number {
  return classes.ofUnits[(bytes + slotAlignBytes - 1) >>> 3];
}

export interface ArenaStats {
  /** Bytes of all pages. */
  pageBytes: number;
  pages: number;
  /** Slots holding items, and their bytes (slot sizes). */
  slotsUsed: number;
  slotBytesUsed: number;
  /** Slots on the free lists, and their bytes. */
  slotsFree: number;
  slotBytesFree: number;
}

export class SlabArena {
  /** Bound on the bytes of all pages. */
  readonly bytesMax: number;
  /** Views of each page, indexed by page number (loc >>> pageAddressBits). */
  readonly u8: Uint8Array[] = [];
  readonly u16: Uint16Array[] = [];
  readonly u32: Uint32Array[] = [];
  readonly i32: Int32Array[] = [];
  readonly f64: Float64Array[] = [];
  /** Each page's class. */
  readonly #pageClass: number[] = [];
  /** Classes that got at least one page (the others have no slot at all), for the checks. */
  readonly #classesWithPages: number[] = [];
  #pageBytes = 0;
  /** Per class: head of the free list (its next link is the slot's first u32), and its length. */
  readonly #freeHead = new Uint32Array(classCount).fill(locNone);
  readonly #freeCount = new Float64Array(classCount);
  /** Per class: slots holding items. */
  readonly #usedCount = new Float64Array(classCount);
  /** Per class: slots ever carved out of pages (used + free). */
  readonly #carvedCount = new Float64Array(classCount);
  /** Per class: next uncarved slot of its newest page, and that page's end (locs; may reach 2^32). */
  readonly #carveNext = new Float64Array(classCount);
  readonly #carveEnd = new Float64Array(classCount);

  constructor(bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax), "the arena's bytesMax is an integer");
    assert(bytesMax >= pageBytesFirst, "the arena holds at least one page");
    assert(bytesMax <= arenaBytesLimit, "the arena's bytesMax fits u32 addresses");
    this.bytesMax = bytesMax;
  }

  get pageBytes(): number {
    return this.#pageBytes;
  }

  /**
   * A slot of class `cls`, or locNone when the arena is full. A new page is taken only while the
   * pages stay `reserveBytes` below bytesMax: clients leave that reserve to protocol updates.
   */
  allocate(cls: number, reserveBytes: number): number {
    const head = this.#freeHead[cls];
    if (head !== locNone) {
      this.#freeHead[cls] = this.u32[head >>> pageAddressBits][(head & pageOffsetMask) >>> 2];
      this.#freeCount[cls]--;
      this.#usedCount[cls]++;
      return head;
    }
    const size = classSlotBytes[cls];
    let next = this.#carveNext[cls];
    if (next + size > this.#carveEnd[cls] && !this.#newPage(cls, reserveBytes)) return locNone;
    next = this.#carveNext[cls];
    this.#carveNext[cls] = next + size;
    this.#carvedCount[cls]++;
    this.#usedCount[cls]++;
    return next;
  }

  /** Return a slot of class `cls` to its free list. */
  free(loc: number, cls: number): void {
    this.u32[loc >>> pageAddressBits][(loc & pageOffsetMask) >>> 2] = this.#freeHead[cls];
    this.#freeHead[cls] = loc;
    this.#freeCount[cls]++;
    this.#usedCount[cls]--;
  }

  #newPage(cls: number, reserveBytes: number): boolean {
    const page = this.u8.length;
    const size = classSlotBytes[cls];
    let bytes = Math.min(pageBytesMax, pageBytesFirst * 2 ** Math.min(page, 16));
    while (bytes < size) bytes *= 2;
    if (page >= pagesMax - 1 || this.#pageBytes + bytes > this.bytesMax - reserveBytes) return false;
    const buffer = new ArrayBuffer(bytes);
    this.u8.push(new Uint8Array(buffer));
    this.u16.push(new Uint16Array(buffer));
    this.u32.push(new Uint32Array(buffer));
    this.i32.push(new Int32Array(buffer));
    this.f64.push(new Float64Array(buffer));
    this.#pageClass.push(cls);
    if (this.#carvedCount[cls] === 0) this.#classesWithPages.push(cls);
    this.#pageBytes += bytes;
    const start = page * pageSpanBytes;
    this.#carveNext[cls] = start;
    this.#carveEnd[cls] = start + Math.floor(bytes / size) * size;
    return true;
  }

  stats(): ArenaStats {
    let slotsUsed = 0;
    let slotBytesUsed = 0;
    let slotsFree = 0;
    let slotBytesFree = 0;
    for (let c = 0; c < classCount; c++) {
      slotsUsed += this.#usedCount[c];
      slotBytesUsed += this.#usedCount[c] * classSlotBytes[c];
      slotsFree += this.#freeCount[c];
      slotBytesFree += this.#freeCount[c] * classSlotBytes[c];
    }
    return { pageBytes: this.#pageBytes, pages: this.u8.length, slotsUsed, slotBytesUsed, slotsFree, slotBytesFree };
  }

  /** Slots of class `cls` holding items. */
  used(cls: number): number {
    return this.#usedCount[cls];
  }

  /**
   * Whole-state check for tests (O(pages + free slots)); throws AssertionError. `usedByClass`
   * counts the items the caller (the store) reaches from its index, per class: the arena's books
   * must agree with it, so no slot is lost or handed out twice.
   */
  checkInvariants(usedByClass: Float64Array): void {
    assert(this.#pageBytes <= this.bytesMax, "the pages stay within bytesMax");
    let pageBytes = 0;
    for (let p = 0; p < this.u8.length; p++) pageBytes += this.u8[p]!.length;
    assert(pageBytes === this.#pageBytes, "the arena counts the bytes of every page");
    const used = this.#usedCount;
    const carved = this.#carvedCount;
    const freeCount = this.#freeCount;
    const freeHead = this.#freeHead;
    // Only classes that ever got a page have slots; the items the caller counted must all be in them.
    let items = 0;
    let usedInClasses = 0;
    for (let c = 0; c < classCount; c++) items += usedByClass[c];
    for (const c of this.#classesWithPages) {
      usedInClasses += used[c];
      assert(used[c] === usedByClass[c], "a class's used slots are exactly the items of that class in the index");
      assert(carved[c] === used[c] + freeCount[c], "every carved slot is used or free (free-space accounting)");
      let free = 0;
      const size = classSlotBytes[c];
      for (
        let loc = freeHead[c];
        loc !== locNone;
        loc = this.u32[loc >>> pageAddressBits][(loc & pageOffsetMask) >>> 2]
      ) {
        assert(free < freeCount[c], "a free list is as long as its count (no cycle)");
        const page = loc >>> pageAddressBits;
        assert(page < this.u8.length, "a free slot lies on a page");
        assert(this.#pageClass[page] === c, "a free slot lies on a page of its class");
        assert((loc & pageOffsetMask) % size === 0, "a free slot starts on its class's slot grid");
        free++;
      }
      assert(free === freeCount[c], "a free list holds exactly its count of slots");
    }
    assert(
      usedInClasses === items,
      "a class's used slots are exactly the items of that class in the index (no item in a class without pages)",
    );
  }

  /** The class of the page holding `loc` (for the store's checks). */
  classOfPage(loc: number): number {
    return this.#pageClass[loc >>> pageAddressBits] ?? -1;
  }

  /** Whether `loc` lies on a page, on its class's grid, below the page's carved end. */
  isSlot(loc: number): boolean {
    const page = loc >>> pageAddressBits;
    if (page >= this.u8.length) return false;
    const cls = this.#pageClass[page]!;
    const offset = loc & pageOffsetMask;
    const size = classSlotBytes[cls]!;
    if (offset % size !== 0 || offset + size > this.u8[page]!.length) return false;
    // The newest page of a class is carved only up to #carveNext.
    const start = page * pageSpanBytes;
    if (this.#carveNext[cls]! >= start && this.#carveNext[cls]! < start + pageSpanBytes)
      return loc < this.#carveNext[cls]!;
    return true;
  }
}

export const arenaPageOffsetMask = pageOffsetMask;
