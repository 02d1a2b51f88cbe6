// The keys of a shard in byte order: a B+tree of key ids (u32, see KeyStore) whose order is the
// order of the keys' bytes, which the tree never holds itself: it asks its owner to compare a stored
// id with a probe's bytes (the bytes live once, in the slab arena). Keys are never removed from the
// store (a delete writes a tombstone), so the tree only inserts and seeks: no merge or rebalance on
// removal, and leaves are linked for ordered scans.
//
// Why a B+tree and not a sorted array or a skip list: an insert into a sorted array of 1 M ids moves
// half of it (about 2 MB); a skip list allocates a node per key. The tree's nodes hold up to
// `fanoutMax` ids in plain arrays (packed small integers), so an insert costs about log_fanout(n)
// binary searches and moves at most one node's ids, and memory is about 4-8 bytes per key.

import { assert } from "../base/assert.ts";

/** Ids per node: a node splits in two when it would hold more. */
export const orderedFanoutMax = 64;

/** Compares the key of a stored id with the probe `bytes[at..at+length)`: < 0, 0, > 0 as the key sorts before, equal, after. */
export type CompareIdToBytes = (id: number, bytes: Uint8Array, at: number, length: number) => number;
/** Compares the keys of two stored ids. */
export type CompareIds = (a: number, b: number) => number;

/**
 * A node of the tree. One class for leaves and inner nodes (a `leaf` flag rather than two classes):
 * every call site then sees one shape, which the profile of an insert showed to matter.
 */
class TreeNode {
  readonly leaf: boolean;
  /** A leaf's ids in order; an inner node's children's first ids (ids[i] is the smallest key under children[i]). */
  readonly ids: number[] = [];
  /** An inner node's children (empty for a leaf). */
  readonly children: TreeNode[] = [];
  /** A leaf's right neighbour, for scans. */
  next: TreeNode | null = null;

  constructor(leaf: boolean) {
    this.leaf = leaf;
  }
}

/** Where a scan stands: a leaf and an index in it (reused by the caller across seeks). */
export class OrderedCursor {
  leaf: TreeNode | null = null;
  index = 0;
}

export class OrderedKeys {
  readonly #compareBytes: CompareIdToBytes;
  readonly #compareIds: CompareIds;
  #root: TreeNode = new TreeNode(true);
  #count = 0;
  #height = 1;

  constructor(compareBytes: CompareIdToBytes, compareIds: CompareIds) {
    this.#compareBytes = compareBytes;
    this.#compareIds = compareIds;
  }

  get count(): number {
    return this.#count;
  }
  get height(): number {
    return this.#height;
  }

