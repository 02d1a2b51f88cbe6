// Test-only mutations of the core: each subclass breaks exactly one rule of the protocol, and the
// mutation tests require the simulator's oracles to catch every one of them. A mutant that
// survives means an oracle (or the workload) is too weak. `invariantMutants` break the replica's
// bookkeeping instead, which only Replica.checkInvariants sees.

import { Replica } from "../../src/core/replica.ts";
import { AssertionError } from "../../src/base/assert.ts";
import type { KeySide } from "../../src/core/key-side.ts";
import { KeyState } from "../../src/core/types.ts";
import type { Epoch } from "../../src/base/ids.ts";
import type { ReplicaFactory } from "./simulation.ts";

/** Serves local reads in Invalid too (the value may not be committed yet). */
class ServesReadsInInvalid extends Replica {
  protected override readable(state: KeyState, nowMs: number): boolean {
    return (state === KeyState.Valid || state === KeyState.Invalid) && this.leaseValid(nowMs);
  }
}

/** Serves local reads without a valid lease (a removed node may serve stale data). */
class IgnoresLease extends Replica {
  protected override readable(state: KeyState): boolean {
    return state === KeyState.Valid;
  }
}

/** Accepts INV, ACK and Reject from any epoch. */
class SkipsEpochCheck extends Replica {
  protected override epochAccepted(_epoch: Epoch): boolean {
    return true;
  }
}

/** Followers ACK stale RMWs and coordinators never abort: concurrent RMWs can both commit. */
class LetsTwoRmwsCommit extends Replica {
  protected override rejectsLowerInv(rmw: boolean): boolean {
    return !rmw;
  }
  protected override abortsOwnRmw(): boolean {
    return false;
  }
}

/** Keeps the ACKs of the old epoch on a membership change (the bug the spec fixed in 2024). */
class KeepsAcksAcrossEpochs extends Replica {
  protected override resetAcksOnEpochChange(): void {}
}

/**
 * Forgets the client op of a pending update on an epoch change: the update goes on, and the op is
 * answered Unknown only at its timeout, which no safety oracle objects to. Only the whole-state
 * invariants see the leak (the pool counts an op that neither waits nor is pending).
 */
class LeaksOpOnEpochChange extends Replica {
  protected override resetAcksOnEpochChange(side: KeySide): void {
    side.acks = 0;
    side.pendingOp = null;
  }
}

/**
 * Keeps its client ops across a lease loss, as before commit 42499e8: beginJoin answers none, and
 * once the node is back and loaded it retries them. If the majority committed its RMW by replay
 * while it was out, the retry applies it a second time (a double increment). Its bookkeeping says
 * so at once (a joining replica holds no client op), so that one invariant is left out here: the
 * protocol oracles must catch the double increment itself.
 */
class KeepsOpsAcrossLeaseLoss extends Replica {
  protected override abandonsOpsOnJoin(): boolean {
    return false;
  }
  override checkInvariants(): void {
    try {
      super.checkInvariants();
    } catch (error) {
      if (
        error instanceof AssertionError &&
        error.message.includes("(not a member, stopped or joining) holds no client op")
      )
        return;
      throw error;
    }
  }
}

/**
 * Keeps its unsettled updates live across a lease loss (no stale keys): a pending RMW, or one it
 * holds for a coordinator that is out too, spreads again in the new epoch and out-ranks the lower
 * RMW of the same base that the others committed meanwhile (two RMWs from one base commit).
 */
class TrustsKeptUpdates extends Replica {
  protected override distrustsKeptUpdatesOnJoin(): boolean {
    return false;
  }
}

/**
 * Every process of a node id writes as incarnation 0, so its writer id is the bare node id (as
 * before writer ids had an incarnation): a restarted, empty process can reissue a timestamp of its
 * previous one with another value (src/base/ids.ts).
 */
export const reusesWriterIdMutant: ReplicaFactory = (c, o, d, p) => new Replica({ ...c, incarnation: 0 }, o, d, p);

/** Bookkeeping mutations: the simulator must report each one as the oracle "invariants". */
export const invariantMutants: Record<string, ReplicaFactory> = {
  "leak the client op on an epoch change": (c, o, d, p) => new LeaksOpOnEpochChange(c, o, d, p),
};

export const mutants: Record<string, ReplicaFactory> = {
  "serve reads in Invalid": (c, o, d, p) => new ServesReadsInInvalid(c, o, d, p),
  "serve reads without a lease": (c, o, d, p) => new IgnoresLease(c, o, d, p),
  "skip the epoch check": (c, o, d, p) => new SkipsEpochCheck(c, o, d, p),
  "let two RMWs commit": (c, o, d, p) => new LetsTwoRmwsCommit(c, o, d, p),
  "drop the ACK reset on epoch change": (c, o, d, p) => new KeepsAcksAcrossEpochs(c, o, d, p),
  ...leaseLossMutants(),
};

/** The rules of a lease loss (Replica.beginJoin), which only rejoins exercise. */
export function leaseLossMutants(): Record<string, ReplicaFactory> {
  return {
    "keep client ops across a lease loss and retry them (before 42499e8)": (c, o, d, p) =>
      new KeepsOpsAcrossLeaseLoss(c, o, d, p),
    "keep unsettled updates live across a lease loss": (c, o, d, p) => new TrustsKeptUpdates(c, o, d, p),
  };
}
