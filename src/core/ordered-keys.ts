// The keys of a shard in byte order: a B+tree of key ids (u32, see KeyStore) whose order is the
// order of the keys' bytes, which the tree never holds in full: beside each id it keeps 8 of the
// key's bytes as two numbers (its "prefix", see below), and only when two prefixes are equal does it
// ask its owner to compare a stored id with a probe's bytes (the bytes live once, in the slab arena). Keys
// are never removed from the store (a delete writes a tombstone), so the tree only inserts and
// seeks: no merge or rebalance on removal, and leaves are linked for ordered scans.
//
// Why a B+tree and not a sorted array or a skip list: an insert into a sorted array of 1 M ids moves
// half of it (about 2 MB); a skip list allocates a node per key. Why typed arrays and prefixes: the
// first version held JS arrays of ids in node objects and compared every key through the arena (an
// id -> slot -> item -> page chain of dependent loads per comparison), which made a key-creating
// write round several times dearer (docs/benchmarks.md, issue 12). Here every node is a fixed
// stretch of Int32Arrays, so an insert allocates nothing (the pools double now and then, like the
// hash index) and moves at most one node's entries with copyWithin, and most comparisons are two
// integer compares on the node's own entries.
//
// A prefix is 8 of the key's bytes as two big-endian u32s, padded with zero bytes for shorter keys
// and stored with the top bit flipped (so that signed int32 order is unsigned byte order and the
// values stay small integers for the JIT). Padding keeps the order: if two padded prefixes differ,
// the first differing byte is either a real byte of both keys, or a real non-zero byte of the longer
// key where the shorter one has ended, and the shorter key sorts first either way. Equal prefixes
// decide nothing ("a" and "a\0" share one) and fall back to the full comparison.
//
// Which 8 bytes: keys often share a long start ("bench-123456", "tenant/42/user/..."), so each node
// takes its prefixes from byte `skip` on, where `skip` is the length of the common start of the keys
// that bound the node's range in its parent (a node's range only narrows, so every key that is or
// will be in it, and every probe routed into it, shares those bytes). The root and the nodes at
// either edge of the tree have skip 0; a split gives both halves their own, and their entries'
// prefixes are read again from the arena then (once per split, not per insert).

import { assert } from "../base/assert.ts";

/** Entries per node (ids of a leaf, children of an inner node): a full node splits in two on insert. */
const orderedFanoutShift = 7;
export const orderedFanoutMax = 1 << orderedFanoutShift;
/** Levels the tree may reach: at least half-full nodes make 16 levels hold far beyond 2^32 keys. */
const orderedHeightMax = 16;
/** Nodes a pool holds at first (it doubles when full). */
const poolNodesInitial = 4;
/** Bytes of a key held beside its id. */
export const orderedPrefixBytes = 8;

/**
 * Compares the key of a stored id with the probe `bytes[at..at+length)`: < 0, 0, > 0 as the key sorts
 * before, equal, after. The caller knows that the two agree on their bytes before `from` as far as
 * both reach (the tree passes its prefix bytes when the prefixes tie), so the comparison starts there.
 */
export type CompareIdToBytes = (id: number, bytes: Uint8Array, at: number, length: number, from: number) => number;
/** Compares the keys of two stored ids. */
export type CompareIds = (a: number, b: number) => number;
/** keyPrefixWord of the key of a stored id (read from the arena: at splits and in checkInvariants). */
export type PrefixWordOfId = (id: number, from: number) => number;
/** How many bytes the keys of two stored ids have in common at their start. */
export type CommonStartOfIds = (a: number, b: number) => number;

/** The prefix word of `bytes[at..at+length)` made of its bytes from..from+3, as the tree stores it. */
export function keyPrefixWord(bytes: Uint8Array, at: number, length: number, from: number): number {
  let value = 0;
  for (let i = 0; i < 4; i++) value = (value << 8) | (from + i < length ? bytes[at + from + i]! : 0);
  return value ^ 0x80000000;
}

/**
 * Nodes of one kind (leaves or inner nodes), each a stretch of `orderedFanoutMax` entries in the
 * entry arrays. Node n's entries are at n * orderedFanoutMax + 0..count[n]-1.
 */
