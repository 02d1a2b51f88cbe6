// The durability of one shard (`--durability fsync|async`): the replica's Journal, written to the
// shard's log (src/storage/shard-log.ts), and the rule that ties the log to the network.
//
// The rule (fsync): every timestamp the replica installs during a loop turn (its own update, an
// INV it adopts, a replay, a loaded entry) is appended to the log as it happens, and the log is
// synced once before any frame leaves the shard (Shard#sendFrame asks releaseFrames). An ACK, and
// the coordinator's INVs that will bring its ACKs back, therefore only ever leave after the key's
// timestamp and value are on disk: group commit, one fdatasync per turn, without touching the
// protocol. VALs need no sync: a key left non-Valid on disk is replayed at recovery, as Hermes
// replays any key whose VAL was lost. Keys that go Valid are appended too (no sync), so recovery
// knows which keys are committed and replays only the others.
//
// async: the same appends, written to the kernel (one write, no fdatasync) before frames leave, so
// that a crash of the process alone loses nothing, and fdatasynced at most every fsyncIntervalMs,
// whether frames leave or not: a crash of the machine loses at most that window.
//
// A failed write or fdatasync poisons the log (see shard-log.ts). From then on this journal says
// `failed` and releases no frame at all: nothing of that turn (ACKs of records that may not be on
// disk) nor after (the replica would ACK INVs it cannot log). The shard refuses updates (503) and
// keeps answering reads while its lease holds; its peers stop hearing it, suspect it and evict it,
// and their writes go on without it.

import type { NodeId } from "../base/ids.ts";
import type { DurabilityOptions } from "../base/durability.ts";
import type { Journal } from "../core/types.ts";
import { DiskError } from "../storage/errors.ts";
import type { ShardLog } from "../storage/shard-log.ts";
import type { ShardSnapshots } from "./shard-snapshots.ts";

export interface JournalStats {
  mode: DurabilityOptions["mode"];
  records: number;
  logBytes: number;
  syncs: number;
  /** Frames not sent because the log could not be synced (failed). */
  framesWithheld: number;
  /** Updates refused because the log failed. */
  updatesRefused: number;
  /** The DiskError's errno name and text, or null while healthy. */
  failure: { code: string; message: string } | null;
  snapshots: number;
  /** The longest one loop turn spent on snapshot work, in ms (its pause). */
  snapshotStepMsMax: number;
  /** The last snapshot's total time and its last step (fdatasync, rename, deletes), in ms. */
  snapshotLastMs: number;
  snapshotFinishMsLast: number;
}

export class ShardJournal implements Journal {
  readonly mode: DurabilityOptions["mode"];
  readonly log: ShardLog;
  readonly #fsyncIntervalMs: number;
  /** Appended since the last sync. */
  #dirty = false;
  #lastSyncMs = 0;
  #failure: DiskError | null = null;
  /** An install was not logged (the log had failed) since the last lone answer. */
  #unlogged = false;
  /** Closed by the shard's stop: nothing is appended or released after. */
  #closed = false;
  framesWithheld = 0;
  updatesRefused = 0;
  /** Told once, with the errno name, when the log fails (the shard puts it on the node board). */
  onFailure: ((code: string) => void) | null = null;
  #snapshots: ShardSnapshots | null = null;

  constructor(mode: DurabilityOptions["mode"], log: ShardLog, fsyncIntervalMs: number) {
    this.mode = mode;
    this.log = log;
    this.#fsyncIntervalMs = fsyncIntervalMs;
  }

  /** Snapshots taken from the loop's turns (set once the replica is loaded). */
  setSnapshots(snapshots: ShardSnapshots): void {
    this.#snapshots = snapshots;
  }

  /** The disk error that stopped this journal, or null. */
  get failure(): DiskError | null {
    return this.#failure;
  }

  get failed(): boolean {
    return this.#failure !== null;
  }

  installed(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    this.#append(key, keyAt, keyLength, version, writer, false, rmw, value, valueAt, valueLength);
  }

  validated(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    this.#append(key, keyAt, keyLength, version, writer, true, rmw, value, valueAt, valueLength);
  }

