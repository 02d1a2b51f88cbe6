// The keys of a shard in byte order: a B+tree of key ids (u32, see KeyStore) whose order is the
// order of the keys' bytes, which the tree never holds in full: beside each id it keeps the key's
// first 8 bytes as two numbers (its "prefix"), and only when two prefixes are equal does it ask its
// owner to compare a stored id with a probe's bytes (the bytes live once, in the slab arena). Keys
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
// A prefix is the key's bytes 0-3 and 4-7 as big-endian u32s, padded with zero bytes for shorter
// keys and stored with the top bit flipped (so that signed int32 order is unsigned byte order and the
// values stay small integers for the JIT). Padding keeps the order: if two padded prefixes differ,
// the first differing byte is either a real byte of both keys, or a real non-zero byte of the longer
// key where the shorter one has ended, and the shorter key sorts first either way. Equal prefixes
// decide nothing ("a" and "a\0" share one) and fall back to the full comparison.

import { assert } from "../base/assert.ts";

/** Entries per node (ids of a leaf, children of an inner node): a full node splits in two on insert. */
export const orderedFanoutMax = 128;
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
/** Word 0 or 1 of the prefix of the key of a stored id, by keyPrefixWord (for checkInvariants). */
export type PrefixWordOfId = (id: number, word: number) => number;