class NodePool {
  /** A leaf entry's key id; an inner entry's child's first key id. */
  ids: Int32Array;
  /** The prefix words of that key. */
  prefix0: Int32Array;
  prefix1: Int32Array;
  /** Inner nodes: the child (a leaf or an inner node index, as the level says). Empty for leaves. */
  children: Int32Array;
  /** Entries used, per node. */
  counts: Int32Array;
  /** Per node: the bytes every key in the node's range shares, where its entries' prefixes start. */
  skips: Int32Array;
  /** Leaves: the right neighbour, or -1. Empty for inner nodes. */
  nexts: Int32Array;
  size = 0;
  readonly #inner: boolean;

  constructor(inner: boolean) {
    this.#inner = inner;
    const entries = poolNodesInitial * orderedFanoutMax;
    this.ids = new Int32Array(entries);
    this.prefix0 = new Int32Array(entries);
    this.prefix1 = new Int32Array(entries);
    this.children = new Int32Array(inner ? entries : 0);
    this.counts = new Int32Array(poolNodesInitial);
    this.skips = new Int32Array(poolNodesInitial);
    this.nexts = new Int32Array(inner ? 0 : poolNodesInitial);
  }

  /** A new empty node's index. */
  allocate(): number {
    if (this.size === this.counts.length) this.#grow();
    const node = this.size++;
    this.counts[node] = 0;
    this.skips[node] = 0;
    if (!this.#inner) this.nexts[node] = -1;
    return node;
  }

  #grow(): void {
    const nodes = this.counts.length * 2;
    const entries = nodes * orderedFanoutMax;
    this.ids = grown(this.ids, entries);
    this.prefix0 = grown(this.prefix0, entries);
    this.prefix1 = grown(this.prefix1, entries);
    if (this.#inner) this.children = grown(this.children, entries);
    this.counts = grown(this.counts, nodes);
    this.skips = grown(this.skips, nodes);
    if (!this.#inner) this.nexts = grown(this.nexts, nodes);
  }
}

function grown(from: Int32Array, length: number): Int32Array {
  const to = new Int32Array(length);
  to.set(from);
  return to;
}

/** Where a scan stands: a leaf and an index in it (reused by the caller across seeks). */
export class OrderedCursor {
  /** The leaf, or -1 at the end. */
  leaf = -1;
  index = 0;
}

export class OrderedKeys {
  readonly #compareBytes: CompareIdToBytes;
  readonly #compareIds: CompareIds;
  readonly #prefixWordOfId: PrefixWordOfId;
  readonly #commonStart: CommonStartOfIds;
  readonly #leaves = new NodePool(false);
  readonly #inner = new NodePool(true);
  /** The root: a leaf while the height is 1, else an inner node. */
  #root: number;
  #count = 0;
  #height = 1;
  /**
   * What an insert descended through, by level (0: the root): the node, the entry position taken
   * (inner nodes), and the ids of the keys bounding the node's range (-1: unbounded).
   */
  readonly #pathNodes = new Int32Array(orderedHeightMax);
  readonly #pathPositions = new Int32Array(orderedHeightMax);
  readonly #pathLows = new Int32Array(orderedHeightMax);
  readonly #pathHighs = new Int32Array(orderedHeightMax);

  constructor(
    compareBytes: CompareIdToBytes,
    compareIds: CompareIds,
    prefixWordOfId: PrefixWordOfId,
    commonStart: CommonStartOfIds,
  ) {
    this.#compareBytes = compareBytes;
    this.#compareIds = compareIds;
    this.#prefixWordOfId = prefixWordOfId;
    this.#commonStart = commonStart;
    this.#root = this.#leaves.allocate();
  }

  get count(): number {
    return this.#count;
  }
  get height(): number {
    return this.#height;
  }

  /** Insert `id`, whose key is `bytes[at..at+length)` and not in the tree yet. */
  insert(id: number, bytes: Uint8Array, at: number, length: number): void {
    // No check that the key is new: the store inserts only a key its hash index did not find.
    const inner = this.#inner;
    const leafLevel = this.#height - 1;
    let node = this.#root;
    let low = -1;
    let high = -1;
    for (let level = 0; level < leafLevel; level++) {
      const base = node * orderedFanoutMax;
      const skip = inner.skips[node]!;
      const p0 = keyPrefixWord(bytes, at, length, skip);
      const p1 = keyPrefixWord(bytes, at, length, skip + 4);
      const position = this.#childIndex(inner, node, p0, p1, bytes, at, length);
      // A key below every key of the subtree goes into its first child, and becomes its first key.
      if (position === 0 && this.#compare(inner, base, p0, p1, bytes, at, length) > 0) {
        inner.ids[base] = id;
        inner.prefix0[base] = p0;
        inner.prefix1[base] = p1;
      }
      this.#pathNodes[level] = node;
      this.#pathPositions[level] = position;
      this.#pathLows[level] = low;
      this.#pathHighs[level] = high;
      if (position > 0) low = inner.ids[base + position]!;
      if (position + 1 < inner.counts[node]!) high = inner.ids[base + position + 1]!;
      node = inner.children[base + position]!;
    }
    const leaves = this.#leaves;
    let skip = leaves.skips[node]!;
    let position = this.#lowerBound(
      leaves,
      node,
      keyPrefixWord(bytes, at, length, skip),
      keyPrefixWord(bytes, at, length, skip + 4),
      bytes,
      at,
      length,
    );
    let right = -1;
    if (leaves.counts[node] === orderedFanoutMax) {
      right = this.#split(leaves, node, low, high);
      leaves.nexts[right] = leaves.nexts[node]!;
      leaves.nexts[node] = right;
      const half = leaves.counts[node]!;
      if (position > half) {
        node = right;
        position -= half;
      }
      skip = leaves.skips[node]!;
    }
    this.#place(
      leaves,
      node,
      position,
      id,
      keyPrefixWord(bytes, at, length, skip),
      keyPrefixWord(bytes, at, length, skip + 4),
    );
    this.#count++;
    // A split adds the right node to the parent, which may split in turn, up to the root.
    for (let level = leafLevel - 1; right >= 0 && level >= 0; level--) {
      right = this.#addChild(level, right, level === leafLevel - 1);
    }
    if (right >= 0) this.#growRoot(right);
  }

