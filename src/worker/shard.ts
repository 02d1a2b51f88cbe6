// One shard of one node: a Hermes replica, its transport endpoint and its client ops, driven by a
// bounded-batch loop: drain the rings from the node's other shard workers and the transport, step
// the core, flush effects. Client ops come from this thread's HTTP server (submitLocal, straight
// into the replica) and from the other shard workers (forwarded over PeerLinks).
// It runs inside a Bun Worker (shard-worker.ts) but has no Worker-specific code: one loop turn is
// `turn(nowMs)` and the clock is injected (ShardEnv), so unit tests call turn() with a fake
// transport and the simulator (test/sim, --mode shard) runs it in simulated time over SimTransport.

import { assert } from "../base/assert.ts";
import { Replica } from "../core/replica.ts";
import { MsgKind, OpKind, OpStatus } from "../base/kinds.ts";
import { nodeIdMax, type Epoch, type NodeId } from "../base/ids.ts";
import type { OpResult } from "../base/kv-backend.ts";
import { monotonicMs } from "../base/clock.ts";
import type { Completions, Outbox, ReplicaConfig } from "../core/types.ts";
import type { OpRequestReader } from "../ring/op-ring.ts";
import type { Transport } from "../transport/transport.ts";
import { FrameBuilder } from "../wire/frame-builder.ts";
import { FrameDecoder, type MessageHandler } from "../wire/frame-decoder.ts";
import { FrameMac } from "../wire/frame-mac.ts";
import { BenchClients } from "./bench-clients.ts";
import { busyResult, ClientOps } from "./client-ops.ts";
import type { ShardInit, ShardPeer, ShardStats } from "./messages.ts";
import { NodeBoard } from "./node-board.ts";
import { PeerLinks, type PeerRings } from "./peer-links.ts";
import { PeerLiveness } from "./peer-liveness.ts";
import type { ShardJournal } from "./shard-journal.ts";

/** Forwarded requests taken from each peer's ring per loop turn: bounds the time between transport polls. */
const requestBatchMax = 512;
/** Forwarded answers taken from each peer's ring per loop turn. */
const completionBatchMax = 4096;
/** The replica's timers (retransmission, op deadlines, lease) run at most this often. */
const tickEveryMs = 1;
/** How long an idle worker sleeps before it looks at the network and the clock again. */
const idleWaitMs = 1;
/**
 * How long an idle worker with nothing in flight sleeps: its replica's timers have nothing to time
 * (no op, no unsettled key), and everything that could give it work (the network, another worker's
 * ring, this thread's HTTP server) wakes it anyway. Fewer wake-ups leave the cores to the HTTP
 * servers: measured on a 3-replica local cluster, idle CPU 5.6 -> 2.2 % of a core, and under wrk
 * GETs 0.7 us less CPU per request in the process (0.3 us in the serving worker).
 */
const quietWaitMs = 10;
/** Ops with ids from here on belong to the in-worker benchmark clients, not to client ops. */
export const benchOpIdBase = 0x8000_0000;

/** What a shard takes from its surroundings besides its init message and transport. */
export interface ShardEnv {
  /**
   * The clock of run() and of the control calls (membership, lease, snapshot, join, stop), in ms.
   * monotonicMs in a worker; the simulator passes its simulated time.
   */
  clock: () => number;
  /** Builds the replica; tests pass one with a Probe (the simulator's oracles) or a mutant. */
  newReplica: (config: ReplicaConfig, outbox: Outbox, completions: Completions) => Replica;
}

const defaultEnv: ShardEnv = {
  clock: monotonicMs,
  newReplica: (config, outbox, completions) => new Replica(config, outbox, completions),
};

/** What the loop drives besides the replica: listings' and watch streams' service (browse-service.ts). */
export interface ShardLoopPart {
  /** Once per turn, first; returns the work done (0: idle). */
  turn(): number;
  /** After the turn's effects: publish what the turn wrote for other threads. */
  flush(): void;
  /** Promises an idle loop waits on as well. */
  waits(out: Promise<unknown>[]): void;
}

