// The Hermes replica: one shard of one node as a pure, deterministic state machine.
//
// Inputs are method calls, most carrying the current time as a number: `submit` (client op),
// `receive` (protocol message), `tick`, `setMembership`, `setLease`, `stop`, and the rejoin sequence
// `beginJoin`, `installSnapshotEntry` (once per entry), `finishJoin`. Outputs go, during the call, to
// the Outbox (messages) and Completions (client answers). `snapshot` (a joiner's state transfer),
// `inspect`, `keys`, the counters and getters only read. `checkInvariants` checks the whole state;
// the simulator and the scenario tests call it after every step. There is no I/O, clock, timer or
// randomness here, so the simulator drives exactly the code the workers run.
//
// Rules follow the TLA+ spec HermesRMWs.tla (see shared/hermes-protocol.md):
// - writes only from Valid (the spec, not the C code's write-from-Invalid optimisation), RMWs only
//   from Valid, one own pending update per key; later ops wait in a bounded per-key FIFO;
// - writes add 2 to the version, RMWs add 1; a follower adopts an INV with a higher ts and ACKs
//   it, ACKs an equal one, and answers a lower one with a Reject carrying its own state (for a
//   write the Reject also counts as its ACK, so writes still never abort);
// - a coordinator whose pending RMW sees a higher ts aborts it, but the client hears the abort only
//   once the abort is final: when the key is Valid again locally at a higher ts (pitfall §12.1);
// - INV, ACK and Reject must carry the current epoch; on an epoch change every ACK set is reset and
//   every pending update is re-sent in the new epoch (HCoordWriteReplay, the 2024 ACK-reset fix);
// - a key stuck Invalid longer than mltMs, or whose last writer left the membership, is replayed by
//   this node with the same ts and value (HFollowerWriteReplay);
// - reads are served only in Valid while the lease is valid (checked at the moment of answering);
// - a replica that loses its lease (beginJoin) answers every client op it holds, and what it holds
//   unsettled becomes stale: it may have lost an RMW race while the others went on without it, so
//   it spreads nothing of it again (no re-send, replay or Reject in a later epoch) until the join
//   loads the cluster's state or a live update replaces it (found by the simulator's rejoins).

import { assert, AssertionError } from "../base/assert.ts";
import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import { KeyRecord } from "./key-record.ts";
import { DeadlineQueue, Op, OpPool } from "./op.ts";
import { compareTs } from "../base/timestamp.ts";
import { KeyState, type Completions, type Outbox, type Probe, type ReplicaConfig } from "./types.ts";
import { MsgKind, OpKind, OpStatus } from "../base/kinds.ts";
import { nodeIdMax, type Epoch, type NodeId } from "../base/ids.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** The retransmission wait grows up to this multiple of retransmitMs. */
const retransmitBackoffMax = 32;

/** `id` is a node id 0..nodeIdMax: three asserts of one condition each, all with the sentence `why`. */
function assertIsNodeId(id: number, why: string): void {
  assert(Number.isInteger(id), why);
  assert(id >= 0, why);
  assert(id <= nodeIdMax, why);
}

export interface ReplicaCounters {
  invsSent: number;
  invsRetransmitted: number;
  replaysStarted: number;
  rmwAborts: number;
  staleEpochMessages: number;
  /** ACKs in the current epoch from a node outside its view: dropped. */
  foreignAcks: number;
  readsServed: number;
  updatesCommitted: number;
}

export class Replica {
  readonly config: ReplicaConfig;
  readonly self: NodeId;
  readonly #outbox: Outbox;
  readonly #completions: Completions;
  readonly #probe: Probe | null;

  readonly #keys = new Map<string, KeyRecord>();
  /** Keys not Valid (pending own update, Invalid, Trans): the only ones tick and epoch changes visit. */
  readonly #unsettled = new Set<KeyRecord>();
  /** Keys with waiting ops. */
  readonly #waitingKeys = new Set<KeyRecord>();
  readonly #pool: OpPool;
  readonly #deadlines: DeadlineQueue;

  #epoch: Epoch = 0;
  #membersMask = 0;
  /** Other members, for broadcasts. */
  #others: NodeId[] = [];
  #othersMask = 0;
  #member = false;
  #leaseUntilMs = 0;
  #stopped = false;
  /** Rejoining after a restart: takes part in INVs but serves nothing until its state is loaded. */
  #joining = false;

  readonly counters: ReplicaCounters = {
    invsSent: 0,
    invsRetransmitted: 0,
    replaysStarted: 0,
    rmwAborts: 0,
    staleEpochMessages: 0,
    foreignAcks: 0,
    readsServed: 0,
    updatesCommitted: 0,
  };

  constructor(config: ReplicaConfig, outbox: Outbox, completions: Completions, probe: Probe | null = null) {
    assertIsNodeId(config.self, "self is a node id 0..31");
    assert(config.retransmitMs > 0, "retransmitMs is positive");
    assert(config.mltMs > 0, "mltMs is positive");
    assert(config.opTimeoutMs > 0, "opTimeoutMs is positive");
    assert(config.keyQueueMax > 0, "keyQueueMax is positive");
    assert(config.keysMax > 0, "keysMax is positive");
    this.config = config;
    this.self = config.self;
    this.#outbox = outbox;
    this.#completions = completions;
    this.#probe = probe;
    this.#pool = new OpPool(config.opsMax);
    this.#deadlines = new DeadlineQueue(config.opsMax);
  }

  // ---------------------------------------------------------------------------------------------
  // Introspection (status, metrics, oracles)

