// The simulated world: replicas running the real core, a network that loses, duplicates, delays,
// reorders and partitions (both ways or one way), a reliable membership service with leases,
// removals and the failure detector's evictions (rm.ts), crash-stop and crash-restart faults, nodes
// that stop serving when they lose their lease and rejoin by state transfer (rejoin.ts), and a
// trace of the last events for failure reports. Everything is driven by one seeded PRNG.
// Two modes (options.mode): "core" calls the Replica directly and the network carries single
// protocol messages; "shard" runs the real worker loop per node (shard-node.ts) and the network
// carries the real encoded frames. Clients, RM, faults, rejoins and oracles are the same in both.

import { Replica } from "../../src/core/replica.ts";
import { MsgKind, OpStatus, type OpKind } from "../../src/base/kinds.ts";
import type { Completions, Outbox, Probe, ReplicaConfig } from "../../src/core/types.ts";
import { nodeIdMax, type NodeId } from "../../src/base/ids.ts";
import { FrameDecoder } from "../../src/wire/frame-decoder.ts";
import { FrameMac } from "../../src/wire/frame-mac.ts";
import { clusterKeyBytes, clusterKeyLabel, deriveClusterKey } from "../../src/base/cluster-key.ts";
import { EventQueue } from "./event-queue.ts";
import type { SimOptions } from "./options.ts";
import { Prng } from "../lib/prng.ts";
import { copyRange, keyText } from "../lib/key-bytes.ts";
import { SimShardNode } from "./shard-node.ts";
import { SimRm } from "./rm.ts";
import { SimRejoiner } from "./rejoin.ts";

export type ReplicaFactory = (config: ReplicaConfig, outbox: Outbox, completions: Completions, probe: Probe) => Replica;

export class SimViolation extends Error {
  readonly oracle: string;
  constructor(oracle: string, detail: string) {
    super(`${oracle}: ${detail}`);
    this.oracle = oracle;
  }
}

export interface SimView {
  epoch: number;
  members: readonly NodeId[];
}

export interface SimNode {
  readonly id: NodeId;
  /** The replica of the current process (a restart makes a new one). */
  replica: Replica;
  /** The node's worker loop in shard mode (its `replica` is the shard's); null in core mode. */
  shard: SimShardNode | null;
  crashed: boolean;
  /** Crashed for good: its process restarted under a fresh id (options.restartIdentity "fresh"). */
  retired: boolean;
  /** The node process: incremented at every crash, so that events of a dead process do nothing. */
  incarnation: number;
  /** When each incarnation crashed (a crash loses part of what it sent just before). */
  readonly crashedAtMs: number[];
  // The node runtime around the replica (HermesNode and its membership client).
  /** HermesNode.hasState: false from a restart until a join has loaded state. */
  hasState: boolean;
  /** HermesNode.joining: from beginJoin until a load finishes. */
  joining: boolean;
  /** The last view the node installed. */
  view: SimView;
  /** The node's lease deadline; 0 once it noticed the lease is lost. */
  leaseUntilMs: number;
  /** The registration it holds at the RM; 0 when it has dropped it (it then registers again). */
  registration: number;
  /**
   * The process has registered once: it follows the membership from then on. A restarted process
   * sees no view before (etcd refuses its start while the dead process's lease holds its key).
   */
  attached: boolean;
  rejoiner: SimRejoiner;
}

export interface SimStats {
  /** Crashed nodes restarted empty. */
  restarts: number;
  /** Serving nodes that stopped serving: lease lost, left the view or evicted (beginJoin with kept state). */
  leaseLosses: number;
  evictions: number;
  /** Joins finished from a serving member: by a restarted (empty) node, by one that kept its state. */
  joinsEmpty: number;
  joinsKeepingState: number;
  /** Joins finished by merging kept state (no member served). */
  joinsByMerge: number;
}

/** A crash loses part of what the node sent just before it (its unsent send buffers). */
const crashLossWindowMs = 1;

