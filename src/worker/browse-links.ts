// Pages of other shards for a prefix listing or a watch stream's start: a request to the shard's
// worker and its page back, over a MessagePort per pair of workers (made by the node, see
// HttpStart.browsePorts).
//
// Why postMessage here when client ops use the rings: a listing is a bulk read. One request moves a
// whole page (up to listLimitMax keys with values, up to hundreds of MB: more than any ring holds,
// so a ring would need a chunked, flow-controlled answer), and its cost, a structured clone of the
// page, is paid once per page rather than once per key: measured in docs/benchmarks.md against
// single GETs. Watch changes, which are per update, go over rings (watch-feed.ts).

import { assert } from "../base/assert.ts";
import type { ShardPage } from "./list-page.ts";

/** Page requests a worker has out at once (all peers together); more are answered Busy. */
export const browseRequestsMax = 256;
/**
 * A page not answered within this long is given up (answered null: not serving), so that a listing
 * never hangs on a worker that died or stalls; the op timeout of client ops, for the same reason.
 */
export const browsePageTimeoutMs = 5000;

interface PageRequest {
  type: "page";
  id: number;
  prefix: Uint8Array;
  after: Uint8Array | null;
  limit: number;
  values: boolean;
}

interface PageAnswer {
  type: "page-answer";
  id: number;
  page: ShardPage | null;
}

/** Reads this worker's shard for a peer; null: the replica serves no reads now. */
export type ServePage = (
  prefix: Uint8Array,
  after: Uint8Array | null,
  limit: number,
  values: boolean,
) => ShardPage | null;

export const busyPage = Symbol("busy");

export class BrowseLinks {
  readonly #ports: (MessagePort | null)[];
  readonly #pending = new Map<
    number,
    { resolve: (page: ShardPage | null) => void; peer: number; timer: ReturnType<typeof setTimeout> }
  >();
  #nextId = 1;
  #closed = false;

  /**
   * `serve` answers peers' requests; `beforeAnswer(peer)` runs before a peer's page is handed to
   * the requester (the watch hub drains that peer's change feed there, see watch-hub.ts).
   */
  constructor(self: number, ports: (MessagePort | null)[], serve: ServePage, beforeAnswer: (peer: number) => void) {
    this.#ports = ports;
    ports.forEach((port, peer) => {
      assert((port === null) === (peer === self), "a browse port for every other worker, none for itself");
      if (port === null) return;
      port.addEventListener("message", (event) => {
        const message = (event as { data: PageRequest | PageAnswer }).data;
        if (message.type === "page") {
          const page = this.#closed ? null : serve(message.prefix, message.after, message.limit, message.values);
          const answer: PageAnswer = { type: "page-answer", id: message.id, page };
          port.postMessage(answer);
          return;
        }
        const waiting = this.#pending.get(message.id);
        if (waiting === undefined) return;
        this.#pending.delete(message.id);
        clearTimeout(waiting.timer);
        beforeAnswer(waiting.peer);
        waiting.resolve(message.page);
      });
      port.start();
    });
  }

  /** Shard `peer`'s page; null when it serves no reads (or this worker stops); busyPage when too many are out. */
  request(
    peer: number,
    prefix: Uint8Array,
    after: Uint8Array | null,
    limit: number,
    values: boolean,
  ): Promise<ShardPage | null> | typeof busyPage {
    const port = this.#ports[peer];
    assert(port !== null && port !== undefined, "a page request to this worker itself or outside the node");
    if (this.#closed) return Promise.resolve(null);
    if (this.#pending.size >= browseRequestsMax) return busyPage;
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(id)) resolve(null);
      }, browsePageTimeoutMs);
      this.#pending.set(id, { resolve, peer, timer });
      const request: PageRequest = { type: "page", id, prefix, after, limit, values };
      port.postMessage(request);
    });
  }

  /** This worker stops: requests out are answered null (not serving); peers' requests too. */
  close(): void {
    this.#closed = true;
    for (const { resolve, timer } of this.#pending.values()) {
      clearTimeout(timer);
      resolve(null);
    }
    this.#pending.clear();
    for (const port of this.#ports) port?.close();
  }
}
