// Prefix listings and watch streams of one shard worker (the BrowseBackend its HTTP server serves):
// lists read this worker's shard directly and the other shards over BrowseLinks, then merge; watch
// streams live in the WatchHub, fed by this shard's replica (as its ChangeSink) and by the other
// shards over the WatchFeed rings. The shard's loop calls turn(), flush() and waits() (see Shard).

import type { ListPage, ListQuery, ListRefusal, WatchQuery, WatchRefusal, BrowseBackend } from "../base/browse.ts";
import { monotonicMs } from "../base/clock.ts";
import type { ItemView } from "../core/key-store.ts";
import type { ChangeSink } from "../core/types.ts";
import { BrowseLinks, busyPage } from "./browse-links.ts";
import { mergeShardPages, readShardPage, type ShardPage } from "./list-page.ts";
import type { Shard } from "./shard.ts";
import { WatchFeed, type WatchFeedShared } from "./watch-feed.ts";
import { WatchHub } from "./watch-hub.ts";

const encoder = new TextEncoder();
/** A watch stream's start waits this long before asking a busy peer again. */
const busyRetryMs = 5;

const unavailable: ListRefusal = {
  refused: "unavailable",
  message: "this node is not serving (no lease, joining or stopping)",
};

export class BrowseService implements BrowseBackend, ChangeSink {
  readonly #shard: Shard;
  readonly #self: number;
  readonly feed: WatchFeed;
  readonly hub: WatchHub;
  readonly #links: BrowseLinks | null;

  constructor(shard: Shard, feedShared: WatchFeedShared, ports: (MessagePort | null)[] | null) {
    this.#shard = shard;
    this.#self = shard.init.shardIndex;
    this.feed = new WatchFeed(this.#self, feedShared);
    this.hub = new WatchHub(this.feed, this.#readPage, () => shard.board.serving(monotonicMs()));
    this.#links =
      ports === null ? null : new BrowseLinks(this.#self, ports, this.#servePage, (peer) => this.hub.drainFrom(peer));
  }

  // ChangeSink: called inside the replica's step while some worker of the node holds a stream.
  changed(view: ItemView): void {
    const sequence = this.feed.publish(view);
    this.hub.localChange(view, sequence);
  }

  /** The replica tells this service of its changes only while the node has watch streams. */
  #syncSink(): void {
    const want = this.feed.anyWatcher ? this : null;
    if (this.#shard.replica.changes !== want) this.#shard.replica.changes = want;
  }

  /** This shard's page, for this worker or a peer: after publishing every change before the read. */
  readonly #servePage = (
    prefix: Uint8Array,
    after: Uint8Array | null,
    limit: number,
    values: boolean,
  ): ShardPage | null => {
    this.#syncSink();
    this.feed.flush();
    return readShardPage(this.#shard.replica, prefix, after, limit, values, monotonicMs(), this.feed.sequence);
  };

  readonly #readPage = async (
    shard: number,
    prefix: Uint8Array,
    after: Uint8Array | null,
    limit: number,
  ): Promise<ShardPage | null> => {
    if (shard === this.#self) return this.#servePage(prefix, after, limit, true);
    for (;;) {
      const page = this.#links!.request(shard, prefix, after, limit, true);
      if (page !== busyPage) return page;
      await Bun.sleep(busyRetryMs);
    }
  };

  async list(query: ListQuery): Promise<ListPage | ListRefusal> {
    if (!this.#shard.board.serving(monotonicMs())) return unavailable;
    const prefix = encoder.encode(query.prefix);
    const after = query.after === null ? null : encoder.encode(query.after);
    const pages: (ShardPage | null | Promise<ShardPage | null>)[] = [];
    for (let shard = 0; shard < this.feed.shards; shard++) {
      if (shard === this.#self) {
        pages.push(this.#servePage(prefix, after, query.limit, query.values));
        continue;
      }
      const page = this.#links!.request(shard, prefix, after, query.limit, query.values);
      if (page === busyPage) return { refused: "busy", message: "too many listings in flight on this node; retry" };
      pages.push(page);
    }
    const read = await Promise.all(pages);
    if (read.some((page) => page === null)) return unavailable;
    return mergeShardPages(read as ShardPage[], query.limit);
  }

  watch(query: WatchQuery): ReadableStream<Uint8Array> | WatchRefusal {
    const stream = this.hub.open(query);
    // The replica feeds the hub from now on (the hub's stream counts were raised by open).
    this.#syncSink();
    return stream;
  }

  // Called by the shard's loop -----------------------------------------------------------------

  turn(): number {
    this.#syncSink();
    return this.hub.turn();
  }

  flush(): void {
    this.feed.flush();
  }

  waits(out: Promise<unknown>[]): void {
    if (this.hub.watchers > 0) this.feed.waits(out);
  }

  /** The worker stops: every stream ends with `event: unavailable`, pages out are answered null. */
  close(reason: string): void {
    this.hub.closeAll("unavailable", reason);
    this.#links?.close();
    this.#shard.replica.changes = null;
  }
}
