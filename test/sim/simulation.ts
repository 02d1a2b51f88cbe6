// The simulated world: replicas running the real core, a network that loses, duplicates, delays,
// reorders and partitions, a reliable membership service with leases, crash-stop faults, and a
// trace of the last events for failure reports. Everything is driven by one seeded PRNG.
// Two modes (options.mode): "core" calls the Replica directly and the network carries single
// protocol messages; "shard" runs the real worker loop per node (shard-node.ts) and the network
// carries the real encoded frames. Clients, RM, faults and oracles are the same in both.

import { Replica } from "../../src/core/replica.ts";
import { MsgKind, OpStatus, type OpKind } from "../../src/base/kinds.ts";
import type { Completions, Outbox, Probe, ReplicaConfig } from "../../src/core/types.ts";
import type { NodeId } from "../../src/base/ids.ts";
import { FrameDecoder } from "../../src/wire/frame-decoder.ts";
import { EventQueue } from "./event-queue.ts";
import type { SimOptions } from "./options.ts";
import { Prng } from "../lib/prng.ts";
import { SimShardNode } from "./shard-node.ts";

export type ReplicaFactory = (config: ReplicaConfig, outbox: Outbox, completions: Completions, probe: Probe) => Replica;

export class SimViolation extends Error {
  readonly oracle: string;
  constructor(oracle: string, detail: string) {
    super(`${oracle}: ${detail}`);
    this.oracle = oracle;
  }
}

export interface SimNode {
  id: NodeId;
  replica: Replica;
  /** The node's worker loop in shard mode (its `replica` is the shard's); null in core mode. */
  shard: SimShardNode | null;
  crashed: boolean;
  crashedAtMs: number;
}

/** A crash loses part of what the node sent just before it (its unsent send buffers). */
const crashLossWindowMs = 1;

/** Shard mode: key and value limits of the shards (the clients use keys like "r0" and short values). */
const shardKeyBytesMax = 8;
const shardValueBytesMax = 32;

type CompletionHandler = (status: OpStatus, value: Uint8Array | null, version: number, writer: NodeId) => void;

const msgNames = ["", "INV", "ACK", "VAL", "REJ"];
/** SIM_TRACE_KEY=r0 prints every event of that key (and every fault) while a seed runs. */
const traceFilter = process.env.SIM_TRACE_KEY;

export class Simulation {
  readonly options: SimOptions;
  readonly random: Prng;
  readonly events = new EventQueue();
  nowMs = 0;
  readonly nodes: SimNode[] = [];

  // Reliable membership service state.
  epoch = 1;
  readonly members = new Set<NodeId>();
  readonly #leaseGrantedUntil = new Map<NodeId, number>();
  /** Nodes cut off from the RM (their leases lapse). */
  readonly #rmIsolated = new Set<NodeId>();
  /** Data-plane partitions: "a,b" with a < b means no messages between a and b. */
  readonly #cut = new Set<string>();
  faultsActive = true;
  readonly faultTolerance: number;

  readonly #pending = new Map<number, CompletionHandler>();
  /** Shard mode: frames in flight per link "from,to" (sent, not yet delivered or lost), for credits. */
  readonly #linkFrames = new Map<string, number>();
  /** Shard mode: reads frames back into messages for the trace. */
  readonly #traceDecoder: FrameDecoder | null = null;
  #nextOpId = 1;
  readonly #trace: string[] = [];
  #traceNext = 0;
  static readonly traceLength = 60;
  /** Called after every event (the per-step oracles). */
  afterStep: () => void = () => {};