/** A client op waiting for this replica to catch up with the node board. */
interface HeldOp {
  slot: number;
  kind: OpKind;
  key: string;
  value: Uint8Array | null;
  expectedVersion: number;
  expectedWriter: NodeId;
  by: number;
}

export class Shard {
  readonly init: ShardInit;
  readonly replica: Replica;
  readonly transport: Transport;
  readonly decoder: FrameDecoder;
  /** Tags every frame sent and checks every frame received (the cluster key), or null. */
  readonly #mac: FrameMac | null;
  readonly board: NodeBoard;
  /** Client ops in the replica, from this thread's HTTP requests and forwarded by other workers. */
  readonly clientOps: ClientOps;
  /** Rings to the node's other shard workers, once connected (HTTP serving with more than one shard). */
  #links: PeerLinks | null = null;
  /** Listings and watch streams, once HTTP is served (see attachPart). */
  #part: ShardLoopPart | null = null;
  readonly #clock: () => number;
  /** One frame builder per node id (null: not a peer). */
  readonly #builders: (FrameBuilder | null)[] = [];
  /** Peers whose builder holds messages not yet sent this turn. */
  readonly #dirtyPeers: NodeId[] = [];
  /** Heartbeat-only frame builders for probes: candidates, evicted nodes waiting to rejoin (null: not a probe). */
  readonly #probes: (FrameBuilder | null)[] = [];
  /** Heartbeats and per-peer times (ShardInit.liveness), or null. */
  readonly #liveness: PeerLiveness | null;
  #epoch: Epoch = 0;
  #stopped = false;
  #lastTickMs = 0;
  /** The time of the current turn: requests and messages are stepped at it. */
  #now = 0;
  /** The idle timer, reused across idle turns until it ends. */
  #idleTimer: Promise<void> | null = null;
  /** The length of the pending idle timer. */
  #idleTimerMs = 0;
  /** Something (an HTTP request of this thread) asked for a turn since the last one began. */
  #turnRequested = false;
  /** Resolves the loop's idle wait; null while the loop is not idle. */
  #idleWake: (() => void) | null = null;
  /** Reused list of what an idle loop waits for. */
  readonly #waits: Promise<unknown>[] = [];
  readonly bench: BenchClients | null;
  /** The write-ahead log (--durability fsync|async), or null: nothing on disk, no cost. */
  #journal: ShardJournal | null = null;
  /** No other member: an update is answered without any ACK, so without a frame that syncs the log first. */
  #alone = true;
  framesRefused = 0;
  loopTurns = 0;
  idleWaits = 0;

  /** The pending idle timer if it ends within `ms`, else a new one (the longer one is left to end unused). */
  #idleTimerWithin(ms: number): Promise<void> {
    if (this.#idleTimer === null || this.#idleTimerMs > ms) {
      const timer: Promise<void> = Bun.sleep(ms).then(() => {
        if (this.#idleTimer === timer) this.#idleTimer = null;
      });
      this.#idleTimer = timer;
      this.#idleTimerMs = ms;
    }
    return this.#idleTimer;
  }

  /** Nothing in this shard waits for a timer: no client op, no bench client, no unsettled key, no forward out. */
  #quiet(): boolean {
    return (
      this.bench === null &&
      this.clientOps.inFlight === 0 &&
      this.replica.opsInFlight === 0 &&
      this.replica.unsettledCount === 0 &&
      (this.#links === null || this.#links.forwardsInFlight === 0)
    );
  }

