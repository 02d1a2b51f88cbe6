// The compact key store of one shard: every key is one item in the slab arena, found through the
// hash index by its bytes. An item is a fixed header (the key's protocol state), the key's bytes
// and its value's bytes, back to back, so reading a key touches the index slot and one item:
//
//    0 f64 version       the timestamp's version (exact up to 2^53 - 1)
//    8 u32 valueBytes    0 when absent
//   12 u32 sideId        the key's side object (0: none; see key-side.ts)
//   16 u32 writer        the timestamp's writer: a WriterId (incarnation and node id, base/ids.ts)
//   20 u16 keyBytes
//   22 u8  state         KeyState
//   23 u8  flags         bit 0: the timestamp is an RMW's; bit 1: a value is present (else a tombstone);
//                        bits 2-6: lastWriter, the node id (0..31) that sent the INV that installed
//                        the timestamp (packed here so that the u32 writer costs 2 bytes, not 3)
//   24 key, then value
//
// Fields are read through the page's typed-array views (native byte order: items never leave the
// process as they are; snapshots are encoded field by field). A key's handle is its index slot,
// stable until the index grows (only an insert grows it); the store then moves every side object
// to its key's new slot. An item moves to another slot of the arena when its value changes size
// class; in-place overwrites keep it. Keys are never removed: a delete writes a tombstone.
//
// The store knows nothing of the protocol: it stores the state byte and timestamps it is given.
//
// Ordered keys (optional, on by default): every key also has an id, its insertion number, which
// never changes (keys are never removed), and a B+tree of ids in the byte order of the keys
// (ordered-keys.ts) serves prefix listings. `slotOfId` maps an id to its index slot (rebuilt when
// the index grows), so the tree compares keys by 8 of their bytes, which it keeps beside the ids
// (those after the start that every key of a node's range shares), and reads their bytes from the
// arena only when those are equal: the bytes are held once. Cost: about 4 bytes per index slot,
// 4 per key for slotOfId and 12 per leaf entry of tree (an id and 8 key bytes; leaves are half to
// fully used after splits).

import { assert } from "../base/assert.ts";
import { utf8Decode, Utf8Kind } from "../base/utf8.ts";
import { hashKey, hashKeyWords, hashSeedDefault, keyWordsMax } from "./key-hash.ts";
import { KeyIndex, tagOf } from "./key-index.ts";
import { keyPrefixWord, OrderedCursor, OrderedKeys } from "./ordered-keys.ts";
import {
  arenaPageOffsetMask,
  classCount,
  classOf,
  locNone,
  pageAddressBits,
  pageBytesMax,
  SlabArena,
} from "./slab-arena.ts";

export const itemHeaderBytes = 24;
const hValueBytes = 8;
const hSideId = 12;
const hWriter = 16;
const hKeyBytes = 20;
const hState = 22;
const hFlags = 23;
const flagRmw = 1;
const flagValue = 2;
const flagsKnown = flagRmw | flagValue;
/** lastWriter sits in the flags byte above the flags. */
const lastWriterShift = 2;
const lastWriterMax = 31;
/** Largest key the u16 keyBytes field holds. */
export const storeKeyBytesMax = 0xffff;
/** The state byte of a new key: KeyState.Valid (absent at 0.0). Kept numeric: the store is protocol-blind. */
const stateOfNewKey = 1;
/** State bytes the store accepts (KeyState.Valid..KeyState.Replay). */
const stateMin = 1;
const stateMax = 5;
const writerMax = 0xffff_ffff;

/** What a side object carries for the store: its id and its key's slot, kept current by the store. */
export interface StoreSide {
  id: number;
  slot: number;
}

/**
 * A key's fields read at once (KeyStore.read): one index and page lookup for the hot paths instead
 * of one per field. `page[valueAt..valueAt+valueBytes)` is the value, lent until the store changes.
 */
export class ItemView {
  page: Uint8Array = new Uint8Array(0);
  keyAt = 0;
  keyBytes = 0;
  valueAt = 0;
  valueBytes = 0;
  hasValue = false;
  version = 0;
  writer = 0;
  state = 0;
  sideId = 0;
}