  #append(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    valid: boolean,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    // Failed: nothing is released any more, so what is not logged is never ACKed.
    // (A Valid record lost this way is harmless: the key is replayed at recovery.)
    if (this.#failure !== null || this.#closed) {
      if (!valid) this.#unlogged = true;
      return;
    }
    try {
      this.log.append(key, keyAt, keyLength, version, writer, valid, rmw, value, valueAt, valueLength);
      this.#dirty = true;
    } catch (error) {
      if (!valid) this.#unlogged = true;
      this.#fail(error);
    }
  }

  /**
   * May frames leave now? fsync: after syncing what was appended (false if that fails, and from
   * then on). async: yes, unless the log failed.
   */
  releaseFrames(nowMs: number): boolean {
    if (this.#closed) return false;
    if (this.#failure !== null) {
      this.framesWithheld++;
      return false;
    }
    if (this.#dirty) {
      if (this.mode === "fsync") this.#sync(nowMs);
      else this.#write();
    }
    if (this.#failure !== null) {
      this.framesWithheld++;
      return false;
    }
    return true;
  }

  /** async: hand what was appended to the kernel (one write, no fdatasync): a crash of the process alone loses none of it. */
  #write(): void {
    if (this.log.bufferedBytes === 0) return;
    try {
      this.log.flush();
    } catch (error) {
      this.#fail(error);
    }
  }

  /**
   * An update's answer is about to be given without any frame having left since its install (a
   * member alone: no ACK to wait for). Under fsync, sync first; false if the log failed.
   */
  beforeLoneAnswer(nowMs: number): boolean {
    if (this.#closed) return false;
    if (this.#failure === null) {
      if (this.#dirty) {
        if (this.mode === "fsync") this.#sync(nowMs);
        else this.#write();
      }
      if (this.#failure === null) return true;
      this.#unlogged = false;
      return false; // this sync failed: what the answer reports may not be on disk
    }
    // Failed before: a read (updates are refused) is answered; an update started since is not durable.
    const unlogged = this.#unlogged;
    this.#unlogged = false;
    return !unlogged;
  }

  /** Sync now whatever the mode (the end of a join: the loaded state is on disk before it is served). */
  syncNow(nowMs: number): void {
    if (this.#failure === null && !this.#closed && this.#dirty) this.#sync(nowMs);
  }

  /** Once per loop turn: async's periodic sync, and a step of the snapshot in progress, if any. */
  turn(nowMs: number): void {
    if (this.#failure !== null || this.#closed) return;
    if (this.mode === "async" && this.#dirty && nowMs - this.#lastSyncMs >= this.#fsyncIntervalMs) this.#sync(nowMs);
    if (this.#snapshots === null || this.#failure !== null) return;
    try {
      this.#snapshots.step(nowMs);
    } catch (error) {
      this.#fail(error);
    }
  }

  #sync(nowMs: number): void {
    try {
      this.log.sync();
      this.#dirty = false;
      this.#lastSyncMs = nowMs;
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    // Anything but a disk error is a broken invariant (a record out of the log's limits): rethrown.
    if (!(error instanceof DiskError)) throw error;
    if (this.#failure !== null) return;
    this.#failure = error;
    this.#snapshots?.abort();
    this.onFailure?.(error.code);
    console.error(
      `hermes-kv: ${error.message}: the shard's log failed; updates are refused from now on (reads go on while the lease holds). Restart the node once the disk is fixed: it recovers from what is on disk.`,
    );
  }

  /** Sync what is left and close the log (a clean stop). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#snapshots?.abort();
    if (this.#failure !== null) return;
    try {
      this.log.close();
    } catch (error) {
      this.#fail(error);
    }
  }

  stats(): JournalStats {
    const snapshots = this.#snapshots;
    return {
      mode: this.mode,
      records: this.log.stats.records,
      logBytes: this.log.stats.bytes,
      syncs: this.log.stats.syncs,
      framesWithheld: this.framesWithheld,
      updatesRefused: this.updatesRefused,
      failure: this.#failure === null ? null : { code: this.#failure.code, message: this.#failure.message },
      snapshots: snapshots?.taken ?? 0,
      snapshotStepMsMax: snapshots?.stepMsMax ?? 0,
      snapshotLastMs: snapshots?.lastMs ?? 0,
      snapshotFinishMsLast: snapshots?.finishMsLast ?? 0,
    };
  }
}
