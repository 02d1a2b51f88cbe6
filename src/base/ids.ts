// Who is who in a cluster: node ids, writer ids and membership epochs.

/** A replica's id inside one cluster. Ids are small integers so that ACK sets fit one 32-bit mask. */
export type NodeId = number;
export const nodeIdMax = 31;

/** A membership epoch: bumped by the reliable membership service on every change. */
export type Epoch = number;

/**
 * The writer of a Hermes timestamp (version, writer): one node *process*, not one node id.
 *
 * Timestamps are compared lexicographically, and a timestamp must name exactly one update. A node id
 * alone does not: a process that restarts empty under its old `--id` knows nothing of what its
 * previous process issued, so it could issue (key, version, id) again with another value, and a
 * replica still holding the dead process's INV would take the new update for the old one and
 * validate the old value (the simulator's `--restart-identity same`, core seed 4990). Any tie-breaker
 * that is unique per process and totally ordered keeps Hermes correct, so the writer id is
 * (incarnation, node id) packed into one integer: `incarnation * 32 + nodeId`. The incarnation
 * comes from the membership service when the process registers (etcd: a counter key per node id,
 * bumped in a transaction; the local cluster: a counter in the process), so no two processes of one
 * node id share it. Integer order is (incarnation, node id) order, a total order.
 *
 * It stays within a u32 (wire, store, snapshots, write-ahead logs hold it as one): incarnations go
 * up to `incarnationMax` (2^27 - 1 restarts per node id). The node id, which membership masks and
 * ACK sets use, stays separate: `nodeOfWriter` recovers it. Incarnation 0 packs to the node id
 * itself, so a first process's ETags read "version.nodeId" as before.
 */
export type WriterId = number;
const nodeIdsPerIncarnation = nodeIdMax + 1;
export const incarnationMax = Math.floor(0x1_0000_0000 / nodeIdsPerIncarnation) - 1;
export const writerIdMax = 0xffff_ffff;

export function isIncarnation(incarnation: number): boolean {
  return Number.isInteger(incarnation) && incarnation >= 0 && incarnation <= incarnationMax;
}

export function isWriterId(writer: number): boolean {
  return Number.isInteger(writer) && writer >= 0 && writer <= writerIdMax;
}

/** The writer id of process `incarnation` of node `nodeId`. */
export function writerIdOf(incarnation: number, nodeId: NodeId): WriterId {
  return incarnation * nodeIdsPerIncarnation + nodeId;
}

/** The node whose process issued timestamps as `writer`. */
export function nodeOfWriter(writer: WriterId): NodeId {
  return writer % nodeIdsPerIncarnation;
}

/** The incarnation (process number of its node id) of `writer`. */
export function incarnationOfWriter(writer: WriterId): number {
  return Math.floor(writer / nodeIdsPerIncarnation);
}
