// One shard's part of a prefix listing: a page of its keys in byte order, read from its replica at
// one moment (the shard's thread runs nothing else meanwhile), and the merge of the pages of every
// shard of a node into the answer of GET /v1/kv?prefix=.
//
// A shard's page: up to `limit` keys that are Valid with a value, read as a linearizable local read
// would read them at that moment (Valid, lease valid); keys not Valid are named in `pending` (an
// update is in flight; a GET waits for it); deleted keys (tombstones stay in the ordered index,
// since keys are never removed from the store) are skipped. A scan visits at most listScanKeysMax
// keys, so a prefix full of tombstones cannot stall the shard: the page then ends early with
// `more` and `last`, the key to continue after.

import type { ListEntry, ListPage } from "../base/browse.ts";
import { utf8Decode, Utf8Kind } from "../base/utf8.ts";
import type { Replica } from "../core/replica.ts";

/** Keys one shard's scan visits at most for one page (listed, pending and deleted ones alike). */
export const listScanKeysMax = 20_000;

/** A shard's page, as it crosses between workers (structured clone: plain arrays and bytes). */
export interface ShardPage {
  keys: string[];
  versions: number[];
  writers: number[];
  /** Copies of the values (null without values). */
  values: (Uint8Array | null)[];
  pending: string[];
  /** The scan stopped before the end of the prefix. */
  more: boolean;
  /** The last key visited (listed or not), or null if none: with `more`, where the scan stopped. */
  last: string | null;
  /** The shard's change-feed sequence when it was read (watch-feed.ts): ids of a watch stream's first events. */
  sequence: number;
}

/** The shard's page, or null when its replica serves no reads now (no lease, joining, stopped). */
export function readShardPage(
  replica: Replica,
  prefix: Uint8Array,
  after: Uint8Array | null,
  limit: number,
  values: boolean,
  nowMs: number,
  sequence: number,
): ShardPage | null {
  const page: ShardPage = {
    keys: [],
    versions: [],
    writers: [],
    values: [],
    pending: [],
    more: false,
    last: null,
    sequence,
  };
  let visited = 0;
  const served = replica.scanValid(
    prefix,
    prefix.length,
    after,
    after === null ? 0 : after.length,
    nowMs,
    (view, readable) => {
      if (page.keys.length === limit || visited === listScanKeysMax) {
        page.more = true;
        return false;
      }
      visited++;
      // Decoded for every visited key, listed or not: a page that ends on a skipped key names it.
      const key = utf8Decode(view.page, view.keyAt, view.keyAt + view.keyBytes, Utf8Kind.Valid);
      page.last = key;
      if (!readable) {
        page.pending.push(key);
        return true;
      }
      if (!view.hasValue) return true; // deleted (or never written): not listed
      page.keys.push(key);
      page.versions.push(view.version);
      page.writers.push(view.writer);
      page.values.push(values ? view.page.slice(view.valueAt, view.valueAt + view.valueBytes) : null);
      return true;
    },
  );
  if (!served) return null;
  return page;
}

/** Byte order of two keys' UTF-8 (code point order; JS string `<` compares UTF-16 units, which differs above U+FFFF). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * The node's page from its shards' pages (each of at most `limit` keys after the same key). Every
 * key up to the cut is known: the cut is the smallest `last` of the shards that have more, or the
 * limit-th listed key if that comes first; the page holds the keys up to it in byte order, and
 * `next` is the cut.
 */
export function mergeShardPages(pages: ShardPage[], limit: number): ListPage {
  let cut: string | null = null;
  for (const page of pages)
    if (page.more && page.last !== null && (cut === null || compareKeys(page.last, cut) < 0)) cut = page.last;
  const entries: ListEntry[] = [];
  const pending: string[] = [];
  for (const page of pages) {
    for (let i = 0; i < page.keys.length; i++) {
      const key = page.keys[i]!;
      if (cut !== null && compareKeys(key, cut) > 0) continue;
      entries.push({ key, version: page.versions[i]!, writer: page.writers[i]!, value: page.values[i]! });
    }
    for (const key of page.pending) if (cut === null || compareKeys(key, cut) <= 0) pending.push(key);
  }
  // Sort by bytes once per key (encode each key once, not once per comparison).
  const encoded = new Map<string, Buffer>();
  for (const e of entries) encoded.set(e.key, Buffer.from(e.key, "utf8"));
  entries.sort((a, b) => Buffer.compare(encoded.get(a.key)!, encoded.get(b.key)!));
  let more = cut !== null;
  if (entries.length > limit) {
    entries.length = limit;
    cut = entries[limit - 1]!.key;
    more = true;
  }
  const kept = cut === null ? pending : pending.filter((key) => compareKeys(key, cut!) <= 0);
  kept.sort(compareKeys);
  return { entries, pending: kept, more, next: more ? cut : null };
}