  get epoch(): Epoch {
    return this.#epoch;
  }
  get isMember(): boolean {
    return this.#member && !this.#stopped;
  }
  get joining(): boolean {
    return this.#joining;
  }
  get keyCount(): number {
    return this.#keys.size;
  }
  /** Keys with an update in flight (pending own update, Invalid, Trans). */
  get unsettledCount(): number {
    return this.#unsettled.size;
  }
  get opsInFlight(): number {
    return this.#pool.live;
  }
  leaseValid(nowMs: number): boolean {
    return nowMs < this.#leaseUntilMs;
  }
  /** Read-only view of a key's metadata for oracles and tests; undefined if never touched. */
  inspect(key: string): Readonly<KeyRecord> | undefined {
    return this.#keys.get(key);
  }
  keys(): IterableIterator<Readonly<KeyRecord>> {
    return this.#keys.values();
  }

  /**
   * Check the whole state; throws AssertionError naming this node and the key. O(keys + ops), for
   * tests: the simulator and ManualCluster call it after every step. Structural invariants
   * only: the protocol's safety rules are the simulator's oracles, which the mutants must trip.
   */
  checkInvariants(): void {
    let rec: KeyRecord | null = null;
    try {
      this.#checkMembership();
      let unsettled = 0;
      let waitingKeys = 0;
      let liveOps = 0;
      for (const r of this.#keys.values()) {
        rec = r;
        assert(this.#keys.get(r.key) === r, "a key record is filed under its own key");
        this.#checkKey(r);
        if (r.state !== KeyState.Valid) unsettled++;
        if (r.waiting.length > 0) waitingKeys++;
        liveOps += r.waiting.length;
        if (r.pendingOp !== null) liveOps++;
      }
      rec = null;
      // With the per-key membership checks in #checkKey, equal sizes make the sets exactly these keys.
      assert(this.#unsettled.size === unsettled, "the unsettled set holds exactly the keys that are not Valid");
      assert(this.#waitingKeys.size === waitingKeys, "the waiting-keys set holds exactly the keys with waiting ops");
      this.#pool.checkInvariants();
      assert(
        this.#pool.live === liveOps,
        "every live op is waiting on its key or is its key's pending op (none leaks, none is lost)",
      );
      assert(
        this.#deadlines.checkInvariants() === liveOps,
        "every live op has exactly one deadline entry (so every op times out)",
      );
      if (!this.#member || this.#stopped || this.#joining) {
        assert(liveOps === 0, "a replica that serves no one (not a member, stopped or joining) holds no client op");
      }
    } catch (error) {
      if (!(error instanceof AssertionError)) throw error;
      throw new AssertionError(
        `replica ${this.self}${rec === null ? "" : ` key ${JSON.stringify(rec.key)}`}: ${error.message}`,
      );
    }
  }

  #checkMembership(): void {
    const selfBit = 1 << this.self;
    assert(Number.isInteger(this.#epoch), "the epoch is an integer");
    assert(this.#epoch >= 0, "the epoch is not negative");
    assert(this.#member === ((this.#membersMask & selfBit) !== 0), "a replica is a member iff its view includes it");
    assert(this.#othersMask === (this.#membersMask & ~selfBit), "the others are the view's members but this replica");
    let mask = 0;
    let previous = -1;
    for (const id of this.#others) {
      assert(id > previous, "the others are listed once each, in ascending order");
      mask |= 1 << id;
      previous = id;
    }
    assert(mask === this.#othersMask, "the list of others (broadcasts) matches the mask of others (ACK sets)");
  }

  #checkKey(rec: KeyRecord): void {
    const config = this.config;
    const state = rec.state;
    assertIsNodeId(rec.writer, "a timestamp's writer is a node id");
    assertIsNodeId(rec.lastWriter, "the last writer is a node id");
    assert(Number.isSafeInteger(rec.version), "a timestamp's version is an integer");
    assert(rec.version >= 0, "versions start at 0");
    if (rec.version === 0) {
      // Every update adds at least 1: nothing was ever installed.
      assert(rec.writer === 0, "version 0 is only the initial timestamp 0.0");
      assert(rec.value === null, "at the initial timestamp 0.0 the key is absent");
      assert(state === KeyState.Valid, "at the initial timestamp 0.0 the key is Valid");
    }
    const pendingState = state === KeyState.Write || state === KeyState.Replay || state === KeyState.Trans;
    assert(
      pendingState || state === KeyState.Valid || state === KeyState.Invalid,
      "the state is one of Valid, Invalid, Trans, Write, Replay",
    );
    assert(rec.hasPending() === pendingState, "a key has a pending update iff its state is Write, Replay or Trans");
    assert(
      this.#unsettled.has(rec) === (state !== KeyState.Valid),
      "a key is in the unsettled set iff it is not Valid",
    );
    assert(
      this.#waitingKeys.has(rec) === rec.waiting.length > 0,
      "a key is in the waiting-keys set iff ops wait on it",
    );
    if (rec.stale) {
      assert(this.#joining, "a key is stale only while its replica joins (finishJoin ends it)");
      assert(state === KeyState.Invalid, "a stale key is Invalid (what it holds is not known committed)");
    }
    if (rec.hasPending()) this.#checkPending(rec);
    else {
      assert(rec.pendingOp === null, "a client op is attached only to a pending update");
      assert(rec.acks === 0, "ACKs are kept only for a pending update");
      assert(rec.pendingValue === null, "a pending value is kept only for a pending update");
    }
    // The queue is checked before an op joins it; an aborted RMW moves from pending to the front of
    // the queue, so waiting plus pending stays within keyQueueMax + 1 (a full queue may hold one more).
    const pendingOps = rec.pendingOp === null ? 0 : 1;
    assert(
      rec.waiting.length + pendingOps <= config.keyQueueMax + 1,
      "a key holds at most keyQueueMax waiting ops besides the one in flight",
    );
    for (let i = 0; i < rec.waiting.length; i++) {
      const op = rec.waiting[i]!;
      assert(!op.done, "a waiting op has not been answered");
      assert(op.key === rec.key, "an op waits on its own key");
      // Only an aborted RMW, put back at the front, was issued; nothing is ever put in front of it.
      if (op.issued) assert(i === 0, "only the front op of a key queue may have been issued (an aborted RMW)");
      if (op.issued) assert(op.kind !== OpKind.Read, "a read is never issued");
    }
  }

  #checkPending(rec: KeyRecord): void {
    const config = this.config;
    const state = rec.state;
    assertIsNodeId(rec.pendingWriter, "a pending update's writer is a node id");
    assert(rec.pendingVersion > 0, "a pending update's version is above the initial 0");
    assert((rec.acks & (1 << this.self)) === 0, "a replica never ACKs its own update");
    assert(rec.retransmitWaitMs >= config.retransmitMs, "the retransmission wait starts at retransmitMs");
    assert(rec.retransmitWaitMs <= config.retransmitMs * retransmitBackoffMax, "the retransmission wait is capped");
    if (state === KeyState.Write || state === KeyState.Trans) {
      assert(rec.pendingWriter === this.self, "in W and Trans the pending update is this replica's own");
    } else {
      assert(rec.pendingOp === null, "a replay has no client op");
    }
    if (state === KeyState.Trans) {
      const order = compareTs(rec.version, rec.writer, rec.pendingVersion, rec.pendingWriter);
      assert(order > 0, "in Trans the key holds a higher timestamp than the pending update");
    } else {
      assert(rec.version === rec.pendingVersion, "in W and R the key holds the pending update's timestamp (version)");
      assert(rec.writer === rec.pendingWriter, "in W and R the key holds the pending update's timestamp (writer)");
      assert(rec.value === rec.pendingValue, "in W and R the key holds the pending update's value");
      assert(rec.rmw === rec.pendingRmw, "in W and R the key holds the pending update's RMW flag");
      assert(rec.lastWriter === this.self, "in W and R this replica sent the INVs of the current timestamp");
    }
    if (rec.pendingOp !== null) {
      assert(!rec.pendingOp.done, "a pending update's op has not been answered");
      assert(rec.pendingOp.issued, "a pending update's op has been issued");
      assert(rec.pendingOp.key === rec.key, "a pending update's op is on its key");
      assert(rec.pendingOp.kind !== OpKind.Read, "a read never starts an update");
    }
    if (this.#member && !this.#stopped) {
      // A membership change re-sends every pending update in the new epoch with an empty ACK set.
      assert(rec.writeEpoch === this.#epoch, "a member's pending updates belong to the current epoch");
      // #maybeFinishPending runs after every ACK and every membership change.
      assert((rec.acks & this.#othersMask) !== this.#othersMask, "a pending update with every ACK is finished at once");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Membership and lease

  /**
   * Install a membership view from the RM. Views with an epoch not above the current are ignored
   * (duplicates and stale deliveries). The members list includes this node if it is a member.
   */
  setMembership(epoch: Epoch, members: readonly NodeId[], nowMs: number): void {
    if (epoch <= this.#epoch || this.#stopped) return;
    // A joining replica may have been out of the views in between (removed, then added again): what
    // it took while joining and holds unsettled may have been superseded too (see beginJoin).
    if (this.#joining && this.distrustsKeptUpdatesOnJoin()) for (const rec of this.#unsettled) this.#makeStale(rec);
    this.#epoch = epoch;
    let mask = 0;
    for (const id of members) {
      assertIsNodeId(id, "member ids are node ids 0..31");
      mask |= 1 << id;
    }
    this.#membersMask = mask;
    this.#others = members.filter((id) => id !== this.self).sort((a, b) => a - b);
    this.#othersMask = mask & ~(1 << this.self);
    const wasMember = this.#member;
    this.#member = (mask & (1 << this.self)) !== 0;
    if (!this.#member) {
      // Outside the membership: stop serving. Updates in flight may still commit through others'
      // replays, so their clients hear Unknown; waiting ops never started.
      if (wasMember) this.#abandonAll();
      return;
    }
    for (const rec of this.#unsettled) {
      if (rec.hasPending()) {
        // HCoordWriteReplay: the ACKs gathered in the old epoch no longer count (2024 fix).
        this.resetAcksOnEpochChange(rec);
        rec.writeEpoch = epoch;
        this.#broadcastInv(rec, nowMs);
        this.#maybeFinishPending(rec, nowMs);
      } else if (rec.state === KeyState.Invalid && !rec.stale && !this.#isMemberId(rec.lastWriter)) {
        this.#startReplay(rec, nowMs);
      }
    }
    this.#serveWaitingKeys(nowMs);
  }

  /** The lease deadline on the caller's clock (the same clock as every nowMs). */
  setLease(leaseUntilMs: number, nowMs: number): void {
    const wasValid = this.leaseValid(nowMs);
    this.#leaseUntilMs = leaseUntilMs;
    if (!wasValid && this.leaseValid(nowMs)) this.#serveWaitingKeys(nowMs);
  }

  /** Shut down: answer everything (Unknown for started updates, Unavailable otherwise). Needs no time: nothing is sent. */
  stop(): void {
    if (this.#stopped) return;
    this.#abandonAll();
    this.#stopped = true;
  }

  // ---------------------------------------------------------------------------------------------
  // Rejoin with state transfer (pitfall §12.5). A restarted node has lost its state. It joins the
  // membership first and takes part in INVs from then on (so it cannot miss a new update), then
  // installs every key's (ts, value) from a live member that has installed the epoch that added it
  // (so that member holds every update committed before), keeping the higher ts per key, and only
  // then serves.

  /**
   * Enter joining mode: answer no client op until finishJoin(). A fresh replica starts empty; one
   * that lost its lease keeps its entries (they are merged with the loaded ones, the higher ts
   * winning, so stale entries are replaced and nothing committed is lost).
   */
  beginJoin(): void {
    this.#joining = true;
    // A replica that lost its lease may have been removed, and others may then commit its pending
    // updates without it (a replay of its INV): its clients hear Unknown now, and nothing of theirs
    // is retried later (a retried RMW would apply twice).
    if (this.abandonsOpsOnJoin()) this.#abandonAll();
    // Or the others may have committed without it a lower update of the same version (the same
    // base, a lower tie-breaker), and what it holds unsettled is then an RMW that lost its race:
    // re-sent, replayed or sent in a Reject in the new epoch, its higher ts would win and commit it
    // too (two RMWs from one base: a lost update). So every unsettled key drops its own pending
    // update and is stale: it spreads nothing until an update of the same version replaces it (a
    // live INV or a loaded entry, even with a lower tie-breaker), a higher one is adopted, or the
    // join ends (then nothing of that version committed without it: it settles as usual).
    if (this.distrustsKeptUpdatesOnJoin()) for (const rec of this.#unsettled) this.#makeStale(rec);
  }

  #makeStale(rec: KeyRecord): void {
    if (rec.hasPending()) {
      const op = rec.pendingOp;
      rec.clearPending();
      if (op !== null) {
        // Only a replica that keeps its ops through a lease loss (the mutation tests') has one: it
        // goes back to the front of the queue, as after an abort.
        rec.waiting.unshift(op);
        this.#waitingKeys.add(rec);
      }
    }
    rec.state = KeyState.Invalid;
    if (!rec.stale) rec.staleEpoch = this.#epoch;
    rec.stale = true;
  }

  /**
   * A live INV meets a stale key: true if it is taken (a higher ts; or the same version, even with
   * a lower tie-breaker: it may be the commit the stale update lost to) or is the same update (it
   * is live: no longer stale); false for a lower version, which says nothing about it.
   */
  #liveUpdateMeetsStale(
    rec: KeyRecord,
    from: NodeId,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): boolean {
    assert(rec.stale, "only a stale key is met this way");
    const order = compareTs(version, writer, rec.version, rec.writer);
    if (order > 0) this.#adopt(rec, from, version, writer, rmw, value, nowMs);
    else if (order < 0 && version < rec.version) return false;
    else if (order < 0) this.#replaceStale(rec, from, version, writer, rmw, value, nowMs);
    rec.stale = false;
    rec.invalidSinceMs = nowMs;
    return true;
  }

  /** A stale key takes an update of its own version with a lower tie-breaker (see beginJoin). */
  #replaceStale(
    rec: KeyRecord,
    from: NodeId,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): void {
    assert(rec.stale, "only a stale key is replaced by a lower timestamp");
    assert(version === rec.version, "a stale key is replaced only by an update of its version");
    assert(rec.state === KeyState.Invalid, "a stale key is Invalid");
    rec.version = version;
    rec.writer = writer;
    rec.value = value === null ? null : value.slice();
    rec.rmw = rmw;
    rec.lastWriter = from;
    rec.invalidSinceMs = nowMs;
  }

  /**
   * One entry of a live member's snapshot. `committed` says the source held it Valid (the ts is
   * committed); otherwise it is installed Invalid and settles by VAL or replay like any INV.
   * `fromKeptState`: the source is not a serving member but one that kept its state through a lease
   * loss (a merge when no member serves). A serving source holds every committed update, so an
   * entry of its own version replaces a stale key even when not known committed; a kept state does
   * not, so then only a committed one does (two uncommitted same-version RMWs: the higher ts stays,
   * as in any race; see the residual case in docs/benchmarks.md, Simulation).
   */
  installSnapshotEntry(
    key: string,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    committed: boolean,
    nowMs: number,
    fromKeptState = false,
  ): void {
    assert(this.#joining, "snapshots are installed only while joining");
    assertIsNodeId(writer, "a snapshot entry's writer is a node id 0..31");
    assert(Number.isSafeInteger(version), "a snapshot entry's version is an integer");
    assert(version >= 0, "a snapshot entry's version is not negative");
    const rec = this.#keys.get(key) ?? this.#record(key);
    const order = compareTs(version, writer, rec.version, rec.writer);
    let taken = false;
    if (order > 0) {
      // A committed value of this version is known here: an uncommitted RMW of the same version,
      // kept by the source, lost its race to it (see beginJoin) and must not replace it.
      if (!committed && rmw && version === rec.version && rec.state === KeyState.Valid) return;
      this.#adopt(rec, writer, version, writer, rmw, value, nowMs);
      taken = true;
    } else if (order < 0 && rec.stale && version === rec.version && (committed || !fromKeptState)) {
      // What was kept unsettled gives way to an entry of its version even with a lower ts.
      this.#replaceStale(rec, writer, version, writer, rmw, value, nowMs);
      taken = true;
    } else if (order < 0) {
      return;
    }
    if (committed) {
      if (rec.state === KeyState.Invalid) this.#validate(rec, nowMs);
    } else if (taken && rec.state === KeyState.Invalid) {
      // Loaded, not known committed, possibly from a source's kept state: stale like our own.
      rec.stale = true;
      rec.staleEpoch = -1;
    }
  }

  /** State loaded: serve from now on. A key still stale was superseded by nothing loaded: it settles as any Invalid key. */
  finishJoin(nowMs: number): void {
    for (const rec of this.#unsettled) {
      if (!rec.stale) continue;
      rec.stale = false;
      rec.invalidSinceMs = nowMs;
    }
    this.#joining = false;
    this.#serveWaitingKeys(nowMs);
  }

  /** This replica's entries for a joiner, in chunks of at most `entriesMax`. */
  *snapshot(entriesMax: number): Generator<SnapshotEntry[]> {
    let chunk: SnapshotEntry[] = [];
    for (const rec of this.#keys.values()) {
      chunk.push({
        key: rec.key,
        version: rec.version,
        writer: rec.writer,
        rmw: rec.rmw,
        value: rec.value,
        committed: rec.state === KeyState.Valid,
      });
      if (chunk.length >= entriesMax) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  // ---------------------------------------------------------------------------------------------
  // Client ops

  /**
   * Submit a client op. `value` is owned by the replica from now on. Exactly one completion with
   * `opId` follows, possibly during this call.
   */
  submit(
    opId: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    nowMs: number,
  ): void {
    if (this.#stopped || !this.#member || this.#joining) {
      this.#completions.complete(opId, OpStatus.Unavailable, null, 0, 0);
      return;
    }
    if (kind === OpKind.Read) {
      const rec = this.#keys.get(key);
      if (rec === undefined) {
        // Never touched here: Valid and absent at (0, 0), since no INV for it ever arrived.
        if (this.leaseValid(nowMs)) {
          this.counters.readsServed++;
          this.#completions.complete(opId, OpStatus.Ok, null, 0, 0);
        } else if (this.#keys.size >= this.config.keysMax) {
          this.#completions.complete(opId, OpStatus.Busy, null, 0, 0);
        } else {
          this.#enqueue(this.#record(key), opId, kind, key, value, expectedVersion, expectedWriter, by, nowMs);
        }
        return;
      }
      if (rec.waiting.length === 0 && this.readable(rec, nowMs)) {
        this.counters.readsServed++;
        this.#completions.complete(opId, OpStatus.Ok, rec.value, rec.version, rec.writer);
        return;
      }
      this.#enqueue(rec, opId, kind, key, value, expectedVersion, expectedWriter, by, nowMs);
      return;
    }
    let rec = this.#keys.get(key);
    if (rec === undefined) {
      if (this.#keys.size >= this.config.keysMax) {
        this.#completions.complete(opId, OpStatus.StoreFull, null, 0, 0);
        return;
      }
      rec = this.#record(key);
    }
    this.#enqueue(rec, opId, kind, key, value, expectedVersion, expectedWriter, by, nowMs);
  }

  #enqueue(
    rec: KeyRecord,
    opId: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: NodeId,
    by: number,
    nowMs: number,
  ): void {
    if (rec.waiting.length >= this.config.keyQueueMax) {
      this.#completions.complete(opId, OpStatus.Busy, null, 0, 0);
      return;
    }
    const op = this.#pool.take();
    if (op === null) {
      this.#completions.complete(opId, OpStatus.Busy, null, 0, 0);
      return;
    }
    op.id = opId;
    op.kind = kind;
    op.key = key;
    op.value = value;
    op.expectedVersion = expectedVersion;
    op.expectedWriter = expectedWriter;
    op.by = by;
    op.deadlineMs = nowMs + this.config.opTimeoutMs;
    this.#deadlines.push(op);
    rec.waiting.push(op);
    this.#waitingKeys.add(rec);
    this.#serveKey(rec, nowMs);
  }

  /** Run the waiting ops of a key as far as its state and the lease allow. */
  #serveKey(rec: KeyRecord, nowMs: number): void {
    while (rec.waiting.length > 0) {
      const op = rec.waiting[0]!;
      if (op.kind === OpKind.Read) {
        if (!this.readable(rec, nowMs)) break;
        rec.waiting.shift();
        this.counters.readsServed++;
        this.#answer(op, OpStatus.Ok, rec.value, rec.version, rec.writer);
        continue;
      }
      if (rec.state !== KeyState.Valid || !this.leaseValid(nowMs)) break;
      rec.waiting.shift();
      this.#startUpdate(rec, op, nowMs);
      // The update either finished at once (precondition failed, or no other members) or the key
      // now has a pending update: the rest waits for it.
    }
    if (rec.waiting.length === 0) {
      this.#waitingKeys.delete(rec);
    } else if (rec.state === KeyState.Invalid && !rec.stale && !this.#isMemberId(rec.lastWriter)) {
      // An op finding the key Invalid with its writer gone replays the update (the table's A_BR).
      this.#startReplay(rec, nowMs);
    }
  }

  #serveWaitingKeys(nowMs: number): void {
    for (const rec of this.#waitingKeys) this.#serveKey(rec, nowMs);
  }

  /** Start a client update from Valid (writes, deletes and RMWs). */
  #startUpdate(rec: KeyRecord, op: Op, nowMs: number): void {
    assert(rec.state === KeyState.Valid, "updates start only from Valid");
    assert(!rec.hasPending(), "updates start with nothing pending (Valid holds no own update)");
    assert(op.kind !== OpKind.Read, "only updates start an update");
    let newValue: Uint8Array | null;
    let rmw: boolean;
    switch (op.kind) {
      case OpKind.Write:
        newValue = op.value;
        rmw = false;
        break;
      case OpKind.Delete:
        newValue = null;
        rmw = false;
        break;
      case OpKind.Cas:
        if (rec.version !== op.expectedVersion || rec.writer !== op.expectedWriter) {
          this.#answer(op, OpStatus.PreconditionFailed, null, rec.version, rec.writer);
          return;
        }
        newValue = op.value;
        rmw = true;
        break;
      case OpKind.Create:
        if (rec.value !== null) {
          this.#answer(op, OpStatus.PreconditionFailed, null, rec.version, rec.writer);
          return;
        }
        newValue = op.value;
        rmw = true;
        break;
      case OpKind.Incr: {
        if (op.retries > this.config.incrRetriesMax) {
          this.#answer(op, OpStatus.Aborted, null, rec.version, rec.writer);
          return;
        }
        const next = incremented(rec.value, op.by);
        if (next === null) {
          this.#answer(op, OpStatus.NotANumber, null, rec.version, rec.writer);
          return;
        }
        newValue = next;
        rmw = true;
        break;
      }
      default:
        throw new Error(`not an update: ${op.kind}`);
    }
    const baseVersion = rec.version;
    const baseWriter = rec.writer;
    // Writes +2, RMWs +1 (RMWs always enabled): a write beats any concurrent RMW from its base.
    rec.version = baseVersion + (rmw ? 1 : 2);
    rec.writer = this.self;
    rec.value = newValue;
    rec.rmw = rmw;
    rec.lastWriter = this.self;
    rec.state = KeyState.Write;
    rec.pendingVersion = rec.version;
    rec.pendingWriter = this.self;
    rec.pendingValue = newValue;
    rec.pendingRmw = rmw;
    rec.acks = 0;
    rec.writeEpoch = this.#epoch;
    rec.pendingOp = op;
    op.issued = true;
    this.#unsettled.add(rec);
    this.#probe?.issued(this.self, rec.key, rec.version, rec.writer, rmw, baseVersion, baseWriter);
    this.#broadcastInv(rec, nowMs);
    this.#maybeFinishPending(rec, nowMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Protocol messages

  /** A protocol message from `from`. `value` is borrowed: it is copied if kept. */
  receive(
    from: NodeId,
    kind: MsgKind,
    key: string,
    version: number,
    writer: NodeId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): void {
    assertIsNodeId(from, "a message comes from a node id 0..31");
    assert(from !== this.self, "a replica never sends to itself");
    assertIsNodeId(writer, "a timestamp's writer is a node id 0..31");
    assert(Number.isSafeInteger(version), "a timestamp's version is an integer");
    if (this.#stopped || !this.#member) return;
    // INV, ACK and Reject count only in the epoch they were sent in; VAL carries no epoch (spec).
    if (kind !== MsgKind.Val && !this.epochAccepted(epoch)) {
      this.counters.staleEpochMessages++;
      return;
    }
    switch (kind) {
      case MsgKind.Inv:
        return this.#onInv(from, key, version, writer, rmw, value, nowMs);
      case MsgKind.Ack:
        return this.#onAck(from, key, version, writer, epoch, nowMs);
      case MsgKind.Val:
        return this.#onVal(key, version, writer, nowMs);
      case MsgKind.Reject:
        return this.#onReject(from, key, version, writer, epoch, rmw, value, nowMs);
      default:
        throw new Error(`unknown message kind ${kind}`);
    }
  }

  #onInv(
    from: NodeId,
    key: string,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): void {
    // Every update adds at least 1 to a version that starts at 0.
    assert(version > 0, "an INV carries an update's timestamp, above the initial 0.0");
    const rec = this.#keys.get(key) ?? this.#record(key);
    if (rec.stale && rec.staleEpoch !== this.#epoch) {
      // A live update of the same version replaces a stale key even with a lower ts. A lower
      // version gets no answer until the join ends: a Reject with the stale state could spread a
      // lost RMW, and an ACK would claim a state this replica may not have (see beginJoin). In the
      // epoch in which the key went stale nothing committed without us: it answers as usual (its
      // Reject may be all that stops a lower RMW racing the one it holds, whose coordinator it may be).
      if (!this.#liveUpdateMeetsStale(rec, from, version, writer, rmw, value, nowMs)) return;
      this.#outbox.send(from, MsgKind.Ack, key, version, writer, this.#epoch, false, null);
      return;
    }
    const order = compareTs(version, writer, rec.version, rec.writer);
    if (order < 0 && this.rejectsLowerInv(rmw)) {
      // HRRcvRMWInv: a stale RMW gets this node's newer state instead of an ACK. We answer a stale
      // write the same way: its coordinator then learns of the higher update and finishes the
      // write in Trans, without VALs, so it never makes a superseded value readable. (With a plain
      // ACK it could validate its lower write while a higher RMW, computed from an older base,
      // is still in flight: the RMW would then overwrite a value that was read.)
      this.#outbox.send(from, MsgKind.Reject, key, rec.version, rec.writer, this.#epoch, rec.rmw, rec.value);
      return;
    }
    if (order === 0 && rec.state === KeyState.Write && rec.pendingRmw) {
      // Someone replays our own pending RMW. We do not ACK it: while we are a member, our RMW then
      // commits only through us, so when we see a higher ts we know it has not committed (and, as
      // we now hold the higher ts, never will in an epoch we belong to). Answering the client right
      // depends on this; we finish the RMW ourselves, since we are alive.
      return;
    }
    if (order > 0) this.#adopt(rec, from, version, writer, rmw, value, nowMs);
    else if (order === 0 && rec.state === KeyState.Invalid) rec.invalidSinceMs = nowMs; // the update is alive
    // Equal (a retransmission or a replay) or higher: ACK.
    this.#outbox.send(from, MsgKind.Ack, key, version, writer, this.#epoch, false, null);
  }

  #onReject(
    from: NodeId,
    key: string,
    version: number,
    writer: NodeId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): void {
    // The sender held a ts above an INV's, and every INV is above 0.0.
    assert(version > 0, "a Reject carries a timestamp above the initial 0.0");
    const rec = this.#keys.get(key);
    if (rec === undefined) return;
    // Treated like an INV with a higher ts (the spec's RINV), without an ACK back.
    if (compareTs(version, writer, rec.version, rec.writer) > 0)
      this.#adopt(rec, from, version, writer, rmw, value, nowMs);
    // For a pending write (not an RMW), the sender holds a ts above it, which is all an ACK of a
    // write says: count it. A pending RMW has been aborted by the adoption above.
    if (rec.hasPending() && !rec.pendingRmw && compareTs(version, writer, rec.pendingVersion, rec.pendingWriter) > 0) {
      this.#countAck(rec, from, epoch, nowMs);
    }
  }

  /** A_I: take a higher ts and its value; the state follows the spec's RMW rules. */
  #adopt(
    rec: KeyRecord,
    from: NodeId,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    nowMs: number,
  ): void {
    assert(compareTs(version, writer, rec.version, rec.writer) > 0, "a key adopts only a higher timestamp");
    assertIsNodeId(from, "the adopted update's sender is a node id 0..31");
    rec.version = version;
    rec.writer = writer;
    rec.value = value === null ? null : value.slice();
    rec.rmw = rmw;
    rec.lastWriter = from;
    rec.invalidSinceMs = nowMs;
    rec.stale = false;
    switch (rec.state) {
      case KeyState.Valid:
      case KeyState.Invalid:
        rec.state = KeyState.Invalid;
        break;
      case KeyState.Trans:
        break;
      case KeyState.Write:
        if (rec.pendingRmw && this.abortsOwnRmw()) {
          // The RMW lost. Its client waits until the abort is final (key Valid at a higher ts),
          // then the op is evaluated again from the front of the queue.
          this.counters.rmwAborts++;
          const op = rec.pendingOp;
          rec.clearPending();
          rec.state = KeyState.Invalid;
          if (op !== null) {
            op.retries++;
            rec.waiting.unshift(op);
            this.#waitingKeys.add(rec);
          }
        } else {
          rec.state = KeyState.Trans;
        }
        break;
      case KeyState.Replay:
        // The spec sends a replayer to invalid: the higher update supersedes the one replayed.
        rec.clearPending();
        rec.state = KeyState.Invalid;
        break;
    }
    this.#unsettled.add(rec);
  }

  #onAck(from: NodeId, key: string, version: number, writer: NodeId, epoch: Epoch, nowMs: number): void {
    assert(version > 0, "an ACK echoes an INV's timestamp, above the initial 0.0");
    const rec = this.#keys.get(key);
    if (rec === undefined || !rec.hasPending()) return;
    if (rec.pendingVersion !== version || rec.pendingWriter !== writer) return;
    this.#countAck(rec, from, epoch, nowMs);
  }

  #countAck(rec: KeyRecord, from: NodeId, epoch: Epoch, nowMs: number): void {
    assert(rec.hasPending(), "ACKs count only towards a pending update");
    assert(from !== this.self, "an ACK never comes from this replica itself");
    assertIsNodeId(from, "an ACK comes from a node id 0..31");
    // Each epoch names one view, and only its members send in it. An ACK that says otherwise comes
    // from a confused or hostile sender, not from a bug here, so it is dropped rather than asserted.
    if (epoch === this.#epoch && !this.#isMemberId(from)) {
      this.counters.foreignAcks++;
      return;
    }
    const bit = 1 << from;
    if ((rec.acks & bit) !== 0) return;
    rec.acks |= bit;
    this.#probe?.ackCounted(this.self, rec.key, from, epoch, this.#epoch);
    this.#maybeFinishPending(rec, nowMs);
  }

  #onVal(key: string, version: number, writer: NodeId, nowMs: number): void {
    assert(version > 0, "a VAL names a committed update's timestamp, above the initial 0.0");
    const rec = this.#keys.get(key);
    if (rec === undefined || rec.state === KeyState.Valid) return;
    if (rec.version !== version || rec.writer !== writer) return;
    // The current ts is committed. An own pending update is finished too: in Trans it is a lower
    // write linearized just before this one; in W or R someone replayed exactly it.
    if (rec.hasPending()) {
      const op = rec.pendingOp;
      const pendingVersion = rec.pendingVersion;
      const pendingWriter = rec.pendingWriter;
      const pendingValue = rec.pendingValue;
      rec.clearPending();
      if (op !== null) this.#answerUpdate(op, pendingVersion, pendingWriter, pendingValue);
    }
    this.#validate(rec, nowMs);
  }

  /** Finish the pending update if every other member has ACKed it in this epoch. */
  #maybeFinishPending(rec: KeyRecord, nowMs: number): void {
    if (!rec.hasPending() || (rec.acks & this.#othersMask) !== this.#othersMask) return;
    const op = rec.pendingOp;
    const version = rec.pendingVersion;
    const writer = rec.pendingWriter;
    const value = rec.pendingValue;
    rec.clearPending();
    this.counters.updatesCommitted++;
    if (rec.state === KeyState.Trans) {
      // A lower write finished while a higher one is in flight: no VAL (O1), the key stays Invalid.
      rec.state = KeyState.Invalid;
      rec.invalidSinceMs = nowMs;
      // Not a commit in the spec's sense (no VALs, never readable): it may be linearized before
      // concurrent updates, so the probe does not report it.
      if (op !== null) this.#answerUpdate(op, version, writer, value);
      this.#serveKey(rec, nowMs);
      return;
    }
    assert(rec.state === KeyState.Write || rec.state === KeyState.Replay, "a pending update not in Trans is in W or R");
    assert(rec.version === version, "in W or R the key holds the pending ts (version)");
    assert(rec.writer === writer, "in W or R the key holds the pending ts (writer)");
    this.#probe?.committed(this.self, rec.key, version, writer, rec.rmw);
    for (const to of this.#others) this.#outbox.send(to, MsgKind.Val, rec.key, version, writer, 0, false, null);
    if (op !== null) this.#answerUpdate(op, version, writer, value);
    this.#validate(rec, nowMs);
  }

  #validate(rec: KeyRecord, nowMs: number): void {
    assert(!rec.hasPending(), "a key goes Valid only once its own pending update is finished");
    assert(rec.state !== KeyState.Valid, "only an unsettled key is validated");
    rec.state = KeyState.Valid;
    rec.stale = false;
    this.#unsettled.delete(rec);
    this.#probe?.validated(this.self, rec.key, rec.version, rec.writer);
    this.#serveKey(rec, nowMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Time: retransmissions, replays, timeouts

  tick(nowMs: number): void {
    if (this.#stopped) return;
    this.#expireOps(nowMs);
    if (!this.#member) return;
    for (const rec of this.#unsettled) {
      if (rec.hasPending()) {
        if (nowMs - rec.invSentMs >= rec.retransmitWaitMs) this.#retransmitInv(rec, nowMs);
      } else if (rec.state === KeyState.Invalid && !rec.stale) {
        if (nowMs - rec.invalidSinceMs >= this.config.mltMs || !this.#isMemberId(rec.lastWriter)) {
          this.#startReplay(rec, nowMs);
        }
      }
    }
  }

  #expireOps(nowMs: number): void {
    for (;;) {
      const op = this.#deadlines.peekLive();
      if (op === null || op.deadlineMs > nowMs) return;
      this.#deadlines.pop();
      const rec = this.#keys.get(op.key);
      if (rec !== undefined) {
        const index = rec.waiting.indexOf(op);
        if (index >= 0) {
          rec.waiting.splice(index, 1);
          if (rec.waiting.length === 0) this.#waitingKeys.delete(rec);
        } else if (rec.pendingOp === op) {
          rec.pendingOp = null; // the update goes on; only its client gives up
        }
      }
      // An op that was issued may still take effect (it may be re-queued after a non-final abort).
      this.#answer(op, op.issued ? OpStatus.Unknown : OpStatus.Timeout, null, 0, 0);
    }
  }

  /** HFollowerWriteReplay: take over the update this key was invalidated with, same ts and value. */
  #startReplay(rec: KeyRecord, nowMs: number): void {
    assert(rec.state === KeyState.Invalid, "replays start from Invalid");
    assert(!rec.hasPending(), "replays start with nothing pending (Invalid holds no own update)");
    this.counters.replaysStarted++;
    rec.state = KeyState.Replay;
    rec.pendingVersion = rec.version;
    rec.pendingWriter = rec.writer;
    rec.pendingValue = rec.value;
    rec.pendingRmw = rec.rmw;
    rec.acks = 0;
    rec.writeEpoch = this.#epoch;
    rec.lastWriter = this.self;
    rec.pendingOp = null;
    this.#broadcastInv(rec, nowMs);
    this.#maybeFinishPending(rec, nowMs);
  }

  #broadcastInv(rec: KeyRecord, nowMs: number): void {
    assert(rec.hasPending(), "INVs are sent only for a pending update");
    rec.invSentMs = nowMs;
    rec.retransmitWaitMs = this.config.retransmitMs;
    for (const to of this.#others) {
      this.counters.invsSent++;
      this.#outbox.send(
        to,
        MsgKind.Inv,
        rec.key,
        rec.pendingVersion,
        rec.pendingWriter,
        this.#epoch,
        rec.pendingRmw,
        rec.pendingValue,
      );
    }
  }

  #retransmitInv(rec: KeyRecord, nowMs: number): void {
    assert(rec.hasPending(), "INVs are re-sent only for a pending update");
    rec.invSentMs = nowMs;
    // Exponential backoff: under load ACKs are late, not lost, and re-sending every INV on a fixed
    // timer would add load exactly when there is too much (measured: nearly every INV re-sent).
    rec.retransmitWaitMs = Math.min(rec.retransmitWaitMs * 2, this.config.retransmitMs * retransmitBackoffMax);
    for (const to of this.#others) {
      if ((rec.acks & (1 << to)) !== 0) continue;
      this.counters.invsRetransmitted++;
      this.#outbox.send(
        to,
        MsgKind.Inv,
        rec.key,
        rec.pendingVersion,
        rec.pendingWriter,
        this.#epoch,
        rec.pendingRmw,
        rec.pendingValue,
      );
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Answers

  #answer(op: Op, status: OpStatus, value: Uint8Array | null, version: number, writer: NodeId): void {
    assert(!op.done, "every op is answered exactly once");
    op.done = true;
    const id = op.id;
    this.#pool.release(op);
    this.#completions.complete(id, status, value, version, writer);
  }

  /** An own update committed (or finished below a higher one): Ok with its ts; Incr gets its value. */
  #answerUpdate(op: Op, version: number, writer: NodeId, value: Uint8Array | null): void {
    this.#answer(op, OpStatus.Ok, op.kind === OpKind.Incr ? value : null, version, writer);
  }

  /** Leaving the membership or stopping: nothing here will make progress any more. */
  #abandonAll(): void {
    for (const rec of this.#waitingKeys) {
      for (const op of rec.waiting) this.#answer(op, op.issued ? OpStatus.Unknown : OpStatus.Unavailable, null, 0, 0);
      rec.waiting.length = 0;
    }
    this.#waitingKeys.clear();
    for (const rec of this.#unsettled) {
      const op = rec.pendingOp;
      rec.pendingOp = null;
      if (op !== null) this.#answer(op, OpStatus.Unknown, null, 0, 0);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Rules as overridable predicates: the mutation tests subclass Replica and break exactly one.

  /** Reads are served only in Valid, and only while the lease is valid at the moment of answering. */
  protected readable(rec: KeyRecord, nowMs: number): boolean {
    return rec.state === KeyState.Valid && this.leaseValid(nowMs);
  }
  /** INV, ACK and Reject count only in the epoch they were sent in. */
  protected epochAccepted(epoch: Epoch): boolean {
    return epoch === this.#epoch;
  }
  /** Reset the ACK set of a pending update when the epoch changes (the spec's 2024 fix). */
  protected resetAcksOnEpochChange(rec: KeyRecord): void {
    rec.acks = 0;
  }
  /** A follower with a higher ts answers a stale INV (write or RMW) with its own state. */
  protected rejectsLowerInv(_rmw: boolean): boolean {
    return true;
  }
  /** A coordinator's pending RMW aborts on seeing a higher ts. */
  protected abortsOwnRmw(): boolean {
    return true;
  }
  /** beginJoin answers every client op held: none is retried after a lease loss (commit 42499e8). */
  protected abandonsOpsOnJoin(): boolean {
    return true;
  }
  /** beginJoin makes every unsettled key stale: a kept update that lost its race never spreads again. */
  protected distrustsKeptUpdatesOnJoin(): boolean {
    return true;
  }

  // ---------------------------------------------------------------------------------------------

  #record(key: string): KeyRecord {
    const rec = new KeyRecord(key);
    this.#keys.set(key, rec);
    return rec;
  }

  #isMemberId(id: NodeId): boolean {
    return (this.#membersMask & (1 << id)) !== 0;
  }
}

/** Incr: the value as a safe decimal integer plus `by`, encoded; null if either is not a safe integer. */
export function incremented(value: Uint8Array | null, by: number): Uint8Array | null {
  let current = 0;
  if (value !== null) {
    const text = textDecoder.decode(value);
    if (!/^-?(0|[1-9][0-9]{0,15})$/.test(text)) return null;
    current = Number(text);
  }
  const next = current + by;
  if (!Number.isSafeInteger(current) || !Number.isSafeInteger(by) || !Number.isSafeInteger(next)) return null;
  return textEncoder.encode(String(next));
}
