// The watch streams (GET /v1/watch) held by one shard worker. Every worker serves HTTP, so each
// holds the streams of the connections the kernel gave it, and sees the changes of every shard of
// the node: its own shard's directly (the replica's ChangeSink), the others' over the watch feed
// (watch-feed.ts). A change is a key going Valid at this node with a new timestamp: a commit of this
// node or an update it applied.
//
// Per key, a stream never goes back in time. Live changes of one key come from one shard, in the
// order that shard validated them, and a replica's timestamps of a key only grow. The one place
// where order could break is the start, when the current keys (read page by page from each shard)
// and live changes (already flowing, so that nothing is missed) interleave: until the stream is
// synced it remembers the timestamp it sent for each key and drops anything not newer. A page of
// another shard is read after that shard published every change before the read (it flushes its
// feed first), and the page's answer is handled after this worker drained that feed, so once the
// last page is in, every change still to come is newer than what the pages showed.
//
// Coalescing: a replica may never hold an intermediate value (a later INV overtook it), so the
// stream shows the values this node held, not every write; and a value can repeat its ETag (a key
// re-validated after a replay). A stream that falls `watchBufferBytesMax` behind its client gets
// `event: overflow` and is closed rather than buffered without bound; so is every stream of a
// worker whose feed ring overflowed. A node that stops serving (lost lease, stop, shutdown) sends
// `event: unavailable` to every stream and closes it.
//
// Resume (Last-Event-ID or ?cursor=): an event's id is "shard.sequence", its position in that
// shard's change feed. The node keeps no history of changes (no per-key change number in the
// store, no event log), so every resume is "too old": the stream starts again with the current
// value of every matching key, which loses no key's latest value; the client drops what it has by
// ETag. `from=now` without a cursor skips the current keys.

import { compareTs } from "../base/timestamp.ts";
import { utf8Decode, Utf8Kind } from "../base/utf8.ts";
import type { WatchQuery, WatchRefusal } from "../base/browse.ts";
import type { ItemView } from "../core/key-store.ts";
import { sseChange, sseFinal, sseOpening, ssePing, sseSynced } from "../http/sse.ts";
import type { ShardPage } from "./list-page.ts";
import { watchersMax, type FeedChange, type WatchFeed } from "./watch-feed.ts";

/** Bytes a stream may have queued for its client before it is closed with `event: overflow`. */
export const watchBufferBytesMax = 1 << 20;
/** Keys a stream's start may send (it remembers each until it is synced); a larger prefix overflows at once. */
export const watchSyncKeysMax = 200_000;
/** Keys per page read while a stream starts. */
const syncPageKeys = 1000;
/** The heartbeat: a comment line every this many ms (below Bun's 10 s idle timeout). */
export const watchHeartbeatMs = 3000;

/** Reads a page of shard `shard` (this worker's own directly, others' over BrowseLinks); null: not serving. */
export type PageReader = (
  shard: number,
  prefix: Uint8Array,
  after: Uint8Array | null,
  limit: number,
) => ShardPage | null | Promise<ShardPage | null>;

interface Watcher {
  prefix: Uint8Array;
  exact: boolean;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** While starting: the timestamp sent per key (version, writer); null once synced. */
  sent: Map<string, [number, number]> | null;
  closed: boolean;
}

const encoder = new TextEncoder();

export class WatchHub {
  readonly #feed: WatchFeed;
  readonly #shards: number;
  readonly #readPage: PageReader;
  readonly #serving: () => boolean;
  readonly #watchers = new Set<Watcher>();
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  /** Streams closed by overflow, and changes sent (for tests and metrics). */
  overflows = 0;
  eventsSent = 0;

  constructor(feed: WatchFeed, readPage: PageReader, serving: () => boolean) {
    this.#feed = feed;
    this.#shards = feed.shards;
    this.#readPage = readPage;
    this.#serving = serving;
  }

  get watchers(): number {
    return this.#watchers.size;
  }

