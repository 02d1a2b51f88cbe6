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
// stretch of one Int32Array per pool (leaves, inner nodes) holding its entries' fields one run
// after another (first prefix words, second ones, ids, children), so an insert allocates nothing
// (the pools double now and then, like the hash index) and most comparisons are integer compares
// on the node's own run of first prefix words, 16 to a cache line.
//
// What an insert costs is mostly memory latency: the tree of a large store is far bigger than the
// caches, and a key-creating write lands in a random leaf. So an insert descends the inner nodes
// (small, and mostly cached) and then does not search its leaf at all: it writes the entry after
// the leaf's last one. A leaf is put in order (a merge sort of its appended entries, in cached
// scratch arrays) only when it splits, or when a seek or a scan first reaches it; each leaf counts
// how many of its entries, from the first, are in order, and keys arriving in ascending order keep
// that run whole (one comparison with the last entry), so such leaves never need sorting. A cursor
// is valid until the next insert (as before: an insert moved entries of a sorted leaf), so a scan
// only ever sees sorted leaves. What this moves to the read side: the first seek or scan that
// reaches a leaf after inserts into it sorts at most orderedFanout entries (about 7 comparisons
// each, nearly all on prefix words: microseconds), once per leaf per burst of inserts. Listing's
// guarantee is unchanged: a key is in its leaf from its insert on.
//
// A prefix is 8 of the key's bytes as two big-endian u32s, padded with zero bytes for shorter keys
// and stored with the top bit flipped (so that signed int32 order is unsigned byte order and the
// values stay small integers for the JIT). Padding keeps the order: if two padded prefixes differ,
// the first differing byte is either a real byte of both keys, or a real non-zero byte of the longer
// key where the shorter one has ended, and the shorter key sorts first either way. Equal prefixes
// decide nothing ("a" and "a\0" share one) and fall back to the full comparison.
//
// Which 8 bytes: keys often share a long start ("bench-123456", "tenant/42/user/..."), so each node
// takes its prefixes from byte `skip` on. A node bounded on both sides in its parent takes as skip
// the length of the common start of the two keys that bound its range (a node's range only narrows,
// so every key that is or will be in it, and every probe routed into it, shares those bytes); a
// split gives both halves their own, and their entries' prefixes are read again from the arena then
// (once per split, not per insert). The root and the nodes at either edge of the tree, whose range
// is open, take the tree's `start`: the bytes every key in the tree begins with (at most
// orderedStartBytesMax of them), kept here as bytes. An insert first checks that its key begins with
// them (a loop over a few bytes of its own); the rare key that does not lowers the start for good
// (the start of a growing set only shortens), and the open-ended nodes (two per level) read their
// prefixes again. A seek whose probe does not begin with the start lands before every key or after
// every key without a descent. Without the start, keys like "bench-<n>" tied on their first bytes
// at the root on almost every comparison and went to the arena.

import { assert } from "../base/assert.ts";

/** Entries per node (ids of a leaf, children of an inner node): a full node splits in two on insert. */
export const orderedFanout = 128;
/** Levels the tree may reach: at least half-full nodes make 16 levels hold far beyond 2^32 keys. */
const orderedHeightMax = 16;
/** Nodes a pool holds at first (it doubles when full). */
const poolNodesInitial = 4;
/** Bytes of a key held beside its id. */
export const orderedPrefixBytes = 8;
/** Bytes of the keys' common start the tree keeps (a longer common start is cut to this). */
export const orderedStartBytesMax = 64;

// A node's stretch of its pool's array holds one field of all its entries after another: the first
// prefix words, the second ones, the key ids (an inner entry: its child's first key) and, inner
// nodes only, the children. Entry i's field f is at node * nodeInts + f + i.
const fieldPrefix0 = 0;
const fieldPrefix1 = orderedFanout;
const fieldId = 2 * orderedFanout;
const fieldChild = 3 * orderedFanout;
/** Int32s per leaf and per inner node. */
const leafInts = 3 * orderedFanout;
const innerInts = 4 * orderedFanout;
/**
 * A search in a node first steps over its first prefix words this many at a time, then compares
 * entry by entry: the strided loads do not depend on each other, so a node that is not in the
 * cache costs about two memory latencies instead of a binary search's chain of five or six. (In
 * a same-process A/B at 1 M keys, a binary search over the same layout made seeks 1.19-1.28x as
 * long; a stride of 16 was close behind 8.)
 */
