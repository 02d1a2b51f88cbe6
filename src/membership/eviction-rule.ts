// Which member, if any, the cluster evicts for being unreachable by its peers: a pure function of
// the current membership and the suspicions its members publish (no I/O, no clock), so that every
// node computes the same answer from the same etcd state, and so that the simulator can model it.
//
// Why evictions at all: Hermes commits an update only with the ACK of every member. A member that
// holds its etcd lease but cannot exchange frames with some peer stalls every update that needs
// that link (issue 10). One endpoint of every broken link must leave the membership.
//
// THE RULE. A suspicion is "s cannot hear x" (s heard no frame from x for the suspicion timeout).
// Each suspicion marks the link {s, x} as broken, whichever direction failed: a one-way loss stalls
// updates just as a two-way one does (the INV or its ACK is lost).
//  1. Nothing is evicted unless the membership has at least 3 members: evicting one of n must leave
//     a strict majority of the n (n - 1 > n / 2). (etcd's runtime reconfiguration guide gives the
//     same warning: removing a member of a two-member cluster is unsafe.)
//  2. A member suspected by a strict majority of the members is evicted first (if several, the one
//     suspected by the most, then the one with the most broken links, then the higher id). This is
//     SWIM/Lifeguard's confirmation idea (memberlist declares a node dead sooner the more
//     independent members confirm the suspicion), taken to its end: a majority confirms.
//  3. Otherwise, if some link is broken, the member with the most broken links is evicted (then the
//     one suspected by the most, then the higher id). This gives one clear answer for
//       - a one-way partition: x -> peers lost: the peers suspect x (rule 2 when they are a
//         majority); peers -> x lost: only x suspects, but x is the endpoint of every broken link;
//       - two members that suspect each other (one broken link): a deterministic tie-break;
//       - a member cut off from everyone: it is on n - 1 broken links, any other member on fewer
//         unless it is cut off too, so an isolated member's suspicions can only evict itself. (This
//         is what Raft's PreVote, which etcd enables, achieves for elections: a partitioned node alone
//         cannot disrupt the others.)
//  4. One eviction at a time (the caller starts none while one is pending or being installed), so
//     each one leaves a strict majority of the membership it was decided on.
//  5. Exactly one member acts on a decision: the lowest id other than the target. (Not "the lowest
//     member nobody suspects": when x is cut off both ways, x suspects every other member and they
//     suspect x, so nobody would act.) It carries it out with an etcd transaction conditional on the
//     membership (and the suspicions) it decided on, so concurrent deciders with different views
//     cannot both act; a decider that is itself dead delays the eviction until its own lease expires.
// Suspicions only count while their author is a member whose record is under its current lease (a
// dead suspecter's record vanishes with its lease), and only when published after the suspected
// member's registration (the caller filters; see EvictionInput).
//
// What a false eviction costs: availability of the evicted node until it rejoins, never safety (the
// survivors install the removal only once its lease has surely expired; see etcd-eviction.ts).
// What a missed one costs: updates stall until the link heals, as they did before this rule.

import type { NodeId } from "../base/ids.ts";

/** Smallest membership in which evicting one member leaves a strict majority (n - 1 > n / 2). */
export const evictionMembersMin = 3;

export interface EvictionInput {
  /** The current membership (etcd's), any order. */
  members: readonly NodeId[];
  /**
   * suspecter -> the members it suspects. Only current suspicions of current members: the caller
   * drops records of non-members, records not under their author's current lease, and suspicions
   * published before the suspected member registered. Ids that are not members are ignored here too.
   */
  suspicions: ReadonlyMap<NodeId, readonly NodeId[]>;
}

export type EvictionReason = "majority" | "links";

export interface EvictionDecision {
  target: NodeId;
  /** The one member that carries the eviction out: the lowest id other than the target. */
  decider: NodeId;
  reason: EvictionReason;
  /** Members suspecting the target, ascending. */
  suspectedBy: NodeId[];
  /** Broken links the target is an endpoint of. */
  links: number;
}

/** Per member: who suspects it, and how many broken links it is an endpoint of. */
export interface SuspicionTally {
  suspectedBy: Map<NodeId, NodeId[]>;
  links: Map<NodeId, number>;
  /** Broken links in all, each counted once. */
  brokenLinks: number;
}

/** Counts suspicions among `members` (both directions of one pair are one broken link). */
export function tallySuspicions(input: EvictionInput): SuspicionTally {
  const members = new Set(input.members);
  const suspectedBy = new Map<NodeId, NodeId[]>();
  const links = new Map<NodeId, number>();
  for (const m of members) {
    suspectedBy.set(m, []);
    links.set(m, 0);
  }
  const seen = new Set<string>();
  let brokenLinks = 0;
  for (const [suspecter, suspects] of input.suspicions) {
    if (!members.has(suspecter)) continue;
    for (const x of new Set(suspects)) {
      if (x === suspecter || !members.has(x)) continue;
      suspectedBy.get(x)!.push(suspecter);
      const pair = suspecter < x ? `${suspecter}-${x}` : `${x}-${suspecter}`;
      if (seen.has(pair)) continue;
      seen.add(pair);
      brokenLinks++;
      links.set(x, links.get(x)! + 1);
      links.set(suspecter, links.get(suspecter)! + 1);
    }
  }
  for (const list of suspectedBy.values()) list.sort((a, b) => a - b);
  return { suspectedBy, links, brokenLinks };
}

/** The eviction the rule calls for now, or null (see the header for the rule and its reasons). */
export function decideEviction(input: EvictionInput): EvictionDecision | null {
  const members = [...new Set(input.members)].sort((a, b) => a - b);
  if (members.length < evictionMembersMin) return null;
  const tally = tallySuspicions({ members, suspicions: input.suspicions });
  if (tally.brokenLinks === 0) return null;
  const by = (m: NodeId): number => tally.suspectedBy.get(m)!.length;
  const links = (m: NodeId): number => tally.links.get(m)!;
  const majority = members.filter((m) => 2 * by(m) > members.length);
  let target: NodeId;
  let reason: EvictionReason;
  if (majority.length > 0) {
    target = best(majority, [by, links]);
    reason = "majority";
  } else {
    target = best(
      members.filter((m) => links(m) > 0),
      [links, by],
    );
    reason = "links";
  }
  const decider = members.find((m) => m !== target)!;
  return { target, decider, reason, suspectedBy: [...tally.suspectedBy.get(target)!], links: links(target) };
}

/** The member ranking highest by `keys` in order, ties going to the higher id. */
function best(candidates: readonly NodeId[], keys: readonly ((m: NodeId) => number)[]): NodeId {
  const ranked = [...candidates].sort((a, b) => {
    for (const key of keys) {
      const d = key(b) - key(a);
      if (d !== 0) return d;
    }
    return b - a;
  });
  return ranked[0]!;
}
