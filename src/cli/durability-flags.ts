// --data-dir, --durability and --fsync-interval-ms, shared by `hermes-kv node` and `hermes-kv local`:
// their specs, their help text, their checks, and the data dir's lock and identity, taken before
// any worker starts (so two processes never write one log).

import { readdirSync } from "node:fs";
import { join } from "node:path";
import {
  durabilityModes,
  fsyncIntervalMsDefault,
  fsyncIntervalMsMax,
  fsyncIntervalMsMin,
  shardDirName,
  snapshotIntervalMsDefault,
  snapshotLogBytesMaxDefault,
  snapshotStepBytesDefault,
  type DurabilityMode,
  type DurabilityOptions,
} from "../base/durability.ts";
import { DataDir } from "../storage/data-dir.ts";
import type { HermesNode } from "../node/node.ts";
import { parseIntegerFlag, UsageError } from "./args.ts";

export const durabilityFlagSpecs = {
  "data-dir": { kind: "string" },
  durability: { kind: "string" },
  "fsync-interval-ms": { kind: "string" },
} as const;

export const durabilityUsage = `  --data-dir DIR   keep this node's data on disk in DIR (a write-ahead log and snapshots per shard):
                   it survives a crash of every member at once. DIR is locked (one process) and
                   records the cluster name and node id (another node's dir is refused)
  --durability M   none|fsync|async (default: fsync with --data-dir, else none)
                   none:  nothing on disk, no cost
                   fsync: an update is ACKed only once it is on disk (one fdatasync per batch):
                          an acknowledged write survives a crash of every member at once
                   async: the same log, fdatasynced every --fsync-interval-ms: a power loss of
                          every member loses at most that window (a process crash loses nothing)
  --fsync-interval-ms MS  async's window, ${fsyncIntervalMsMin}..${fsyncIntervalMsMax} (default ${fsyncIntervalMsDefault})`;

interface DurabilityFlags {
  "data-dir"?: string;
  durability?: string;
  "fsync-interval-ms"?: string;
}

/** The durability asked for: null for none. Bad input is a UsageError, with nothing written. */
export function parseDurabilityFlags(flags: DurabilityFlags): DurabilityOptions | null {
  const modeText = flags.durability;
  if (modeText !== undefined && !durabilityModes.includes(modeText as DurabilityMode))
    throw new UsageError(`--durability must be one of ${durabilityModes.join("|")}, not "${modeText}"`);
  const dataDir = flags["data-dir"];
  const mode: DurabilityMode = (modeText as DurabilityMode | undefined) ?? (dataDir === undefined ? "none" : "fsync");
  const fsyncIntervalMs =
    flags["fsync-interval-ms"] === undefined
      ? fsyncIntervalMsDefault
      : parseIntegerFlag("--fsync-interval-ms", flags["fsync-interval-ms"], fsyncIntervalMsMin, fsyncIntervalMsMax);
  if (flags["fsync-interval-ms"] !== undefined && mode !== "async")
    throw new UsageError("--fsync-interval-ms applies to --durability async only");
  if (mode === "none") {
    if (dataDir !== undefined) throw new UsageError("--data-dir with --durability none: nothing would be kept there");
    return null;
  }
  if (dataDir === undefined || dataDir.length === 0) throw new UsageError(`--durability ${mode} needs --data-dir`);
  return {
    mode,
    dataDir,
    fsyncIntervalMs,
    snapshotIntervalMs: snapshotIntervalMsDefault,
    snapshotLogBytesMax: snapshotLogBytesMaxDefault,
    snapshotStepBytes: snapshotStepBytesDefault,
  };
}

/**
 * Lock the data dir and check its identity (cluster, node) and shard count; the lock is held
 * until close() or the process ends. Throws with a message naming the dir.
 */
export function openDataDir(dir: string, cluster: string, node: number, shards: number): DataDir {
  const dataDir = DataDir.open(dir, { cluster, node });
  try {
    const found = readdirSync(dir).filter((name) => /^shard-\d+$/.test(name));
    const expected = new Set(Array.from({ length: shards }, (_, i) => shardDirName(i)));
    if (found.length > 0 && (found.length !== shards || !found.every((name) => expected.has(name))))
      throw new UsageError(
        `data dir ${dir} holds ${found.length} shard dirs (${found.sort().join(", ")}) but --shards is ${shards}: keys are placed by shard count, start with the same --shards`,
      );
  } catch (error) {
    dataDir.close();
    throw error;
  }
  return dataDir;
}

/** A local cluster's replica i keeps its data in DIR/replica-i (each its own node dir). */
export function localReplicaDir(dataDir: string, replica: number): string {
  return join(dataDir, `replica-${replica}`);
}

/** What a node's shards recovered from its data dir: one line per shard, and the torn-tail line if any. */
export function recoveryLines(node: HermesNode, who: string): string[] {
  const lines: string[] = [];
  for (const shard of node.shards) {
    const r = shard.recovered;
    if (r === null) continue;
    if (r.tailNote !== null) lines.push(`${who}: shard ${shard.index}: ${r.tailNote}`);
    lines.push(
      `${who}: shard ${shard.index} recovered ${r.keys} keys (${r.snapshotEntries} snapshot entries, ${r.logRecords} log records) in ${r.ms.toFixed(0)} ms`,
    );
  }
  return lines;
}