const searchStride = 8;

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
  if (from + 4 <= length) {
    const i = at + from;
    return ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) ^ 0x80000000;
  }
  let value = 0;
  for (let i = 0; i < 4; i++) value = (value << 8) | (from + i < length ? bytes[at + from + i]! : 0);
  return value ^ 0x80000000;
}

/** Nodes of one kind (leaves or inner nodes), each a stretch of `nodeInts` int32s of `entries` (see the fields above). */
class NodePool {
  entries: Int32Array;
  /** Entries used, per node. */
  counts: Int32Array;
  /** Per node: the bytes every key in the node's range shares, where its entries' prefixes start. */
  skips: Int32Array;
  /** Leaves: the right neighbour, or -1. Empty for inner nodes. */
  nexts: Int32Array;
  /** Leaves: how many of the entries, from the first, are in key order (see insert). Empty for inner nodes. */
  sorted: Int32Array;
  size = 0;
  /** Int32s per node: leafInts or innerInts. */
  readonly nodeInts: number;
  /** Fields per entry: 3 (leaves) or 4 (inner nodes, with the child). */
  readonly fields: number;
  readonly #inner: boolean;

  constructor(inner: boolean) {
    this.#inner = inner;
    this.nodeInts = inner ? innerInts : leafInts;
    this.fields = inner ? 4 : 3;
    this.entries = new Int32Array(poolNodesInitial * this.nodeInts);
    this.counts = new Int32Array(poolNodesInitial);
    this.skips = new Int32Array(poolNodesInitial);
    this.nexts = new Int32Array(inner ? 0 : poolNodesInitial);
    this.sorted = new Int32Array(inner ? 0 : poolNodesInitial);
  }

  /** A new empty node's index. */
  allocate(): number {
    if (this.size === this.counts.length) this.#grow();
    const node = this.size++;
    this.counts[node] = 0;
    this.skips[node] = 0;
    if (!this.#inner) {
      this.nexts[node] = -1;
      this.sorted[node] = 0;
    }
    return node;
  }

  /** The key id of entry `index` of `node`. */
  idAt(node: number, index: number): number {
    return this.entries[node * this.nodeInts + fieldId + index]!;
  }

