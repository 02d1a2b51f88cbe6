// The pure parts of listings and watch streams: the merge of shard pages (the cut, byte order,
// pending keys, limit) and the watch feed between workers (records through the ring, only to
// workers that hold watchers, the lost flag on a full ring, the node's watcher count and its limit).

import { describe, expect, test } from "bun:test";
import { ItemView } from "../../src/core/key-store.ts";
import { mergeShardPages, type ShardPage } from "../../src/worker/list-page.ts";
import { createWatchFeed, WatchFeed } from "../../src/worker/watch-feed.ts";
import { ringCapacityBytesMin } from "../../src/ring/spsc-ring.ts";

function page(
  keys: string[],
  more: boolean,
  last: string | null = keys.at(-1) ?? null,
  pending: string[] = [],
): ShardPage {
  return {
    keys,
    versions: keys.map(() => 2),
    writers: keys.map(() => 0),
    values: keys.map(() => null),
    pending,
    more,
    last,
    sequence: 0,
  };
}

describe("mergeShardPages", () => {
  test("all shards done: every key, in byte order, no next", () => {
    const merged = mergeShardPages([page(["a/2", "a/é"], false), page(["a/1", "a/\u{1F600}", "a/\uFFFD"], false)], 10);
    // Byte order of UTF-8: U+FFFD (EF BF BD) sorts before U+1F600 (F0 9F 98 80), unlike UTF-16 order.
    expect(merged.entries.map((e) => e.key)).toEqual(["a/1", "a/2", "a/é", "a/\uFFFD", "a/\u{1F600}"]);
    expect(merged.more).toBe(false);
    expect(merged.next).toBeNull();
  });

  test("a shard with more cuts the page at its last key: nothing after it is claimed", () => {
    const merged = mergeShardPages([page(["b", "d"], true), page(["a", "c", "e"], false)], 10);
    expect(merged.entries.map((e) => e.key)).toEqual(["a", "b", "c", "d"]);
    expect(merged.more).toBe(true);
    expect(merged.next).toBe("d");
  });

  test("the limit cuts at the limit-th key; pending keys beyond the cut are left to the next page", () => {
    const merged = mergeShardPages([page(["a", "c"], false, "z", ["b", "y"]), page(["d", "e"], false)], 3);
    expect(merged.entries.map((e) => e.key)).toEqual(["a", "c", "d"]);
    expect(merged.pending).toEqual(["b"]);
    expect(merged.more).toBe(true);
    expect(merged.next).toBe("d");
  });

  test("a page that ends on a skipped key still moves on (next is that key)", () => {
    const merged = mergeShardPages([page([], true, "k"), page(["x"], false)], 10);
    expect(merged.entries).toEqual([]);
    expect(merged.more).toBe(true);
    expect(merged.next).toBe("k");
  });
});

function view(key: string, value: string | null, version: number): ItemView {
  const bytes = new TextEncoder().encode(key + (value ?? ""));
  const v = new ItemView();
  v.page = bytes;
  v.keyAt = 0;
  v.keyBytes = new TextEncoder().encode(key).length;
  v.valueAt = v.keyBytes;
  v.valueBytes = value === null ? 0 : bytes.length - v.keyBytes;
  v.hasValue = value !== null;
  v.version = version;
  v.writer = 1;
  return v;
}

describe("WatchFeed", () => {
  test("changes reach only workers with watchers, in order, with key, value, timestamp and sequence", () => {
    const shared = createWatchFeed(3);
    const [a, b, c] = [0, 1, 2].map((i) => new WatchFeed(i, shared)) as [WatchFeed, WatchFeed, WatchFeed];
    expect(a.anyWatcher).toBe(false);
    expect(b.addWatcher(10)).toBe(true);
    expect(a.anyWatcher).toBe(true);
    a.publish(view("k1", "v1", 2));
    a.publish(view("k2", null, 4));
    a.flush();
    const seen: string[] = [];
    const decoder = new TextDecoder();
    const handler = (ch: {
      shard: number;
      sequence: number;
      version: number;
      bytes: Uint8Array;
      keyAt: number;
      keyBytes: number;
      valueAt: number;
      valueBytes: number;
    }): void => {
      const key = decoder.decode(ch.bytes.subarray(ch.keyAt, ch.keyAt + ch.keyBytes));
      const value =
        ch.valueAt < 0 ? "deleted" : decoder.decode(ch.bytes.subarray(ch.valueAt, ch.valueAt + ch.valueBytes));
      seen.push(`${ch.shard}.${ch.sequence} ${key}=${value}@${ch.version}`);
    };
    expect(b.drain(-1, handler)).toBe(2);
    expect(seen).toEqual(["0.1 k1=v1@2", "0.2 k2=deleted@4"]);
    expect(c.drain(-1, handler)).toBe(0); // c holds no watcher: nothing was written to it
    b.removeWatcher();
    expect(a.anyWatcher).toBe(false);
  });

  test("a full ring raises the lost flag for its reader instead of growing", () => {
    const shared = createWatchFeed(2, ringCapacityBytesMin);
    const [a, b] = [new WatchFeed(0, shared), new WatchFeed(1, shared)];
    expect(b.addWatcher(10)).toBe(true);
    for (let i = 0; i < 100; i++) a.publish(view(`key-${i}`, "x".repeat(40), 2));
    a.flush();
    expect(a.dropped).toBeGreaterThan(0);
    expect(b.takeLost()).toBe(true);
    expect(b.takeLost()).toBe(false); // cleared once taken
  });

  test("the node's watchers are limited", () => {
    const shared = createWatchFeed(2);
    const [a, b] = [new WatchFeed(0, shared), new WatchFeed(1, shared)];
    expect(a.addWatcher(3)).toBe(true);
    expect(b.addWatcher(3)).toBe(true);
    expect(b.addWatcher(3)).toBe(true);
    expect(a.addWatcher(3)).toBe(false);
    expect(a.nodeWatchers).toBe(3);
    b.removeWatcher();
    expect(a.addWatcher(3)).toBe(true);
  });
});
