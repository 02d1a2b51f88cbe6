// One key of a shard as state transfer carries it: the core produces and installs these, the node
// streams them between members, the worker passes them through.

import type { WriterId } from "./ids.ts";

export interface SnapshotEntry {
  key: string;
  version: number;
  writer: WriterId;
  rmw: boolean;
  /** null: a tombstone (deleted key). */
  value: Uint8Array | null;
  /** The source held the key Valid: the ts is committed. */
  committed: boolean;
}
