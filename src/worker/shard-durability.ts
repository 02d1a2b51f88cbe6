// A shard worker's start with a data dir: recover the replica from disk, then log from there on.
//
// Recovery runs before the worker says it is ready, so the node never joins with a half-loaded
// shard. The replica enters joining mode first (it serves nothing until the node's join ends) and
// takes the newest snapshot, then every log record after it, in order, as a joiner takes a
// snapshot's entries: the higher timestamp wins, a record marked Valid is committed, any other is
// loaded Invalid and stale, exactly like state kept through a lease loss. The node's join then
// merges it with the other members' (src/node/etcd-join.ts), and a key still not Valid is replayed
// with its timestamp and value once the join ends, as Hermes replays any key whose VAL was lost.
// Only then is the journal attached: what was loaded from disk is not logged again.

import { mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { shardDirName, type DurabilityOptions } from "../base/durability.ts";
import type { Replica } from "../core/replica.ts";
import { diskError } from "../storage/errors.ts";
import type { EntryLimits } from "../storage/record-layout.ts";
import { recoverShard, type RecoveryResult } from "../storage/recovery.ts";
import { ShardLog, bufferBytesDefault, segmentBytesMaxDefault } from "../storage/shard-log.ts";
import { ShardJournal } from "./shard-journal.ts";
import { ShardSnapshots } from "./shard-snapshots.ts";

export interface ShardRecovery {
  journal: ShardJournal;
  snapshots: ShardSnapshots;
  result: RecoveryResult;
  /** Keys the replica holds after recovery. */
  keys: number;
  ms: number;
}

/** Recover shard `index` of the node's data dir into `replica` (fresh, joining) and open its log. */
export function recoverAndOpen(
  replica: Replica,
  index: number,
  options: DurabilityOptions,
  limits: EntryLimits,
  nowMs: number,
): ShardRecovery {
  const began = performance.now();
  const dir = join(options.dataDir, shardDirName(index));
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw diskError("mkdir", dir, error);
  }
  if (!replica.joining) replica.beginJoin();
  const result = recoverShard(dir, (record) => {
    // Key and value are read in place from the file's bytes: no object per record.
    replica.installEntryBytes(
      record.bytes,
      record.keyAt,
      record.keyLength,
      record.version,
      record.writer,
      record.rmw,
      record.tombstone ? null : record.bytes,
      record.valueAt,
      record.valueLength,
      record.valid,
      nowMs,
    );
  });
  // The log replayed (segments not covered by a snapshot) counts towards the next snapshot.
  let logBytesCarried = 0;
  for (const name of readdirSync(dir)) if (name.endsWith(".log")) logBytesCarried += statSync(join(dir, name)).size;
  // Nothing on disk (a new dir): the replica starts as it would without one.
  if (result.snapshotEntries === 0 && result.logRecords === 0) replica.finishJoin(nowMs);
  const log = ShardLog.open(dir, result.nextSegment, {
    ...limits,
    segmentBytesMax: segmentBytesMaxDefault,
    bufferBytes: bufferBytesDefault,
  });
  const journal = new ShardJournal(options.mode, log, options.fsyncIntervalMs);
  const snapshots = new ShardSnapshots(
    replica,
    log,
    dir,
    limits,
    {
      intervalMs: options.snapshotIntervalMs,
      logBytesMax: options.snapshotLogBytesMax,
      stepBytes: options.snapshotStepBytes,
    },
    nowMs,
    logBytesCarried,
  );
  journal.setSnapshots(snapshots);
  replica.setJournal(journal);
  return { journal, snapshots, result, keys: replica.keyCount, ms: performance.now() - began };
}