/** Word 0 (bytes 0-3) or 1 (bytes 4-7) of the prefix of `bytes[at..at+length)`, as the tree stores it. */
export function keyPrefixWord(bytes: Uint8Array, at: number, length: number, word: number): number {
  const from = word << 2;
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
    this.nexts = new Int32Array(inner ? 0 : poolNodesInitial);
  }

  /** A new empty node's index. */
  allocate(): number {
    if (this.size === this.counts.length) this.#grow();
    const node = this.size++;
    this.counts[node] = 0;
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
  readonly #leaves = new NodePool(false);
  readonly #inner = new NodePool(true);
  /** The root: a leaf while the height is 1, else an inner node. */
  #root: number;
  #count = 0;
  #height = 1;
  /** The inner nodes and entry positions an insert descended through, by level (0: the root). */
  readonly #pathNodes = new Int32Array(orderedHeightMax);
  readonly #pathPositions = new Int32Array(orderedHeightMax);

  constructor(compareBytes: CompareIdToBytes, compareIds: CompareIds, prefixWordOfId: PrefixWordOfId) {
    this.#compareBytes = compareBytes;
    this.#compareIds = compareIds;
    this.#prefixWordOfId = prefixWordOfId;
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
    const p0 = keyPrefixWord(bytes, at, length, 0);
    const p1 = keyPrefixWord(bytes, at, length, 1);
    const inner = this.#inner;
    let node = this.#root;
    for (let level = 0; level < this.#height - 1; level++) {
      const base = node * orderedFanoutMax;
      const position = this.#childIndex(inner, node, p0, p1, bytes, at, length);
      // A key below every key of the subtree goes into its first child, and becomes its first key.
      if (position === 0 && this.#compare(inner, base, p0, p1, bytes, at, length) > 0) {
        inner.ids[base] = id;
        inner.prefix0[base] = p0;
        inner.prefix1[base] = p1;
      }
      this.#pathNodes[level] = node;
      this.#pathPositions[level] = position;
      node = inner.children[base + position]!;
    }
    const leaves = this.#leaves;
    let position = this.#lowerBound(leaves, node, p0, p1, bytes, at, length);
    let right = -1;
    if (leaves.counts[node] === orderedFanoutMax) {
      right = this.#split(leaves, node);
      leaves.nexts[right] = leaves.nexts[node]!;
      leaves.nexts[node] = right;
      const half = leaves.counts[node]!;
      if (position > half) {
        node = right;
        position -= half;
      }
    }
    this.#place(leaves, node, position, id, p0, p1);
    this.#count++;
    // A split adds the right node to the parent, which may split in turn, up to the root.
    for (let level = this.#height - 2; right >= 0 && level >= 0; level--) {
      right = this.#addChild(
        this.#pathNodes[level]!,
        this.#pathPositions[level]! + 1,
        right,
        level === this.#height - 2,
      );
    }
    if (right >= 0) this.#growRoot(right);
  }

  /** Add `child` (a leaf when `leafChild`) at `position` of inner `node`; returns the new right sibling if `node` split, else -1. */
  #addChild(node: number, position: number, child: number, leafChild: boolean): number {
    const inner = this.#inner;
    let right = -1;
    if (inner.counts[node] === orderedFanoutMax) {
      right = this.#split(inner, node);
      const half = inner.counts[node]!;
      if (position > half) {
        node = right;
        position -= half;
      }
    }
    const from = leafChild ? this.#leaves : inner;
    const first = child * orderedFanoutMax;
    this.#place(inner, node, position, from.ids[first]!, from.prefix0[first]!, from.prefix1[first]!);
    inner.children[node * orderedFanoutMax + position] = child;
    return right;
  }

  /** A new root over the old root and its new right sibling. */
  #growRoot(right: number): void {
    assert(this.#height < orderedHeightMax, "the ordered keys stay within orderedHeightMax levels");
    const from = this.#height === 1 ? this.#leaves : this.#inner;
    const inner = this.#inner;
    const root = inner.allocate();
    const base = root * orderedFanoutMax;
    for (let i = 0; i < 2; i++) {
      const child = i === 0 ? this.#root : right;
      const first = child * orderedFanoutMax;
      inner.ids[base + i] = from.ids[first]!;
      inner.prefix0[base + i] = from.prefix0[first]!;
      inner.prefix1[base + i] = from.prefix1[first]!;
      inner.children[base + i] = child;
    }
    inner.counts[root] = 2;
    this.#root = root;
    this.#height++;
  }

  /** Move the upper half of full `node`'s entries into a new node of the pool; returns it. */
  #split(pool: NodePool, node: number): number {
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
    return right;
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

  /** Entry `entry` of the pool against the probe (prefix words p0, p1): < 0, 0, > 0 as the entry's key sorts before, equal, after. */
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
    return this.#compareBytes(pool.ids[entry]!, bytes, at, length, orderedPrefixBytes);
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
    const p0 = keyPrefixWord(bytes, at, length, 0);
    const p1 = keyPrefixWord(bytes, at, length, 1);
    const inner = this.#inner;
    let node = this.#root;
    for (let level = 0; level < this.#height - 1; level++)
      node = inner.children[node * orderedFanoutMax + this.#childIndex(inner, node, p0, p1, bytes, at, length)]!;
    const leaves = this.#leaves;
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
   * leaves, every entry's prefix is its key's, every leaf is at the same depth, node sizes are
   * within the fanout, each inner node's first keys (and their prefixes) are its children's, every
   * node of the pools is reached once, and the count is exact. Returns the ids in order.
   */
  checkInvariants(): number[] {
    const leaves = this.#leaves;
    const inner = this.#inner;
    let leavesSeen = 0;
    let innerSeen = 0;
    const walk = (node: number, level: number): void => {
      const base = node * orderedFanoutMax;
      const count = (level === this.#height - 1 ? leaves : inner).counts[node]!;
      assert(count <= orderedFanoutMax, "a node holds at most orderedFanoutMax entries");
      if (level === this.#height - 1) {
        leavesSeen++;
        assert(level === 0 || count > 0, "only the root leaf may be empty");
        return;
      }
      innerSeen++;
      assert(count >= 2, "an inner node has at least two children");
      const childPool = level + 1 === this.#height - 1 ? leaves : inner;
      for (let i = 0; i < count; i++) {
        const child = inner.children[base + i]!;
        assert(child >= 0 && child < childPool.size, "an inner node's children are allocated nodes");
        const first = child * orderedFanoutMax;
        assert(inner.ids[base + i] === childPool.ids[first], "an inner node's first keys are its children's");
        assert(
          inner.prefix0[base + i] === childPool.prefix0[first] && inner.prefix1[base + i] === childPool.prefix1[first],
          "an inner node's first-key prefixes are its children's",
        );
        walk(child, level + 1);
      }
    };
    walk(this.#root, 0);
    assert(leavesSeen === leaves.size, "every leaf is reached once from the root");
    assert(innerSeen === inner.size, "every inner node is reached once from the root");
    const ids: number[] = [];
    let leaf = this.#root;
    for (let level = 0; level < this.#height - 1; level++) leaf = inner.children[leaf * orderedFanoutMax]!;
    for (; leaf >= 0; leaf = leaves.nexts[leaf]!) {
      const base = leaf * orderedFanoutMax;
      for (let i = 0; i < leaves.counts[leaf]!; i++) {
        const id = leaves.ids[base + i]!;
        assert(
          leaves.prefix0[base + i] === this.#prefixWordOfId(id, 0) &&
            leaves.prefix1[base + i] === this.#prefixWordOfId(id, 1),
          "a leaf entry's prefix is its key's first bytes",
        );
        ids.push(id);
      }
    }
    for (let i = 1; i < ids.length; i++)
      assert(this.#compareIds(ids[i - 1]!, ids[i]!) < 0, "the leaves hold the keys in strictly ascending order");
    assert(ids.length === this.#count, "the tree counts its keys");
    return ids;
  }
}