  /**
   * Add `child` (a leaf when `leafChild`) after the entry the insert took in its path node at
   * `level`; returns the path node's new right sibling if it split, else -1.
   */
  #addChild(level: number, child: number, leafChild: boolean): number {
    const inner = this.#inner;
    let node = this.#pathNodes[level]!;
    let position = this.#pathPositions[level]! + 1;
    let right = -1;
    if (inner.counts[node] === orderedFanoutMax) {
      right = this.#split(inner, node, this.#pathLows[level]!, this.#pathHighs[level]!);
      const half = inner.counts[node]!;
      if (position > half) {
        node = right;
        position -= half;
      }
    }
    const first = (leafChild ? this.#leaves : inner).ids[child * orderedFanoutMax]!;
    const skip = inner.skips[node]!;
    this.#place(inner, node, position, first, this.#prefixWordOfId(first, skip), this.#prefixWordOfId(first, skip + 4));
    inner.children[node * orderedFanoutMax + position] = child;
    return right;
  }

  /** A new root over the old root and its new right sibling. */
  #growRoot(right: number): void {
    assert(this.#height < orderedHeightMax, "the ordered keys stay within orderedHeightMax levels");
    const from = this.#height === 1 ? this.#leaves : this.#inner;
    const inner = this.#inner;
    const root = inner.allocate(); // skip 0: the root's range is unbounded
    const base = root * orderedFanoutMax;
    for (let i = 0; i < 2; i++) {
      const child = i === 0 ? this.#root : right;
      const first = from.ids[child * orderedFanoutMax]!;
      inner.ids[base + i] = first;
      inner.prefix0[base + i] = this.#prefixWordOfId(first, 0);
      inner.prefix1[base + i] = this.#prefixWordOfId(first, 4);
      inner.children[base + i] = child;
    }
    inner.counts[root] = 2;
    this.#root = root;
    this.#height++;
  }