export interface KeyStoreLimits {
  /** Keys the index holds (a hard bound: the protocol's own inserts stop here). */
  keysMax: number;
  /** Bytes of the arena's pages. */
  bytesMax: number;
  /** Largest value; with a key of storeKeyBytesMax and the header it must fit a page. */
  valueBytesMax: number;
  /** Keep the keys in byte order too (prefix listings); false only to measure what it costs. */
  ordered?: boolean;
  /** Seed of the key hash (an int32; unset: hashSeedDefault). */
  hashSeed?: number;
}

export class KeyStore<S extends StoreSide> {
  readonly limits: Readonly<KeyStoreLimits>;
  readonly #arena: SlabArena;
  readonly #index: KeyIndex;
  /** Side objects by id; id 0 is "none". */
  readonly #sides: (S | null)[] = [null];
  readonly #freeSideIds: number[] = [];
  #sideCount = 0;
  /** Set by a find() that missed: where the key would go. Valid until the next store call. */
  #missSlot = -1;
  #missTag = 0;
  /** The index's slots and mask, and the arena's page views, held here for the hot paths (refreshed when the index grows). */
  #slots: Int32Array;
  #mask: number;
  readonly #u8: Uint8Array[];
  readonly #u16: Uint16Array[];
  readonly #u32: Uint32Array[];
  readonly #f64: Float64Array[];
  /** The keys in byte order, or null (limits.ordered false). */
  readonly #ordered: OrderedKeys | null;
  /** slotOfId[id]: the index slot of key `id` (ids are insertion numbers 0..keyCount-1). */
  #slotOfId = new Uint32Array(16);
  readonly #hashSeed: number;
  /** The words of the key that find() hashed last (key-hash.ts), compared against a candidate's. */
  readonly #keyWords = new Int32Array(keyWordsMax);
  readonly #i32: Int32Array[];
  /** Scratch of checkInvariants: items per size class. */
  readonly #usedByClass = new Float64Array(256);

