// The node's transport failure detector: which members this node cannot hear.
//
// Every shard worker sends an empty frame to each peer it has sent nothing to for heartbeatMs, and
// records when it last accepted a frame from each peer (shard.ts). A member that some shard has not
// heard for suspectMs is suspected: one silent shard stalls that shard's updates as surely as a
// dead node stalls them all. Heartbeats make this independent of load, and frames of any kind count,
// so a busy link needs no extra traffic. (etcd's own defaults are in the same spirit: a heartbeat
// every 100 ms and a leader suspected after 1000 ms without one.)
//
// The suspicions go to etcd under this node's lease (EtcdMembership.publishSuspects); the decision
// to evict is the cluster's, by the rule in src/membership/eviction-rule.ts. A member that is heard
// again drops out of the next record, which is how a suspicion is refuted (SWIM/memberlist refute
// with an incarnation number; here the evidence itself is refreshed).
//
// After an eviction the same per-peer times tell the evicted node when it reaches every member
// again (reachesMembers): members heartbeat a candidate only while they hear it.

import type { NodeId } from "../base/ids.ts";
import { monotonicMs } from "../base/clock.ts";
import type { MemberInfo, MembershipView } from "../membership/membership.ts";
import { probeEchoIntervals } from "../worker/messages.ts";

/** How often the detector looks at the shards' times. */
export const peerDetectorTickMs = 50;

/** The members `self` suspects at `nowMs`: not heard for more than suspectMs since they entered its view. */
export function suspectsAt(
  nowMs: number,
  peers: readonly { id: NodeId; heardMs: number; sinceMs: number }[],
  suspectMs: number,
): NodeId[] {
  return peers.filter((p) => nowMs - Math.max(p.heardMs, p.sinceMs) > suspectMs).map((p) => p.id);
}

/** What the detector needs of the membership (EtcdMembership has it). */
export interface DetectorMembership {
  view(): MembershipView;
  publishSuspects(ids: readonly NodeId[]): void;
  candidates(): MemberInfo[];
}

export interface PeerDetectorOptions {
  self: NodeId;
  suspectMs: number;
  heartbeatMs: number;
  /** When every shard last heard `peer` (HermesNode.lastHeardMs), 0 for never. */
  lastHeardMs: (peer: NodeId) => number;
  /** The same for fresh frames, sent at our epoch or later (HermesNode.lastFreshMs). */
  lastFreshMs: (peer: NodeId) => number;
  membership: DetectorMembership;
  /** Hand the candidates to the shards (HermesNode.setProbes). */
  setProbes: (candidates: MemberInfo[]) => void;
  log: (line: string) => void;
  clock?: () => number;
}

export interface PeerDetectorCounters {
  /** Times this node began to suspect a member. */
  suspicionsRaised: number;
  /** Times a suspicion ended because the member was heard again. */
  suspicionsRefuted: number;
}

export class PeerDetector {
  readonly #o: PeerDetectorOptions;
  readonly #clock: () => number;
  /** When each current member entered our view: its grace period starts there. */
  readonly #since = new Map<NodeId, number>();
  #suspects: NodeId[] = [];
  #probesKey = "";
  #timer: ReturnType<typeof setInterval> | null = null;
  readonly counters: PeerDetectorCounters = { suspicionsRaised: 0, suspicionsRefuted: 0 };

  constructor(options: PeerDetectorOptions) {
    if (!(options.heartbeatMs > 0 && options.suspectMs > options.heartbeatMs))
      throw new RangeError("a suspicion timeout must exceed the heartbeat interval");
    this.#o = options;
    this.#clock = options.clock ?? monotonicMs;
  }

  start(): void {
    this.#timer ??= setInterval(() => this.tick(), peerDetectorTickMs);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  get suspects(): readonly NodeId[] {
    return this.#suspects;
  }

  tick(): void {
    const o = this.#o;
    const now = this.#clock();
    const view = o.membership.view();
    const isMember = view.members.some((m) => m.id === o.self);
    const peers = isMember ? view.members.filter((m) => m.id !== o.self).map((m) => m.id) : [];
    for (const id of [...this.#since.keys()]) if (!peers.includes(id)) this.#since.delete(id);
    for (const id of peers) if (!this.#since.has(id)) this.#since.set(id, now);
    const suspects = suspectsAt(
      now,
      peers.map((id) => ({ id, heardMs: o.lastHeardMs(id), sinceMs: this.#since.get(id)! })),
      o.suspectMs,
    );
    this.#report(now, suspects, peers);
    o.membership.publishSuspects(suspects);
    const candidates = o.membership.candidates();
    const key = JSON.stringify(candidates);
    if (key !== this.#probesKey) {
      this.#probesKey = key;
      o.setProbes(candidates);
    }
  }

  #report(now: number, suspects: NodeId[], peers: NodeId[]): void {
    const o = this.#o;
    for (const id of suspects) {
      if (this.#suspects.includes(id)) continue;
      this.counters.suspicionsRaised++;
      const heard = o.lastHeardMs(id);
      o.log(
        `hermes-kv node ${o.self}: suspects node ${id}: ${heard === 0 ? "never heard" : `not heard for ${Math.round(now - heard)} ms`} (suspicion timeout ${o.suspectMs} ms)`,
      );
    }
    for (const id of this.#suspects) {
      if (suspects.includes(id)) continue;
      if (peers.includes(id)) this.counters.suspicionsRefuted++;
      o.log(
        `hermes-kv node ${o.self}: no longer suspects node ${id} (${peers.includes(id) ? "heard again" : "not a member any more"})`,
      );
    }
    this.#suspects = suspects;
  }

  /**
   * For a candidate: true once our view no longer holds us (so our shards' epoch is that of our
   * removal or later), and every other member sent every shard a fresh frame (at that epoch or
   * later: sent after the member installed our removal, so an answer to our heartbeats, never
   * member traffic from before) since `sinceMs` and within the last probeEchoIntervals heartbeats.
   * Members answer a candidate only while they hear it, so this means both directions work.
   */
  reachesMembers(sinceMs: number): boolean {
    const o = this.#o;
    const now = this.#clock();
    const windowMs = probeEchoIntervals * o.heartbeatMs;
    const members = o.membership.view().members;
    if (members.some((m) => m.id === o.self)) return false;
    return members.every((m) => {
      const fresh = o.lastFreshMs(m.id);
      return fresh >= sinceMs && now - fresh <= windowMs;
    });
  }

  /** For /v1/status: how long ago every shard heard each member (null: never). */
  heardAgoMs(): Record<string, number | null> {
    const o = this.#o;
    const now = this.#clock();
    const out: Record<string, number | null> = {};
    for (const m of o.membership.view().members) {
      if (m.id === o.self) continue;
      const heard = o.lastHeardMs(m.id);
      out[String(m.id)] = heard === 0 ? null : Math.max(0, Math.round(now - heard));
    }
    return out;
  }
}