  constructor(options: SimOptions, random: Prng, makeReplica: ReplicaFactory, probe: Probe) {
    this.options = options;
    this.random = random;
    this.faultTolerance = Math.floor((options.replicas - 1) / 2);
    for (let id = 0; id < options.replicas; id++) {
      const config: ReplicaConfig = {
        self: id,
        retransmitMs: options.retransmitMs,
        mltMs: options.mltMs,
        opTimeoutMs: options.opTimeoutMs,
        keyQueueMax: 64,
        opsMax: 1024,
        keysMax: 1024,
        valueBytesMax: 1024,
        incrRetriesMax: 16,
      };
      const outbox: Outbox = {
        send: (to, kind, key, version, writer, epoch, rmw, value) =>
          this.#send(id, to, kind, key, version, writer, epoch, rmw, value === null ? null : value.slice()),
      };
      const completions: Completions = {
        complete: (opId, status, value, version, writer) => {
          const handler = this.#pending.get(opId);
          if (handler === undefined) throw new SimViolation("answered-once", `op ${opId} answered twice or never submitted`);
          this.#pending.delete(opId);
          handler(status, value, version, writer);
        },
      };
      if (options.mode === "shard") {
        const node: SimNode = { id, replica: null as unknown as Replica, shard: null, crashed: false, crashedAtMs: Infinity };
        const network = { send: (from: NodeId, to: NodeId, frame: Uint8Array) => this.#sendFrame(from, to, frame) };
        // Values of the simulated clients are a few bytes: a small valueBytesMax lets small frames
        // (options.frameBytesMax) hold only a few messages, so the "frame full" path runs often.
        const shardConfig: ReplicaConfig = { ...config, valueBytesMax: shardValueBytesMax };
        node.shard = new SimShardNode(this, {
          id,
          replica: shardConfig,
          makeReplica,
          probe,
          network,
          frameBytesMax: options.frameBytesMax,
          keyBytesMax: shardKeyBytesMax,
          loopDelayMsMax: options.loopDelayMsMax,
          completions,
          crashed: () => node.crashed,
        });
        node.replica = node.shard.replica;
        this.nodes.push(node);
        this.members.add(id);
        continue;
      }
      this.nodes.push({ id, replica: makeReplica(config, outbox, completions, probe), shard: null, crashed: false, crashedAtMs: Infinity });
      this.members.add(id);
    }
    if (options.mode === "shard") {
      this.#traceDecoder = new FrameDecoder({ clusterId: this.nodes[0]!.shard!.shard.init.clusterId, shardIndex: -1, frameBytesMax: options.frameBytesMax, keyBytesMax: shardKeyBytesMax, valueBytesMax: shardValueBytesMax });
    }
  }

  // ---------------------------------------------------------------------------------------------

  start(): void {
    const all = [...this.members];
    for (const node of this.nodes) {
      this.#setMembership(node, this.epoch, all);
      this.#setLease(node, this.options.leaseMs);
      this.#leaseGrantedUntil.set(node.id, this.options.leaseMs);
      this.#scheduleTick(node, this.random.range(0, this.options.tickMs));
    }
    this.events.push(this.options.leaseRenewEveryMs, () => this.#rmRound());
  }

  /** Run events until `done()` or the simulated time limit. Returns false on the time limit. */
  run(done: () => boolean, limitMs: number): boolean {
    for (;;) {
      if (done()) return true;
      const event = this.events.pop();
      if (event === undefined) return done();
      if (event.atMs > limitMs) return false;
      this.nowMs = event.atMs;
      event.run();
      this.afterStep();
    }
  }

  submit(
    node: SimNode,
    kind: number,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    onDone: CompletionHandler,
  ): void {
    const opId = this.#nextOpId++;
    this.#pending.set(opId, onDone);
    if (node.shard === null) {
      node.replica.submit(opId, kind, key, value, expectedVersion, expectedWriter, by, this.nowMs);
    } else if (!node.shard.submit(opId, kind as OpKind, key, value, expectedVersion, expectedWriter, by)) {
      // The request ring is full: the HTTP thread answers Busy (429) without submitting.
      this.#pending.delete(opId);
      onDone(OpStatus.Busy, null, 0, 0);
    }
  }

  #setMembership(node: SimNode, epoch: number, members: readonly NodeId[]): void {
    if (node.shard === null) node.replica.setMembership(epoch, members, this.nowMs);
    else node.shard.setMembership(epoch, members);
  }

  #setLease(node: SimNode, untilMs: number): void {
    if (node.shard === null) node.replica.setLease(untilMs, this.nowMs);
    else node.shard.setLease(untilMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Network

  #send(
    from: NodeId,
    to: NodeId,
    kind: MsgKind,
    key: string,
    version: number,
    writer: NodeId,
    epoch: number,
    rmw: boolean,
    value: Uint8Array | null,
  ): void {
    const describe = () => `${msgNames[kind]} ${from}->${to} ${key} ${version}.${writer} e${epoch}${rmw ? " rmw" : ""}`;
    this.#transmit(from, to, describe, () => this.nodes[to]!.replica.receive(from, kind, key, version, writer, epoch, rmw, value, this.nowMs), null);
  }

  /**
   * Shard mode: one encoded frame from `from`'s SimTransport (its own copy). While faults are
   * active a link carries at most options.linkFramesMax frames at once: beyond, the transport
   * refuses for want of credit (the shard counts and drops the frame, as with a real transport).
   */
  #sendFrame(from: NodeId, to: NodeId, frame: Uint8Array): boolean {
    const link = `${from},${to}`;
    const inFlight = this.#linkFrames.get(link) ?? 0;
    if (this.faultsActive && inFlight >= this.options.linkFramesMax) {
      this.trace(`refused (no credit) ${this.#describeFrame(from, to, frame)}`);
      return false;
    }
    const describe = () => this.#describeFrame(from, to, frame);
    this.#transmit(from, to, describe, () => this.nodes[to]!.shard!.deliver(from, frame), link);
    return true;
  }

