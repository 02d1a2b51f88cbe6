// Test-only fault injection for real transports: a rule that drops frames between chosen peers, so
// that tests can make partitions with several endpoints in one process on one machine.
//
// A transport consults its rule on both sides of a link: on send with (self, peer) and on receive
// with (peer, self). Either side dropping is enough, so installing the same rule on every endpoint
// (setDropRuleAll) behaves like a network partition: frames leave, none arrive. Drops made by a rule
// are counted in TransportStats.framesDropped wherever they happen. With no rule (the default and
// the only production setting) the data path pays one null check.

import type { NodeId } from "../base/ids.ts";
import type { Transport } from "./transport.ts";

/** True when the frame from `from` to `to` must be dropped. Must be pure and cheap (per frame). */
export type DropRule = (from: NodeId, to: NodeId) => boolean;

export interface DropRuleTarget {
  /** Install `rule`, or remove the current rule with null. */
  setDropRule(rule: DropRule | null): void;
}

export function hasDropRule(t: object): t is DropRuleTarget {
  return typeof (t as Partial<DropRuleTarget>).setDropRule === "function";
}

/** The drop-rule face of a transport; throws if the transport has none (every real one must). */
export function dropRuleTarget(t: Transport): DropRuleTarget {
  if (!hasDropRule(t)) throw new TypeError(`transport ${t.kind} has no setDropRule`);
  return t;
}

/** Install `rule` (or null) on every transport. */
export function setDropRuleAll(transports: readonly Transport[], rule: DropRule | null): void {
  for (const t of transports) dropRuleTarget(t).setDropRule(rule);
}

/**
 * Frames between nodes of different groups are dropped; frames inside a group pass. A node listed in
 * no group is alone in its own group (cut off from everyone).
 */
export function partition(...groups: readonly (readonly NodeId[])[]): DropRule {
  const groupOf = new Map<NodeId, number>();
  groups.forEach((g, i) => {
    for (const id of g) {
      if (groupOf.has(id)) throw new RangeError(`node ${id} is in two groups`);
      groupOf.set(id, i);
    }
  });
  return (from, to) => {
    const a = groupOf.get(from);
    const b = groupOf.get(to);
    return a === undefined || b === undefined || a !== b;
  };
}

/** Cut `node` off from everyone, both ways. */
export function isolate(node: NodeId): DropRule {
  return (from, to) => from === node || to === node;
}

/** Drop only the one-way link `from` -> `to` (asymmetric faults). */
export function blockLink(from: NodeId, to: NodeId): DropRule {
  return (f, t) => f === from && t === to;
}