  readonly #wake = (): void => {
    const wake = this.#idleWake;
    this.#idleWake = null;
    wake?.();
  };

  /** An op another shard worker forwarded: into the replica under a slot of ours, answered to that worker. */
  readonly #onForwarded = (peer: number, request: OpRequestReader): void => {
    const slot = this.clientOps.takeForwarded(peer, request.opId);
    if (slot < 0) {
      this.#links!.answer(peer, request.opId, busyResult.status, null, 0, 0);
      return;
    }
    this.#submitClientOp(
      slot,
      request.kind,
      request.key,
      null,
      0,
      0,
      request.value,
      request.expectedVersion,
      request.expectedWriter,
      request.by,
      this.#now,
    );
  };

  /**
   * Client ops that arrived while this replica lagged behind the node board (see #lagsBoard), held
   * until the control message that catches it up. Each holds a client op slot, so they are bounded
   * by opsInFlightMax.
   */
  readonly #held: HeldOp[] = [];

  /**
   * The main thread writes the node board, then posts the matching control message: for that
   * moment an op may find the node serving while this replica has not applied the view that made it
   * a member, or the end of its join. The replica would answer it Unavailable (a spurious 503), so
   * the op waits for the message instead.
   */
  #lagsBoard(): boolean {
    return this.replica.epoch < this.board.epoch || (this.replica.joining && !this.board.joining);
  }

  /** `keyBytes[keyAt..keyAt+keyLength)`: the key's UTF-8 bytes when the caller has them (else null, and `key` is encoded). */
  #submitClientOp(
    slot: number,
    kind: OpKind,
    key: string,
    keyBytes: Uint8Array | null,
    keyAt: number,
    keyLength: number,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    nowMs: number,
  ): void {
    if (!this.#stopped && this.#lagsBoard()) {
      this.#held.push({ slot, kind, key, value, expectedVersion, expectedWriter, by });
      return;
    }
    if (this.#journal !== null && this.#journal.failed && kind !== OpKind.Read) {
      // The log cannot take it: nothing is started (503), and the status says why.
      this.#journal.updatesRefused++;
      this.clientOps.complete(slot, OpStatus.Unavailable, null, 0, 0, 0, 0);
      return;
    }
    if (keyBytes === null) this.replica.submit(slot, kind, key, value, expectedVersion, expectedWriter, by, nowMs);
    else
      this.replica.submitKey(slot, kind, keyBytes, keyAt, keyLength, value, expectedVersion, expectedWriter, by, nowMs);
  }

  /** After a control message: submit the held ops this replica can now take (or, stopped, answer them). */
  #releaseHeld(): void {
    if (this.#held.length === 0) return;
    const held = this.#held.splice(0);
    const now = this.#clock();
    for (const op of held)
      this.#submitClientOp(
        op.slot,
        op.kind,
        op.key,
        null,
        0,
        0,
        op.value,
        op.expectedVersion,
        op.expectedWriter,
        op.by,
        now,
      );
  }

  /** A decoded message: key and value stay where they are in the frame (no string, no copy). */
  readonly #onMessage: MessageHandler = (
    from,
    kind,
    key,
    keyAt,
    keyLength,
    version,
    writer,
    epoch,
    rmw,
    value,
    valueAt,
    valueLength,
  ) => {
    this.replica.receive(
      from,
      kind,
      key,
      keyAt,
      keyLength,
      version,
      writer,
      epoch,
      rmw,
      value,
      valueAt,
      valueLength,
      this.#now,
    );
  };

  readonly #onFrame = (from: NodeId, frame: Uint8Array): void => {
    if (this.decoder.decode(frame, this.#onMessage, from) >= 0)
      this.#liveness?.heard(from, this.decoder.frameEpoch, this.#epoch, this.#now);
  };

  constructor(init: ShardInit, transport: Transport, env: Partial<ShardEnv> = {}) {
    const { clock, newReplica } = { ...defaultEnv, ...env };
    this.init = init;
    this.transport = transport;
    this.#clock = clock;
    this.board = new NodeBoard(init.board, init.nodeId, init.transport.kind);
    this.clientOps = new ClientOps(init.opsInFlightMax, (peer, peerOpId, status, value, version, writer) =>
      this.#links!.answer(peer, peerOpId, status, value, version, writer),
    );
    this.#mac = init.frameKey == null ? null : new FrameMac(init.frameKey, init.nodeId);
    this.decoder = new FrameDecoder({
      clusterId: init.clusterId,
      shardIndex: init.shardIndex,
      frameBytesMax: transport.frameBytesMax,
      keyBytesMax: init.keyBytesMax,
      valueBytesMax: init.replica.valueBytesMax,
      selfId: init.nodeId,
      mac: this.#mac,
    });
    for (let id = 0; id <= nodeIdMax; id++) this.#builders.push(null);
    for (let id = 0; id <= nodeIdMax; id++) this.#probes.push(null);
    this.#liveness =
      init.liveness === undefined
        ? null
        : new PeerLiveness(init.liveness.heartbeatMs, new BigInt64Array(init.liveness.lastHeard));
    this.bench = init.bench === null ? null : new BenchClients(init.bench, init.nodeId, init.shardIndex);
    this.replica = newReplica(
      init.replica,
      {
        send: (to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) =>
          this.#send(to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength),
      },
      {
        complete: (opId, status, value, valueAt, valueLength, version, writer) => {
          // Alone, an update is answered with no frame sent since its install: sync first (fsync).
          if (
            this.#alone &&
            this.#journal !== null &&
            status === OpStatus.Ok &&
            !this.#journal.beforeLoneAnswer(this.#now)
          )
            status = OpStatus.Unknown;
          if (opId >= benchOpIdBase) this.bench!.complete(opId - benchOpIdBase, status);
          else this.clientOps.complete(opId, status, value, valueAt, valueLength, version, writer);
        },
      },
    );
  }

  // Control ----------------------------------------------------------------------------------

  setMembership(epoch: Epoch, members: ShardPeer[]): void {
    const self = this.init.nodeId;
    const ids = members.map((m) => m.id);
    for (let id = 0; id <= nodeIdMax; id++) {
      const member = members.find((m) => m.id === id);
      if (id === self) continue;
      if (member === undefined) {
        if (this.#builders[id] !== null) {
          // A probe keeps its link: it may become a member again on the same addresses.
          if (this.#probes[id] === null) this.#unlink(id);
          this.#builders[id] = null;
        }
        continue;
      }
      this.#link(id, member.address);
      this.#builders[id] ??= this.#newBuilder(id);
    }
    this.#epoch = epoch;
    for (const builder of this.#builders) if (builder !== null && builder.isEmpty) builder.senderEpoch = epoch;
    this.#alone = !ids.some((id) => id !== self);
    // Updates that lose their last peers complete now, with no frame sent: what they installed goes to disk first.
    if (this.#alone) this.#journal?.beforeLoneAnswer(this.#now);
    this.replica.setMembership(epoch, ids, this.#clock());
    this.#releaseHeld();
    this.#flushNetwork();
    this.#links?.flush();
  }

  /**
   * Candidates: evicted nodes waiting to rejoin. They get heartbeats only while we hear them (see
   * probeEchoIntervals), never protocol messages.
   */
  setProbes(peers: ShardPeer[]): void {
    for (let id = 0; id <= nodeIdMax; id++) {
      if (id === this.init.nodeId) continue;
      const probe = peers.find((p) => p.id === id);
      if (probe === undefined) {
        if (this.#probes[id] !== null && this.#builders[id] === null) this.#unlink(id);
        this.#probes[id] = null;
        continue;
      }
      // A member's link is already there (same node, same addresses).
      if (this.#builders[id] === null) this.#link(id, probe.address);
      this.#probes[id] ??= this.#newBuilder(id);
    }
  }

  #link(id: NodeId, address: string): void {
    this.transport.connect(id, address);
    this.#liveness?.linked(id, address, this.#clock());
  }

  #unlink(id: NodeId): void {
    this.transport.disconnect(id);
    this.#liveness?.unlinked(id);
  }

  #newBuilder(peer: NodeId): FrameBuilder {
    return new FrameBuilder({
      clusterId: this.init.clusterId,
      sender: this.init.nodeId,
      peer,
      shardIndex: this.init.shardIndex,
      frameBytesMax: this.transport.frameBytesMax,
      keyBytesMax: this.init.keyBytesMax,
      valueBytesMax: this.init.replica.valueBytesMax,
      mac: this.#mac,
    });
  }

  setLease(untilMs: number): void {
    this.replica.setLease(untilMs, this.#clock());
    this.#flushNetwork();
    this.#links?.flush();
  }

  /** Whole snapshot records (split and checked by the node), installed in place; see HermesNode.loadFrom. */
  importSnapshot(records: Uint8Array, fromKeptState = false): void {
    const used = this.replica.installSnapshotRecords(records, 0, records.length, this.#clock(), fromKeptState);
    if (used !== records.length)
      throw new Error(`snapshot chunk refused: ${used < 0 ? `bad record (${-used})` : "a record cut short"}`);
    this.#flushNetwork();
  }

  finishJoin(): void {
    // What the join loaded is on this node's disk before it serves from it (any mode): a node that
    // served a key must be able to give it back after a crash of every member.
    this.#journal?.syncNow(this.#clock());
    this.replica.finishJoin(this.#clock());
    this.#releaseHeld();
    this.#flushNetwork();
    this.#links?.flush();
  }

  /**
   * Log every install from now on (the replica is recovered): frames leave only once the log
   * allows it (see shard-journal.ts), and updates are refused once it failed.
   */
  attachJournal(journal: ShardJournal): void {
    assert(this.#journal === null, "a shard's journal is attached once");
    this.#journal = journal;
    journal.onFailure = (code) => this.board.setDiskFailure(code);
  }

  get journal(): ShardJournal | null {
    return this.#journal;
  }

  /** Start taking ops from the node's other shard workers and forwarding theirs to them. */
  connectPeers(rings: PeerRings): void {
    assert(this.#links === null, "peer rings are connected once");
    this.#links = new PeerLinks(this.init.shardIndex, rings, this.init.opsInFlightMax, this.#onForwarded);
  }

  /** Drive `part` from this loop (once: the browse service of this worker's HTTP server). */
  attachPart(part: ShardLoopPart): void {
    assert(this.#part === null, "one loop part per shard");
    this.#part = part;
  }

  /** Shard `peer`'s worker died: answer what went to it, send it nothing more. */
  peerFailed(peer: number): void {
    this.#links?.peerFailed(peer);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    // Every op gets its answer: the replica answers its own (Unknown for started updates), the
    // other workers get theirs through the rings, and ops this worker forwarded are Unknown.
    this.replica.stop();
    this.#journal?.close();
    this.#releaseHeld();
    this.#links?.flush();
    this.#links?.stop();
    this.transport.close();
    this.#wake();
  }

  // Client ops -------------------------------------------------------------------------------

  /**
   * An op of this thread's HTTP server for this shard, straight into the replica at `nowMs`.
   * Returns the result itself when the replica answers at once (a read of a Valid key), else a
   * promise of it; Busy when the shard holds opsInFlightMax client ops.
   */
  submitLocal(
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    nowMs: number,
  ): OpResult | Promise<OpResult> {
    return this.submitLocalKey(kind, key, null, 0, 0, value, expectedVersion, expectedWriter, by, nowMs);
  }

  /**
   * submitLocal() with the key's UTF-8 bytes `keyBytes[keyAt..keyAt+keyLength)` when the caller
   * holds them (a binary batch): the replica looks them up in place rather than encode `key`.
   * Null: `key` is encoded. The bytes must not change until the op's result.
   */
  submitLocalKey(
    kind: OpKind,
    key: string,
    keyBytes: Uint8Array | null,
    keyAt: number,
    keyLength: number,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    nowMs: number,
  ): OpResult | Promise<OpResult> {
    const slot = this.clientOps.beginLocal();
    if (slot < 0) return busyResult;
    this.#submitClientOp(
      slot,
      kind,
      key,
      keyBytes,
      keyAt,
      keyLength,
      value,
      expectedVersion,
      expectedWriter,
      by,
      nowMs,
    );
    const result = this.clientOps.endLocal(slot);
    // An update left INVs in the frame builders: have them sent in this event-loop turn. An op that
    // waits (for its peers, a VAL, a lease) needs the loop's timers at their short period.
    if (this.#dirtyPeers.length > 0 || result instanceof Promise) this.requestTurn();
    return result;
  }

  /** An op of this thread's HTTP server for another shard of this node: over the rings to its worker. */
  forward(
    shard: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
  ): OpResult | Promise<OpResult> {
    const links = this.#links;
    assert(links !== null, "forward before the peer rings are connected");
    const result = links.forward(shard, kind, key, value, expectedVersion, expectedWriter, by);
    this.requestTurn();
    return result;
  }

  /**
   * Run a loop turn soon: after this event-loop turn's I/O callbacks (setImmediate), so that the
   * HTTP requests that arrived together are published in one batch. A busy loop runs one anyway.
   */
  requestTurn(): void {
    if (this.#turnRequested) return;
    this.#turnRequested = true;
    if (this.#idleWake !== null) setImmediate(this.#wake);
  }

  // The loop ---------------------------------------------------------------------------------

  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * One loop turn at time `nowMs`: take up to requestBatchMax ops forwarded by each other shard
   * worker and the answers to this worker's forwards, every received frame from the transport,
   * let the bench clients issue, tick the replica's timers (at most every tickEveryMs), then send
   * what the core produced (one frame per peer where it fits) and publish the ring records.
   * Returns the work done (ops, answers, frames and bench ops taken); 0 means the shard is idle.
   * Never blocks, never allocates per message.
   */
  turn(nowMs: number): number {
    assert(!this.#stopped, "turn() after stop()");
    this.loopTurns++;
    this.#turnRequested = false;
    this.#now = nowMs;
    const links = this.#links;
    // First: it decides whether the replica reports changes in this turn (a stream may have just opened).
    let work = this.#part === null ? 0 : this.#part.turn();
    work += links === null ? 0 : links.drainRequests(requestBatchMax) + links.drainCompletions(completionBatchMax);
    work += this.transport.poll(this.#onFrame);
    if (this.bench !== null) work += this.bench.issue(this.replica, nowMs, benchOpIdBase);
    if (nowMs - this.#lastTickMs >= tickEveryMs) {
      this.replica.tick(nowMs);
      this.#lastTickMs = nowMs;
      this.board.setShardRow(this.init.shardIndex, this.replica.keyCount, this.clientOps.inFlight);
    }
    if (this.#liveness?.checkDue(nowMs)) this.#beat(this.#liveness, nowMs);
    this.#journal?.turn(nowMs);
    this.#flushNetwork();
    links?.flush();
    this.#part?.flush();
    return work;
  }

  /** Runs turns until stop(). Yields to the event loop every turn so that socket callbacks (HTTP, transport) run. */
  async run(): Promise<void> {
    const waits = this.#waits;
    while (!this.#stopped) {
      if (this.turn(this.#clock()) === 0 && !this.#turnRequested) {
        this.idleWaits++;
        // Sleep until the network, another worker's ring, this thread's HTTP server (requestTurn)
        // or the idle timer says there is something to do. Waits that outlive this turn (another
        // one won the race) stay pending and are reused by the next idle turn.
        waits.length = 0;
        // Heartbeats (the failure detector's) are due from a loop turn: never sleep past one.
        const quietMs = this.#liveness === null ? quietWaitMs : Math.min(quietWaitMs, this.#liveness.heartbeatMs);
        waits.push(this.transport.whenReadable(), this.#idleTimerWithin(this.#quiet() ? quietMs : idleWaitMs));
        this.#links?.waits(waits);
        this.#part?.waits(waits);
        waits.push(new Promise<void>((resolve) => (this.#idleWake = resolve)));
        await Promise.race(waits);
        this.#idleWake = null;
      } else {
        await yieldToEventLoop();
      }
    }
  }

  // Effects ----------------------------------------------------------------------------------

  /** Outbox.send: the key and value are lent by the core and copied into the peer's frame. */
  #send(
    to: NodeId,
    kind: MsgKind,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    const builder = this.#builders[to];
    if (builder === null || builder === undefined) return; // not (or no longer) a peer: like a lost message
    if (builder.isEmpty) {
      builder.senderEpoch = this.#epoch;
      this.#dirtyPeers.push(to);
    }
    if (builder.append(to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength))
      return;
    // The frame is full: send it and start the next one.
    this.#sendFrame(to, builder);
    builder.senderEpoch = this.#epoch;
    const fits = builder.append(
      to,
      kind,
      key,
      keyAt,
      keyLength,
      version,
      writer,
      epoch,
      rmw,
      value,
      valueAt,
      valueLength,
    );
    assert(fits, "one message always fits an empty frame (valueBytesMax is capped by the frame size)");
  }

  /**
   * An empty frame to every member, and every probe we hear, that got nothing from us for a
   * heartbeat (so a peer hears us whatever the load); silent links dialled again; the times shared.
   */
  #beat(liveness: PeerLiveness, nowMs: number): void {
    let sent = 0;
    for (let id = 0; id <= nodeIdMax; id++) {
      const member = this.#builders[id] ?? null;
      const builder = member ?? this.#probes[id] ?? null;
      if (builder === null || !builder.isEmpty || !liveness.heartbeatDue(id, member !== null, nowMs)) continue;
      builder.senderEpoch = this.#epoch;
      this.#sendFrame(id, builder);
      sent++;
    }
    liveness.heartbeatsSent += sent;
    if (sent > 0) this.transport.flush();
    for (const { id, address } of liveness.redialsDue(nowMs)) {
      this.transport.disconnect(id);
      this.transport.connect(id, address);
    }
    liveness.share();
  }

  #sendFrame(to: NodeId, builder: FrameBuilder): void {
    // Durability: no frame leaves before what this shard installed is on disk (the ACKs in it
    // depend on it); a failed log releases nothing any more.
    if (this.#journal !== null && !this.#journal.releaseFrames(this.#now)) {
      builder.reset();
      return;
    }
    this.#liveness?.sent(to, this.#now);
    // The transport copies the frame, so the builder can be reused at once. A refused frame (no
    // credit) is dropped: the protocol's retransmissions and replays make up for it.
    if (!this.transport.send(to, builder.finish())) this.framesRefused++;
    builder.reset();
  }

  #flushNetwork(): void {
    const dirty = this.#dirtyPeers;
    if (dirty.length === 0) return;
    for (let i = 0; i < dirty.length; i++) {
      const builder = this.#builders[dirty[i]!];
      if (builder !== null && builder !== undefined && !builder.isEmpty) this.#sendFrame(dirty[i]!, builder);
    }
    dirty.length = 0;
    this.transport.flush();
  }

  stats(numa: ShardStats["numa"]): ShardStats {
    const wire: Record<string, number> = {};
    for (const [key, value] of Object.entries(this.decoder.stats)) if (typeof value === "number") wire[key] = value;
    wire.framesDropped = this.decoder.stats.framesDropped;
    return {
      keys: this.replica.keyCount,
      opsInFlight: this.replica.opsInFlight,
      epoch: this.replica.epoch,
      counters: {
        ...this.replica.counters,
        framesRefused: this.framesRefused,
        loopTurns: this.loopTurns,
        idleWaits: this.idleWaits,
        heartbeatsSent: this.#liveness?.heartbeatsSent ?? 0,
        redials: this.#liveness?.redials ?? 0,
        opsForwardedOut: this.#links?.forwardedOut ?? 0,
        opsForwardedIn: this.#links?.forwardedIn ?? 0,
      },
      transport: { ...this.transport.stats() },
      wire,
      numa,
      bench: this.bench?.stats() ?? null,
      durability: this.#journal?.stats() ?? null,
    };
  }
}

/**
 * setImmediate as a promise: lets I/O callbacks (socket reads) run between loop turns. Measured
 * here with `hermes-kv bench -M 3` (3 replicas on 2 cores): a timer yield (Bun sleeps ~1 ms for
 * setTimeout 0) or Bun.sleep(0) did worse than setImmediate once INV retransmission backs off.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