/** Shard mode: key and value limits of the shards (the clients use keys like "r0" and short values). */
const shardKeyBytesMax = 8;
const shardValueBytesMax = 32;

type CompletionHandler = (status: OpStatus, value: Uint8Array | null, version: number, writer: NodeId) => void;

interface PendingOp {
  handler: CompletionHandler;
  node: NodeId;
  incarnation: number;
}

const msgNames = ["", "INV", "ACK", "VAL", "REJ"];
/** SIM_TRACE_KEY=r0 prints every event of that key (and every fault) while a seed runs. */
const traceFilter = process.env.SIM_TRACE_KEY;

export class Simulation {
  readonly options: SimOptions;
  readonly random: Prng;
  readonly events = new EventQueue();
  nowMs = 0;
  readonly nodes: SimNode[] = [];
  readonly rm: SimRm;

  /** Nodes cut off from the RM (their leases lapse). */
  readonly #rmIsolated = new Map<NodeId, number>();
  /** Data-plane cuts, one direction each: "a>b" means nothing from a reaches b (counted: cuts overlap). */
  readonly #cut = new Map<string, number>();
  faultsActive = true;
  readonly faultTolerance: number;
  /** What the run explored (summed over seeds by main.ts). */
  readonly stats: SimStats = {
    restarts: 0,
    leaseLosses: 0,
    evictions: 0,
    joinsEmpty: 0,
    joinsKeepingState: 0,
    joinsByMerge: 0,
  };

  readonly #pending = new Map<number, PendingOp>();
  /** Shard mode: frames in flight per link "from,to" (sent, not yet delivered or lost), for credits. */
  readonly #linkFrames = new Map<string, number>();
  /** Shard mode: reads frames back into messages for the trace, one decoder per receiver (its MAC). */
  readonly #traceDecoders: (FrameDecoder | null)[] = [];
  /** Shard mode with options.frameMac: the frame key of every node (fixed, so a seed replays exactly). */
  readonly #frameKey: Uint8Array | null;
  readonly #makeReplica: ReplicaFactory;
  readonly #probe: Probe;
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
    this.#makeReplica = makeReplica;
    this.#probe = probe;
    this.#frameKey =
      options.mode === "shard" && options.frameMac
        ? deriveClusterKey(new Uint8Array(clusterKeyBytes).fill(0x5e), clusterKeyLabel.frameMac)
        : null;
    for (let id = 0; id < options.replicas; id++) this.nodes.push(this.#newNode(id));
    this.rm = new SimRm(this);
  }

