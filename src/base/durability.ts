// What a node promises about its data on disk (`--durability`, `--data-dir`), named once for the
// CLI, the node and the shard workers.
//
// - none:  nothing is written (the default, and the only mode without a data dir): no disk I/O and
//          no cost. A write survives while a member that holds it lives.
// - fsync: a replica ACKs an INV, and a coordinator counts its own update, only once its key,
//          timestamp and value are on disk (one fdatasync per loop turn of the shard: group commit).
//          An acknowledged write survives any crash of the whole cluster.
// - async: the same log, fdatasynced at most every fsyncIntervalMs. A crash of the machines (power,
//          kernel) of every member loses at most the writes of that window; a crash of the
//          processes alone loses nothing the kernel had taken (the page cache survives them).

export type DurabilityMode = "none" | "fsync" | "async";

export const durabilityModes: readonly DurabilityMode[] = ["none", "fsync", "async"];

/** --fsync-interval-ms: the async mode's default window, as Redis's `appendfsync everysec` is one second. */
export const fsyncIntervalMsDefault = 100;
export const fsyncIntervalMsMin = 1;
export const fsyncIntervalMsMax = 60_000;

/** A shard snapshots at least this often while its log grows (0: only by size). */
export const snapshotIntervalMsDefault = 5 * 60_000;
/** A shard snapshots once its log since the last snapshot passes this many bytes. */
export const snapshotLogBytesMaxDefault = 256 * 1024 * 1024;
/** Bytes of snapshot records one loop turn writes: bounds the pause a snapshot adds to a turn. */
export const snapshotStepBytesDefault = 256 * 1024;

/** Durability of one node (null in NodeOptions: mode none). */
export interface DurabilityOptions {
  mode: Exclude<DurabilityMode, "none">;
  /** The node's data dir (locked and identified by the CLI); shard i keeps its files in shard-i/. */
  dataDir: string;
  fsyncIntervalMs: number;
  snapshotIntervalMs: number;
  snapshotLogBytesMax: number;
  snapshotStepBytes: number;
}

/** The directory of shard `index` under a node's data dir. */
export function shardDirName(index: number): string {
  return `shard-${index}`;
}
