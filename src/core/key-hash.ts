// The hash of a key's bytes for the key index: MurmurHash3's 32-bit mixing (public domain design,
// written here from its description), over bytes read in place from any buffer, so a key is hashed
// where it lies (a received frame, a ring record, the store's own slab) without being copied.
//
// The seed is fixed: the core is deterministic. It differs from the shard placement hash (FNV-1a
// over UTF-16 units, src/node), so the keys of one shard do not share low index bits.

const seed = 0x9747b28c;
const c1 = 0xcc9e2d51;
const c2 = 0x1b873593;

/** 32-bit hash of `bytes[at..at+length)`, as a signed int32 (the engine keeps it an integer, never a double). */
export function hashKey(bytes: Uint8Array, at: number, length: number): number {
  let h = seed ^ length;
  const blocksEnd = at + (length & ~3);
  let i = at;
  for (; i < blocksEnd; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = length & 3;
  if (rest > 0) {
    let k = bytes[i];
    if (rest > 1) k |= bytes[i + 1] << 8;
    if (rest > 2) k |= bytes[i + 2] << 16;
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