  /** Insert `id`, whose key is `bytes[at..at+length)` and not in the tree yet. */
  insert(id: number, bytes: Uint8Array, at: number, length: number): void {
    const split = this.#insertInto(this.#root, id, bytes, at, length);
    this.#count++;
    if (split === null) return;
    const root = new TreeNode(false);
    root.children.push(this.#root, split);
    root.ids.push(this.#root.ids[0]!, split.ids[0]!);
    this.#root = root;
    this.#height++;
  }

  /** Inserts into the subtree `node`; returns the new right sibling if the node split, else null. */
  #insertInto(node: TreeNode, id: number, bytes: Uint8Array, at: number, length: number): TreeNode | null {
    if (node.leaf) {
      // No check that the key is new: the store inserts only a key its hash index did not find.
      const ids = node.ids;
      ids.splice(this.#lowerBound(ids, bytes, at, length), 0, id);
      if (ids.length <= orderedFanoutMax) return null;
      const right = new TreeNode(true);
      const half = ids.length >>> 1;
      for (let i = half; i < ids.length; i++) right.ids.push(ids[i]!);
      ids.length = half;
      right.next = node.next;
      node.next = right;
      return right;
    }
    const child = this.#childIndex(node, bytes, at, length);
    // A key below every key of the subtree goes into its first child, and becomes its first key.
    if (child === 0 && this.#compareBytes(node.ids[0]!, bytes, at, length) > 0) node.ids[0] = id;
    const split = this.#insertInto(node.children[child]!, id, bytes, at, length);
    if (split === null) return null;
    node.children.splice(child + 1, 0, split);
    node.ids.splice(child + 1, 0, split.ids[0]!);
    if (node.children.length <= orderedFanoutMax) return null;
    const right = new TreeNode(false);
    const half = node.children.length >>> 1;
    for (let i = half; i < node.children.length; i++) {
      right.children.push(node.children[i]!);
      right.ids.push(node.ids[i]!);
    }
    node.children.length = half;
    node.ids.length = half;
    return right;
  }

  /** The child of `node` whose range holds the probe: the last one whose first key is <= it (0 if none). */
  #childIndex(node: TreeNode, bytes: Uint8Array, at: number, length: number): number {
    const firsts = node.ids;
    let lo = 1;
    let hi = firsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compareBytes(firsts[mid]!, bytes, at, length) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** The first index of `ids` whose key is >= the probe. */
  #lowerBound(ids: number[], bytes: Uint8Array, at: number, length: number): number {
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compareBytes(ids[mid]!, bytes, at, length) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Put `cursor` on the first key >= the probe (`exclusive`: > the probe). An empty probe is the
   * start. Returns the cursor.
   */
  seek(cursor: OrderedCursor, bytes: Uint8Array, at: number, length: number, exclusive: boolean): OrderedCursor {
    let node = this.#root;
    while (!node.leaf) node = node.children[this.#childIndex(node, bytes, at, length)]!;
    let index = this.#lowerBound(node.ids, bytes, at, length);
    if (exclusive && index < node.ids.length && this.#compareBytes(node.ids[index]!, bytes, at, length) === 0) index++;
    cursor.leaf = node;
    cursor.index = index;
    this.#settle(cursor);
    return cursor;
  }

  /** Move a cursor past the end of its leaf onto the next leaf (or null: the end). */
  #settle(cursor: OrderedCursor): void {
    while (cursor.leaf !== null && cursor.index >= cursor.leaf.ids.length) {
      cursor.leaf = cursor.leaf.next;
      cursor.index = 0;
    }
  }

  /** The id under the cursor, or -1 at the end. */
  current(cursor: OrderedCursor): number {
    return cursor.leaf === null ? -1 : cursor.leaf.ids[cursor.index]!;
  }

  /** Step the cursor to the next key. */
  advance(cursor: OrderedCursor): void {
    if (cursor.leaf === null) return;
    cursor.index++;
    this.#settle(cursor);
  }

  /**
   * Whole-tree check for tests (O(n)); throws AssertionError: keys strictly ascend along the
   * leaves, every leaf is at the same depth, node sizes are within the fanout, each inner node's
   * first keys are its children's, and the count is exact. Returns the ids in order.
   */
  checkInvariants(): number[] {
    const ids: number[] = [];
    const leafDepths = new Set<number>();
    const walk = (node: TreeNode, depth: number, isRoot: boolean): void => {
      if (node.leaf) {
        leafDepths.add(depth);
        assert(node.ids.length <= orderedFanoutMax, "a leaf holds at most orderedFanoutMax ids");
        assert(isRoot || node.ids.length > 0, "only the root leaf may be empty");
        assert(node.children.length === 0, "a leaf has no children");
        return;
      }
      assert(node.children.length >= 2 || isRoot, "an inner node has at least two children");
      assert(node.children.length <= orderedFanoutMax, "an inner node has at most orderedFanoutMax children");
      assert(node.children.length === node.ids.length, "an inner node names each child's first key");
      for (let i = 0; i < node.children.length; i++) {
        const child = node.children[i]!;
        assert(node.ids[i] === child.ids[0], "an inner node's first keys are its children's");
        walk(child, depth + 1, false);
      }
    };
    walk(this.#root, 1, true);
    assert(leafDepths.size === 1 && leafDepths.has(this.#height), "every leaf lies at the tree's height");
    let leaf: TreeNode | null = this.#root;
    while (!leaf.leaf) leaf = leaf.children[0]!;
    for (; leaf !== null; leaf = leaf.next) for (const id of leaf.ids) ids.push(id);
    for (let i = 1; i < ids.length; i++)
      assert(this.#compareIds(ids[i - 1]!, ids[i]!) < 0, "the leaves hold the keys in strictly ascending order");
    assert(ids.length === this.#count, "the tree counts its keys");
    return ids;
  }
}
