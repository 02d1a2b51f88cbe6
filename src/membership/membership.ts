// The reliable membership (RM) interface: epochs, members, leases and published addresses.
// Two real implementations: `local` (the process itself is the RM) and `etcd`.

import type { Epoch, NodeId } from "../base/ids.ts";
import type { TransportKind } from "../base/transport-kind.ts";

/** What a member publishes so that others can reach it: one transport address per shard (worker). */
export interface MemberInfo {
  id: NodeId;
  /** HTTP endpoint for clients, e.g. "127.0.0.1:8080". */
  http: string;
  transport: TransportKind;
  /** shardAddresses[i] is the transport address of worker i. */
  shardAddresses: string[];
}

export interface MembershipView {
  epoch: Epoch;
  /** Sorted by id. */
  members: MemberInfo[];
}

export interface Membership {
  /** The current view; epoch 0 with no members until the first one is known. */
  view(): MembershipView;
  /**
   * Until when this node may serve, on the process clock `monotonicMs()` (see src/node/clock.ts).
   * Computed conservatively: from when the last successful renewal was *sent*, plus the lease time
   * minus a drift margin. 0 when there is no lease.
   */
  leaseUntilMs(): number;
  /** Called on every new view (new epoch) and on lease loss; one call per change. */
  onChange(listener: (view: MembershipView) => void): void;
  /** Leave (revoke the lease) and stop. Idempotent. */
  close(): Promise<void>;
}
