// A simulated node's join and rejoin, as src/node does it, in simulated time: the Rejoiner's state
// machine (src/node/rejoiner.ts), the etcd join attempt (src/node/etcd-join.ts) and
// HermesNode.loadFrom / exportShard (src/node/node.ts), over the simulated control network.
//
// - A node that loses its lease, leaves the view or learns it was evicted stops serving at once:
//   beginJoin (the core's real path: every client op it holds is answered now, none is retried),
//   keeping its data. It registers again (rm.ts) and, once in the view with a lease, joins.
// - A restarted node starts empty and joining (HermesNode.beginJoin) and joins the same way.
// - An attempt loads from the first other member of its view that exports: one that has installed
//   the joiner's epoch (epochMin), is a member and is not joining (shard-worker's exportSnapshot).
//   The source's real snapshotRecords() writes chunks of snapshotChunkEntries records at simulated times
//   (traffic, faults and other joins interleave), each installed on arrival (installSnapshotRecords;
//   Shard.importSnapshot in shard mode); then finishJoin. A crash or a cut link ends the stream.
// - If no member exports, and every other member positively says it does not serve, the attempt
//   merges the state of every member that kept some (and its own), higher ts winning.
// - A join during which the lease was lost runs again (after another beginJoin).

import { SnapshotCursor } from "../../src/core/replica.ts";
import { recordBytes } from "../../src/core/snapshot-records.ts";
import type { NodeId } from "../../src/base/ids.ts";
import type { SimNode, Simulation } from "./simulation.ts";

/** Keys of the simulated clients are a few bytes: a snapshot chunk sized for this many holds any record. */
const snapshotKeyBytesMax = 64;

/** How often a joiner's snapshot stream notices a dead source or a broken link. */
const streamWatchMs = 5;

export class SimRejoiner {
  readonly #sim: Simulation;
  readonly #node: SimNode;
  /** The node process this belongs to: a restart makes a new Rejoiner. */
  readonly #incarnation: number;
  /** The node left the view or lost its lease since its last join began: it must join (again). */
  #rejoinNeeded = false;
  /** A join run is under way. */
  #running = false;
  /** Rejoiner.start has run (at once for the bootstrap members; after registering for a restart). */
  #started = true;

  constructor(sim: Simulation, node: SimNode) {
    this.#sim = sim;
    this.#node = node;
    this.#incarnation = node.incarnation;
  }