  #grow(): void {
    const nodes = this.counts.length * 2;
    this.entries = grown(this.entries, nodes * this.nodeInts);
    this.counts = grown(this.counts, nodes);
    this.skips = grown(this.skips, nodes);
    if (!this.#inner) {
      this.nexts = grown(this.nexts, nodes);
      this.sorted = grown(this.sorted, nodes);
    }
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
  /** The first #startBytes bytes of every key in the tree (see the header). */
  readonly #start = new Uint8Array(orderedStartBytesMax);
  #startBytes = 0;
  /**
   * What an insert descended through, by level (0: the root): the node, the entry position taken
   * (inner nodes), and the ids of the keys bounding the node's range (-1: unbounded).
   */
  readonly #pathNodes = new Int32Array(orderedHeightMax);
  readonly #pathPositions = new Int32Array(orderedHeightMax);
  readonly #pathLows = new Int32Array(orderedHeightMax);
  readonly #pathHighs = new Int32Array(orderedHeightMax);
  /** Scratch of #sortLeaf: entry positions, and one field's values. */
  readonly #order = new Int32Array(orderedFanout);
  readonly #orderSpare = new Int32Array(orderedFanout);
  readonly #moved = new Int32Array(orderedFanout);

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
    if (this.#count === 0) this.#firstStart(bytes, at, length);
    else {
      const shared = this.#sharedStart(bytes, at, length);
      if (shared < this.#startBytes) this.#shortenStart(shared);
    }
    const inner = this.#inner;
    const innerEntries = inner.entries;
    const leafLevel = this.#height - 1;
    let node = this.#root;
    let low = -1;
    let high = -1;
    let skip = -1;
    let p0 = 0;
    let p1 = 0;
    for (let level = 0; level < leafLevel; level++) {
      const base = node * innerInts;
      const count = inner.counts[node]!;
      if (inner.skips[node] !== skip) {
        skip = inner.skips[node]!;
        p0 = keyPrefixWord(bytes, at, length, skip);
        p1 = keyPrefixWord(bytes, at, length, skip + 4);
      }
      const position = this.#childIndex(innerEntries, base, count, skip, p0, p1, bytes, at, length);
      // A key below every key of the subtree goes into its first child, and becomes its first key.
      if (position === 0 && this.#compare(innerEntries, base, 0, skip, p0, p1, bytes, at, length) > 0) {
        innerEntries[base + fieldPrefix0] = p0;
        innerEntries[base + fieldPrefix1] = p1;
        innerEntries[base + fieldId] = id;
      }
      this.#pathNodes[level] = node;
      this.#pathPositions[level] = position;
      this.#pathLows[level] = low;
      this.#pathHighs[level] = high;
      if (position > 0) low = innerEntries[base + fieldId + position]!;
      if (position + 1 < count) high = innerEntries[base + fieldId + position + 1]!;
      node = innerEntries[base + fieldChild + position]!;
    }
    const leaves = this.#leaves;
    if (leaves.skips[node] !== skip) {
      skip = leaves.skips[node]!;
      p0 = keyPrefixWord(bytes, at, length, skip);
      p1 = keyPrefixWord(bytes, at, length, skip + 4);
    }
    let right = -1;
    if (leaves.counts[node] < orderedFanout) this.#append(node, id, skip, p0, p1, bytes, at, length);
    else {
      // A full leaf is put in order and split, and the key placed in order in its half: a split's
      // halves are in order, so each one's first entry is its first key (the parent's entry for it).
      this.#sortLeaf(node);
      // Which half the key goes to is decided at the full leaf's skip: a key below the right
      // half's first key need not share the right half's skip bytes, and the reverse.
      const half = orderedFanout >>> 1;
      const toRight = this.#compare(leaves.entries, node * leafInts, half, skip, p0, p1, bytes, at, length) <= 0;
      const left = node;
      right = this.#split(leaves, left, low, high);
      leaves.nexts[right] = leaves.nexts[left]!;
      leaves.nexts[left] = right;
      if (toRight) node = right;
      if (leaves.skips[node] !== skip) {
        skip = leaves.skips[node]!;
        p0 = keyPrefixWord(bytes, at, length, skip);
        p1 = keyPrefixWord(bytes, at, length, skip + 4);
      }
      const base = node * leafInts;
      const position = this.#lowerBound(leaves.entries, base, leaves.counts[node]!, skip, p0, p1, bytes, at, length);
      this.#place(leaves, node, position, id, p0, p1);
      leaves.sorted[left] = leaves.counts[left]!;
      leaves.sorted[right] = leaves.counts[right]!;
    }
    this.#count++;
    // A split adds the right node to the parent, which may split in turn, up to the root.
    for (let level = leafLevel - 1; right >= 0 && level >= 0; level--) {
      right = this.#addChild(level, right, level === leafLevel - 1);
    }
    if (right >= 0) this.#growRoot(right);
  }

  /**
   * Add a key to leaf `node` (not full) after its last entry, with no search and no move: the leaf
   * is put in order only when it splits or a seek or scan reaches it (#sortLeaf). Its in-order run
   * grows with it while keys come in ascending order (one comparison, with the last entry).
   */
  #append(
    node: number,
    id: number,
    skip: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): void {
    const leaves = this.#leaves;
    const entries = leaves.entries;
    const base = node * leafInts;
    const count = leaves.counts[node]!;
    if (
      leaves.sorted[node] === count &&
      (count === 0 || this.#compare(entries, base, count - 1, skip, p0, p1, bytes, at, length) < 0)
    )
      leaves.sorted[node] = count + 1;
    entries[base + fieldPrefix0 + count] = p0;
    entries[base + fieldPrefix1 + count] = p1;
    entries[base + fieldId + count] = id;
    leaves.counts[node] = count + 1;
  }

  /**
   * Put leaf `node`'s entries in key order: its appended entries are merge-sorted (bottom-up, in
   * scratch arrays: no allocation) and merged with its in-order run. At most orderedFanout entries,
   * about 7 comparisons each, nearly all of them on the prefix words: this is what the first seek
   * or scan to reach a leaf after inserts into it pays, once.
   */
  #sortLeaf(node: number): void {
    const leaves = this.#leaves;
    const count = leaves.counts[node]!;
    const sorted = leaves.sorted[node]!;
    if (sorted === count) return;
    const entries = leaves.entries;
    const base = node * leafInts;
    let order = this.#order;
    let spare = this.#orderSpare;
    const tail = count - sorted;
    for (let i = 0; i < tail; i++) order[i] = sorted + i;
    for (let width = 1; width < tail; width *= 2) {
      for (let lo = 0; lo < tail; lo += 2 * width) {
        const mid = lo + width < tail ? lo + width : tail;
        const hi = lo + 2 * width < tail ? lo + 2 * width : tail;
        let a = lo;
        let b = mid;
        for (let k = lo; k < hi; k++) {
          if (a < mid && (b >= hi || this.#compareEntries(entries, base, order[a]!, order[b]!) < 0))
            spare[k] = order[a++]!;
          else spare[k] = order[b++]!;
        }
      }
      const swap = order;
      order = spare;
      spare = swap;
    }
    // Merge the in-order run 0..sorted-1 with the sorted tail, then move the entries into that order.
    let a = 0;
    let b = 0;
    for (let k = 0; k < count; k++) {
      if (a < sorted && (b >= tail || this.#compareEntries(entries, base, a, order[b]!) < 0)) spare[k] = a++;
      else spare[k] = order[b++]!;
    }
    const moved = this.#moved;
    for (let field = 0; field < leafInts; field += orderedFanout) {
      for (let k = 0; k < count; k++) moved[k] = entries[base + field + spare[k]!]!;
      for (let k = 0; k < count; k++) entries[base + field + k] = moved[k]!;
    }
    leaves.sorted[node] = count;
  }

  /** Two entries of the node at `base` (one skip): < 0, 0, > 0 as entry a's key sorts before, equal, after entry b's. */
  #compareEntries(entries: Int32Array, base: number, a: number, b: number): number {
    const a0 = entries[base + fieldPrefix0 + a]!;
    const b0 = entries[base + fieldPrefix0 + b]!;
    if (a0 !== b0) return a0 < b0 ? -1 : 1;
    const a1 = entries[base + fieldPrefix1 + a]!;
    const b1 = entries[base + fieldPrefix1 + b]!;
    if (a1 !== b1) return a1 < b1 ? -1 : 1;
    return this.#compareIds(entries[base + fieldId + a]!, entries[base + fieldId + b]!);
  }

  /** The tree's first key sets the start: all of it, up to orderedStartBytesMax bytes. */
  #firstStart(bytes: Uint8Array, at: number, length: number): void {
    const startBytes = length < orderedStartBytesMax ? length : orderedStartBytesMax;
    for (let i = 0; i < startBytes; i++) this.#start[i] = bytes[at + i]!;
    this.#startBytes = startBytes;
    this.#leaves.skips[this.#root] = startBytes; // the root leaf is empty: no prefix to read again
  }

  /** How many of the start's bytes `bytes[at..at+length)` begins with. */
  #sharedStart(bytes: Uint8Array, at: number, length: number): number {
    const start = this.#start;
    const common = length < this.#startBytes ? length : this.#startBytes;
    let i = 0;
    while (i < common && bytes[at + i] === start[i]) i++;
    return i;
  }

  /**
   * A key that does not begin with the start is coming: the start becomes its first `startBytes`
   * bytes, and the nodes with an open range (the tree's left and right edges) take it as their skip.
   */
  #shortenStart(startBytes: number): void {
    this.#startBytes = startBytes;
    const leafLevel = this.#height - 1;
    let left = this.#root;
    let right = this.#root;
    for (let level = 0; level <= leafLevel; level++) {
      const pool = level === leafLevel ? this.#leaves : this.#inner;
      this.#reprefix(pool, left, startBytes);
      if (right !== left) this.#reprefix(pool, right, startBytes);
      if (level === leafLevel) break;
      const entries = pool.entries;
      left = entries[left * innerInts + fieldChild]!;
      right = entries[right * innerInts + fieldChild + pool.counts[right]! - 1]!;
    }
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
    if (inner.counts[node] === orderedFanout) {
      right = this.#split(inner, node, this.#pathLows[level]!, this.#pathHighs[level]!);
      const half = inner.counts[node]!;
      if (position > half) {
        node = right;
        position -= half;
      }
    }
    const first = (leafChild ? this.#leaves : inner).idAt(child, 0);
    const skip = inner.skips[node]!;
    this.#place(inner, node, position, first, this.#prefixWordOfId(first, skip), this.#prefixWordOfId(first, skip + 4));
    inner.entries[node * innerInts + fieldChild + position] = child;
    return right;
  }

  /** A new root over the old root and its new right sibling. */
  #growRoot(right: number): void {
    assert(this.#height < orderedHeightMax, "the ordered keys stay within orderedHeightMax levels");
    const from = this.#height === 1 ? this.#leaves : this.#inner;
    const inner = this.#inner;
    const root = inner.allocate();
    const skip = this.#startBytes; // the root's range is open
    inner.skips[root] = skip;
    const entries = inner.entries;
    const base = root * innerInts;
    for (let i = 0; i < 2; i++) {
      const child = i === 0 ? this.#root : right;
      const first = from.idAt(child, 0);
      entries[base + fieldPrefix0 + i] = this.#prefixWordOfId(first, skip);
      entries[base + fieldPrefix1 + i] = this.#prefixWordOfId(first, skip + 4);
      entries[base + fieldId + i] = first;
      entries[base + fieldChild + i] = child;
    }
    inner.counts[root] = 2;
    this.#root = root;
    this.#height++;
  }

  /**
   * Move the upper half of full `node`'s entries (its range bounded by the keys of ids `low` and
   * `high`, -1: open) into a new node of the pool; returns it. Each half's range is narrower:
   * its skip is set from its bounds and its prefixes are read again if that changed it.
   */
  #split(pool: NodePool, node: number, low: number, high: number): number {
    const right = pool.allocate(); // may replace the pool's arrays: read them after
    const half = orderedFanout >>> 1;
    const entries = pool.entries;
    for (let field = 0; field < pool.fields; field++) {
      const from = node * pool.nodeInts + field * orderedFanout;
      entries.copyWithin(right * pool.nodeInts + field * orderedFanout, from + half, from + orderedFanout);
    }
    pool.counts[node] = half;
    pool.counts[right] = orderedFanout - half;
    pool.skips[right] = pool.skips[node]!;
    const separator = pool.idAt(right, 0);
    if (low >= 0) this.#reskip(pool, node, this.#commonStart(low, separator));
    if (high >= 0) this.#reskip(pool, right, this.#commonStart(separator, high));
    return right;
  }

