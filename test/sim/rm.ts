// The simulated reliable membership service (RM): etcd as the nodes see it. Registrations, leases,
// epochs, removals once a lease has surely expired, and the failure detector's evictions.
//
// - A registration makes a new epoch (etcd: a put under the members prefix is a new revision). A
//   node registers when it holds none: at a restart, after it dropped a lost lease, after it left
//   the view. A node that restarted may register only once its old registration is gone (etcd
//   refuses the key while another lease holds it); a node that dropped its own lease replaces it.
// - The RM renews the lease of every member it reaches that holds its current registration. A
//   member it does not renew is removed once its lease has surely expired (grant + removalMarginMs),
//   as far as options.removalBound allows: "f" keeps at most f nodes faulty, "none" is etcd's rule.
// - The failure detector (options.detector): every member it reaches publishes the peers it has not
//   heard for suspicionMs (driven by the simulated network: partitions, one-way cuts, isolations,
//   crashes); the rule of src/membership/eviction-rule.ts picks the member to evict; once its answer
//   has held for evictionSettleMs the RM stops renewing the target's lease, tells the target (it
//   stops serving at once), and removes it only once its lease has surely expired. One eviction at
//   a time; registrations wait for it. The evicted node registers again only once it hears every
//   member and every member hears it (a candidacy), and then rejoins by state transfer.

import { decideEviction } from "../../src/membership/eviction-rule.ts";
import type { NodeId } from "../../src/base/ids.ts";
import type { SimNode, Simulation } from "./simulation.ts";

interface Registration {
  id: number;
  /** The node process that registered (a restart is a new one). */
  incarnation: number;
  grantedUntilMs: number;
  registeredAtMs: number;
}

export class SimRm {
  readonly #sim: Simulation;
  epoch = 1;
  readonly members = new Set<NodeId>();
  readonly #registrations = new Map<NodeId, Registration>();
  #nextRegistration = 1;
  /** The eviction under way: its target is no longer renewed and goes once its lease surely ended. */
  evicting: NodeId | null = null;
  /** The rule's last answer and since when it has held. */
  #decision: { target: NodeId; sinceMs: number } | null = null;
  /** lastHeard[s][x]: when s last heard x (the failure detector's heartbeats, one per round). */
  readonly #lastHeard: number[][];
  /** Evicted nodes (etcd's eviction records): each registers again only as a candidate that reaches every member. */
  readonly #evicted = new Set<NodeId>();

  constructor(sim: Simulation) {
    this.#sim = sim;
    const n = sim.options.replicas;
    this.#lastHeard = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  }

  /** A node process with a fresh id (a restart, options.restartIdentity "fresh"). */
  addNode(id: NodeId): void {
    for (const row of this.#lastHeard) row[id] = 0;
    this.#lastHeard[id] = new Array<number>(id + 1).fill(0);
  }

  /** Every node a member, registered and leased (the bootstrap). */
  start(): void {
    const sim = this.#sim;
    for (const node of sim.nodes) {
      this.members.add(node.id);
      const registration = this.#register(node, sim.options.leaseMs);
      node.registration = registration;
      node.attached = true;
    }
    const view = this.view();
    for (const node of sim.nodes) sim.installView(node, node.incarnation, this.epoch, view, sim.options.leaseMs);
    sim.events.push(sim.options.leaseRenewEveryMs, () => this.#round());
  }

  view(): NodeId[] {
    return [...this.members].sort((a, b) => a - b);
  }

  /** The RM can talk to the node (not crashed, not cut off from the RM). */
  reaches(id: NodeId): boolean {
    return !this.#sim.nodes[id]!.crashed && !this.#sim.rmIsolated(id);
  }

  /** Faulty for the fault budget: crashed, not a member, being evicted, or without state (restarted, not yet joined). */
  faulty(): Set<NodeId> {
    const faulty = new Set<NodeId>();
    for (const node of this.#sim.current()) {
      if (node.crashed || !this.members.has(node.id) || !node.hasState || this.evicting === node.id)
        faulty.add(node.id);
    }
    return faulty;
  }

  #mayRemove(id: NodeId): boolean {
    // An eviction, once decided, goes through (etcd: the key is deleted when it is decided), and
    // removing a crashed process (a retired id too) makes nothing less available.
    if (this.#sim.options.removalBound === "none" || this.evicting === id || this.#sim.nodes[id]!.crashed) return true;
    const faulty = this.faulty();
    faulty.add(id);
    return faulty.size <= this.#sim.faultTolerance;
  }

  #register(node: SimNode, leaseMs: number): number {
    const sim = this.#sim;
    const id = this.#nextRegistration++;
    this.#registrations.set(node.id, {
      id,
      incarnation: node.incarnation,
      grantedUntilMs: sim.nowMs + leaseMs,
      registeredAtMs: sim.nowMs,
    });
    return id;
  }

