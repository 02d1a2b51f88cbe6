// Shard mode of the simulator (--mode shard): one node is the real worker loop, not a bare Replica.
// Each node runs `Shard.turn()` in simulated time with the real frame codec over a SimTransport, so
// the simulated network loses, duplicates, delays and reorders real encoded frames; client ops go
// in through the real request ring (OpRequestWriter, as another shard worker of the node forwards
// them) and answers come back through the real completion ring (OpCompletionReader): the simulated
// client plays shard worker 1 of a two-worker node. Membership and leases arrive through
// Shard's control methods, as the worker receives them. Everything else (clients, RM, faults,
// oracles) is the core mode's, unchanged.
//
// When does a shard turn? As a worker loops: soon after something arrives for it (a frame, a
// request), after a short seeded loop delay so that arrivals batch into one turn and one frame per
// peer, and at least every tickMs for its timers.
//
// A fault only this mode has: a stall (a long GC pause, a descheduled thread). The loop does not
// turn and control messages wait, as postMessage events wait for the worker's event loop; frames
// and requests pile up in the transport and the ring. At the end the queued control calls run in
// order, then one turn takes in everything (many messages per peer: full frames).

import type { NodeId } from "../../src/base/ids.ts";
import type { OpKind } from "../../src/base/kinds.ts";
import type { Replica } from "../../src/core/replica.ts";
import type { Completions, Probe, ReplicaConfig } from "../../src/core/types.ts";
import { OpCompletionReader, OpRequestWriter } from "../../src/ring/op-ring.ts";
import { SimTransport, simAddress, type SimNetwork } from "../../src/transport/sim.ts";
import { createNodeBoard } from "../../src/worker/node-board.ts";
import { createPeerRings } from "../../src/worker/peer-links.ts";
import { Shard } from "../../src/worker/shard.ts";
import type { ShardInit } from "../../src/worker/messages.ts";
import type { Prng } from "../lib/prng.ts";
import type { EventQueue } from "./event-queue.ts";
import type { ReplicaFactory } from "./simulation.ts";

/** What a shard node needs from the simulation: its clock, its events and its randomness. */
export interface ShardNodeWorld {
  readonly nowMs: number;
  readonly events: EventQueue;
  readonly random: Prng;
}

export interface ShardNodeConfig {
  id: NodeId;
  replica: ReplicaConfig;
  /** Builds the replica (the simulator's factory, with its probe: the real core or a mutant). */
  makeReplica: ReplicaFactory;
  probe: Probe;
  network: SimNetwork;
  frameBytesMax: number;
  keyBytesMax: number;
  /** A turn runs this long (at most) after something arrived: the loop's own latency. */
  loopDelayMsMax: number;
  /** Receives every completion read back from the ring (the simulated HTTP thread). */
  completions: Completions;
  /** True once this node process crashed: its loop never turns again (a restart builds a new one). */
  crashed: () => boolean;
  /** The frame MAC key (ShardInit.frameKey), or null: untagged frames. */
  frameKey: Uint8Array | null;
}

/** Identifies the simulated cluster in every frame header (the decoder checks it). */
const simClusterId = 0x51a1;
/** The node has two shard workers: the shard under test (0) and the simulated client (1). */
const clientShards = 2;
const clientShard = 1;

export class SimShardNode {
  readonly id: NodeId;
  readonly shard: Shard;
  readonly transport: SimTransport;
  readonly #world: ShardNodeWorld;
  readonly #requests: OpRequestWriter;
  readonly #answers: OpCompletionReader;
  readonly #completions: Completions;
  readonly #loopDelayMsMax: number;
  readonly #crashed: () => boolean;
  /** A wake-up turn is already scheduled. */
  #turnScheduled = false;
  /** While stalled (until this time), nothing turns and control calls wait in #controlsWaiting. */
  #stalledUntilMs = -Infinity;
  readonly #controlsWaiting: (() => void)[] = [];

  constructor(world: ShardNodeWorld, config: ShardNodeConfig) {
    this.id = config.id;
    this.#world = world;
    this.#completions = config.completions;
    this.#loopDelayMsMax = config.loopDelayMsMax;
    this.#crashed = config.crashed;
    // The smallest rings that hold any record: the simulation never has many ops in flight.
    const rings = createPeerRings(clientShards, config.keyBytesMax, config.replica.valueBytesMax, 0);
    const init: ShardInit = {
      type: "init",
      nodeId: config.id,
      shardIndex: 0,
      clusterId: simClusterId,
      transport: { kind: "sim", host: "", port: 0, frameBytesMax: config.frameBytesMax },
      replica: config.replica,
      keyBytesMax: config.keyBytesMax,
      board: createNodeBoard(clientShards),
      // The replica's own op pool bounds the ops in flight, as in the core mode.
      opsInFlightMax: config.replica.opsMax,
      numaNode: -1,
      bench: null,
      frameKey: config.frameKey,
    };
    this.transport = new SimTransport({
      self: config.id,
      frameBytesMax: config.frameBytesMax,
      network: config.network,
    });
    this.shard = new Shard(init, this.transport, {
      clock: () => world.nowMs,
      newReplica: (replicaConfig, outbox, completions) =>
        config.makeReplica(replicaConfig, outbox, completions, config.probe),
    });
    this.shard.connectPeers(rings);
    this.#requests = new OpRequestWriter(rings.requests[clientShard]![0]!);
    this.#answers = new OpCompletionReader(rings.completions[clientShard]![0]!);
  }