  #traceDecoder(to: NodeId): FrameDecoder {
    let decoder = this.#traceDecoders[to] ?? null;
    if (decoder === null) {
      decoder = new FrameDecoder({
        clusterId: this.nodes[0]!.shard!.shard.init.clusterId,
        shardIndex: -1,
        frameBytesMax: this.options.frameBytesMax,
        keyBytesMax: shardKeyBytesMax,
        valueBytesMax: shardValueBytesMax,
        selfId: to,
        mac: this.#frameKey === null ? null : new FrameMac(this.#frameKey, to),
      });
      this.#traceDecoders[to] = decoder;
    }
    return decoder;
  }

  #newNode(id: NodeId): SimNode {
    const node: SimNode = {
      id,
      replica: null as unknown as Replica,
      shard: null,
      crashed: false,
      retired: false,
      incarnation: 0,
      crashedAtMs: [],
      hasState: true,
      joining: false,
      view: { epoch: 0, members: [] },
      leaseUntilMs: 0,
      registration: 0,
      attached: false,
      rejoiner: null as unknown as SimRejoiner,
    };
    this.#boot(node);
    return node;
  }

  /** The nodes that are not retired: the cluster's current processes, live or crashed. */
  current(): SimNode[] {
    return this.nodes.filter((n) => !n.retired);
  }

  /** A new process for `node` (at the start, and at a restart): a fresh replica or shard. */
  #boot(node: SimNode): void {
    const o = this.options;
    const id = node.id;
    const incarnation = node.incarnation;
    const config: ReplicaConfig = {
      self: id,
      // The process number of this node id, as the RM grants it at registration (etcd's counter
      // key, src/membership/etcd-incarnation.ts): its timestamps' writer id differs from every earlier process's.
      incarnation,
      retransmitMs: o.retransmitMs,
      mltMs: o.mltMs,
      opTimeoutMs: o.opTimeoutMs,
      keyQueueMax: 64,
      opsMax: 1024,
      keysMax: 1024,
      storeBytesMax: 1024 * 1024,
      valueBytesMax: 1024,
      incrRetriesMax: 16,
    };
    const completions: Completions = {
      complete: (opId, status, value, valueAt, valueLength, version, writer) => {
        const pending = this.#pending.get(opId);
        if (pending === undefined)
          throw new SimViolation("answered-once", `op ${opId} answered twice or never submitted`);
        if (pending.node !== id || pending.incarnation !== incarnation)
          throw new SimViolation("answered-once", `op ${opId} answered by another node or process`);
        this.#pending.delete(opId);
        // A read's value is lent from the replica's store: the client keeps a copy.
        pending.handler(status, copyRange(value, valueAt, valueLength), version, writer);
      },
    };
    node.rejoiner = new SimRejoiner(this, node);
    if (o.mode === "shard") {
      const network = { send: (from: NodeId, to: NodeId, frame: Uint8Array) => this.#sendFrame(from, to, frame) };
      // Values of the simulated clients are a few bytes: a small valueBytesMax lets small frames
      // (options.frameBytesMax) hold only a few messages, so the "frame full" path runs often.
      const shardConfig: ReplicaConfig = { ...config, valueBytesMax: shardValueBytesMax };
      node.shard = new SimShardNode(this, {
        id,
        replica: shardConfig,
        makeReplica: this.#makeReplica,
        probe: this.#probe,
        network,
        frameBytesMax: o.frameBytesMax,
        keyBytesMax: shardKeyBytesMax,
        loopDelayMsMax: o.loopDelayMsMax,
        completions,
        crashed: () => node.crashed || node.incarnation !== incarnation,
        frameKey: this.#frameKey,
      });
      node.replica = node.shard.replica;
      return;
    }
    const outbox: Outbox = {
      // The key and value are lent by the sender's store: the network carries copies.
      send: (to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) =>
        this.#send(
          id,
          incarnation,
          to,
          kind,
          key.slice(keyAt, keyAt + keyLength),
          version,
          writer,
          epoch,
          rmw,
          copyRange(value, valueAt, valueLength),
        ),
    };
    node.replica = this.#makeReplica(config, outbox, completions, this.#probe);
  }

  // ---------------------------------------------------------------------------------------------

  start(): void {
    this.rm.start();
    for (const node of this.nodes) this.#scheduleTick(node, this.random.range(0, this.options.tickMs));
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
    this.#pending.set(opId, { handler: onDone, node: node.id, incarnation: node.incarnation });
    if (node.shard === null) {
      node.replica.submit(opId, kind, key, value, expectedVersion, expectedWriter, by, this.nowMs);
    } else if (!node.shard.submit(opId, kind as OpKind, key, value, expectedVersion, expectedWriter, by)) {
      // The request ring is full: the HTTP thread answers Busy (429) without submitting.
      this.#pending.delete(opId);
      onDone(OpStatus.Busy, null, 0, 0);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Node control: what the node runtime tells its shard (core: the replica; shard: Shard's control
  // methods, as shard-worker.ts handles membership, lease, join-begin, snapshot-import, join-finish).

  #setMembership(node: SimNode, epoch: number, members: readonly NodeId[]): void {
    if (node.shard === null) node.replica.setMembership(epoch, members, this.nowMs);
    else node.shard.setMembership(epoch, members);
  }

  #setLease(node: SimNode, untilMs: number): void {
    if (node.shard === null) node.replica.setLease(untilMs, this.nowMs);
    else node.shard.setLease(untilMs);
  }

  beginJoin(node: SimNode): void {
    if (node.shard === null) node.replica.beginJoin();
    else node.shard.beginJoin();
  }

  /** A chunk of a source's snapshot (whole records); `kept`: from a member's kept state (a merge, no member serves). */
  importSnapshot(node: SimNode, records: Uint8Array, kept: boolean): void {
    if (node.shard === null) {
      const used = node.replica.installSnapshotRecords(records, 0, records.length, this.nowMs, kept);
      if (used !== records.length) throw new Error(`snapshot records refused (${used})`);
    } else if (!kept) {
      node.shard.importSnapshot(records);
    } else {
      node.shard.importKeptState(records);
    }
  }

  finishJoin(node: SimNode): void {
    if (node.shard === null) node.replica.finishJoin(this.nowMs);
    else node.shard.finishJoin();
  }

  /** Run `call` at the source when its shard can (shard mode: not during a stall). */
  atSource(node: SimNode, call: () => void): void {
    if (node.shard === null) call();
    else node.shard.runControl(call);
  }

  /**
   * shard-worker.ts's exportSnapshot check: the source has installed epochMin, is a member, and is
   * not joining. A merge of kept state (`kept`) takes any node's kept state under the "cluster"
   * rule (members or not, any epoch), and a joining member's that kept state under the "view" rule.
   */
  exportReady(source: SimNode, epochMin: number, kept: boolean): boolean {
    const r = source.replica;
    if (kept && this.options.mergeRule === "cluster") return source.hasState;
    return !(r.epoch < epochMin || !r.isMember || (r.joining && !(kept && source.hasState)));
  }

  /** HermesNode.serving: not joining, in its view, with a lease. */
  serving(node: SimNode): boolean {
    return !node.crashed && !node.joining && node.view.members.includes(node.id) && node.leaseUntilMs > this.nowMs;
  }

  /** The bootstrap view (installed at once, before any event). */
  installView(
    node: SimNode,
    incarnation: number,
    epoch: number,
    members: readonly NodeId[],
    leaseUntilMs: number,
  ): void {
    if (node.crashed || node.incarnation !== incarnation) return;
    if (epoch > node.view.epoch) {
      node.view = { epoch, members };
      this.#setMembership(node, epoch, members);
    }
    if (node.registration !== 0) {
      node.leaseUntilMs = leaseUntilMs;
      this.#setLease(node, leaseUntilMs);
      this.events.push(leaseUntilMs, () => this.#leaseDeadline(node, incarnation));
    }
    node.rejoiner.onChange();
  }

  /** A view (and a lease, unless null) from the RM, arriving a little later. */
  deliverView(node: SimNode, epoch: number, members: readonly NodeId[], leaseUntilMs: number | null): void {
    const incarnation = node.incarnation;
    const registration = node.registration;
    this.events.push(this.nowMs + this.random.range(0.05, 1), () => {
      if (node.crashed || node.incarnation !== incarnation) return;
      if (leaseUntilMs === null || node.registration !== registration) {
        if (epoch > node.view.epoch) {
          node.view = { epoch, members };
          this.#setMembership(node, epoch, members);
        }
        node.rejoiner.onChange();
        return;
      }
      this.installView(node, incarnation, epoch, members, leaseUntilMs);
    });
  }

  /** A lease deadline: if it was not renewed, the node notices a little later (one delay per loss). */
  #leaseDeadline(node: SimNode, incarnation: number): void {
    if (node.crashed || node.incarnation !== incarnation) return;
    if (node.leaseUntilMs === 0 || node.leaseUntilMs > this.nowMs) return;
    this.events.push(this.nowMs + this.random.range(0, this.options.leaseLossNoticeMsMax), () =>
      this.#noticeLeaseLoss(node, incarnation),
    );
  }

  /** The node's lease deadline passed without a renewal: it drops the lease and registers again. */
  #noticeLeaseLoss(node: SimNode, incarnation: number): void {
    if (node.crashed || node.incarnation !== incarnation) return;
    if (node.leaseUntilMs === 0 || node.leaseUntilMs > this.nowMs) return;
    this.trace(`node ${node.id} notices its lease is lost`);
    this.#dropLease(node);
  }

  /** An evicted node learns it: it drops its lease at once and stops serving. */
  notifyEvicted(node: SimNode): void {
    this.trace(`node ${node.id} learns it was evicted`);
    this.#dropLease(node);
  }

  #dropLease(node: SimNode): void {
    node.registration = 0;
    node.leaseUntilMs = 0;
    this.#setLease(node, 0);
    node.rejoiner.onChange();
  }

  // ---------------------------------------------------------------------------------------------
  // Network

  /** Core mode: one message; `key` and `value` are the network's own copies. */
  #send(
    from: NodeId,
    incarnation: number,
    to: NodeId,
    kind: MsgKind,
    key: Uint8Array,
    version: number,
    writer: NodeId,
    epoch: number,
    rmw: boolean,
    value: Uint8Array | null,
  ): void {
    const describe = () =>
      `${msgNames[kind]} ${from}->${to} ${keyText(key, 0, key.length)} ${version}.${writer} e${epoch}${rmw ? " rmw" : ""}`;
    const deliver = () =>
      this.nodes[to]!.replica.receive(
        from,
        kind,
        key,
        0,
        key.length,
        version,
        writer,
        epoch,
        rmw,
        value,
        0,
        value === null ? 0 : value.length,
        this.nowMs,
      );
    this.#transmit(from, incarnation, to, describe, deliver, null);
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
    this.#transmit(
      from,
      this.nodes[from]!.incarnation,
      to,
      describe,
      () => this.nodes[to]!.shard!.deliver(from, frame),
      link,
    );
    return true;
  }

  /** "frame 0->1 e3: INV r0 4.0 e3 rmw | ACK c0 2.1 e3" (the keys are space-delimited for SIM_TRACE_KEY). */
  #describeFrame(from: NodeId, to: NodeId, frame: Uint8Array): string {
    const parts: string[] = [];
    const decoder = this.#traceDecoder(to);
    decoder.decode(frame, (_from, kind, key, keyAt, keyLength, version, writer, epoch, rmw) => {
      parts.push(
        `${msgNames[kind]} ${keyText(key, keyAt, keyLength)} ${version}.${writer} e${epoch}${rmw ? " rmw" : ""}`,
      );
    });
    return `frame ${from}->${to} e${decoder.frameEpoch}: ${parts.join(" | ")} `;
  }

  /**
   * The faults of the network, for a message (core mode) or a frame (shard mode): loss,
   * duplication, slow (reordering) delays, partitions, and loss of what a node sent just before it
   * crashed. `link` counts frames in flight (shard mode), null for messages.
   */
  #transmit(
    from: NodeId,
    incarnation: number,
    to: NodeId,
    describe: () => string,
    deliver: () => void,
    link: string | null,
  ): void {
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
        const crashedAtMs = this.nodes[from]!.crashedAtMs[incarnation];
        if (crashedAtMs !== undefined && sentAtMs > crashedAtMs - crashLossWindowMs && this.random.chance(0.5)) {
          this.trace(`lost in crash ${describe()}`);
          return;
        }
        this.trace(describe());
        deliver();
      });
    }
  }

  #isCut(from: NodeId, to: NodeId): boolean {
    return this.#cut.has(`${from}>${to}`);
  }

  /** `listener` hears `speaker` now: the speaker is up and nothing cuts the link that way. */
  hears(listener: NodeId, speaker: NodeId): boolean {
    return !this.nodes[speaker]!.crashed && !this.#isCut(speaker, listener);
  }

  /** A request and its answer get through between two live nodes (the control network, HTTP). */
  controlReachable(a: NodeId, b: NodeId): boolean {
    return !this.nodes[a]!.crashed && !this.nodes[b]!.crashed && !this.#isCut(a, b) && !this.#isCut(b, a);
  }

  rmIsolated(id: NodeId): boolean {
    return this.#rmIsolated.has(id);
  }

  #scheduleTick(node: SimNode, atMs: number): void {
    const incarnation = node.incarnation;
    this.events.push(atMs, () => {
      if (node.crashed || node.incarnation !== incarnation) return;
      // Shard mode: the loop turns at least every tickMs (a turn ticks the replica's timers).
      if (node.shard === null) node.replica.tick(this.nowMs);
      else node.shard.turn();
      this.#scheduleTick(node, this.nowMs + this.options.tickMs);
    });
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
    const current = this.current();
    const node = this.random.pick(current);
    const roll = this.random.float();
    if (roll < 0.3 && o.partitions) {
      const others = current.filter((n) => n.id !== node.id && this.random.chance(0.5)).map((n) => n.id);
      if (others.length === 0) return;
      const durationMs = this.random.range(5, 100);
      this.#cutFor(
        others.flatMap((b) => [`${node.id}>${b}`, `${b}>${node.id}`]),
        durationMs,
        `partition ${node.id} | [${others}]`,
      );
    } else if (roll < 0.42 && o.partitions) {
      // One way only: the failure detector sees a member that hears but is not heard, or the reverse.
      const others = current.filter((n) => n.id !== node.id && this.random.chance(0.6)).map((n) => n.id);
      if (others.length === 0) return;
      const outbound = this.random.chance(0.5);
      const durationMs = this.random.range(5, 150);
      const keys = others.map((b) => (outbound ? `${node.id}>${b}` : `${b}>${node.id}`));
      this.#cutFor(
        keys,
        durationMs,
        outbound ? `one-way cut ${node.id} -> [${others}]` : `one-way cut [${others}] -> ${node.id}`,
      );
    } else if (roll < 0.62 && o.partitions) {
      this.isolate(node, this.random.range(10, 200), "isolate");
    } else if (roll < 0.7 && o.partitions) {
      // Cut off from the RM only: it loses its lease while its peers still hear it.
      this.#isolateFromRm(node.id, this.random.range(10, 200));
    } else if (roll < 0.85 && o.crashes) {
      if (node.crashed) return;
      const faulty = this.rm.faulty();
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

  #cutFor(keys: string[], durationMs: number, what: string): void {
    for (const k of keys) this.#cut.set(k, (this.#cut.get(k) ?? 0) + 1);
    this.trace(`${what} for ${durationMs.toFixed(0)}ms`);
    this.events.push(this.nowMs + durationMs, () => {
      for (const k of keys) {
        const n = this.#cut.get(k);
        if (n === undefined) continue; // healed by heal()
        if (n <= 1) this.#cut.delete(k);
        else this.#cut.set(k, n - 1);
      }
      this.trace(`${what} healed`);
    });
  }

  #isolateFromRm(id: NodeId, durationMs: number): void {
    this.#rmIsolated.set(id, (this.#rmIsolated.get(id) ?? 0) + 1);
    this.trace(`node ${id} cut off from the RM for ${durationMs.toFixed(0)}ms`);
    this.events.push(this.nowMs + durationMs, () => {
      const n = this.#rmIsolated.get(id);
      if (n === undefined) return;
      if (n <= 1) this.#rmIsolated.delete(id);
      else this.#rmIsolated.set(id, n - 1);
    });
  }

  /** Cut `node` off from the RM and from every peer, both ways, for `durationMs`. */
  isolate(node: SimNode, durationMs: number, what: string): void {
    const keys = this.current()
      .filter((n) => n.id !== node.id)
      .flatMap((n) => [`${node.id}>${n.id}`, `${n.id}>${node.id}`]);
    this.#cutFor(keys, durationMs, `${what} ${node.id}`);
    this.#isolateFromRm(node.id, durationMs);
  }

  /** The targeted nemeses: called when `id` has just issued an update. */
  afterIssue(id: NodeId, key: string, rmw: boolean): void {
    const o = this.options;
    if (!this.faultsActive) return;
    if (rmw && o.partitions && this.random.chance(o.isolateAfterRmwRate)) {
      // Right after the INVs left: some arrive (the majority may commit its RMW by replay while it
      // is out, and it comes back with its client's op still held), or none (the others may commit
      // another RMW from the same base, and it comes back with an RMW that lost its race).
      const node = this.nodes[id]!;
      const incarnation = node.incarnation;
      const afterMs = this.random.chance(0.5) ? 0 : this.random.range(0.02, 1.2);
      this.events.push(this.nowMs + afterMs, () => {
        if (node.crashed || node.incarnation !== incarnation || !this.faultsActive) return;
        this.isolate(node, this.random.range(60, 250), "isolate (right after it issued an RMW)");
      });
      return;
    }
    this.#maybeCrashAfterIssue(id, key, rmw);
  }

  #maybeCrashAfterIssue(id: NodeId, key: string, rmw: boolean): void {
    const o = this.options;
    if (!o.crashes) return;
    const racing =
      rmw && this.nodes.some((n) => n.id !== id && !n.crashed && n.replica.inspect(key)?.pendingRmw === true);
    if (!this.random.chance(racing ? o.crashInRmwRaceRate : o.crashAfterIssueRate)) return;
    const node = this.nodes[id]!;
    const faulty = this.rm.faulty();
    faulty.add(id);
    if (node.crashed || faulty.size > this.faultTolerance) return;
    const incarnation = node.incarnation;
    // Before the first retransmission, so that lost INVs stay lost.
    // In a race, crash in the middle of the broadcast (the worst moment); otherwise soon after.
    this.events.push(this.nowMs + (racing ? 0.001 : this.random.range(0.01, 0.5)), () => {
      if (node.crashed || node.incarnation !== incarnation) return;
      const now = this.rm.faulty();
      now.add(id);
      if (now.size > this.faultTolerance) return;
      this.#crash(node, " (right after it issued an update)");
    });
  }

  #crash(node: SimNode, why: string): void {
    node.crashed = true;
    node.crashedAtMs[node.incarnation] = this.nowMs;
    node.incarnation++;
    this.trace(`crash ${node.id}${why}`);
    // Its clients see their connections reset: whatever they had sent may or may not have happened.
    for (const [opId, pending] of this.#pending) {
      if (pending.node !== node.id) continue;
      this.#pending.delete(opId);
      pending.handler(OpStatus.Unknown, null, 0, 0);
    }
    if (this.random.chance(this.options.restartRate)) {
      const incarnation = node.incarnation;
      this.events.push(this.nowMs + this.random.range(10, this.options.restartDelayMsMax), () => {
        if (node.incarnation === incarnation) this.#restart(node);
      });
    }
  }

  /** The process starts again with nothing: it registers and joins by state transfer. */
  #restart(old: SimNode): void {
    let node = old;
    if (this.options.restartIdentity === "fresh") {
      if (this.nodes.length > nodeIdMax) return; // no id left: it stays down
      old.retired = true;
      node = this.#newNode(this.nodes.length);
      node.crashed = true; // until it boots below
      this.nodes.push(node);
      this.rm.addNode(node.id);
      this.trace(`node ${old.id} retired: its process restarts as node ${node.id}`);
    }
    node.crashed = false;
    node.view = { epoch: 0, members: [] };
    node.leaseUntilMs = 0;
    node.registration = 0;
    node.attached = false;
    if (node === old) this.#boot(node);
    this.stats.restarts++;
    this.trace(`restart ${node.id} (empty)`);
    node.rejoiner.startEmpty();
    this.#scheduleTick(node, this.nowMs + this.random.range(0, this.options.tickMs));
  }

  /** End of the fault phase: the network becomes reliable and every partition heals. */
  heal(): void {
    this.faultsActive = false;
    this.#cut.clear();
    this.#rmIsolated.clear();
    this.trace("heal: no more faults");
  }

  /** Every live node serves (after healing: every removed or restarted node has rejoined). */
  allServing(): boolean {
    return this.nodes.every((n) => n.crashed || this.allServingNode(n));
  }

  allServingNode(node: SimNode): boolean {
    return this.serving(node) && this.rm.members.has(node.id) && !node.replica.joining;
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
