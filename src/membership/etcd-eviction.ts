// Carrying out the eviction rule (eviction-rule.ts) through etcd, and why it is safe.
//
// HOW. Every node runs an Evictor beside its membership. On each tick it builds the rule's input
// from etcd's state as the watch delivered it (MemberTable, ClusterRecords), and if the rule names
// a target for which this node is the decider, and the answer has not changed for settleMs (so that
// the suspicions of both ends of a broken link are in; Lifeguard similarly waits for confirmations
// rather than act on the first report), it
//   0. waits longer (silentTargetGraceMs) when the target itself publishes no suspicion: it may
//      simply have crashed, and then etcd removes it when its lease expires, which costs nothing,
//      while an eviction costs the hold below. A live target cut off from its peers nearly always
//      suspects them too (a broken link is seen from both ends, and a TCP connection that loses one
//      direction stops carrying the other), so evicting it waits for nothing more;
//   1. reads the target lease's granted TTL (etcd may grant more than a node asked for);
//   2. writes /evictions/<target> = {lease, ttlMs, ...} in a transaction that holds only if etcd's
//      membership is exactly the one it decided on (no member key modified or created since that
//      revision, every member key still the same registration) and no suspects or eviction record
//      changed since it read them. Two deciders with different views cannot both succeed: the first
//      write changes the evictions prefix that the second compares;
//   3. revokes the target's lease, which deletes its member key (and its suspects record).
// Step 3 is repeated by whoever is the decider while a recorded eviction's registration is still
// present (a decider that died between 2 and 3), and by the target itself once it sees the record.
//
// SAFETY: the survivors install the view without the evicted node only when its lease has surely
// expired, so it cannot serve a stale read after writes commit without it. The evicted node X serves
// only until s + TTL - margin on its own clock, where s is when it SENT its last successful
// keepalive (etcd.ts). That keepalive was applied by etcd before the revoke (afterwards the lease no
// longer exists and keepalives fail), so s <= v, the real time of the revoke. A survivor observes
// the member key's deletion at o >= v and installs the view that lacks X only at o + TTL + margin
// on its own clock (EtcdMembership holds it; it holds every later view too, to keep the order).
// With clock rates within margin/TTL of each other (the lease's own assumption), X's deadline
// s + TTL - margin comes before o + TTL + margin in real time. This holds whether or not X ever
// hears of its eviction (it may be cut off from etcd by then), and also when the key went by
// natural expiry or by X's own revoke: any deletion ends the lease, and the hold counts from then.
// A removal that is not an eviction (no record for that registration) is installed at once, as
// before: etcd deleted the key only after the lease expired.
//
// What the hold costs: one TTL plus the margin of extra stall per eviction, on top of the
// suspicion timeout. Without it a survivor could commit a write while X, not yet aware, still
// served the old value.

import type { NodeId } from "../base/ids.ts";
import { ClusterRecords, encodeEviction, type EvictionRecord } from "./cluster-records.ts";
import type { EtcdClient, TxnCompare } from "./etcd-client.ts";
import type { MemberTable } from "./etcd-view.ts";
import { decideEviction, type EvictionDecision, type EvictionInput } from "./eviction-rule.ts";

/** How often a decider retries the revoke of a recorded eviction whose registration is still there. */
export const evictionRevokeRetryMs = 200;

interface Registration {
  id: NodeId;
  lease: string;
  createRevision: number;
}

/**
 * The rule's input from etcd's state: the registered members, and the suspicions that count. A
 * record counts only under its author's current lease (a dead or re-registered author's old record
 * does not), and a suspicion of x only if the record was written after x registered (a node that
 * rejoins starts unsuspected, whatever was said about its previous registration).
 */
export function evictionInput(registrations: readonly Registration[], records: ClusterRecords): EvictionInput {
  const byId = new Map(registrations.map((r) => [r.id, r]));
  const suspicions = new Map<NodeId, NodeId[]>();
  for (const [author, record] of records.suspicions()) {
    if (byId.get(author)?.lease !== record.lease) continue;
    const counted = record.suspects.filter((x) => {
      const reg = byId.get(x);
      return reg !== undefined && x !== author && record.modRevision > reg.createRevision;
    });
    if (counted.length > 0) suspicions.set(author, counted);
  }
  return { members: registrations.map((r) => r.id), suspicions };
}

/** A recorded eviction whose registration is still a member: its lease must still be revoked. */
export function pendingEviction(
  registrations: readonly Registration[],
  records: ClusterRecords,
): EvictionRecord | null {
  for (const r of registrations) {
    const record = records.evictionOf(r.id);
    if (record !== null && record.lease === r.lease) return record;
  }
  return null;
}