  /**
   * Move the upper half of full `node`'s entries (its range bounded by the keys of ids `low` and
   * `high`, -1: unbounded) into a new node of the pool; returns it. Each half's range is narrower:
   * its skip is set from its bounds and its prefixes are read again if that changed it.
   */
  #split(pool: NodePool, node: number, low: number, high: number): number {
    const right = pool.allocate(); // may replace the pool's arrays: read them after
    const half = orderedFanoutMax >>> 1;
    const from = node * orderedFanoutMax + half;
    const end = node * orderedFanoutMax + orderedFanoutMax;
    const to = right * orderedFanoutMax;
    pool.ids.copyWithin(to, from, end);
    pool.prefix0.copyWithin(to, from, end);
    pool.prefix1.copyWithin(to, from, end);
    if (pool.children.length > 0) pool.children.copyWithin(to, from, end);
    pool.counts[node] = half;
    pool.counts[right] = orderedFanoutMax - half;
    pool.skips[right] = pool.skips[node]!;
    const separator = pool.ids[to]!;
    this.#reskip(pool, node, low < 0 ? 0 : this.#commonStart(low, separator));
    this.#reskip(pool, right, high < 0 ? 0 : this.#commonStart(separator, high));
    return right;
  }

  /** Give `node` the skip `skip` (never less than it had) and read its entries' prefixes again if it grew. */
  #reskip(pool: NodePool, node: number, skip: number): void {
    if (skip <= pool.skips[node]!) return;
    pool.skips[node] = skip;
    const base = node * orderedFanoutMax;
    for (let e = base; e < base + pool.counts[node]!; e++) {
      pool.prefix0[e] = this.#prefixWordOfId(pool.ids[e]!, skip);
      pool.prefix1[e] = this.#prefixWordOfId(pool.ids[e]!, skip + 4);
    }
  }

  /** Open a gap at `position` of `node` (not full) and write the entry there (an inner node's child is set by the caller). */
  #place(pool: NodePool, node: number, position: number, id: number, p0: number, p1: number): void {
    const base = node * orderedFanoutMax;
    const at = base + position;
    const end = base + pool.counts[node]!;
    if (at < end) {
      pool.ids.copyWithin(at + 1, at, end);
      pool.prefix0.copyWithin(at + 1, at, end);
      pool.prefix1.copyWithin(at + 1, at, end);
      if (pool.children.length > 0) pool.children.copyWithin(at + 1, at, end);
    }
    pool.ids[at] = id;
    pool.prefix0[at] = p0;
    pool.prefix1[at] = p1;
    pool.counts[node]!++;
  }

  /**
   * Entry `entry` of the pool against the probe (its prefix words p0, p1 at the node's skip): < 0, 0,
   * > 0 as the entry's key sorts before, equal, after.
   */
  #compare(
    pool: NodePool,
    entry: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    const e0 = pool.prefix0[entry]!;
    if (e0 !== p0) return e0 < p0 ? -1 : 1;
    const e1 = pool.prefix1[entry]!;
    if (e1 !== p1) return e1 < p1 ? -1 : 1;
    // Both share the node's skip bytes and the 8 after them, as far as they reach.
    const from = pool.skips[entry >>> orderedFanoutShift]! + orderedPrefixBytes;
    return this.#compareBytes(pool.ids[entry]!, bytes, at, length, from);
  }

  /** The child position of inner `node` whose range holds the probe: the last one whose first key is <= it (0 if none). */
  #childIndex(
    inner: NodePool,
    node: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    const base = node * orderedFanoutMax;
    let lo = 1;
    let hi = inner.counts[node]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compare(inner, base + mid, p0, p1, bytes, at, length) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** The first position of leaf `node` whose key is >= the probe. */
  #lowerBound(
    leaves: NodePool,
    node: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    const base = node * orderedFanoutMax;
    let lo = 0;
    let hi = leaves.counts[node]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compare(leaves, base + mid, p0, p1, bytes, at, length) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Put `cursor` on the first key >= the probe (`exclusive`: > the probe). An empty probe is the
   * start. Returns the cursor.
   */
  seek(cursor: OrderedCursor, bytes: Uint8Array, at: number, length: number, exclusive: boolean): OrderedCursor {
    const inner = this.#inner;
    let node = this.#root;
    for (let level = 0; level < this.#height - 1; level++) {
      const skip = inner.skips[node]!;
      const p0 = keyPrefixWord(bytes, at, length, skip);
      const p1 = keyPrefixWord(bytes, at, length, skip + 4);
      node = inner.children[node * orderedFanoutMax + this.#childIndex(inner, node, p0, p1, bytes, at, length)]!;
    }
    const leaves = this.#leaves;
    const skip = leaves.skips[node]!;
    const p0 = keyPrefixWord(bytes, at, length, skip);
    const p1 = keyPrefixWord(bytes, at, length, skip + 4);
    let index = this.#lowerBound(leaves, node, p0, p1, bytes, at, length);
    if (
      exclusive &&
      index < leaves.counts[node]! &&
      this.#compare(leaves, node * orderedFanoutMax + index, p0, p1, bytes, at, length) === 0
    )
      index++;
    cursor.leaf = node;
    cursor.index = index;
    this.#settle(cursor);
    return cursor;
  }

  /** Move a cursor past the end of its leaf onto the next leaf (or -1: the end). */
  #settle(cursor: OrderedCursor): void {
    const leaves = this.#leaves;
    while (cursor.leaf >= 0 && cursor.index >= leaves.counts[cursor.leaf]!) {
      cursor.leaf = leaves.nexts[cursor.leaf]!;
      cursor.index = 0;
    }
  }

  /** The id under the cursor, or -1 at the end. */
  current(cursor: OrderedCursor): number {
    return cursor.leaf < 0 ? -1 : this.#leaves.ids[cursor.leaf * orderedFanoutMax + cursor.index]!;
  }

  /** Step the cursor to the next key. */
  advance(cursor: OrderedCursor): void {
    if (cursor.leaf < 0) return;
    cursor.index++;
    this.#settle(cursor);
  }

  /**
   * Whole-tree check for tests (O(n)); throws AssertionError: keys strictly ascend along the
   * leaves, every entry's prefix is its key's at its node's skip, every key under a node shares the
   * node's skip bytes with the keys bounding its range, every leaf is at the same depth, node sizes
   * are within the fanout, each inner node's first keys are its children's, every node of the pools
   * is reached once, and the count is exact. Returns the ids in order.
   */
  checkInvariants(): number[] {
    const leaves = this.#leaves;
    const inner = this.#inner;
    const leafLevel = this.#height - 1;
    let leavesSeen = 0;
    let innerSeen = 0;
    const walk = (node: number, level: number, low: number, high: number): void => {
      const pool = level === leafLevel ? leaves : inner;
      const base = node * orderedFanoutMax;
      const count = pool.counts[node]!;
      const skip = pool.skips[node]!;
      assert(count <= orderedFanoutMax, "a node holds at most orderedFanoutMax entries");
      assert(low >= 0 || skip === 0, "a node whose range is unbounded below takes its prefixes from byte 0");
      assert(high >= 0 || skip === 0, "a node whose range is unbounded above takes its prefixes from byte 0");
      for (let i = 0; i < count; i++) {
        const id = pool.ids[base + i]!;
        assert(
          pool.prefix0[base + i] === this.#prefixWordOfId(id, skip) &&
            pool.prefix1[base + i] === this.#prefixWordOfId(id, skip + 4),
          "an entry's prefix is its key's bytes from its node's skip",
        );
        if (low >= 0)
          assert(this.#commonStart(low, id) >= skip, "a node's keys share its skip bytes with its low bound");
        if (high >= 0)
          assert(this.#commonStart(id, high) >= skip, "a node's keys share its skip bytes with its high bound");
        if (low >= 0) assert(this.#compareIds(low, id) <= 0, "a node's keys are not below its range");
        if (high >= 0) assert(this.#compareIds(id, high) < 0, "a node's keys are below its range's end");
      }
      if (level === leafLevel) {
        leavesSeen++;
        assert(level === 0 || count > 0, "only the root leaf may be empty");
        return;
      }
      innerSeen++;
      assert(count >= 2, "an inner node has at least two children");
      const childPool = level + 1 === leafLevel ? leaves : inner;
      for (let i = 0; i < count; i++) {
        const child = inner.children[base + i]!;
        assert(child >= 0 && child < childPool.size, "an inner node's children are allocated nodes");
        assert(
          inner.ids[base + i] === childPool.ids[child * orderedFanoutMax],
          "an inner node's first keys are its children's",
        );
        const childLow = i === 0 ? low : inner.ids[base + i]!;
        const childHigh = i + 1 < count ? inner.ids[base + i + 1]! : high;
        assert(childPool.skips[child]! >= skip, "a child's skip is at least its parent's");
        walk(child, level + 1, childLow, childHigh);
      }
    };
    walk(this.#root, 0, -1, -1);
    assert(leavesSeen === leaves.size, "every leaf is reached once from the root");
    assert(innerSeen === inner.size, "every inner node is reached once from the root");
    const ids: number[] = [];
    let leaf = this.#root;
    for (let level = 0; level < leafLevel; level++) leaf = inner.children[leaf * orderedFanoutMax]!;
    for (; leaf >= 0; leaf = leaves.nexts[leaf]!) {
      const base = leaf * orderedFanoutMax;
      for (let i = 0; i < leaves.counts[leaf]!; i++) ids.push(leaves.ids[base + i]!);
    }
    for (let i = 1; i < ids.length; i++)
      assert(this.#compareIds(ids[i - 1]!, ids[i]!) < 0, "the leaves hold the keys in strictly ascending order");
    assert(ids.length === this.#count, "the tree counts its keys");
    return ids;
  }
}