  get replica(): Replica {
    return this.shard.replica;
  }

  /** A client op, written into the request ring as a forwarding shard worker does. False when the ring is full. */
  submit(
    opId: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
  ): boolean {
    if (!this.#requests.push(opId, kind, key, value, expectedVersion, expectedWriter, by)) return false;
    this.#requests.commit();
    this.wake();
    return true;
  }

  /** A frame arrived from the network. */
  deliver(from: NodeId, frame: Uint8Array): void {
    this.transport.deliver(from, frame);
    this.wake();
  }

  /** Something arrived: run a turn soon (one turn takes in everything that arrived until then). */
  wake(): void {
    if (this.#turnScheduled) return;
    this.#turnScheduled = true;
    const world = this.#world;
    world.events.push(world.nowMs + world.random.range(0, this.#loopDelayMsMax), () => {
      this.#turnScheduled = false;
      if (!this.#crashed()) this.turn();
    });
  }

  /** One turn of the real loop at the simulated time, then the answers it published. */
  turn(): void {
    if (this.stalled) return;
    this.shard.turn(this.#world.nowMs);
    this.#readAnswers();
  }

  get stalled(): boolean {
    return this.#world.nowMs < this.#stalledUntilMs;
  }

  /** Control calls waiting for the stall to end: the replica is behind what its node has decided. */
  get controlsQueued(): number {
    return this.#controlsWaiting.length;
  }

  /**
   * The loop stops for `durationMs`. Then it runs the control calls that arrived meanwhile and
   * turns, in either order (which of a posted message and the next turn runs first is up to the
   * worker's event loop).
   */
  stall(durationMs: number): void {
    if (this.stalled) return;
    const world = this.#world;
    this.#stalledUntilMs = world.nowMs + durationMs;
    const turnFirst = world.random.chance(0.5);
    world.events.push(this.#stalledUntilMs, () => {
      if (this.#crashed()) return;
      if (turnFirst) this.turn();
      for (const control of this.#controlsWaiting.splice(0)) this.#control(control);
      if (!turnFirst) this.turn();
    });
  }

  setMembership(epoch: number, members: readonly NodeId[]): void {
    this.#control(() =>
      this.shard.setMembership(
        epoch,
        members.map((id) => ({ id, address: simAddress(id) })),
      ),
    );
  }

  setLease(untilMs: number): void {
    this.#control(() => this.shard.setLease(untilMs));
  }

  /** "join-begin", as shard-worker.ts handles it: the replica's beginJoin; its answers go out with the next turn. */
  beginJoin(): void {
    this.#control(() => {
      this.shard.replica.beginJoin();
      this.wake();
    });
  }

  /** "snapshot-import": Shard.importSnapshot. */
  importSnapshot(records: Uint8Array): void {
    this.#control(() => this.shard.importSnapshot(records));
  }

  /**
   * A chunk of a member's kept state (a merge when no member serves). Shard.importSnapshot has no
   * way to say so yet (the worker's snapshot-import message would need the flag), so this installs
   * into the shard's replica as importSnapshot does, at the shard's clock, with fromKeptState.
   */
  importKeptState(records: Uint8Array): void {
    this.#control(() => {
      const used = this.shard.replica.installSnapshotRecords(records, 0, records.length, this.#world.nowMs, true);
      if (used !== records.length) throw new Error(`snapshot records refused (${used})`);
    });
  }

  /** "join-finish": Shard.finishJoin. */
  finishJoin(): void {
    this.#control(() => this.shard.finishJoin());
  }

  /** Work the worker does between turns (a snapshot export's next chunk): waits while stalled. */
  runControl(call: () => void): void {
    this.#control(call);
  }

  #control(call: () => void): void {
    if (this.#crashed()) return;
    if (this.stalled) {
      this.#controlsWaiting.push(call);
      return;
    }
    call();
    this.#readAnswers();
  }

  /** The simulated forwarding worker: every completion the shard has published. */
  #readAnswers(): void {
    const answers = this.#answers;
    const completions = this.#completions;
    while (answers.next()) {
      const value = answers.value;
      completions.complete(
        answers.opId,
        answers.status,
        value,
        0,
        value === null ? 0 : value.length,
        answers.version,
        answers.writer,
      );
    }
    answers.release();
  }
}