  /** A new stream, or why not. */
  open(query: WatchQuery): ReadableStream<Uint8Array> | WatchRefusal {
    if (!this.#serving())
      return { refused: "unavailable", message: "this node is not serving (no lease, joining or stopping)" };
    if (!this.#feed.addWatcher(watchersMax))
      return { refused: "busy", message: `this node holds ${watchersMax} watch streams (watchersMax)` };
    let watcher: Watcher | null = null;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          watcher = {
            prefix: encoder.encode(query.prefix),
            exact: query.exact,
            controller,
            sent: query.initial ? new Map() : null,
            closed: false,
          };
          this.#watchers.add(watcher);
          controller.enqueue(sseOpening);
          if (query.initial) void this.#sync(watcher);
          else controller.enqueue(sseSynced);
          this.#heartbeat ??= setInterval(this.#beat, watchHeartbeatMs);
        },
        cancel: () => {
          if (watcher !== null) this.#drop(watcher);
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: watchBufferBytesMax }),
    );
    return stream;
  }

  /** The current matching keys of every shard, then `synced`. */
  async #sync(w: Watcher): Promise<void> {
    const limit = w.exact ? 1 : syncPageKeys;
    for (let shard = 0; shard < this.#shards && !w.closed; shard++) {
      let after: Uint8Array | null = null;
      for (;;) {
        const page = await this.#readPage(shard, w.prefix, after, limit);
        if (w.closed) return;
        if (page === null) return this.#close(w, "unavailable", "this node stopped serving while the stream started");
        const cursor = `${shard}.${page.sequence}`;
        for (let i = 0; i < page.keys.length; i++) {
          const key = page.keys[i]!;
          if (w.exact && encoder.encode(key).length !== w.prefix.length) continue;
          this.#offer(w, key, page.versions[i]!, page.writers[i]!, page.values[i]!, cursor, null);
          if (w.closed) return;
        }
        if (!page.more || w.exact || page.last === null) break;
        after = encoder.encode(page.last);
      }
    }
    if (w.closed) return;
    w.sent = null;
    this.#send(w, sseSynced);
  }

  /** Send a key's value (null: deleted) unless the stream, still starting, sent it at a timestamp as new. */
  #offer(
    w: Watcher,
    key: string,
    version: number,
    writer: number,
    value: Uint8Array | null,
    cursor: string,
    formatted: Uint8Array | null,
  ): void {
    if (w.sent !== null) {
      const prev = w.sent.get(key);
      if (prev !== undefined && compareTs(version, writer, prev[0], prev[1]) <= 0) return;
      w.sent.set(key, [version, writer]);
      if (w.sent.size > watchSyncKeysMax)
        return this.#close(
          w,
          "overflow",
          `more than ${watchSyncKeysMax} keys to start with (watchSyncKeysMax); narrow the prefix or use from=now`,
        );
    }
    this.#send(w, formatted ?? sseChange(key, version, writer, value, cursor));
  }

  #send(w: Watcher, bytes: Uint8Array): void {
    if (w.closed) return;
    w.controller.enqueue(bytes);
    this.eventsSent++;
    if ((w.controller.desiredSize ?? 0) <= 0)
      this.#close(w, "overflow", `the client fell ${watchBufferBytesMax} bytes behind (watchBufferBytesMax)`);
  }

  #close(w: Watcher, event: "overflow" | "unavailable", reason: string): void {
    if (w.closed) return;
    if (event === "overflow") this.overflows++;
    try {
      w.controller.enqueue(sseFinal(event, reason));
      w.controller.close();
    } catch {
      // The client already went (the stream was cancelled): nothing to tell it.
    }
    this.#drop(w);
  }

  #drop(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    this.#watchers.delete(w);
    this.#feed.removeWatcher();
    if (this.#watchers.size === 0 && this.#heartbeat !== null) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = null;
    }
  }

  readonly #beat = (): void => {
    if (!this.#serving()) return this.closeAll("unavailable", "this node stopped serving");
    for (const w of this.#watchers) this.#send(w, ssePing);
  };

  /** Close every stream with a final event (the node stops serving, or the feed lost changes). */
  closeAll(event: "overflow" | "unavailable", reason: string): void {
    for (const w of [...this.#watchers]) this.#close(w, event, reason);
  }

  // Changes ------------------------------------------------------------------------------------

  /** A change of this worker's own shard (its replica's ChangeSink; sequence from the feed). */
  localChange(view: ItemView, sequence: number): void {
    if (this.#watchers.size === 0) return;
    this.#deliver(
      this.#feed.self,
      sequence,
      view.version,
      view.writer,
      view.page,
      view.keyAt,
      view.keyBytes,
      view.hasValue ? view.valueAt : -1,
      view.valueBytes,
    );
  }

  readonly #remoteChange = (c: FeedChange): void => {
    if (this.#watchers.size === 0) return;
    this.#deliver(c.shard, c.sequence, c.version, c.writer, c.bytes, c.keyAt, c.keyBytes, c.valueAt, c.valueBytes);
  };

  #deliver(
    shard: number,
    sequence: number,
    version: number,
    writer: number,
    bytes: Uint8Array,
    keyAt: number,
    keyBytes: number,
    valueAt: number,
    valueBytes: number,
  ): void {
    let key: string | null = null;
    let formatted: Uint8Array | null = null;
    for (const w of this.#watchers) {
      if (!matches(w, bytes, keyAt, keyBytes)) continue;
      // Decoded and formatted once per change, for the first stream it matches.
      if (key === null) {
        key = utf8Decode(bytes, keyAt, keyAt + keyBytes, Utf8Kind.Valid);
        const value = valueAt < 0 ? null : bytes.subarray(valueAt, valueAt + valueBytes);
        formatted = sseChange(key, version, writer, value, `${shard}.${sequence}`);
      }
      this.#offer(w, key, version, writer, null, "", formatted);
    }
  }

  /**
   * Once per loop turn: take the other shards' changes (drained even without streams, so the rings
   * never fill while nobody watches), close every stream if a ring lost one, or if the node stopped
   * serving. Returns the changes taken.
   */
  turn(): number {
    const taken = this.#feed.drain(-1, this.#remoteChange);
    if (this.#feed.takeLost() && this.#watchers.size > 0)
      this.closeAll("overflow", "this node's change feed to this stream's worker overflowed");
    if (this.#watchers.size > 0 && !this.#serving()) this.closeAll("unavailable", "this node stopped serving");
    return taken;
  }

  /** Before handling a page of shard `shard` while a stream starts: take what that shard published before it. */
  drainFrom(shard: number): void {
    this.#feed.drain(shard, this.#remoteChange);
  }
}

function matches(w: Watcher, bytes: Uint8Array, keyAt: number, keyBytes: number): boolean {
  const prefix = w.prefix;
  if (keyBytes < prefix.length || (w.exact && keyBytes !== prefix.length)) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[keyAt + i] !== prefix[i]) return false;
  return true;
}
