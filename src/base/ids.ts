// Who is who in a cluster: node ids and membership epochs.

/** A replica's id inside one cluster. Ids are small integers so that ACK sets fit one 32-bit mask. */
export type NodeId = number;
export const nodeIdMax = 31;

/** A membership epoch: bumped by the reliable membership service on every change. */
export type Epoch = number;