  /** "frame 0->1 e3: INV r0 4.0 e3 rmw | ACK c0 2.1 e3" (the keys are space-delimited for SIM_TRACE_KEY). */
  #describeFrame(from: NodeId, to: NodeId, frame: Uint8Array): string {
    const parts: string[] = [];
    this.#traceDecoder!.decode(frame, (_from, kind, key, version, writer, epoch, rmw) => {
      parts.push(`${msgNames[kind]} ${key} ${version}.${writer} e${epoch}${rmw ? " rmw" : ""}`);
    });
    return `frame ${from}->${to} e${this.#traceDecoder!.frameEpoch}: ${parts.join(" | ")} `;
  }

  /**
   * The faults of the network, for a message (core mode) or a frame (shard mode): loss,
   * duplication, slow (reordering) delays, partitions, and loss of what a node sent just before it
   * crashed. `link` counts frames in flight (shard mode), null for messages.
   */
  #transmit(from: NodeId, to: NodeId, describe: () => string, deliver: () => void, link: string | null): void {
    const o = this.options;
    if (this.faultsActive && this.random.chance(o.lossRate)) {
      this.trace(`drop ${describe()}`);
      return;
    }
    const copies = this.faultsActive && this.random.chance(o.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const slow = this.faultsActive && this.random.chance(o.slowRate);
      const delayMs = slow ? this.random.range(5, 60) : this.random.range(0.05, 1);
      const sentAtMs = this.nowMs;
      if (link !== null) this.#linkFrames.set(link, (this.#linkFrames.get(link) ?? 0) + 1);
      this.events.push(this.nowMs + delayMs, () => {
        if (link !== null) this.#linkFrames.set(link, this.#linkFrames.get(link)! - 1);
        const target = this.nodes[to]!;
        if (target.crashed || this.#isCut(from, to)) return;
        const sender = this.nodes[from]!;
        if (sender.crashed && sentAtMs > sender.crashedAtMs - crashLossWindowMs && this.random.chance(0.5)) {
          this.trace(`lost in crash ${describe()}`);
          return;
        }
        this.trace(describe());
        deliver();
      });
    }
  }

  #isCut(a: NodeId, b: NodeId): boolean {
    return this.#cut.has(a < b ? `${a},${b}` : `${b},${a}`);
  }

  #scheduleTick(node: SimNode, atMs: number): void {
    this.events.push(atMs, () => {
      if (node.crashed) return;
      // Shard mode: the loop turns at least every tickMs (a turn ticks the replica's timers).
      if (node.shard === null) node.replica.tick(this.nowMs);
      else node.shard.turn();
      this.#scheduleTick(node, this.nowMs + this.options.tickMs);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Reliable membership: leases to reachable nodes, removal only after a lease has surely ended.

  #reachable(id: NodeId): boolean {
    return !this.nodes[id]!.crashed && !this.#rmIsolated.has(id);
  }

  #rmRound(): void {
    const o = this.options;
    for (const id of [...this.members]) {
      if (this.#reachable(id)) continue;
      const until = this.#leaseGrantedUntil.get(id) ?? 0;
      if (this.nowMs <= until + o.removalMarginMs) continue;
      if (!this.#canRemove(id)) continue;
      this.members.delete(id);
      this.epoch++;
      this.trace(`RM removes ${id}: epoch ${this.epoch} members [${[...this.members].sort()}]`);
    }
    const view = [...this.members].sort((a, b) => a - b);
    const epoch = this.epoch;
    for (const node of this.nodes) {
      if (!this.#reachable(node.id)) continue;
      const isMember = this.members.has(node.id);
      const grantedUntil = this.nowMs + o.leaseMs;
      if (isMember) this.#leaseGrantedUntil.set(node.id, grantedUntil);
      const delayMs = this.random.range(0.05, 1);
      this.events.push(this.nowMs + delayMs, () => {
        if (node.crashed) return;
        this.#setMembership(node, epoch, view);
        // The node counts its lease from when the RM granted it, as a real node counts from when it sent the renewal.
        if (isMember) this.#setLease(node, grantedUntil);
      });
    }
    this.events.push(this.nowMs + o.leaseRenewEveryMs, () => this.#rmRound());
  }

  /** Crash-stop and removal of a minority only: the faulty set may not exceed f. */
  #faulty(): Set<NodeId> {
    const faulty = new Set<NodeId>();
    for (const node of this.nodes) if (node.crashed || !this.members.has(node.id)) faulty.add(node.id);
    return faulty;
  }

  #canRemove(id: NodeId): boolean {
    const faulty = this.#faulty();
    faulty.add(id);
    return faulty.size <= this.faultTolerance;
  }

  // ---------------------------------------------------------------------------------------------
  // Faults

  scheduleFaults(): void {
    const next = this.nowMs + this.random.range(0, 2 * this.options.faultEveryMs);
    this.events.push(next, () => {
      if (!this.faultsActive) return;
      this.#injectFault();
      this.scheduleFaults();
    });
  }

  #injectFault(): void {
    const o = this.options;
    const node = this.random.pick(this.nodes);
    const roll = this.random.float();
    if (roll < 0.4 && o.partitions) {
      const others = this.nodes.filter((n) => n.id !== node.id && this.random.chance(0.5)).map((n) => n.id);
      if (others.length === 0) return;
      const durationMs = this.random.range(5, 100);
      const keys = others.map((b) => (node.id < b ? `${node.id},${b}` : `${b},${node.id}`));
      for (const k of keys) this.#cut.add(k);
      this.trace(`partition ${node.id} | [${others}] for ${durationMs.toFixed(0)}ms`);
      this.events.push(this.nowMs + durationMs, () => {
        for (const k of keys) this.#cut.delete(k);
        this.trace(`partition ${node.id} | [${others}] healed`);
      });
    } else if (roll < 0.7 && o.partitions) {
      if (this.#rmIsolated.has(node.id)) return;
      const durationMs = this.random.range(10, 200);
      const keys = this.nodes.filter((n) => n.id !== node.id).map((n) => (node.id < n.id ? `${node.id},${n.id}` : `${n.id},${node.id}`));
      for (const k of keys) this.#cut.add(k);
      this.#rmIsolated.add(node.id);
      this.trace(`isolate ${node.id} for ${durationMs.toFixed(0)}ms`);
      this.events.push(this.nowMs + durationMs, () => {
        for (const k of keys) this.#cut.delete(k);
        this.#rmIsolated.delete(node.id);
        this.trace(`isolate ${node.id} healed`);
      });
    } else if (roll < 0.85 && o.crashes) {
      if (node.crashed) return;
      const faulty = this.#faulty();
      faulty.add(node.id);
      if (faulty.size > this.faultTolerance) return;
      this.#crash(node, "");
    } else if (roll >= 0.85 && node.shard !== null && !node.crashed) {
      // Shard mode only: the node's worker loop stalls (see shard-node.ts).
      const durationMs = this.random.range(1, 30);
      this.trace(`stall ${node.id} for ${durationMs.toFixed(1)}ms`);
      node.shard.stall(durationMs);
    }
  }

  /** The targeted nemesis: called when `id` has just issued an update. */
  maybeCrashAfterIssue(id: NodeId, key: string, rmw: boolean): void {
    const o = this.options;
    if (!this.faultsActive || !o.crashes) return;
    const racing = rmw && this.nodes.some((n) => n.id !== id && !n.crashed && n.replica.inspect(key)?.pendingRmw === true);
    if (!this.random.chance(racing ? o.crashInRmwRaceRate : o.crashAfterIssueRate)) return;
    const node = this.nodes[id]!;
    const faulty = this.#faulty();
    faulty.add(id);
    if (node.crashed || faulty.size > this.faultTolerance) return;
    // Before the first retransmission, so that lost INVs stay lost.
    // In a race, crash in the middle of the broadcast (the worst moment); otherwise soon after.
    this.events.push(this.nowMs + (racing ? 0.001 : this.random.range(0.01, 0.5)), () => {
      if (node.crashed) return;
      const now = this.#faulty();
      now.add(id);
      if (now.size > this.faultTolerance) return;
      this.#crash(node, " (right after it issued an update)");
    });
  }

  #crash(node: SimNode, why: string): void {
    node.crashed = true;
    node.crashedAtMs = this.nowMs;
    this.trace(`crash ${node.id}${why}`);
  }

  /** End of the fault phase: the network becomes reliable and every partition heals. */
  heal(): void {
    this.faultsActive = false;
    this.#cut.clear();
    this.#rmIsolated.clear();
    this.trace("heal: no more faults");
  }

  // ---------------------------------------------------------------------------------------------

  trace(line: string): void {
    if (traceFilter !== undefined && (line.includes(` ${traceFilter} `) || !/ [rc]\d+ /.test(line))) {
      console.log(`${this.nowMs.toFixed(2).padStart(9)}ms ${line}`);
    }
    this.#trace[this.#traceNext % Simulation.traceLength] = `${this.nowMs.toFixed(2).padStart(9)}ms ${line}`;
    this.#traceNext++;
  }

  traceLines(): string[] {
    const n = Math.min(this.#traceNext, Simulation.traceLength);
    const lines: string[] = [];
    for (let i = this.#traceNext - n; i < this.#traceNext; i++) lines.push(this.#trace[i % Simulation.traceLength]!);
    return lines;
  }

  get outstandingOps(): number {
    return this.#pending.size;
  }
}