  get #alive(): boolean {
    return !this.#node.crashed && this.#node.incarnation === this.#incarnation;
  }

  /**
   * A restarted process: empty and joining (HermesNode.beginJoin). Its Rejoiner starts, with the
   * first join, once the node has registered (node-command.ts starts it after the membership).
   */
  startEmpty(): void {
    const node = this.#node;
    node.joining = true;
    node.hasState = false;
    this.#sim.beginJoin(node);
    this.#started = false;
  }

  /** The membership changed: a view, a lease renewal, a lost lease, an eviction (Rejoiner.#onView). */
  onChange(): void {
    if (!this.#alive) return;
    const node = this.#node;
    if (!this.#started) {
      if (!this.#inViewWithLease()) return;
      this.#started = true;
      this.#startJoin();
      return;
    }
    if (!this.#inViewWithLease()) {
      // Stop at once: from now on others may commit without us, even our own pending updates.
      if (!this.#rejoinNeeded && !node.joining) {
        this.#sim.stats.leaseLosses++;
        this.#sim.trace(`node ${node.id} lost the membership (epoch ${node.view.epoch}): stops serving, will rejoin`);
        node.joining = true;
        this.#sim.beginJoin(node);
      }
      this.#rejoinNeeded = true;
      return;
    }
    if (this.#rejoinNeeded && !this.#running) {
      this.#rejoinNeeded = false;
      this.#startJoin();
    }
  }

  #inViewWithLease(): boolean {
    const node = this.#node;
    return node.view.members.includes(node.id) && node.leaseUntilMs > this.#sim.nowMs && node.registration !== 0;
  }

  #startJoin(): void {
    if (this.#running) return;
    this.#running = true;
    this.#attemptLoop();
  }

  #attemptLoop(): void {
    if (!this.#alive) return;
    if (!this.#inViewWithLease()) {
      this.#retryLater();
      return;
    }
    this.#attempt((ok) => {
      if (!this.#alive) return;
      if (ok) this.#afterJoin();
      else this.#retryLater();
    });
  }

  #retryLater(): void {
    const sim = this.#sim;
    sim.events.push(sim.nowMs + sim.options.joinRetryMs, () => this.#attemptLoop());
  }

  #afterJoin(): void {
    this.#running = false;
    // The lease was lost while this join loaded: what it loaded may miss commits made without us.
    if (this.#rejoinNeeded) {
      this.#node.joining = true;
      this.#sim.beginJoin(this.#node);
      if (this.#inViewWithLease()) {
        this.#rejoinNeeded = false;
        this.#startJoin();
      }
    }
  }

  // One attempt (etcdJoinAttempt) ---------------------------------------------------------------

  #attempt(done: (ok: boolean) => void): void {
    const node = this.#node;
    const others = node.view.members.filter((m) => m !== node.id);
    const epochMin = node.view.epoch;
    const tryServing = (i: number): void => {
      if (!this.#alive) return;
      if (i === others.length) {
        this.#mergeKeptState(others, epochMin, done);
        return;
      }
      this.#load([others[i]!], epochMin, false, (ok) => {
        if (ok) this.#finish(`from node ${others[i]}`, done);
        else tryServing(i + 1);
      });
    };
    tryServing(0);
  }

  /**
   * No member exports: merge the kept state of every other node that kept some (and our own), if
   * each positively says it does not serve. Which nodes: the other members of our view (the
   * "view" rule, etcd-join.ts today), or every node of the cluster (the "cluster" rule: a node
   * removed earlier may hold the only committed copy of an update; a crashed process has no state).
   */
  #mergeKeptState(members: NodeId[], epochMin: number, done: (ok: boolean) => void): void {
    const sim = this.#sim;
    const node = this.#node;
    const cluster = sim.options.mergeRule === "cluster";
    const others = cluster ? sim.nodes.filter((n) => n.id !== node.id && !n.crashed).map((n) => n.id) : members;
    // GET /v1/status of every other node asked (one round trip).
    sim.events.push(sim.nowMs + sim.random.range(0.1, 2), () => {
      if (!this.#alive) return;
      const sources: NodeId[] = [];
      for (const id of others) {
        if (!sim.controlReachable(node.id, id)) return done(false); // cannot tell whether it serves
        const peer = sim.nodes[id]!;
        if (sim.serving(peer)) return done(false);
        if (peer.hasState) sources.push(id);
      }
      if (sources.length === 0 && !node.hasState) return done(false);
      this.#load(sources, epochMin, true, (ok) => {
        if (ok) this.#finish(`by merging kept state of [${sources}]`, done);
        else done(false);
      });
    });
  }

  /** HermesNode.loadFrom's end: every shard finishes its join; the node serves. */
  #finish(how: string, done: (ok: boolean) => void): void {
    const node = this.#node;
    const stats = this.#sim.stats;
    if (how.startsWith("by merging")) stats.joinsByMerge++;
    else if (node.hasState) stats.joinsKeepingState++;
    else stats.joinsEmpty++;
    this.#sim.trace(`node ${node.id} joined ${how} (epoch ${node.view.epoch})`);
    this.#sim.finishJoin(node);
    node.joining = false;
    node.hasState = true;
    done(true);
  }

  /** Stream each source's snapshot in turn into this node; done(false) as soon as one fails. */
  #load(sources: NodeId[], epochMin: number, kept: boolean, done: (ok: boolean) => void): void {
    const next = (i: number): void => {
      if (!this.#alive) return;
      if (i === sources.length) return done(true);
      this.#stream(sources[i]!, epochMin, kept, (ok) => (ok ? next(i + 1) : done(false)));
    };
    next(0);
  }

  /**
   * One source's snapshot over the control network (GET /v1/internal/snapshot): the request, the
   * source's readiness check, then its chunks, each installed here on arrival, in order.
   */
  #stream(sourceId: NodeId, epochMin: number, kept: boolean, done: (ok: boolean) => void): void {
    const sim = this.#sim;
    const node = this.#node;
    const source = sim.nodes[sourceId]!;
    const sourceIncarnation = source.incarnation;
    let ended = false;
    let lastArrivalMs = 0;
    const fail = (why: string): void => {
      if (ended) return;
      ended = true;
      sim.trace(`node ${node.id} cannot load from ${sourceId}: ${why}`);
      done(false);
    };
    /** A reply (chunk, end or refusal) travels back in order; the stream breaks if the link did. */
    const reply = (deliver: () => void): void => {
      lastArrivalMs = Math.max(lastArrivalMs, sim.nowMs + sim.random.range(0.05, 1));
      sim.events.push(lastArrivalMs, () => {
        if (!this.#alive || ended) return;
        if (!sim.controlReachable(node.id, sourceId)) return fail("connection lost");
        deliver();
      });
    };
    const sourceAlive = (): boolean => !source.crashed && source.incarnation === sourceIncarnation;
    // The connection resets when the source dies or the link breaks, whatever the stream is doing
    // (a step queued behind a stall of the source's loop dies with it).
    const watch = (): void => {
      if (ended || !this.#alive) return;
      if (!sourceAlive()) return fail("source crashed");
      if (!sim.controlReachable(node.id, sourceId)) return fail("connection lost");
      sim.events.push(sim.nowMs + streamWatchMs, watch);
    };
    sim.events.push(sim.nowMs + streamWatchMs, watch);
    sim.events.push(sim.nowMs + sim.random.range(0.05, 1), () => {
      if (!this.#alive || ended) return;
      if (!sourceAlive() || !sim.controlReachable(node.id, sourceId)) return fail("unreachable");
      sim.atSource(source, () => {
        if (!sourceAlive()) return;
        if (!sim.exportReady(source, epochMin, kept)) {
          reply(() =>
            fail(
              `not ready (epoch ${source.replica.epoch} < ${epochMin}, member ${source.replica.isMember}, joining ${source.replica.joining}, kept ${source.hasState})`,
            ),
          );
          return;
        }
        // Snapshot records from the source's store, as shard-worker.ts exports them (at most
        // snapshotChunkEntries per chunk here, so that small chunks interleave with traffic).
        const cursor = new SnapshotCursor();
        const chunkBytes =
          sim.options.snapshotChunkEntries * recordBytes(snapshotKeyBytesMax, source.replica.config.valueBytesMax);
        const step = (): void => {
          if (ended) return;
          if (!sourceAlive()) return; // the watch sees the connection reset
          const chunk = new Uint8Array(chunkBytes);
          const bytes = source.replica.snapshotRecords(cursor, chunk, sim.options.snapshotChunkEntries);
          if (bytes === 0 && cursor.done) {
            reply(() => {
              ended = true;
              done(true);
            });
            return;
          }
          const records = chunk.subarray(0, bytes);
          reply(() => sim.importSnapshot(node, records, kept));
          // The source yields between chunks (setImmediate in shard-worker.ts): its loop runs meanwhile.
          sim.events.push(sim.nowMs + sim.random.range(0.05, 2), () => sim.atSource(source, step));
        };
        step();
      });
    });
  }
}