  constructor(limits: KeyStoreLimits) {
    assert(Number.isSafeInteger(limits.valueBytesMax), "valueBytesMax is an integer");
    assert(limits.valueBytesMax >= 0, "valueBytesMax is not negative");
    assert(
      itemHeaderBytes + storeKeyBytesMax + limits.valueBytesMax <= pageBytesMax,
      "the largest item fits one arena page",
    );
    this.limits = { ...limits };
    this.#arena = new SlabArena(limits.bytesMax);
    this.#index = new KeyIndex(limits.keysMax);
    this.#slots = this.#index.slots;
    this.#mask = this.#index.mask;
    this.#u8 = this.#arena.u8;
    this.#u16 = this.#arena.u16;
    this.#u32 = this.#arena.u32;
    this.#f64 = this.#arena.f64;
    this.#i32 = this.#arena.i32;
    assert(limits.hashSeed === undefined || (limits.hashSeed | 0) === limits.hashSeed, "the hash seed is an int32");
    this.#hashSeed = limits.hashSeed ?? hashSeedDefault;
    this.#ordered =
      limits.ordered === false
        ? null
        : new OrderedKeys(this.#compareIdToBytes, this.#compareIds, this.#prefixWordOfId, this.#commonStart);
  }

  /** Whether the keys are kept in byte order (see scan). */
  get ordered(): boolean {
    return this.#ordered !== null;
  }

  get keyCount(): number {
    return this.#index.count;
  }
  /** The index holds keysMax keys: no insert succeeds. */
  get full(): boolean {
    return this.#index.full;
  }
  /** Bumped whenever slots move (the index grew): a scan over slots restarts. */
  get generation(): number {
    return this.#index.generation;
  }
  get sideCount(): number {
    return this.#sideCount;
  }
  get indexCapacity(): number {
    return this.#index.capacity;
  }
  get arena(): SlabArena {
    return this.#arena;
  }

  // Lookup -----------------------------------------------------------------------------------

  /** The slot of the key `bytes[at..at+length)`, or -1 (then insertMissed may insert it). */
  find(bytes: Uint8Array, at: number, length: number): number {
    const words = this.#keyWords;
    const tag = tagOf(hashKeyWords(bytes, at, length, this.#hashSeed, words));
    // Keys of up to keyWordsMax words are compared by words: the hash has just read their bytes.
    const byWords = littleEndian && length <= keyWordsMax * 4;
    const slots = this.#slots;
    const mask = this.#mask;
    for (let s = tag & mask; ; s = (s + 1) & mask) {
      const t = slots[2 * s];
      // A matching tag first: it is the likely case, and an empty slot ends the probe.
      if (t === tag) {
        const loc = slots[2 * s + 1];
        const page = loc >>> pageAddressBits;
        const offset = loc & arenaPageOffsetMask;
        if (
          this.#u16[page][(offset + hKeyBytes) >>> 1] === length &&
          (byWords
            ? wordsEqual(this.#i32[page], (offset + itemHeaderBytes) >>> 2, words, length)
            : bytesEqual(this.#u8[page], offset + itemHeaderBytes, bytes, at, length))
        )
          return s;
      } else if (t === 0) {
        this.#missSlot = s;
        this.#missTag = tag;
        return -1;
      }
    }
  }

  /**
   * Insert the key that the last find() missed (no store call in between): Valid at 0.0, with the
   * value `value[valueAt..valueAt+valueLength)` (null: absent), which a caller that has it at once
   * gives here rather than to setValue (one slot of the right class, not two). Returns its slot,
   * or -1 when the index is full or the arena has no slot for it while keeping `reserveBytes` free
   * (clients leave a reserve to the protocol's own inserts).
   */
  insertMissed(
    bytes: Uint8Array,
    at: number,
    length: number,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    reserveBytes: number,
  ): number {
    assert(this.#missSlot >= 0, "insertMissed follows a find() that missed");
    assert(length <= storeKeyBytesMax, "a key fits the u16 keyBytes field");
    const valueBytes = value === null ? 0 : valueLength;
    assert(valueBytes <= this.limits.valueBytesMax, "a stored value is at most valueBytesMax");
    const slot = this.#missSlot;
    const tag = this.#missTag;
    this.#missSlot = -1;
    if (this.#index.full) return -1;
    const loc = this.#arena.allocate(classOf(itemHeaderBytes + length + valueBytes), reserveBytes);
    if (loc === locNone) return -1;
    const page = loc >>> pageAddressBits;
    const offset = loc & arenaPageOffsetMask;
    const u8 = this.#arena.u8[page];
    this.#arena.f64[page][offset >>> 3] = 0;
    const u32 = this.#arena.u32[page];
    u32[(offset + hValueBytes) >>> 2] = valueBytes;
    u32[(offset + hSideId) >>> 2] = 0;
    this.#arena.u16[page][(offset + hKeyBytes) >>> 1] = length;
    u32[(offset + hWriter) >>> 2] = 0;
    u8[offset + hState] = stateOfNewKey;
    u8[offset + hFlags] = value === null ? 0 : flagValue; // lastWriter 0
    const keyAt = offset + itemHeaderBytes;
    copyBytes(u8, keyAt, bytes, at, length);
    if (value !== null) copyBytes(u8, keyAt + length, value, valueAt, valueBytes);
    const id = this.#index.count;
    let filled: number;
    if (!this.#index.growsOnNextFill) {
      this.#index.fill(slot, tag, loc, id);
      filled = slot;
    } else {
      filled = this.#fillGrowing(slot, tag, loc, id);
    }
    if (this.#ordered !== null) {
      if (id >= this.#slotOfId.length) {
        const bigger = new Uint32Array(this.#slotOfId.length * 2);
        bigger.set(this.#slotOfId);
        this.#slotOfId = bigger;
      }
      this.#slotOfId[id] = filled;
      this.#ordered.insert(id, bytes, at, length);
    }
    return filled;
  }

  /** Fill `slot` when that grows the index: every slot moves, side objects follow their keys. */
  #fillGrowing(slot: number, tag: number, loc: number, id: number): number {
    // Every slot moves. Note where each side's key is, then find it again.
    const sideTags = new Map<S, number>();
    const sideLocs = new Map<S, number>();
    const slots = this.#index.slots;
    for (const side of this.#sides) {
      if (side === null) continue;
      sideTags.set(side, slots[2 * side.slot]);
      sideLocs.set(side, slots[2 * side.slot + 1]);
    }
    this.#index.fill(slot, tag, loc, id);
    this.#slots = this.#index.slots;
    this.#mask = this.#index.mask;
    for (const [side, sideTag] of sideTags) side.slot = this.#index.slotOf(sideTag, sideLocs.get(side)!);
    if (this.#ordered !== null) {
      // Every slot moved: the ids' slots are found again (the new key's is set by the caller).
      const slots = this.#slots;
      const ids = this.#index.ids;
      const slotOfId = this.#slotOfId;
      for (let s = 0; s <= this.#mask; s++) if (slots[2 * s] !== 0 && ids[s] < slotOfId.length) slotOfId[ids[s]] = s;
    }
    return this.#index.slotOf(tag, loc);
  }

  // Fields of a key (by slot) ------------------------------------------------------------------

  /** Read the fields of `slot` into `view`. */
  read(slot: number, view: ItemView): void {
    const loc = this.#slots[2 * slot + 1];
    const page = loc >>> pageAddressBits;
    const offset = loc & arenaPageOffsetMask;
    const u8 = this.#u8[page];
    const u32 = this.#u32[page];
    const keyBytes = this.#u16[page][(offset + hKeyBytes) >>> 1];
    view.page = u8;
    view.keyAt = offset + itemHeaderBytes;
    view.keyBytes = keyBytes;
    view.valueAt = offset + itemHeaderBytes + keyBytes;
    view.valueBytes = u32[(offset + hValueBytes) >>> 2];
    view.hasValue = (u8[offset + hFlags] & flagValue) !== 0;
    view.version = this.#f64[page][offset >>> 3];
    view.writer = u32[(offset + hWriter) >>> 2];
    view.state = u8[offset + hState];
    view.sideId = u32[(offset + hSideId) >>> 2];
  }

  /** The item's loc (for the page views below). */
  #loc(slot: number): number {
    return this.#slots[2 * slot + 1];
  }

  state(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u8[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) + hState];
  }
  setState(slot: number, state: number): void {
    const loc = this.#loc(slot);
    this.#u8[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) + hState] = state;
  }
  version(slot: number): number {
    const loc = this.#loc(slot);
    return this.#f64[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) >>> 3];
  }
  writer(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u32[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hWriter) >>> 2];
  }
  lastWriter(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u8[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) + hFlags] >>> lastWriterShift;
  }
  setLastWriter(slot: number, lastWriter: number): void {
    assert(lastWriter >= 0 && lastWriter <= lastWriterMax, "the last writer is a node id 0..31");
    const loc = this.#loc(slot);
    const u8 = this.#u8[loc >>> pageAddressBits];
    const at = (loc & arenaPageOffsetMask) + hFlags;
    u8[at] = (u8[at] & flagsKnown) | (lastWriter << lastWriterShift);
  }
  rmw(slot: number): boolean {
    const loc = this.#loc(slot);
    return (this.#u8[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) + hFlags] & flagRmw) !== 0;
  }
  /** Set the timestamp (and its RMW flag) and the INV's sender; the value is set apart. */
  setTs(slot: number, version: number, writer: number, rmw: boolean, lastWriter: number): void {
    const loc = this.#loc(slot);
    const page = loc >>> pageAddressBits;
    const offset = loc & arenaPageOffsetMask;
    assert(writer >= 0 && writer <= writerMax, "a writer is a u32 writer id");
    assert(lastWriter >= 0 && lastWriter <= lastWriterMax, "the last writer is a node id 0..31");
    const u8 = this.#u8[page];
    this.#f64[page][offset >>> 3] = version;
    this.#u32[page][(offset + hWriter) >>> 2] = writer;
    u8[offset + hFlags] = (u8[offset + hFlags] & flagValue) | (rmw ? flagRmw : 0) | (lastWriter << lastWriterShift);
  }
  /** A value is present (false: never written, or a tombstone). */
  hasValue(slot: number): boolean {
    const loc = this.#loc(slot);
    return (this.#u8[loc >>> pageAddressBits][(loc & arenaPageOffsetMask) + hFlags] & flagValue) !== 0;
  }
  valueBytes(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u32[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hValueBytes) >>> 2];
  }
  keyBytes(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u16[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hKeyBytes) >>> 1];
  }
  /** The page holding the key's bytes and value: lend `page(slot)[keyAt(slot)..]` instead of copying. */
  page(slot: number): Uint8Array {
    return this.#u8[this.#loc(slot) >>> pageAddressBits];
  }
  keyAt(slot: number): number {
    return (this.#loc(slot) & arenaPageOffsetMask) + itemHeaderBytes;
  }
  valueAt(slot: number): number {
    const loc = this.#loc(slot);
    const offset = loc & arenaPageOffsetMask;
    return offset + itemHeaderBytes + this.#u16[loc >>> pageAddressBits][(offset + hKeyBytes) >>> 1];
  }

  /**
   * Set the value (null: a tombstone) from `bytes[at..at+length)`. In place when the item stays in
   * its size class; otherwise it moves to a slot of the new class (taken while keeping
   * `reserveBytes` of the arena free) and the old slot is freed. False, changing nothing, when
   * there is no such slot.
   */
  setValue(slot: number, bytes: Uint8Array | null, at: number, length: number, reserveBytes: number): boolean {
    const valueBytes = bytes === null ? 0 : length;
    assert(valueBytes <= this.limits.valueBytesMax, "a stored value is at most valueBytesMax");
    const arena = this.#arena;
    let loc = this.#loc(slot);
    let page = loc >>> pageAddressBits;
    let offset = loc & arenaPageOffsetMask;
    const keyBytes = this.#u16[page][(offset + hKeyBytes) >>> 1];
    const oldValueBytes = this.#u32[page][(offset + hValueBytes) >>> 2];
    // The common overwrite keeps the length, hence the class: no class lookup.
    const oldClass = oldValueBytes === valueBytes ? -1 : classOf(itemHeaderBytes + keyBytes + oldValueBytes);
    const newClass = oldValueBytes === valueBytes ? -1 : classOf(itemHeaderBytes + keyBytes + valueBytes);
    if (newClass !== oldClass) {
      const moved = arena.allocate(newClass, reserveBytes);
      if (moved === locNone) return false;
      const from = arena.u8[page];
      const toPage = moved >>> pageAddressBits;
      const to = arena.u8[toPage];
      const toOffset = moved & arenaPageOffsetMask;
      // Header and key move; the value is written below.
      copyBytes(to, toOffset, from, offset, itemHeaderBytes + keyBytes);
      arena.free(loc, oldClass);
      this.#index.move(slot, moved);
      loc = moved;
      page = toPage;
      offset = toOffset;
    }
    const u8 = arena.u8[page];
    arena.u32[page][(offset + hValueBytes) >>> 2] = valueBytes;
    u8[offset + hFlags] = (u8[offset + hFlags] & ~flagValue) | (bytes === null ? 0 : flagValue);
    if (bytes !== null) copyBytes(u8, offset + itemHeaderBytes + keyBytes, bytes, at, length);
    return true;
  }

  /** Whether setValue with a value of `length` bytes (null: -1) keeps the item where it is. */
  valueFitsInPlace(slot: number, length: number): boolean {
    const keyBytes = this.keyBytes(slot);
    return (
      classOf(itemHeaderBytes + keyBytes + this.valueBytes(slot)) ===
      classOf(itemHeaderBytes + keyBytes + Math.max(0, length))
    );
  }

  /** A copy of the value (null: absent). Allocates: for answers that outlive the call, tests and tools. */
  copyValue(slot: number): Uint8Array | null {
    if (!this.hasValue(slot)) return null;
    const at = this.valueAt(slot);
    return this.page(slot).slice(at, at + this.valueBytes(slot));
  }

  /** The key as a string. Allocates: for probes, tests and the snapshot boundary, never per message. */
  keyString(slot: number): string {
    const at = this.keyAt(slot);
    return utf8Decode(this.page(slot), at, at + this.keyBytes(slot), Utf8Kind.Valid);
  }

  /** Whether the key of `slot` equals `bytes[at..at+length)`. */
  keyEquals(slot: number, bytes: Uint8Array, at: number, length: number): boolean {
    if (this.keyBytes(slot) !== length) return false;
    const page = this.page(slot);
    const keyAt = this.keyAt(slot);
    for (let i = 0; i < length; i++) if (page[keyAt + i] !== bytes[at + i]) return false;
    return true;
  }

  // Scans --------------------------------------------------------------------------------------

  /** The first filled slot at or after `from`, or -1. Slots move when `generation` changes. */
  nextSlot(from: number): number {
    const slots = this.#slots;
    const capacity = this.#mask + 1;
    for (let s = from; s < capacity; s++) if (slots[2 * s] !== 0) return s;
    return -1;
  }

  // Ordered scans ------------------------------------------------------------------------------

  /**
   * Put `cursor` on the first key >= `bytes[at..at+length)` (`exclusive`: >) in byte order; step it
   * with nextOrdered. The cursor is valid until the next insert. Requires ordered keys.
   */
  seekOrdered(cursor: OrderedCursor, bytes: Uint8Array, at: number, length: number, exclusive: boolean): void {
    assert(this.#ordered !== null, "ordered scans need a store that keeps its keys in order");
    this.#ordered.seek(cursor, bytes, at, length, exclusive);
  }

  /** Levels of the ordered keys' tree (0 without ordered keys), for tests and benchmarks. */
  get orderedHeight(): number {
    return this.#ordered === null ? 0 : this.#ordered.height;
  }

  /** The slot of the key under `cursor`, or -1 at the end. */
  slotAt(cursor: OrderedCursor): number {
    const id = this.#ordered!.current(cursor);
    return id < 0 ? -1 : this.#slotOfId[id]!;
  }

  nextOrdered(cursor: OrderedCursor): void {
    this.#ordered!.advance(cursor);
  }

  readonly #compareIdToBytes = (id: number, bytes: Uint8Array, at: number, length: number, from: number): number => {
    const loc = this.#slots[2 * this.#slotOfId[id]! + 1]!;
    const page = loc >>> pageAddressBits;
    const offset = loc & arenaPageOffsetMask;
    const u8 = this.#u8[page]!;
    const keyBytes = this.#u16[page]![(offset + hKeyBytes) >>> 1]!;
    const keyAt = offset + itemHeaderBytes;
    const common = keyBytes < length ? keyBytes : length;
    for (let i = from; i < common; i++) {
      const d = u8[keyAt + i]! - bytes[at + i]!;
      if (d !== 0) return d;
    }
    return keyBytes - length;
  };

  readonly #compareIds = (a: number, b: number): number => {
    const loc = this.#slots[2 * this.#slotOfId[b]! + 1]!;
    const offset = loc & arenaPageOffsetMask;
    const u8 = this.#u8[loc >>> pageAddressBits]!;
    return this.#compareIdToBytes(
      a,
      u8,
      offset + itemHeaderBytes,
      this.#u16[loc >>> pageAddressBits]![(offset + hKeyBytes) >>> 1]!,
      0,
    );
  };

  readonly #prefixWordOfId = (id: number, from: number): number => {
    const loc = this.#slots[2 * this.#slotOfId[id]! + 1]!;
    const offset = loc & arenaPageOffsetMask;
    const page = loc >>> pageAddressBits;
    return keyPrefixWord(
      this.#u8[page]!,
      offset + itemHeaderBytes,
      this.#u16[page]![(offset + hKeyBytes) >>> 1]!,
      from,
    );
  };

  readonly #commonStart = (a: number, b: number): number => {
    const aLoc = this.#slots[2 * this.#slotOfId[a]! + 1]!;
    const bLoc = this.#slots[2 * this.#slotOfId[b]! + 1]!;
    const aAt = (aLoc & arenaPageOffsetMask) + itemHeaderBytes;
    const bAt = (bLoc & arenaPageOffsetMask) + itemHeaderBytes;
    const aU8 = this.#u8[aLoc >>> pageAddressBits]!;
    const bU8 = this.#u8[bLoc >>> pageAddressBits]!;
    const aBytes = this.#u16[aLoc >>> pageAddressBits]![(aAt - itemHeaderBytes + hKeyBytes) >>> 1]!;
    const bBytes = this.#u16[bLoc >>> pageAddressBits]![(bAt - itemHeaderBytes + hKeyBytes) >>> 1]!;
    const common = aBytes < bBytes ? aBytes : bBytes;
    let i = 0;
    while (i < common && aU8[aAt + i] === bU8[bAt + i]) i++;
    return i;
  };

  // Side objects -------------------------------------------------------------------------------

  /** The id of the key's side object (0: none): a cheaper test than side(slot) === null. */
  sideId(slot: number): number {
    const loc = this.#loc(slot);
    return this.#u32[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hSideId) >>> 2];
  }

  /** The key's side object, or null. */
  side(slot: number): S | null {
    const loc = this.#loc(slot);
    return this.#sides[this.#u32[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hSideId) >>> 2]];
  }

  /** Give the key of `slot` the side object `side` (it has none). */
  attachSide(slot: number, side: S): void {
    const loc = this.#loc(slot);
    const sideIds = this.#u32[loc >>> pageAddressBits];
    const at = ((loc & arenaPageOffsetMask) + hSideId) >>> 2;
    assert(sideIds[at] === 0, "a key has at most one side object");
    const id = this.#freeSideIds.length > 0 ? this.#freeSideIds.pop()! : this.#sides.length;
    if (id === this.#sides.length) this.#sides.push(side);
    else this.#sides[id] = side;
    side.id = id;
    side.slot = slot;
    sideIds[at] = id;
    this.#sideCount++;
  }

  /** Take the side object away from its key. */
  detachSide(side: S): void {
    const id = side.id;
    assert(this.#sides[id] === side, "a detached side object was attached");
    const loc = this.#loc(side.slot);
    this.#u32[loc >>> pageAddressBits][((loc & arenaPageOffsetMask) + hSideId) >>> 2] = 0;
    this.#sides[id] = null;
    this.#freeSideIds.push(id);
    side.id = 0;
    side.slot = -1;
    this.#sideCount--;
  }

  // Checks -------------------------------------------------------------------------------------

  /**
   * Whole-state check for tests (O(keys + free slots)); throws AssertionError: the index finds
   * every key at its slot by its bytes and hash, keys are unique, headers are well-formed, each
   * item sits in the size class of its length, the arena's books match the items, and side
   * objects and their keys point at each other.
   */
  checkInvariants(): void {
    const arena = this.#arena;
    const usedByClass = this.#usedByClass.fill(0, 0, classCount);
    let sidesSeen = 0;
    this.#index.checkInvariants((slot, tag, loc) => {
      assert(arena.isSlot(loc), "an index entry names a carved arena slot");
      const page = loc >>> pageAddressBits;
      const offset = loc & arenaPageOffsetMask;
      const u8 = arena.u8[page]!;
      const keyBytes = arena.u16[page]![(offset + hKeyBytes) >>> 1]!;
      const valueBytes = arena.u32[page]![(offset + hValueBytes) >>> 2]!;
      const flags = u8[offset + hFlags]! & ((1 << lastWriterShift) - 1);
      const cls = classOf(itemHeaderBytes + keyBytes + valueBytes);
      assert(arena.classOfPage(loc) === cls, "an item lies in the size class of its length");
      usedByClass[cls]++;
      assert(
        tagOf(hashKey(u8, offset + itemHeaderBytes, keyBytes, this.#hashSeed)) === tag,
        "an index entry's tag is its key's hash",
      );
      assert(
        this.find(u8, offset + itemHeaderBytes, keyBytes) === slot,
        "a probe for a key's bytes finds its own slot (keys are unique)",
      );
      assert((flags & ~flagsKnown) === 0, "an item's flags are known bits");
      if ((flags & flagValue) === 0) assert(valueBytes === 0, "an absent value has no bytes");
      assert(valueBytes <= this.limits.valueBytesMax, "a value is at most valueBytesMax");
      const state = u8[offset + hState]!;
      assert(state >= stateMin && state <= stateMax, "an item's state byte is a KeyState");
      assert(u8[offset + hFlags]! >>> lastWriterShift <= lastWriterMax, "an item's last writer is a node id");
      const version = arena.f64[page]![offset >>> 3]!;
      assert(Number.isSafeInteger(version), "an item's version is a safe integer");
      assert(version >= 0, "an item's version is not negative");
      const sideId = arena.u32[page]![(offset + hSideId) >>> 2]!;
      if (sideId !== 0) {
        sidesSeen++;
        const side = this.#sides[sideId] ?? null;
        assert(side !== null, "a key's side id names a live side object");
        assert(side.slot === slot, "a key's side object points back at the key's slot");
        assert(side.id === sideId, "a side object knows its id");
      }
    });
    arena.checkInvariants(usedByClass);
    let live = 0;
    for (let id = 1; id < this.#sides.length; id++) if (this.#sides[id] !== null) live++;
    assert(live === this.#sideCount, "the store counts its side objects");
    assert(sidesSeen === this.#sideCount, "every side object is reached from exactly one key");
    assert(live + this.#freeSideIds.length === this.#sides.length - 1, "every side id is live or free");
    if (this.#ordered !== null) {
      const ids = this.#ordered.checkInvariants();
      assert(ids.length === this.keyCount, "the ordered keys hold every key of the store");
      const indexIds = this.#index.ids;
      for (const id of ids) assert(indexIds[this.#slotOfId[id]!] === id, "slotOfId names the slot holding the id");
    }
  }
}

/** Byte runs up to this size are copied by a loop, larger ones by set() (a memcpy, after making a view). */
const copyLoopBytesMax = 64;

/**
 * Copy `src[srcAt..srcAt+length)` to `dst[dstAt..]` (different buffers, or the same one without
 * overlap). Short runs, the common keys and values, go by a loop unrolled 8 bytes at a time: 2.6x
 * faster than a loop of bytes for 32 bytes here, and 5x faster than set() with its subarray.
 */
function copyBytes(dst: Uint8Array, dstAt: number, src: Uint8Array, srcAt: number, length: number): void {
  if (length > copyLoopBytesMax) {
    dst.set(src.subarray(srcAt, srcAt + length), dstAt);
    return;
  }
  let i = 0;
  for (; i + 8 <= length; i += 8) {
    const d = dstAt + i;
    const s = srcAt + i;
    dst[d] = src[s]!;
    dst[d + 1] = src[s + 1]!;
    dst[d + 2] = src[s + 2]!;
    dst[d + 3] = src[s + 3]!;
    dst[d + 4] = src[s + 4]!;
    dst[d + 5] = src[s + 5]!;
    dst[d + 6] = src[s + 6]!;
    dst[d + 7] = src[s + 7]!;
  }
  for (; i < length; i++) dst[dstAt + i] = src[srcAt + i]!;
}

/** Words are compared in the order the hash builds them (little-endian): true on every host Bun runs on. */
const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
/** The bytes of a key's last word that are the key's, by the key's length mod 4 (0: the whole word). */
const tailMasks = Int32Array.of(-1, 0xff, 0xffff, 0xffffff);

/**
 * Whether the key at `item[itemAt..]` (an item's key, 4-aligned; the word after it belongs to the
 * same slot) equals the `length`-byte key whose words are `words` (from hashKeyWords).
 */
function wordsEqual(item: Int32Array, itemAt: number, words: Int32Array, length: number): boolean {
  const full = length >>> 2;
  for (let j = 0; j < full; j++) if (item[itemAt + j] !== words[j]) return false;
  const rest = length & 3;
  return rest === 0 || (item[itemAt + full]! & tailMasks[rest]!) === words[full];
}

/** Whether `a[aAt..aAt+length)` equals `b[bAt..bAt+length)`. */
function bytesEqual(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[aAt + i] !== b[bAt + i]) return false;
  return true;
}
