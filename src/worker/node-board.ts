// The node's facts that every thread of a node reads, in one SharedArrayBuffer: the main thread
// writes the node-level ones (membership view, lease, joining, has-state, failed, closed), each shard
// worker writes its own row (keys, ops in flight, where it runs). Every shard worker serves HTTP, so
// each one must answer /v1/status and /health and refuse ops (503) exactly as the node would; reading
// the facts here costs a few loads, where asking the main thread would cost a postMessage round trip.
//
// Each word has one writer. Readers may see one fact newer than another (as the node's own fields
// were read one after the other before); every single word is read whole (aligned Float64/Int32).
//
// Layout (Float64 slots, one per fact):
//   0 epoch   1 membersMask   2 leaseUntilMs   3 joining   4 hasState   5 failed   6 closed
//   7 durability mode (index in durabilityModes)   8 disk failure (1 + index in diskErrorCodes, 0: none)
//   rows from slot 10: per shard keys, opsInFlight, numaNode (-1 none), cpu (-1 none)

import { assert } from "../base/assert.ts";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { NodeStatus, ShardStatus } from "../base/kv-backend.ts";
import { monotonicMs } from "../base/clock.ts";
import { durabilityModes, type DurabilityMode } from "../base/durability.ts";

/** The errno names a disk failure is reported by on the board; any other is "EOTHER". */
const diskErrorCodes = ["ENOSPC", "EIO", "EDQUOT", "EROFS", "EFBIG", "EBADF", "EOTHER"] as const;

const epochSlot = 0;
const membersSlot = 1;
const leaseSlot = 2;
const joiningSlot = 3;
const hasStateSlot = 4;
const failedSlot = 5;
const closedSlot = 6;
const durabilitySlot = 7;
const diskFailureSlot = 8;
const rowsSlot = 10;
const rowSlots = 4;
const rowKeys = 0;
const rowOpsInFlight = 1;
const rowNumaNode = 2;
const rowCpu = 3;

/** Shards a node may have (the CLI allows up to 64 workers). */
export const boardShardsMax = 64;

export function createNodeBoard(shards: number): SharedArrayBuffer {
  assert(Number.isInteger(shards) && shards >= 1 && shards <= boardShardsMax, "a node has 1..boardShardsMax shards");
  const sab = new SharedArrayBuffer((rowsSlot + shards * rowSlots) * 8);
  const words = new Float64Array(sab);
  // As the node's own flag: true until beginJoin (a process that joins empty), true again once loaded.
  words[hasStateSlot] = 1;
  for (let shard = 0; shard < shards; shard++) {
    words[rowsSlot + shard * rowSlots + rowNumaNode] = -1;
    words[rowsSlot + shard * rowSlots + rowCpu] = -1;
  }
  return sab;
}

export class NodeBoard {
  readonly shards: number;
  readonly nodeId: NodeId;
  readonly transport: string;
  readonly #words: Float64Array;

