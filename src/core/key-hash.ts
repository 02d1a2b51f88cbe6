// The hash of a key's bytes for the key index: MurmurHash3's 32-bit mixing (public domain design,
// written here from its description), over bytes read in place from any buffer, so a key is hashed
// where it lies (a received frame, a ring record, the store's own slab) without being copied.
//
// While hashing, the key's first keyWordsMax 4-byte words (little-endian, the last one zero-padded)
// are kept in a caller's Int32Array: the store then compares a candidate item's key word by word
// against them (the item's key is 8-aligned in its page) instead of reading the key's bytes again.
//
// The seed is the store's (ReplicaConfig.hashSeed): fixed in tests and the simulator so that runs
// repeat, random per node process. It differs in kind from the shard placement hash (FNV-1a over
// UTF-16 units, src/node), so the keys of one shard do not share low index bits.

/** Words of a key kept by hashKeyWords (keys up to 4 * keyWordsMax bytes are compared by words). */
export const keyWordsMax = 16;
/** The seed of a store that is given none. */
export const hashSeedDefault = 0x9747b28c;

const c1 = 0xcc9e2d51;
const c2 = 0x1b873593;

/** 32-bit hash of `bytes[at..at+length)` with `seed`, as a signed int32 (an integer to the engine, never a double). */
export function hashKey(bytes: Uint8Array, at: number, length: number, seed: number = hashSeedDefault): number {
  return hashKeyWords(bytes, at, length, seed, null);
}

/**
 * hashKey, also writing the key's first keyWordsMax words into `words` (null: none): word j is
 * bytes 4j..4j+3 little-endian, zero beyond the key.
 */
export function hashKeyWords(
  bytes: Uint8Array,
  at: number,
  length: number,
  seed: number,
  words: Int32Array | null,
): number {
  let h = seed ^ length;
  const blocksEnd = at + (length & ~3);
  let i = at;
  let w = 0;
  for (; i < blocksEnd; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    if (words !== null && w < keyWordsMax) words[w++] = k;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = length & 3;
  if (rest > 0) {
    let k = bytes[i]!;
    if (rest > 1) k |= bytes[i + 1]! << 8;
    if (rest > 2) k |= bytes[i + 2]! << 16;
    if (words !== null && w < keyWordsMax) words[w] = k;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  // Final avalanche: every input bit affects the low bits the index uses.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