  #round(): void {
    const sim = this.#sim;
    const o = sim.options;
    this.#heartbeats();
    // Members whose lease was not renewed go once it has surely expired.
    for (const id of this.view()) {
      const registration = this.#registrations.get(id)!;
      if (this.#renews(id) || sim.nowMs <= registration.grantedUntilMs + o.removalMarginMs) continue;
      if (!this.#mayRemove(id)) continue;
      this.#remove(id, this.evicting === id ? "evicted" : "lease expired");
    }
    if (o.detector) this.#detect();
    this.#tellEvicted();
    if (this.evicting === null) {
      for (const node of sim.nodes) if (this.#mayRegister(node)) this.#registerAgain(node);
    }
    // Views to every node it reaches; leases to the members it renews.
    const view = this.view();
    for (const node of sim.nodes) {
      if (!this.reaches(node.id) || !node.attached) continue;
      let leaseUntilMs: number | null = null;
      if (this.#renews(node.id)) {
        leaseUntilMs = sim.nowMs + o.leaseMs;
        this.#registrations.get(node.id)!.grantedUntilMs = leaseUntilMs;
      }
      sim.deliverView(node, this.epoch, view, leaseUntilMs);
    }
    sim.events.push(sim.nowMs + o.leaseRenewEveryMs, () => this.#round());
  }

  /** A member whose lease the RM renews now: reachable, holding its registration, not being evicted. */
  #renews(id: NodeId): boolean {
    const registration = this.#registrations.get(id);
    if (registration === undefined || !this.reaches(id) || this.evicting === id) return false;
    const node = this.#sim.nodes[id]!;
    return node.registration === registration.id && node.incarnation === registration.incarnation;
  }

  #remove(id: NodeId, why: string): void {
    this.members.delete(id);
    this.#registrations.delete(id);
    if (this.evicting === id) this.evicting = null;
    this.epoch++;
    this.#sim.trace(`RM removes ${id} (${why}): epoch ${this.epoch} members [${this.view()}]`);
  }

  #mayRegister(node: SimNode): boolean {
    if (node.crashed || node.registration !== 0 || !this.reaches(node.id)) return false;
    const old = this.#registrations.get(node.id);
    // etcd keeps the key of a crashed process until its lease expires: the restarted one waits.
    if (old !== undefined && old.incarnation !== node.incarnation) return false;
    if (this.#evicted.has(node.id)) {
      // Evicted: only once it hears every member and every member hears it.
      for (const m of this.members) {
        if (m === node.id) continue;
        if (!this.#sim.hears(node.id, m) || !this.#sim.hears(m, node.id)) return false;
      }
    }
    return true;
  }

  #registerAgain(node: SimNode): void {
    const sim = this.#sim;
    const wasMember = this.members.has(node.id);
    this.members.add(node.id);
    node.registration = this.#register(node, sim.options.leaseMs);
    node.attached = true;
    this.#evicted.delete(node.id);
    this.epoch++;
    // Heard from now on: suspicions count only from its registration.
    sim.trace(`RM registers ${node.id}${wasMember ? " again" : ""}: epoch ${this.epoch} members [${this.view()}]`);
  }

  // Failure detector ---------------------------------------------------------------------------

  #heartbeats(): void {
    const sim = this.#sim;
    const n = sim.nodes.length;
    for (let s = 0; s < n; s++) {
      if (sim.nodes[s]!.crashed) continue;
      for (let x = 0; x < n; x++) if (x !== s && sim.hears(s, x)) this.#lastHeard[s]![x] = sim.nowMs;
    }
  }

  #suspicions(): Map<NodeId, NodeId[]> {
    const sim = this.#sim;
    const suspicions = new Map<NodeId, NodeId[]>();
    for (const s of this.members) {
      // Only records under their author's current lease: the RM must reach s, which holds its registration.
      if (!this.#renews(s)) continue;
      const suspects: NodeId[] = [];
      for (const x of this.members) {
        if (x === s) continue;
        // Published after x registered: silence counts from its registration on.
        const since = Math.max(this.#lastHeard[s]![x]!, this.#registrations.get(x)!.registeredAtMs);
        if (sim.nowMs - since >= sim.options.suspicionMs) suspects.push(x);
      }
      if (suspects.length > 0) suspicions.set(s, suspects);
    }
    return suspicions;
  }

  #detect(): void {
    const sim = this.#sim;
    if (this.evicting !== null) return;
    const decision = decideEviction({ members: this.view(), suspicions: this.#suspicions() });
    if (decision === null) {
      this.#decision = null;
      return;
    }
    if (this.#decision === null || this.#decision.target !== decision.target) {
      this.#decision = { target: decision.target, sinceMs: sim.nowMs };
    }
    if (sim.nowMs - this.#decision.sinceMs < sim.options.evictionSettleMs) return;
    if (!this.#mayRemove(decision.target)) return;
    this.#decision = null;
    this.evicting = decision.target;
    this.#evicted.add(decision.target);
    sim.stats.evictions++;
    sim.trace(
      `RM evicts ${decision.target} (${decision.reason}, suspected by [${decision.suspectedBy}], ${decision.links} broken links)`,
    );
  }

  /** An evicted node learns it (the eviction record) as soon as the RM reaches it, and stops serving. */
  #tellEvicted(): void {
    for (const id of this.#evicted) {
      const node = this.#sim.nodes[id]!;
      if (this.reaches(id) && node.registration !== 0) this.#sim.notifyEvicted(node);
    }
  }
}