  constructor(sab: SharedArrayBuffer, nodeId: NodeId, transport: string) {
    this.nodeId = nodeId;
    this.transport = transport;
    this.#words = new Float64Array(sab);
    this.shards = (this.#words.length - rowsSlot) / rowSlots;
    assert(Number.isInteger(this.shards) && this.shards >= 1, "node board size does not match its layout");
    assert(Number.isInteger(nodeId) && nodeId >= 0 && nodeId <= nodeIdMax, "node board of a node id out of range");
  }

  // Written by the main thread ---------------------------------------------------------------

  setView(epoch: number, members: readonly NodeId[]): void {
    let mask = 0;
    for (const id of members) mask |= 1 << id;
    this.#words[membersSlot] = mask >>> 0;
    this.#words[epochSlot] = epoch;
  }

  setLeaseUntil(untilMs: number): void {
    this.#words[leaseSlot] = untilMs;
  }

  setJoining(joining: boolean): void {
    this.#words[joiningSlot] = joining ? 1 : 0;
  }

  setHasState(hasState: boolean): void {
    this.#words[hasStateSlot] = hasState ? 1 : 0;
  }

  /** A shard worker died: the node serves nothing any more. */
  setFailed(): void {
    this.#words[failedSlot] = 1;
  }

  /** Also written by a worker that receives a stop request (see HttpStart.stopPaths): it only ever goes 0 -> 1. */
  setClosed(): void {
    this.#words[closedSlot] = 1;
  }

  // Written by shard worker `shard` (its own row only) ----------------------------------------

  setShardRow(shard: number, keys: number, opsInFlight: number): void {
    const at = rowsSlot + shard * rowSlots;
    this.#words[at + rowKeys] = keys;
    this.#words[at + rowOpsInFlight] = opsInFlight;
  }

  setShardPlacement(shard: number, numaNode: number | null, cpu: number | null): void {
    const at = rowsSlot + shard * rowSlots;
    this.#words[at + rowNumaNode] = numaNode ?? -1;
    this.#words[at + rowCpu] = cpu ?? -1;
  }

  // Read by every thread ---------------------------------------------------------------------

  get epoch(): number {
    return this.#words[epochSlot]!;
  }

  get joining(): boolean {
    return this.#words[joiningSlot] !== 0;
  }

  get hasState(): boolean {
    return this.#words[hasStateSlot] !== 0;
  }

  setDurabilityMode(mode: DurabilityMode): void {
    this.#words[durabilitySlot] = durabilityModes.indexOf(mode);
  }

  get durabilityMode(): DurabilityMode {
    return durabilityModes[this.#words[durabilitySlot]!] ?? "none";
  }

  /** A shard's log failed with this errno name: its updates are refused (a shard worker writes it once). */
  setDiskFailure(code: string): void {
    const index = diskErrorCodes.indexOf(code as (typeof diskErrorCodes)[number]);
    this.#words[diskFailureSlot] = 1 + (index < 0 ? diskErrorCodes.length - 1 : index);
  }

  /** The errno name of the first disk failure, or null. */
  get diskFailure(): string | null {
    const code = this.#words[diskFailureSlot]!;
    return code === 0 ? null : diskErrorCodes[code - 1]!;
  }

  /**
   * The node serves client ops: a member of the current view with a lease still running, not
   * joining, no shard failed, not closed. The same rule the node applied before any op: an op is
   * refused at once (503) rather than left to wait in a replica until its timeout.
   */
  serving(nowMs: number): boolean {
    const w = this.#words;
    return (
      w[closedSlot] === 0 &&
      w[joiningSlot] === 0 &&
      w[failedSlot] === 0 &&
      ((w[membersSlot]! >>> this.nodeId) & 1) === 1 &&
      nowMs < w[leaseSlot]!
    );
  }

  members(): NodeId[] {
    const mask = this.#words[membersSlot]!;
    const ids: NodeId[] = [];
    for (let id = 0; id <= nodeIdMax; id++) if (((mask >>> id) & 1) === 1) ids.push(id);
    return ids;
  }

  shardStatus(shard: number): ShardStatus {
    const at = rowsSlot + shard * rowSlots;
    const w = this.#words;
    return {
      index: shard,
      keys: w[at + rowKeys]!,
      opsInFlight: w[at + rowOpsInFlight]!,
      numaNode: w[at + rowNumaNode]! < 0 ? null : w[at + rowNumaNode]!,
      cpu: w[at + rowCpu]! < 0 ? null : w[at + rowCpu]!,
    };
  }

  /** What GET /v1/status answers, the same from every thread. */
  status(nowMs = monotonicMs()): NodeStatus {
    const shards: ShardStatus[] = [];
    for (let shard = 0; shard < this.shards; shard++) shards.push(this.shardStatus(shard));
    return {
      nodeId: this.nodeId,
      epoch: this.epoch,
      members: this.members(),
      serving: this.serving(nowMs),
      hasState: this.hasState,
      leaseRemainingMs: Math.max(0, Math.round(this.#words[leaseSlot]! - nowMs)),
      transport: this.transport,
      shards,
      ...(this.durabilityMode === "none"
        ? {}
        : {
            durability: {
              mode: this.durabilityMode,
              diskFailure: this.diskFailure,
              acceptingUpdates: this.diskFailure === null,
            },
          }),
    };
  }
}
