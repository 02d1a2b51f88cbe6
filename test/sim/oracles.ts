// Safety oracles of the simulation, checked after every step and at the end:
// - every live replica's whole-state invariants (Replica.checkInvariants: its bookkeeping agrees
//   with itself), reported as the oracle "invariants";
// - HConsistent: two live members that are Valid for a key hold equal timestamps;
// - no ACK counted across epochs;
// - HRSemanticsRMW: every committed RMW read the committed value just before its own timestamp,
//   hence at most one of concurrent RMWs from one base commits;
// - writes never abort (checked by the workload on each answer).

import { AssertionError } from "../../src/base/assert.ts";
import { KeyState, type Probe } from "../../src/core/types.ts";
import type { Epoch, NodeId } from "../../src/base/ids.ts";
import type { KeyStamp, Replica } from "../../src/core/replica.ts";
import { SimViolation, type Simulation } from "./simulation.ts";

interface Ts {
  version: number;
  writer: NodeId;
}

/** Reused by checkStep: reading a key's timestamp allocates nothing. */
const stamp: KeyStamp = { state: KeyState.Valid, version: 0, writer: 0 };

function tsKey(version: number, writer: NodeId): string {
  return `${version}.${writer}`;
}

export class Oracles implements Probe {
  #sim: Simulation | null = null;
  #keys: readonly string[] = [];
  /** key -> committed timestamps ("v.w") */
  readonly #committed = new Map<string, Map<string, Ts>>();
  /** key -> RMW ts -> its base ts */
  readonly #rmwBase = new Map<string, Map<string, Ts>>();

  attach(sim: Simulation, keys: readonly string[]): void {
    this.#sim = sim;
    this.#keys = keys;
  }

  // Probe --------------------------------------------------------------------------------------

  issued(
    _self: NodeId,
    key: string,
    version: number,
    writer: NodeId,
    rmw: boolean,
    baseVersion: number,
    baseWriter: NodeId,
  ): void {
    if (!rmw) return;
    let bases = this.#rmwBase.get(key);
    if (bases === undefined) this.#rmwBase.set(key, (bases = new Map()));
    bases.set(tsKey(version, writer), { version: baseVersion, writer: baseWriter });
  }

  ackCounted(self: NodeId, key: string, from: NodeId, ackEpoch: Epoch, currentEpoch: Epoch): void {
    if (ackEpoch !== currentEpoch) {
      throw new SimViolation(
        "ack-epoch",
        `node ${self} counted an ACK from ${from} for ${key} sent in epoch ${ackEpoch} while in epoch ${currentEpoch}`,
      );
    }
  }

  committed(_self: NodeId, key: string, version: number, writer: NodeId, _rmw: boolean): void {
    this.#markCommitted(key, version, writer);
  }

  validated(_self: NodeId, key: string, version: number, writer: NodeId): void {
    this.#markCommitted(key, version, writer);
  }

  #markCommitted(key: string, version: number, writer: NodeId): void {
    let set = this.#committed.get(key);
    if (set === undefined) this.#committed.set(key, (set = new Map([["0.0", { version: 0, writer: 0 }]])));
    set.set(tsKey(version, writer), { version, writer });
  }

  // Per step -----------------------------------------------------------------------------------

  /**
   * Every live replica's invariants, then HConsistent over the live members of the RM's current
   * view that are not joining (a joining replica serves nothing, and its kept state may be stale
   * until it has loaded; once it finishes, it is checked like any other). Joining counts from the
   * moment the node stops serving, and a stalled shard with control calls waiting is skipped: its
   * replica hears of the node's decisions (join-begin, the load, join-finish) only when the stall
   * ends, and meanwhile serves nothing past its lease, which the others wait out.
   */
  checkStep(): void {
    const sim = this.#sim!;
    // Crashed replicas are frozen: checked up to their crash, nothing changes after.
    for (const node of sim.nodes) if (!node.crashed) Oracles.checkInvariants(node.replica);
    for (const key of this.#keys) {
      let seen: Ts | null = null;
      let seenAt = -1;
      for (const node of sim.nodes) {
        if (
          node.crashed ||
          !sim.rm.members.has(node.id) ||
          node.joining ||
          node.replica.joining ||
          !node.replica.isMember
        )
          continue;
        if (node.shard !== null && node.shard.controlsQueued > 0) continue;
        node.replica.timestampOf(key, stamp);
        if (stamp.state !== KeyState.Valid) continue;
        const version = stamp.version;
        const writer = stamp.writer;
        if (seen === null) {
          seen = { version, writer };
          seenAt = node.id;
        } else if (seen.version !== version || seen.writer !== writer) {
          throw new SimViolation(
            "HConsistent",
            `key ${key}: node ${seenAt} Valid at ${tsKey(seen.version, seen.writer)} but node ${node.id} Valid at ${tsKey(version, writer)}`,
          );
        }
      }
    }
  }

  /** A broken invariant as a violation named "invariants" (not a crash of the core: "assertion"). */
  static checkInvariants(replica: Replica): void {
    try {
      replica.checkInvariants();
    } catch (error) {
      if (error instanceof AssertionError) throw new SimViolation("invariants", error.message);
      throw error;
    }
  }

  // At the end ---------------------------------------------------------------------------------

  /** HRSemanticsRMW: each committed RMW's base is the greatest committed ts below it. */
  checkRmwSemantics(): void {
    for (const [key, bases] of this.#rmwBase) {
      const committed = [...(this.#committed.get(key)?.values() ?? [])].sort(
        (a, b) => a.version - b.version || a.writer - b.writer,
      );
      for (let i = 1; i < committed.length; i++) {
        const ts = committed[i]!;
        const base = bases.get(tsKey(ts.version, ts.writer));
        if (base === undefined) continue; // a write
        const previous = committed[i - 1]!;
        if (previous.version !== base.version || previous.writer !== base.writer) {
          throw new SimViolation(
            "HRSemanticsRMW",
            `key ${key}: RMW ${tsKey(ts.version, ts.writer)} committed from base ${tsKey(base.version, base.writer)}, but ${tsKey(previous.version, previous.writer)} committed between them`,
          );
        }
      }
    }
  }
}
