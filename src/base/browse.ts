// The contract between the HTTP shell and the node for prefix listings and watch streams (issue 12):
// what GET /v1/kv?prefix= and GET /v1/watch ask of a backend. Shared vocabulary, like kv-backend.ts,
// so the HTTP shell depends on neither the worker nor the node.

import type { NodeId } from "./ids.ts";

/** Keys a list answers by default, and at most (`limit`). */
export const listLimitDefault = 1000;
export const listLimitMax = 10_000;

export interface ListQuery {
  /** UTF-8 key prefix ("" = every key). */
  prefix: string;
  /** List keys strictly after this one (paging), or null. */
  after: string | null;
  /** 1..listLimitMax. */
  limit: number;
  /** Include the values. */
  values: boolean;
}

export interface ListEntry {
  key: string;
  version: number;
  writer: NodeId;
  /** With ListQuery.values: the value (a listed key always has one: deleted keys are not listed). */
  value: Uint8Array | null;
}

export interface ListPage {
  /** Valid keys with a value, in byte order of their UTF-8. */
  entries: ListEntry[];
  /**
   * Keys in the page's range that were not Valid at the moment their shard was read (an update of
   * them was in flight): not listed, named here so that a client can GET them (a GET waits until
   * the key is Valid). Deleted keys are neither listed nor named.
   */
  pending: string[];
  /** More keys may follow: list again with after = next. */
  more: boolean;
  /** Present iff more: the key to pass as `after`. */
  next: string | null;
}

/** A list that could not be answered: the node does not serve (503) or a bound queue is full (429). */
export interface ListRefusal {
  refused: "unavailable" | "busy";
  message: string;
}

export interface WatchQuery {
  /** Watch keys with this prefix; or, with `exact`, only the key equal to it. */
  prefix: string;
  exact: boolean;
  /** Start with the current matching keys (false: from=now, unless resuming). */
  initial: boolean;
  /** The Last-Event-ID (or ?cursor=) the client resumes from, or null. */
  cursor: string | null;
}

/** A watch that could not start: too many watchers (429) or the node does not serve (503). */
export interface WatchRefusal {
  refused: "unavailable" | "busy";
  message: string;
}

export interface BrowseBackend {
  list(query: ListQuery): ListPage | ListRefusal | Promise<ListPage | ListRefusal>;
  /** An SSE body (text/event-stream) that runs until the client goes or the node closes it. */
  watch(query: WatchQuery): ReadableStream<Uint8Array> | WatchRefusal;
}