export interface EvictorOptions {
  self: NodeId;
  client: EtcdClient;
  table: MemberTable;
  records: ClusterRecords;
  /** How long the rule's answer must stay the same before the decider acts. */
  settleMs: number;
  /**
   * How long instead when the target publishes no suspicion of its own (it may have crashed): long
   * enough for etcd to remove a crashed target by its lease (see EtcdDetectorOptions).
   */
  silentTargetGraceMs: number;
  /** True while this node is a registered member (it holds its lease and its key is in etcd). */
  registered: () => boolean;
  /** True while a removal by eviction waits to be installed here (one eviction at a time). */
  installing: () => boolean;
  log: (line: string) => void;
  /** Counted once per eviction this node carried out. */
  onEvicted: (record: EvictionRecord) => void;
}

export class Evictor {
  readonly #o: EvictorOptions;
  /** The rule's current answer (target) and since when it has held. */
  #candidate: { key: string; sinceMs: number } | null = null;
  #busy = false;
  #nextRevokeAtMs = 0;
  /** The last decision, for /v1/status. */
  lastDecision: EvictionDecision | null = null;

  constructor(options: EvictorOptions) {
    this.#o = options;
  }

  /** One look at the state; starts at most one etcd action. */
  tick(nowMs: number): void {
    const o = this.#o;
    if (this.#busy || !o.registered()) return;
    const registrations = o.table.registrations();
    const pending = pendingEviction(registrations, o.records);
    if (pending !== null) {
      this.#candidate = null;
      const decider = registrations.find((r) => r.id !== pending.member)?.id;
      if (decider === o.self && nowMs >= this.#nextRevokeAtMs) {
        this.#nextRevokeAtMs = nowMs + evictionRevokeRetryMs;
        this.#run(() => this.#revoke(pending));
      }
      return;
    }
    if (o.installing()) return;
    const input = evictionInput(registrations, o.records);
    const decision = decideEviction(input);
    this.lastDecision = decision;
    if (decision === null || decision.decider !== o.self) {
      this.#candidate = null;
      return;
    }
    const key = `${decision.target}@${o.table.revision}`;
    if (this.#candidate?.key !== key) {
      this.#candidate = { key, sinceMs: nowMs };
      return;
    }
    const targetSpeaks = (input.suspicions.get(decision.target)?.length ?? 0) > 0;
    if (nowMs - this.#candidate.sinceMs < (targetSpeaks ? o.settleMs : Math.max(o.settleMs, o.silentTargetGraceMs)))
      return;
    this.#candidate = null;
    const guard = {
      membersRevision: o.table.revision,
      suspectsRevision: o.records.suspectsRevision,
      evictionsRevision: o.records.evictionsRevision,
    };
    this.#run(() => this.#evict(decision, registrations, guard, targetSpeaks));
  }

  #run(action: () => Promise<void>): void {
    this.#busy = true;
    action()
      .catch((error) =>
        this.#o.log(
          `eviction: etcd request failed (retrying): ${error instanceof Error ? error.message : String(error)}`,
        ),
      )
      .finally(() => (this.#busy = false));
  }

  async #evict(
    decision: EvictionDecision,
    registrations: Registration[],
    guard: { membersRevision: number; suspectsRevision: number; evictionsRevision: number },
    targetSpeaks: boolean,
  ): Promise<void> {
    const o = this.#o;
    const keys = o.records.keys;
    const target = registrations.find((r) => r.id === decision.target)!;
    const ttl = await o.client.leaseTimeToLive(target.lease);
    if (ttl === null) return; // the lease is gone already: its key goes with it, nothing to evict
    const record: EvictionRecord = {
      member: target.id,
      lease: target.lease,
      ttlMs: ttl.grantedTtlS * 1000,
      epoch: guard.membersRevision,
      by: o.self,
      reason: decision.reason,
      suspectedBy: decision.suspectedBy,
    };
    const compare: TxnCompare[] = [
      { key: keys.members, prefix: true, target: "MOD", result: "LESS", revision: guard.membersRevision + 1 },
      ...registrations.map((r): TxnCompare => ({
        key: keys.member(r.id),
        target: "CREATE",
        result: "EQUAL",
        revision: r.createRevision,
      })),
      { key: keys.suspects, prefix: true, target: "MOD", result: "LESS", revision: guard.suspectsRevision + 1 },
      { key: keys.evictions, prefix: true, target: "MOD", result: "LESS", revision: guard.evictionsRevision + 1 },
    ];
    const { succeeded } = await o.client.txn(compare, [
      { key: keys.evictionOf(target.id), value: encodeEviction(record) },
    ]);
    if (!succeeded) return; // etcd moved on since: decide again on the new state
    o.log(
      `evicting node ${target.id} (lease ${target.lease}, ttl ${record.ttlMs} ms): ${decision.reason === "majority" ? "suspected by a majority" : "endpoint of the most broken links"}, ` +
        `suspected by [${decision.suspectedBy.join(",")}], ${decision.links} broken link(s), decided on membership revision ${guard.membersRevision}` +
        (targetSpeaks ? "" : "; it publishes no suspicion itself, so its lease had the time to expire first"),
    );
    o.onEvicted(record);
    await this.#revoke(record);
  }

  async #revoke(record: EvictionRecord): Promise<void> {
    // Revoking deletes the member key: from then on the evicted node's keepalives fail.
    await this.#o.client.leaseRevoke(record.lease);
  }
}