  /** Give `node` the skip `skip` if that is more than it has, and read its entries' prefixes again then. */
  #reskip(pool: NodePool, node: number, skip: number): void {
    if (skip > pool.skips[node]!) this.#reprefix(pool, node, skip);
  }

  /** Set `node`'s skip and read its entries' prefixes again from the arena. */
  #reprefix(pool: NodePool, node: number, skip: number): void {
    pool.skips[node] = skip;
    const entries = pool.entries;
    const base = node * pool.nodeInts;
    for (let i = 0; i < pool.counts[node]!; i++) {
      const id = entries[base + fieldId + i]!;
      entries[base + fieldPrefix0 + i] = this.#prefixWordOfId(id, skip);
      entries[base + fieldPrefix1 + i] = this.#prefixWordOfId(id, skip + 4);
    }
  }

  /** Open a gap at `position` of `node` (not full) and write the entry there (an inner node's child is set by the caller). */
  #place(pool: NodePool, node: number, position: number, id: number, p0: number, p1: number): void {
    const entries = pool.entries;
    const base = node * pool.nodeInts;
    const count = pool.counts[node]!;
    // One loop moves every field (inner nodes, and a leaf's half after a split): one copyWithin per field costs a call each.
    if (pool.fields === 4) {
      for (let i = base + count - 1; i >= base + position; i--) {
        entries[i + fieldPrefix0 + 1] = entries[i + fieldPrefix0]!;
        entries[i + fieldPrefix1 + 1] = entries[i + fieldPrefix1]!;
        entries[i + fieldId + 1] = entries[i + fieldId]!;
        entries[i + fieldChild + 1] = entries[i + fieldChild]!;
      }
    } else {
      for (let i = base + count - 1; i >= base + position; i--) {
        entries[i + fieldPrefix0 + 1] = entries[i + fieldPrefix0]!;
        entries[i + fieldPrefix1 + 1] = entries[i + fieldPrefix1]!;
        entries[i + fieldId + 1] = entries[i + fieldId]!;
      }
    }
    entries[base + fieldPrefix0 + position] = p0;
    entries[base + fieldPrefix1 + position] = p1;
    entries[base + fieldId + position] = id;
    pool.counts[node] = count + 1;
  }

  /**
   * Entry `index` of the node at `base` of `entries` (of skip `skip`) against the probe (its prefix
   * words p0, p1 at that skip): < 0, 0, > 0 as the entry's key sorts before, equal, after.
   */
  #compare(
    entries: Int32Array,
    base: number,
    index: number,
    skip: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    const e0 = entries[base + fieldPrefix0 + index]!;
    if (e0 !== p0) return e0 < p0 ? -1 : 1;
    const e1 = entries[base + fieldPrefix1 + index]!;
    if (e1 !== p1) return e1 < p1 ? -1 : 1;
    // Both share the node's skip bytes and the 8 after them, as far as they reach.
    return this.#compareBytes(entries[base + fieldId + index]!, bytes, at, length, skip + orderedPrefixBytes);
  }

  /**
   * The child position of the inner node at `base` (`count` entries, skip `skip`) whose range holds
   * the probe: the last one whose first key is <= it (0 if none). Entry 0 is the subtree's first key
   * and is not searched: the answer is at least 0.
   */
  #childIndex(
    entries: Int32Array,
    base: number,
    count: number,
    skip: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    return this.#firstAbove(entries, base, 1, count, 1, skip, p0, p1, bytes, at, length) - 1;
  }

  /** The first position of the leaf at `base` (`count` entries, skip `skip`) whose key is >= the probe. */
  #lowerBound(
    entries: Int32Array,
    base: number,
    count: number,
    skip: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    return this.#firstAbove(entries, base, 0, count, 0, skip, p0, p1, bytes, at, length);
  }

  /**
   * The first position from `from` on (or `count`) whose entry compares with the probe at
   * `threshold` or more (comparisons answer integers): 0 finds the first key >= the probe, 1 the
   * first key > it.
   */
  #firstAbove(
    entries: Int32Array,
    base: number,
    from: number,
    count: number,
    threshold: number,
    skip: number,
    p0: number,
    p1: number,
    bytes: Uint8Array,
    at: number,
    length: number,
  ): number {
    let i = from;
    // A first prefix word below the probe's puts its entry, and every one before it, below the probe.
    while (i + searchStride < count && entries[base + fieldPrefix0 + i + searchStride]! < p0) i += searchStride;
    while (i < count && this.#compare(entries, base, i, skip, p0, p1, bytes, at, length) < threshold) i++;
    return i;
  }

  /**
   * Put `cursor` on the first key >= the probe (`exclusive`: > the probe). An empty probe is the
   * start. Returns the cursor.
   */
  seek(cursor: OrderedCursor, bytes: Uint8Array, at: number, length: number, exclusive: boolean): OrderedCursor {
    const shared = this.#count === 0 ? 0 : this.#sharedStart(bytes, at, length);
    if (shared < this.#startBytes) {
      // Every key begins with the start and the probe does not: it is below every key (a byte below
      // the start's, or a proper prefix of the start, which no key equals) or above every key.
      const below = shared === length || bytes[at + shared]! < this.#start[shared]!;
      cursor.leaf = below ? this.#firstLeaf() : -1;
      cursor.index = 0;
      if (cursor.leaf >= 0) this.#sortLeaf(cursor.leaf);
      this.#settle(cursor);
      return cursor;
    }
    const inner = this.#inner;
    let node = this.#root;
    let skip = -1;
    let p0 = 0;
    let p1 = 0;
    for (let level = 0; level < this.#height - 1; level++) {
      if (inner.skips[node] !== skip) {
        skip = inner.skips[node]!;
        p0 = keyPrefixWord(bytes, at, length, skip);
        p1 = keyPrefixWord(bytes, at, length, skip + 4);
      }
      const base = node * innerInts;
      const position = this.#childIndex(inner.entries, base, inner.counts[node]!, skip, p0, p1, bytes, at, length);
      node = inner.entries[base + fieldChild + position]!;
    }
    const leaves = this.#leaves;
    if (leaves.skips[node] !== skip) {
      skip = leaves.skips[node]!;
      p0 = keyPrefixWord(bytes, at, length, skip);
      p1 = keyPrefixWord(bytes, at, length, skip + 4);
    }
    this.#sortLeaf(node);
    const base = node * leafInts;
    const count = leaves.counts[node]!;
    let index = this.#lowerBound(leaves.entries, base, count, skip, p0, p1, bytes, at, length);
    if (exclusive && index < count && this.#compare(leaves.entries, base, index, skip, p0, p1, bytes, at, length) === 0)
      index++;
    cursor.leaf = node;
    cursor.index = index;
    this.#settle(cursor);
    return cursor;
  }

  #firstLeaf(): number {
    let node = this.#root;
    for (let level = 0; level < this.#height - 1; level++) node = this.#inner.entries[node * innerInts + fieldChild]!;
    return node;
  }

  /** Move a cursor past the end of its leaf onto the next leaf (or -1: the end). */
  #settle(cursor: OrderedCursor): void {
    const leaves = this.#leaves;
    while (cursor.leaf >= 0 && cursor.index >= leaves.counts[cursor.leaf]!) {
      cursor.leaf = leaves.nexts[cursor.leaf]!;
      cursor.index = 0;
      if (cursor.leaf >= 0) this.#sortLeaf(cursor.leaf);
    }
  }

  /** The id under the cursor, or -1 at the end. A cursor is valid until the next insert (which may append to its leaf). */
  current(cursor: OrderedCursor): number {
    return cursor.leaf < 0 ? -1 : this.#leaves.idAt(cursor.leaf, cursor.index);
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
   * node's skip bytes with the keys bounding its range, the nodes with an open range take the
   * start as skip, the start is the keys' common start (cut to orderedStartBytesMax), every leaf is
   * at the same depth, node sizes are within the fanout, each inner node's first keys are its
   * children's least keys, each leaf's in-order run ascends, every node of the pools is reached
   * once, and the count is exact. Returns the ids in order (without sorting any leaf).
   */
  checkInvariants(): number[] {
    const leaves = this.#leaves;
    const inner = this.#inner;
    const leafLevel = this.#height - 1;
    const startBytes = this.#startBytes;
    let leavesSeen = 0;
    let innerSeen = 0;
    const walk = (node: number, level: number, low: number, high: number): void => {
      const pool = level === leafLevel ? leaves : inner;
      const base = node * pool.nodeInts;
      const count = pool.counts[node]!;
      const skip = pool.skips[node]!;
      assert(count <= orderedFanout, "a node holds at most orderedFanout entries");
      if (low < 0 || high < 0) assert(skip === startBytes, "a node whose range is open takes the start as skip");
      else assert(skip >= startBytes, "a node's skip is at least the start");
      for (let i = 0; i < count; i++) {
        const id = pool.entries[base + fieldId + i]!;
        assert(
          pool.entries[base + fieldPrefix0 + i] === this.#prefixWordOfId(id, skip) &&
            pool.entries[base + fieldPrefix1 + i] === this.#prefixWordOfId(id, skip + 4),
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
        const sorted = leaves.sorted[node]!;
        assert(sorted >= 0 && sorted <= count, "a leaf's in-order run is within its entries");
        for (let i = 1; i < sorted; i++)
          assert(
            this.#compareIds(leaves.idAt(node, i - 1), leaves.idAt(node, i)) < 0,
            "a leaf's in-order run ascends strictly",
          );
        return;
      }
      innerSeen++;
      assert(count >= 2, "an inner node has at least two children");
      const childPool = level + 1 === leafLevel ? leaves : inner;
      for (let i = 0; i < count; i++) {
        const child = inner.entries[base + fieldChild + i]!;
        assert(child >= 0 && child < childPool.size, "an inner node's children are allocated nodes");
        assert(
          inner.entries[base + fieldId + i] === this.#firstKeyOf(childPool, child),
          "an inner node's first keys are its children's",
        );
        const childLow = i === 0 ? low : inner.entries[base + fieldId + i]!;
        const childHigh = i + 1 < count ? inner.entries[base + fieldId + i + 1]! : high;
        assert(childPool.skips[child]! >= skip, "a child's skip is at least its parent's");
        walk(child, level + 1, childLow, childHigh);
      }
    };
    walk(this.#root, 0, -1, -1);
    assert(leavesSeen === leaves.size, "every leaf is reached once from the root");
    assert(innerSeen === inner.size, "every inner node is reached once from the root");
    // A leaf's appended entries are in no order until it is sorted: the check sorts a copy.
    const ids: number[] = [];
    for (let leaf = this.#firstLeaf(); leaf >= 0; leaf = leaves.nexts[leaf]!) {
      const leafIds: number[] = [];
      for (let i = 0; i < leaves.counts[leaf]!; i++) leafIds.push(leaves.idAt(leaf, i));
      ids.push(...leafIds.sort(this.#compareIds));
    }
    for (let i = 1; i < ids.length; i++)
      assert(this.#compareIds(ids[i - 1]!, ids[i]!) < 0, "the leaves hold the keys in strictly ascending order");
    assert(ids.length === this.#count, "the tree counts its keys");
    if (ids.length === 0) assert(startBytes === 0, "an empty tree has no start");
    else {
      // The first and last keys' common start is every key's (they are in order); a lone key is its own.
      const first = ids[0]!;
      const last = ids[ids.length - 1]!;
      const common = ids.length === 1 ? this.#keyBytesOf(first) : this.#commonStart(first, last);
      assert(
        startBytes === (common < orderedStartBytesMax ? common : orderedStartBytesMax),
        "the start is the keys' common start, up to orderedStartBytesMax bytes",
      );
      for (let i = 0; i < startBytes; i++)
        assert(this.#byteOf(first, i) === this.#start[i], "the start holds the keys' first bytes");
    }
    return ids;
  }

  /** The id of the least key of `node` (a leaf's entries may be out of order): for checkInvariants. */
  #firstKeyOf(pool: NodePool, node: number): number {
    let first = pool.idAt(node, 0);
    if (pool !== this.#leaves) return first;
    for (let i = 1; i < pool.counts[node]!; i++) {
      const id = pool.idAt(node, i);
      if (this.#compareIds(id, first) < 0) first = id;
    }
    return first;
  }

  /** Byte `i` of the key of `id` (0 past its end), read through the prefix word: for checkInvariants. */
  #byteOf(id: number, i: number): number {
    return ((this.#prefixWordOfId(id, i) ^ 0x80000000) >>> 24) & 0xff;
  }

  /** The length of the key of `id`: for checkInvariants. */
  #keyBytesOf(id: number): number {
    // A key is equal to itself in its first `length` bytes and no further: its common start with itself.
    return this.#commonStart(id, id);
  }
}
