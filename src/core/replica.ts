// The Hermes replica: one shard of one node as a pure, deterministic state machine.
//
// Inputs are method calls, most carrying the current time as a number: `submit` (client op),
// `receive` (protocol message), `tick`, `setMembership`, `setLease`, `stop`, and the rejoin sequence
// `beginJoin`, `installSnapshotEntry` (once per entry), `finishJoin`. Outputs go, during the call, to
// the Outbox (messages) and Completions (client answers). `snapshot` (a joiner's state transfer),
// `inspect`, the counters and getters only read. `checkInvariants` checks the whole state;
// the simulator and the scenario tests call it after every step. There is no I/O, clock, timer or
// randomness here, so the simulator drives exactly the code the workers run.
//
// Keys live in a compact store (key-store.ts): one item per key in slab pages, found by the key's
// bytes. Only keys with an update in flight or ops waiting have a side object (key-side.ts); a key
// is named by its store slot inside a call, and by its side object across calls.
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
import { utf8Encode, utf8Length } from "../base/utf8.ts";
import { incrementInto, incrTextBytesMax } from "./decimal-incr.ts";
import { KeySide } from "./key-side.ts";
import { SideSet } from "./side-set.ts";
import { ItemView, KeyStore, storeKeyBytesMax } from "./key-store.ts";
import { DeadlineQueue, Op, OpPool } from "./op.ts";
import {
  RecordError,
  recordBytes,
  recordFixedBytes,
  recordFlagCommitted,
  recordFlagRmw,
  recordFlagsKnown,
  recordFlagValue,
  recordFlagsOffset,
  recordKeyBytesOffset,
  recordValueBytesOffset,
  recordValueOffset,
  recordWriterOffset,
} from "./snapshot-records.ts";
import { compareTs } from "../base/timestamp.ts";
import {
  KeyState,
  type ChangeSink,
  type Completions,
  type Journal,
  type Outbox,
  type Probe,
  type ReplicaConfig,
} from "./types.ts";
import { OrderedCursor } from "./ordered-keys.ts";
import { MsgKind, OpKind, OpStatus } from "../base/kinds.ts";
import {
  isIncarnation,
  isWriterId,
  nodeIdMax,
  nodeOfWriter,
  writerIdOf,
  type Epoch,
  type NodeId,
  type WriterId,
} from "../base/ids.ts";

/** Values up to this size are copied by a loop, larger ones by set() (a memcpy with more setup and a view). */
const copyLoopBytesMax = 64;

/** The retransmission wait grows up to this multiple of retransmitMs. */
const retransmitBackoffMax = 32;

/**
 * A follower cannot refuse an INV (the write was admitted by its coordinator and must not stall),
 * so the store holds more keys than keysMax, which only bounds the keys this node's clients
 * create: keysMax plus this share of it, and at least peerKeysSlackMin more. Beyond that an INV
 * that needs a new key is dropped like a lost message (counted in storeFullDrops).
 */
const peerKeysSlackRatio = 0.25;
const peerKeysSlackMin = 1024;
/** The share of storeBytesMax that client updates leave to protocol updates (INVs, Rejects, snapshots), for the same reason. */
const peerReserveRatio = 0.125;
/** Side objects kept for reuse; beyond, released ones are left to the GC. */
const freeSidesMax = 4096;

/** Byte order of `a[0..aLength)` and `b[0..bLength)`: < 0, 0, > 0. */
function compareBytes(a: Uint8Array, aLength: number, b: Uint8Array, bLength: number): number {
  const common = aLength < bLength ? aLength : bLength;
  for (let i = 0; i < common; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return aLength - bLength;
}

/** Whether `page[at..at+length)` starts with `prefix[0..prefixLength)`. */
function startsWith(page: Uint8Array, at: number, length: number, prefix: Uint8Array, prefixLength: number): boolean {
  if (length < prefixLength) return false;
  for (let i = 0; i < prefixLength; i++) if (page[at + i] !== prefix[i]) return false;
  return true;
}

/** `id` is a node id 0..nodeIdMax: three asserts of one condition each, all with the sentence `why`. */
function assertIsNodeId(id: number, why: string): void {
  assert(Number.isInteger(id), why);
  assert(id >= 0, why);
  assert(id <= nodeIdMax, why);
}

/** `writer` is a writer id (incarnation and node id packed in a u32, see ids.ts). */
function assertIsWriterId(writer: number, why: string): void {
  assert(isWriterId(writer), why);
}

export interface ReplicaCounters {
  invsSent: number;
  invsRetransmitted: number;
  replaysStarted: number;
  rmwAborts: number;
  staleEpochMessages: number;
  /** ACKs in the current epoch from a node outside its view: dropped. */
  foreignAcks: number;
  /** INVs and Rejects dropped because the store had no room for their key or value. */
  storeFullDrops: number;
  readsServed: number;
  updatesCommitted: number;
}

/** A copy of one key's state, for oracles, tests and tools (`inspect`). */
export interface KeyView {
  key: string;
  state: KeyState;
  version: number;
  writer: WriterId;
  /** A copy; null = absent. */
  value: Uint8Array | null;
  rmw: boolean;
  lastWriter: NodeId;
  hasPending: boolean;
  pendingVersion: number;
  pendingWriter: WriterId;
  pendingRmw: boolean;
  acks: number;
  /** Ops waiting on the key. */
  waitingOps: number;
  /** Held through a lease loss or loaded uncommitted, not yet replaced (see beginJoin). */
  stale: boolean;
}

/** Where a scan of snapshotRecords() stands: a store slot, and the index generation it belongs to. */
export class SnapshotCursor {
  slot = 0;
  generation = -1;
  done = false;
  /** Records written so far. */
  records = 0;
  /** Times the scan started over because the index grew between chunks. */
  restarts = 0;
}

/** A key's state and timestamp, filled in by `timestampOf`. */
export interface KeyStamp {
  state: KeyState;
  version: number;
  writer: WriterId;
}

export class Replica {
  readonly config: ReplicaConfig;
  readonly self: NodeId;
  /**
   * The writer id of this replica's own timestamps: this process's incarnation with its node id
   * (ids.ts). A process restarted under the same node id gets a new incarnation, so it never issues
   * a timestamp its previous process issued, whatever it lost.
   */
  readonly writer: WriterId;
  readonly #outbox: Outbox;
  readonly #completions: Completions;
  readonly #probe: Probe | null;
  /** The write-ahead log's view of installs (setJournal), or null: no durability, no cost. */
  #journal: Journal | null = null;

  readonly #store: KeyStore<KeySide>;
  /** Arena bytes client updates leave free (peerReserveRatio of storeBytesMax). */
  readonly #peerReserveBytes: number;
  /** Keys not Valid (pending own update, Invalid, Trans): the only ones tick and epoch changes visit. */
  readonly #unsettled = new SideSet<KeySide>(0);
  /** Keys with waiting ops. */
  readonly #waitingKeys = new SideSet<KeySide>(1);
  /** Released side objects, for reuse. */
  readonly #freeSides: KeySide[] = [];
  readonly #pool: OpPool;
  readonly #deadlines: DeadlineQueue;
  /** A string key's UTF-8 bytes (string inputs are looked up by their bytes); grows for long keys. */
  #keyScratch = new Uint8Array(256);
  /** An Incr's new value, until setValue copies it into the store. */
  readonly #incrScratch = new Uint8Array(incrTextBytesMax);
  /** Reused by the read fast path. */
  readonly #view = new ItemView();
  /** Reused by scanValid and the change sink. */
  readonly #scanView = new ItemView();
  readonly #changeView = new ItemView();
  readonly #cursor = new OrderedCursor();
  /** Told of every key that goes Valid (watch streams); null costs one test per validation. */
  changes: ChangeSink | null = null;

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
    storeFullDrops: 0,
    readsServed: 0,
    updatesCommitted: 0,
  };

  constructor(config: ReplicaConfig, outbox: Outbox, completions: Completions, probe: Probe | null = null) {
    assertIsNodeId(config.self, "self is a node id 0..31");
    assert(isIncarnation(config.incarnation), "incarnation is an integer in 0..incarnationMax");
    assert(config.retransmitMs > 0, "retransmitMs is positive");
    assert(config.mltMs > 0, "mltMs is positive");
    assert(config.opTimeoutMs > 0, "opTimeoutMs is positive");
    assert(config.keyQueueMax > 0, "keyQueueMax is positive");
    assert(config.keysMax > 0, "keysMax is positive");
    assert(config.storeBytesMax > 0, "storeBytesMax is positive");
    this.config = config;
    this.self = config.self;
    this.writer = writerIdOf(config.incarnation, config.self);
    this.#outbox = outbox;
    this.#completions = completions;
    this.#probe = probe;
    this.#pool = new OpPool(config.opsMax);
    this.#deadlines = new DeadlineQueue(config.opsMax);
    this.#store = new KeyStore<KeySide>({
      keysMax: config.keysMax + Math.max(peerKeysSlackMin, Math.ceil(config.keysMax * peerKeysSlackRatio)),
      bytesMax: config.storeBytesMax,
      valueBytesMax: config.valueBytesMax,
      ordered: config.orderedKeys !== false,
      hashSeed: config.hashSeed,
    });
    this.#peerReserveBytes = Math.floor(config.storeBytesMax * peerReserveRatio);
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
    return this.#store.keyCount;
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
  /** A copy of a key's state for oracles, tests and tools (allocates); undefined if never touched. */
  inspect(key: string): KeyView | undefined {
    const slot = this.#findString(key);
    if (slot < 0) return undefined;
    const store = this.#store;
    const side = store.side(slot);
    return {
      key,
      state: store.state(slot) as KeyState,
      version: store.version(slot),
      writer: store.writer(slot),
      value: store.copyValue(slot),
      rmw: store.rmw(slot),
      lastWriter: store.lastWriter(slot),
      hasPending: side?.hasPending() ?? false,
      pendingVersion: side?.pendingVersion ?? 0,
      pendingWriter: side?.pendingWriter ?? -1,
      pendingRmw: side?.pendingRmw ?? false,
      acks: side?.acks ?? 0,
      waitingOps: side?.waiting.length ?? 0,
      stale: side?.stale ?? false,
    };
  }

  /**
   * A key's state and timestamp into `into` (untouched keys: Valid at 0.0), without allocating:
   * for the simulator's per-step oracles and the benchmark clients' CAS.
   */
  timestampOf(key: string, into: KeyStamp): void {
    const length = this.#encodeKey(key);
    this.timestampOfKey(this.#keyScratch, 0, length, into);
  }

  /** timestampOf() with the key `key[keyAt..keyAt+keyLength)`. */
  timestampOfKey(key: Uint8Array, keyAt: number, keyLength: number, into: KeyStamp): void {
    const store = this.#store;
    const slot = store.find(key, keyAt, keyLength);
    into.state = slot < 0 ? KeyState.Valid : (store.state(slot) as KeyState);
    into.version = slot < 0 ? 0 : store.version(slot);
    into.writer = slot < 0 ? 0 : store.writer(slot);
  }

  /** The store and a key's side object, for tests that corrupt the state on purpose (subclasses only). */
  protected get store(): KeyStore<KeySide> {
    return this.#store;
  }
  protected sideOf(key: string): KeySide | null {
    const slot = this.#findString(key);
    return slot < 0 ? null : this.#store.side(slot);
  }

  /**
   * Check the whole state; throws AssertionError naming this node and the key. O(keys + ops), for
   * tests: the simulator and ManualCluster call it after every step. Structural invariants
   * only: the protocol's safety rules are the simulator's oracles, which the mutants must trip.
   */
  checkInvariants(): void {
    let slot = -1;
    try {
      this.#checkMembership();
      let unsettled = 0;
      let waitingKeys = 0;
      let liveOps = 0;
      const store = this.#store;
      for (slot = store.nextSlot(0); slot >= 0; slot = store.nextSlot(slot + 1)) {
        const side = store.side(slot);
        this.#checkKey(slot, side);
        if (side === null) continue;
        if (store.state(slot) !== KeyState.Valid) unsettled++;
        if (side.waiting.length > 0) waitingKeys++;
        liveOps += side.waiting.length;
        if (side.pendingOp !== null) liveOps++;
      }
      slot = -1;
      // The keys' protocol state first (it names the key), then the store's own books.
      this.#store.checkInvariants();
      // With the per-key membership checks in #checkKey, equal sizes make the sets exactly these keys.
      this.#unsettled.checkInvariants();
      this.#waitingKeys.checkInvariants();
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
      for (const side of this.#freeSides) {
        assert(side.id === 0 && side.slot === -1, "a free side object is attached to no key");
        assert(!side.hasPending() && side.waiting.length === 0, "a free side object holds no update and no op");
        assert(!this.#unsettled.has(side) && !this.#waitingKeys.has(side), "a free side object is in no side set");
      }
    } catch (error) {
      if (!(error instanceof AssertionError)) throw error;
      const key = slot < 0 ? "" : ` key ${JSON.stringify(this.#store.keyString(slot))}`;
      throw new AssertionError(`replica ${this.self}${key}: ${error.message}`);
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

  #checkKey(slot: number, side: KeySide | null): void {
    const config = this.config;
    const store = this.#store;
    const state = store.state(slot) as KeyState;
    const version = store.version(slot);
    const writer = store.writer(slot);
    assertIsWriterId(writer, "a timestamp's writer is a writer id");
    assertIsNodeId(store.lastWriter(slot), "the last writer is a node id");
    assert(Number.isSafeInteger(version), "a timestamp's version is an integer");
    assert(version >= 0, "versions start at 0");
    if (version === 0) {
      // Every update adds at least 1: nothing was ever installed.
      assert(writer === 0, "version 0 is only the initial timestamp 0.0");
      assert(!store.hasValue(slot), "at the initial timestamp 0.0 the key is absent");
      assert(state === KeyState.Valid, "at the initial timestamp 0.0 the key is Valid");
    }
    const pendingState = state === KeyState.Write || state === KeyState.Replay || state === KeyState.Trans;
    assert(
      pendingState || state === KeyState.Valid || state === KeyState.Invalid,
      "the state is one of Valid, Invalid, Trans, Write, Replay",
    );
    if (side === null) {
      // Settled and idle keys cost no object: everything about them is in the store.
      assert(
        state === KeyState.Valid,
        "a key without a side object is Valid (side objects exist exactly for unsettled keys and keys with waiting ops)",
      );
      return;
    }
    assert(
      state !== KeyState.Valid || side.waiting.length > 0,
      "a key has a side object only while it is not Valid or ops wait on it",
    );
    assert(side.hasPending() === pendingState, "a key has a pending update iff its state is Write, Replay or Trans");
    assert(
      this.#unsettled.has(side) === (state !== KeyState.Valid),
      "a key is in the unsettled set iff it is not Valid",
    );
    assert(
      this.#waitingKeys.has(side) === side.waiting.length > 0,
      "a key is in the waiting-keys set iff ops wait on it",
    );
    if (side.stale) {
      assert(this.#joining, "a key is stale only while its replica joins (finishJoin ends it)");
      assert(state === KeyState.Invalid, "a stale key is Invalid (what it holds is not known committed)");
    }
    if (side.hasPending()) this.#checkPending(slot, side, state);
    else {
      assert(side.pendingOp === null, "a client op is attached only to a pending update");
      assert(side.acks === 0, "ACKs are kept only for a pending update");
      assert(side.pendingValue === null, "a pending value is kept only for a pending update");
    }
    // The queue is checked before an op joins it; an aborted RMW moves from pending to the front of
    // the queue, so waiting plus pending stays within keyQueueMax + 1 (a full queue may hold one more).
    const pendingOps = side.pendingOp === null ? 0 : 1;
    assert(
      side.waiting.length + pendingOps <= config.keyQueueMax + 1,
      "a key holds at most keyQueueMax waiting ops besides the one in flight",
    );
    for (let i = 0; i < side.waiting.length; i++) {
      const op: Op = side.waiting[i]!;
      assert(!op.done, "a waiting op has not been answered");
      assert(op.side === side, "an op waits on its own key");
      // Only an aborted RMW, put back at the front, was issued; nothing is ever put in front of it.
      if (op.issued) assert(i === 0, "only the front op of a key queue may have been issued (an aborted RMW)");
      if (op.issued) assert(op.kind !== OpKind.Read, "a read is never issued");
    }
  }

  #checkPending(slot: number, side: KeySide, state: KeyState): void {
    const config = this.config;
    const store = this.#store;
    assertIsWriterId(side.pendingWriter, "a pending update's writer is a writer id");
    assert(side.pendingVersion > 0, "a pending update's version is above the initial 0");
    assert((side.acks & (1 << this.self)) === 0, "a replica never ACKs its own update");
    assert(side.retransmitWaitMs >= config.retransmitMs, "the retransmission wait starts at retransmitMs");
    assert(side.retransmitWaitMs <= config.retransmitMs * retransmitBackoffMax, "the retransmission wait is capped");
    if (state === KeyState.Write || state === KeyState.Trans) {
      assert(side.pendingWriter === this.writer, "in W and Trans the pending update is this process's own");
    } else {
      assert(side.pendingOp === null, "a replay has no client op");
    }
    if (state === KeyState.Trans) {
      const order = compareTs(store.version(slot), store.writer(slot), side.pendingVersion, side.pendingWriter);
      assert(order > 0, "in Trans the key holds a higher timestamp than the pending update");
    } else {
      assert(
        store.version(slot) === side.pendingVersion,
        "in W and R the key holds the pending update's timestamp (version)",
      );
      assert(
        store.writer(slot) === side.pendingWriter,
        "in W and R the key holds the pending update's timestamp (writer)",
      );
      assert(side.pendingValue === null, "in W and R the pending value is the key's own (no copy is kept)");
      assert(store.rmw(slot) === side.pendingRmw, "in W and R the key holds the pending update's RMW flag");
      assert(store.lastWriter(slot) === this.self, "in W and R this replica sent the INVs of the current timestamp");
    }
    if (side.pendingOp !== null) {
      assert(!side.pendingOp.done, "a pending update's op has not been answered");
      assert(side.pendingOp.issued, "a pending update's op has been issued");
      assert(side.pendingOp.side === side, "a pending update's op is on its key");
      assert(side.pendingOp.kind !== OpKind.Read, "a read never starts an update");
    }
    if (this.#member && !this.#stopped) {
      // A membership change re-sends every pending update in the new epoch with an empty ACK set.
      assert(side.writeEpoch === this.#epoch, "a member's pending updates belong to the current epoch");
      // #maybeFinishPending runs after every ACK and every membership change.
      assert(
        (side.acks & this.#othersMask) !== this.#othersMask,
        "a pending update with every ACK is finished at once",
      );
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
    if (this.#joining && this.distrustsKeptUpdatesOnJoin()) for (const side of this.#unsettled) this.#makeStale(side);
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
    for (const side of this.#unsettled) {
      if (side.hasPending()) {
        // HCoordWriteReplay: the ACKs gathered in the old epoch no longer count (2024 fix).
        this.resetAcksOnEpochChange(side);
        side.writeEpoch = epoch;
        this.#broadcastInv(side, nowMs);
        this.#maybeFinishPending(side, nowMs);
      } else if (
        this.#store.state(side.slot) === KeyState.Invalid &&
        !side.stale &&
        !this.#isMemberId(this.#store.lastWriter(side.slot))
      ) {
        this.#startReplay(side, nowMs);
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
    if (this.distrustsKeptUpdatesOnJoin()) for (const side of this.#unsettled) this.#makeStale(side);
  }

  #makeStale(side: KeySide): void {
    if (side.hasPending()) {
      const op = side.pendingOp;
      side.clearPending();
      if (op !== null) {
        // Only a replica that keeps its ops through a lease loss (the mutation tests') has one: it
        // goes back to the front of the queue, as after an abort.
        side.waiting.unshift(op);
        this.#waitingKeys.add(side);
      }
    }
    this.#store.setState(side.slot, KeyState.Invalid);
    if (!side.stale) side.staleEpoch = this.#epoch;
    side.stale = true;
  }

  /**
   * A live INV meets a stale key: true if it is taken (a higher ts; or the same version, even with
   * a lower tie-breaker: it may be the commit the stale update lost to) or is the same update (it
   * is live: no longer stale); false for a lower version, which says nothing about it, or when the
   * store has no room for it (as if it were lost).
   */
  #liveUpdateMeetsStale(
    side: KeySide,
    from: NodeId,
    version: number,
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): boolean {
    assert(side.stale, "only a stale key is met this way");
    const store = this.#store;
    const slot = side.slot;
    const order = compareTs(version, writer, store.version(slot), store.writer(slot));
    if (order < 0 && version < store.version(slot)) return false;
    const taken =
      order > 0
        ? this.#adopt(slot, from, version, writer, rmw, value, valueAt, valueLength, nowMs)
        : order < 0
          ? this.#replaceStale(side, from, version, writer, rmw, value, valueAt, valueLength, nowMs)
          : true;
    if (!taken) {
      this.counters.storeFullDrops++;
      return false;
    }
    side.stale = false;
    side.invalidSinceMs = nowMs;
    return true;
  }

  /** A stale key takes an update of its own version with a lower tie-breaker (see beginJoin); false without room for its value. */
  #replaceStale(
    side: KeySide,
    from: NodeId,
    version: number,
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): boolean {
    const store = this.#store;
    const slot = side.slot;
    assert(side.stale, "only a stale key is replaced by a lower timestamp");
    assert(version === store.version(slot), "a stale key is replaced only by an update of its version");
    assert(store.state(slot) === KeyState.Invalid, "a stale key is Invalid");
    if (!store.setValue(slot, value, valueAt, valueLength, 0)) return false;
    store.setTs(slot, version, writer, rmw, from);
    if (this.#journal !== null) this.#journalInstalled(slot);
    side.invalidSinceMs = nowMs;
    return true;
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
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    committed: boolean,
    nowMs: number,
    fromKeptState = false,
  ): void {
    const length = this.#encodeKey(key);
    this.#installEntry(
      this.#keyScratch,
      0,
      length,
      version,
      writer,
      rmw,
      value,
      0,
      value === null ? 0 : value.length,
      committed,
      nowMs,
      fromKeptState,
    );
  }

  /**
   * installSnapshotEntry with the key's bytes and the value lent: for a node's recovery from its
   * write-ahead log, whose records are read in place (no string or copy per record).
   */
  installEntryBytes(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    committed: boolean,
    nowMs: number,
  ): void {
    assert(keyLength > 0 && keyLength <= storeKeyBytesMax, "a recovered key has 1..storeKeyBytesMax bytes");
    assert(valueLength <= this.config.valueBytesMax, "a recovered value is at most valueBytesMax");
    this.#installEntry(
      key,
      keyAt,
      keyLength,
      version,
      writer,
      rmw,
      value,
      valueAt,
      valueLength,
      committed,
      nowMs,
      false,
    );
  }

  /**
   * Install the whole records of `bytes[at..end)` (snapshot-records.ts), read in place, as
   * installSnapshotEntry installs entries. Returns the bytes consumed (a record cut by `end` is left
   * for the next call, with the bytes that follow it), or a negated RecordError for a malformed
   * record (nothing after it is installed).
   */
  installSnapshotRecords(bytes: Uint8Array, at: number, end: number, nowMs: number, fromKeptState = false): number {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let p = at;
    while (end - p >= recordFixedBytes) {
      const keyBytes = view.getUint16(p + recordKeyBytesOffset, true);
      if (keyBytes === 0 || keyBytes > storeKeyBytesMax) return -RecordError.BadKeyLength;
      if (end - p < recordFixedBytes + keyBytes) break;
      const fields = p + 2 + keyBytes;
      const version = view.getFloat64(fields, true);
      const writer = view.getUint32(fields + recordWriterOffset, true);
      const flags = bytes[fields + recordFlagsOffset];
      const valueBytes = view.getUint32(fields + recordValueBytesOffset, true);
      if (valueBytes > this.config.valueBytesMax) return -RecordError.BadValueLength;
      if (end - p < recordBytes(keyBytes, valueBytes)) break;
      const hasValue = (flags & recordFlagValue) !== 0;
      if (
        !Number.isSafeInteger(version) ||
        version < 0 ||
        (flags & ~recordFlagsKnown) !== 0 ||
        (!hasValue && valueBytes !== 0)
      ) {
        return -RecordError.BadFields;
      }
      const valueAt = fields + recordValueOffset;
      const rmw = (flags & recordFlagRmw) !== 0;
      const committed = (flags & recordFlagCommitted) !== 0;
      this.#installEntry(
        bytes,
        p + 2,
        keyBytes,
        version,
        writer,
        rmw,
        hasValue ? bytes : null,
        valueAt,
        valueBytes,
        committed,
        nowMs,
        fromKeptState,
      );
      p = valueAt + valueBytes;
    }
    return p - at;
  }

  #installEntry(
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    committed: boolean,
    nowMs: number,
    fromKeptState: boolean,
  ): void {
    assert(this.#joining, "snapshots are installed only while joining");
    assertIsWriterId(writer, "a snapshot entry's writer is a writer id");
    assert(Number.isSafeInteger(version), "a snapshot entry's version is an integer");
    assert(version >= 0, "a snapshot entry's version is not negative");
    const store = this.#store;
    let slot = store.find(key, keyAt, keyLength);
    if (slot < 0 && compareTs(version, writer, 0, 0) > 0) {
      // A key this replica never had (every key, for a fresh joiner): stored with its value at
      // once, and if committed simply Valid, with no side object (as #adopt then #validate).
      slot = store.insertMissed(key, keyAt, keyLength, value, valueAt, valueLength, 0);
      assert(slot >= 0, "the store has room for every key of a snapshot (raise keysMax or storeBytesMax)");
      store.setTs(slot, version, writer, rmw, nodeOfWriter(writer));
      // One record: a committed entry's Valid record carries the whole item.
      if (this.#journal !== null) {
        if (committed) this.#journalValidated(slot);
        else this.#journalInstalled(slot);
      }
      if (committed) {
        if (this.#probe !== null) this.#probe.validated(this.self, store.keyString(slot), version, writer);
        if (this.changes !== null) this.#tellChange(slot);
        return;
      }
      // Loaded, not known committed, possibly from a source's kept state: stale like our own.
      store.setState(slot, KeyState.Invalid);
      const side = this.#attachSide(slot);
      side.invalidSinceMs = nowMs;
      side.stale = true;
      side.staleEpoch = -1;
      this.#unsettled.add(side);
      return;
    }
    // A joiner missing a committed key would serve it as absent: a full store here is fatal.
    if (slot < 0) slot = store.insertMissed(key, keyAt, keyLength, null, 0, 0, 0);
    assert(slot >= 0, "the store has room for every key of a snapshot (raise keysMax or storeBytesMax)");
    const order = compareTs(version, writer, store.version(slot), store.writer(slot));
    const held = store.side(slot);
    let taken = false;
    if (order > 0) {
      // A committed value of this version is known here: an uncommitted RMW of the same version,
      // kept by the source, lost its race to it (see beginJoin) and must not replace it.
      if (!committed && rmw && version === store.version(slot) && store.state(slot) === KeyState.Valid) return;
      const adopted = this.#adopt(slot, nodeOfWriter(writer), version, writer, rmw, value, valueAt, valueLength, nowMs);
      assert(adopted, "the store has room for every value of a snapshot (raise storeBytesMax)");
      taken = true;
    } else if (
      order < 0 &&
      held !== null &&
      held.stale &&
      version === store.version(slot) &&
      (committed || !fromKeptState)
    ) {
      // What was kept unsettled gives way to an entry of its version even with a lower ts.
      const replaced = this.#replaceStale(
        held,
        nodeOfWriter(writer),
        version,
        writer,
        rmw,
        value,
        valueAt,
        valueLength,
        nowMs,
      );
      assert(replaced, "the store has room for every value of a snapshot (raise storeBytesMax)");
      taken = true;
    } else if (order < 0) {
      return;
    }
    if (committed) {
      if (store.state(slot) === KeyState.Invalid) this.#validate(store.side(slot)!, nowMs);
    } else if (taken && store.state(slot) === KeyState.Invalid) {
      // Loaded, not known committed, possibly from a source's kept state: stale like our own.
      const side = store.side(slot)!;
      side.stale = true;
      side.staleEpoch = -1;
    }
  }

  /** State loaded: serve from now on. A key still stale was superseded by nothing loaded: it settles as any Invalid key. */
  finishJoin(nowMs: number): void {
    for (const side of this.#unsettled) {
      if (!side.stale) continue;
      side.stale = false;
      side.invalidSinceMs = nowMs;
    }
    this.#joining = false;
    this.#serveWaitingKeys(nowMs);
  }

  /**
   * This replica's entries for a joiner, in chunks of at most `entriesMax`. Between chunks the
   * replica goes on serving; if its index grows meanwhile (slots move), the scan starts over, so
   * no key is missed (a key sent twice is merged by timestamp).
   */
  *snapshot(entriesMax: number): Generator<SnapshotEntry[]> {
    const store = this.#store;
    let chunk: SnapshotEntry[] = [];
    let generation = store.generation;
    for (let slot = store.nextSlot(0); slot >= 0; slot = store.nextSlot(slot + 1)) {
      chunk.push({
        key: store.keyString(slot),
        version: store.version(slot),
        writer: store.writer(slot),
        rmw: store.rmw(slot),
        value: store.copyValue(slot),
        committed: store.state(slot) === KeyState.Valid,
      });
      if (chunk.length >= entriesMax) {
        yield chunk;
        chunk = [];
        if (store.generation !== generation) {
          generation = store.generation;
          slot = -1;
        }
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  /**
   * This replica's entries as snapshot records (snapshot-records.ts), written from the store's
   * slots into `into` with no per-key object: as many whole records as fit, from where `cursor`
   * stands, at most `recordsMax` of them. Returns the bytes written; `cursor.done` once every key is out. Between calls the
   * replica goes on serving; if its index grew meanwhile (slots moved), the scan starts over, so
   * no key is missed (a key sent twice is merged by timestamp). `into` must hold any one record.
   */
  snapshotRecords(cursor: SnapshotCursor, into: Uint8Array, recordsMax = Number.POSITIVE_INFINITY): number {
    const store = this.#store;
    if (cursor.done) return 0;
    if (cursor.generation !== store.generation) {
      if (cursor.generation >= 0) cursor.restarts++;
      cursor.generation = store.generation;
      cursor.slot = 0;
    }
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    const item = this.#view;
    let p = 0;
    let records = 0;
    for (let slot = store.nextSlot(cursor.slot); slot >= 0; slot = store.nextSlot(slot + 1)) {
      store.read(slot, item);
      const valueBytes = item.hasValue ? item.valueBytes : 0;
      if (records === recordsMax || p + recordBytes(item.keyBytes, valueBytes) > into.length) {
        assert(p > 0, "a snapshot chunk holds any one record (size it for the largest key and value)");
        cursor.slot = slot;
        return p;
      }
      view.setUint16(p + recordKeyBytesOffset, item.keyBytes, true);
      const page = item.page;
      for (let i = 0; i < item.keyBytes; i++) into[p + 2 + i] = page[item.keyAt + i];
      const fields = p + 2 + item.keyBytes;
      view.setFloat64(fields, item.version, true);
      view.setUint32(fields + recordWriterOffset, item.writer, true);
      into[fields + recordFlagsOffset] =
        (store.rmw(slot) ? recordFlagRmw : 0) |
        (item.state === KeyState.Valid ? recordFlagCommitted : 0) |
        (item.hasValue ? recordFlagValue : 0);
      view.setUint32(fields + recordValueBytesOffset, valueBytes, true);
      const valueTo = fields + recordValueOffset;
      if (valueBytes <= copyLoopBytesMax)
        for (let i = 0; i < valueBytes; i++) into[valueTo + i] = page[item.valueAt + i];
      else into.set(page.subarray(item.valueAt, item.valueAt + valueBytes), valueTo);
      p = valueTo + valueBytes;
      cursor.records++;
      records++;
    }
    cursor.done = true;
    return p;
  }

  // ---------------------------------------------------------------------------------------------
  // Client ops

  /**
   * Submit a client op. `value` is owned by the replica from now on. Exactly one completion with
   * `opId` follows, possibly during this call. The key is looked up by its UTF-8 bytes (see
   * submitKey); a string key is for callers that hold one anyway (HTTP, tests).
   */
  submit(
    opId: number,
    kind: OpKind,
    key: string,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: WriterId,
    by: number,
    nowMs: number,
  ): void {
    const length = this.#encodeKey(key);
    this.submitKey(opId, kind, this.#keyScratch, 0, length, value, expectedVersion, expectedWriter, by, nowMs);
  }

  /** submit() with the key `key[keyAt..keyAt+keyLength)` (UTF-8), read in place and copied only into a new item. */
  submitKey(
    opId: number,
    kind: OpKind,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: WriterId,
    by: number,
    nowMs: number,
  ): void {
    if (this.#stopped || !this.#member || this.#joining) {
      this.#completions.complete(opId, OpStatus.Unavailable, null, 0, 0, 0, 0);
      return;
    }
    assert(
      value === null || value.length <= this.config.valueBytesMax,
      "a client value is at most valueBytesMax (the HTTP layer refuses larger ones)",
    );
    const store = this.#store;
    let slot = store.find(key, keyAt, keyLength);
    if (kind === OpKind.Read) {
      if (slot < 0) {
        // Never touched here: Valid and absent at (0, 0), since no INV for it ever arrived.
        if (this.leaseValid(nowMs)) {
          this.counters.readsServed++;
          this.#completions.complete(opId, OpStatus.Ok, null, 0, 0, 0, 0);
          return;
        }
        // Waiting for the lease needs the key in the store; a full store answers Busy (not
        // StoreFull: a read creates nothing).
        slot =
          store.keyCount >= this.config.keysMax
            ? -1
            : store.insertMissed(key, keyAt, keyLength, null, 0, 0, this.#peerReserveBytes);
        if (slot < 0) {
          this.#completions.complete(opId, OpStatus.Busy, null, 0, 0, 0, 0);
          return;
        }
      } else {
        // The fast path: a key without a side object is Valid with nothing waiting (an invariant),
        // so it is answered from its slot if the lease allows, the value lent, not copied. One
        // read of the item gives the side id and every field of the answer.
        const view = this.#view;
        store.read(slot, view);
        if (view.sideId === 0 && this.readable(KeyState.Valid, nowMs)) {
          this.counters.readsServed++;
          this.#completions.complete(
            opId,
            OpStatus.Ok,
            view.hasValue ? view.page : null,
            view.valueAt,
            view.valueBytes,
            view.version,
            view.writer,
          );
          return;
        }
        const side = store.side(slot);
        if ((side === null || side.waiting.length === 0) && this.readable(store.state(slot) as KeyState, nowMs)) {
          this.#answerRead(opId, slot);
          return;
        }
      }
      this.#enqueue(slot, opId, kind, value, expectedVersion, expectedWriter, by, nowMs);
      return;
    }
    if (slot < 0) {
      slot =
        store.keyCount >= this.config.keysMax
          ? -1
          : store.insertMissed(key, keyAt, keyLength, null, 0, 0, this.#peerReserveBytes);
      if (slot < 0) {
        this.#completions.complete(opId, OpStatus.StoreFull, null, 0, 0, 0, 0);
        return;
      }
    }
    this.#enqueue(slot, opId, kind, value, expectedVersion, expectedWriter, by, nowMs);
  }

  /** Answer a read of `slot` with its value lent from the store. */
  #answerRead(opId: number, slot: number): void {
    const store = this.#store;
    this.counters.readsServed++;
    if (store.hasValue(slot))
      this.#completions.complete(
        opId,
        OpStatus.Ok,
        store.page(slot),
        store.valueAt(slot),
        store.valueBytes(slot),
        store.version(slot),
        store.writer(slot),
      );
    else this.#completions.complete(opId, OpStatus.Ok, null, 0, 0, store.version(slot), store.writer(slot));
  }

  #enqueue(
    slot: number,
    opId: number,
    kind: OpKind,
    value: Uint8Array | null,
    expectedVersion: number,
    expectedWriter: WriterId,
    by: number,
    nowMs: number,
  ): void {
    const existing = this.#store.side(slot);
    if (existing !== null && existing.waiting.length >= this.config.keyQueueMax) {
      this.#completions.complete(opId, OpStatus.Busy, null, 0, 0, 0, 0);
      return;
    }
    const op = this.#pool.take();
    if (op === null) {
      this.#completions.complete(opId, OpStatus.Busy, null, 0, 0, 0, 0);
      return;
    }
    const side = existing ?? this.#attachSide(slot);
    op.id = opId;
    op.kind = kind;
    op.side = side;
    op.value = value;
    op.expectedVersion = expectedVersion;
    op.expectedWriter = expectedWriter;
    op.by = by;
    op.deadlineMs = nowMs + this.config.opTimeoutMs;
    this.#deadlines.push(op);
    if (
      kind !== OpKind.Read &&
      side.waiting.length === 0 &&
      this.#store.state(slot) === KeyState.Valid &&
      this.leaseValid(nowMs)
    ) {
      // An update of an idle key starts at once, as #serveKey would start it from the front of
      // the queue, without passing through the queue and the waiting-keys set.
      this.#startUpdate(side, op, nowMs);
      this.#releaseIfSettled(side);
      return;
    }
    side.waiting.push(op);
    this.#waitingKeys.add(side);
    this.#serveKey(side, nowMs);
  }

  /** Run the waiting ops of a key as far as its state and the lease allow; release the side if it is done. */
  #serveKey(side: KeySide, nowMs: number): void {
    const store = this.#store;
    while (side.waiting.length > 0) {
      const op = side.waiting[0]!;
      const slot = side.slot;
      if (op.kind === OpKind.Read) {
        if (!this.readable(store.state(slot) as KeyState, nowMs)) break;
        side.waiting.shift();
        const id = op.id;
        this.#release(op);
        this.#answerRead(id, slot);
        continue;
      }
      if (store.state(slot) !== KeyState.Valid || !this.leaseValid(nowMs)) break;
      side.waiting.shift();
      this.#startUpdate(side, op, nowMs);
      // The update either finished at once (precondition failed, or no other members) or the key
      // now has a pending update: the rest waits for it.
    }
    if (side.waiting.length === 0) {
      this.#waitingKeys.delete(side);
      this.#releaseIfSettled(side);
    } else if (
      store.state(side.slot) === KeyState.Invalid &&
      !side.stale &&
      !this.#isMemberId(store.lastWriter(side.slot))
    ) {
      // An op finding the key Invalid with its writer gone replays the update (the table's A_BR).
      this.#startReplay(side, nowMs);
    }
  }

  #serveWaitingKeys(nowMs: number): void {
    for (const side of this.#waitingKeys) this.#serveKey(side, nowMs);
  }

  /** Start a client update from Valid (writes, deletes and RMWs). */
  #startUpdate(side: KeySide, op: Op, nowMs: number): void {
    const store = this.#store;
    const slot = side.slot;
    assert(store.state(slot) === KeyState.Valid, "updates start only from Valid");
    assert(!side.hasPending(), "updates start with nothing pending (Valid holds no own update)");
    assert(op.kind !== OpKind.Read, "only updates start an update");
    const baseVersion = store.version(slot);
    const baseWriter = store.writer(slot);
    let newValue: Uint8Array | null;
    let newLength = -1; // -1: all of newValue
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
        if (baseVersion !== op.expectedVersion || baseWriter !== op.expectedWriter) {
          this.#answer(op, OpStatus.PreconditionFailed, baseVersion, baseWriter);
          return;
        }
        newValue = op.value;
        rmw = true;
        break;
      case OpKind.Create:
        if (store.hasValue(slot)) {
          this.#answer(op, OpStatus.PreconditionFailed, baseVersion, baseWriter);
          return;
        }
        newValue = op.value;
        rmw = true;
        break;
      case OpKind.Incr: {
        if (op.retries > this.config.incrRetriesMax) {
          this.#answer(op, OpStatus.Aborted, baseVersion, baseWriter);
          return;
        }
        // The sum goes to a scratch buffer: setValue below copies it into the store.
        const sumLength = store.hasValue(slot)
          ? incrementInto(store.page(slot), store.valueAt(slot), store.valueBytes(slot), op.by, this.#incrScratch)
          : incrementInto(null, 0, 0, op.by, this.#incrScratch);
        if (sumLength < 0) {
          this.#answer(op, OpStatus.NotANumber, baseVersion, baseWriter);
          return;
        }
        newValue = this.#incrScratch;
        newLength = sumLength;
        rmw = true;
        break;
      }
      default:
        throw new Error(`not an update: ${op.kind}`);
    }
    // The value first: it is the one step that can fail (no room), and then nothing was written.
    if (newValue !== null && newLength < 0) newLength = newValue.length;
    if (!store.setValue(slot, newValue, 0, newValue === null ? 0 : newLength, this.#peerReserveBytes)) {
      this.#answer(op, OpStatus.StoreFull, baseVersion, baseWriter);
      return;
    }
    // Writes +2, RMWs +1 (RMWs always enabled): a write beats any concurrent RMW from its base.
    const version = baseVersion + (rmw ? 1 : 2);
    store.setTs(slot, version, this.writer, rmw, this.self);
    store.setState(slot, KeyState.Write);
    if (this.#journal !== null) this.#journalInstalled(slot);
    side.pendingVersion = version;
    side.pendingWriter = this.writer;
    side.pendingValue = null;
    side.pendingRmw = rmw;
    side.acks = 0;
    side.writeEpoch = this.#epoch;
    side.pendingOp = op;
    op.issued = true;
    this.#unsettled.add(side);
    if (this.#probe !== null)
      this.#probe.issued(this.self, store.keyString(slot), version, this.writer, rmw, baseVersion, baseWriter);
    this.#broadcastInv(side, nowMs);
    this.#maybeFinishPending(side, nowMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Protocol messages

  /**
   * A protocol message from `from`. The key is `key[keyAt..keyAt+keyLength)` and the value
   * `value[valueAt..valueAt+valueLength)` (null: none or a tombstone): both are read in place (a
   * received frame) and copied only into the store.
   */
  receive(
    from: NodeId,
    kind: MsgKind,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: WriterId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): void {
    assertIsNodeId(from, "a message comes from a node id 0..31");
    assert(from !== this.self, "a replica never sends to itself");
    assertIsWriterId(writer, "a timestamp's writer is a writer id");
    assert(Number.isSafeInteger(version), "a timestamp's version is an integer");
    if (this.#stopped || !this.#member) return;
    // INV, ACK and Reject count only in the epoch they were sent in; VAL carries no epoch (spec).
    if (kind !== MsgKind.Val && !this.epochAccepted(epoch)) {
      this.counters.staleEpochMessages++;
      return;
    }
    const slot = this.#store.find(key, keyAt, keyLength);
    switch (kind) {
      case MsgKind.Inv:
        return this.#onInv(slot, key, keyAt, keyLength, from, version, writer, rmw, value, valueAt, valueLength, nowMs);
      case MsgKind.Ack:
        return this.#onAck(slot, from, version, writer, epoch, nowMs);
      case MsgKind.Val:
        return this.#onVal(slot, version, writer, nowMs);
      case MsgKind.Reject:
        return this.#onReject(slot, from, version, writer, epoch, rmw, value, valueAt, valueLength, nowMs);
      default:
        throw new Error(`unknown message kind ${kind}`);
    }
  }

  /** `slot` is the key's, or -1 when the store lacks it (it was the store's last lookup). */
  #onInv(
    slot: number,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    from: NodeId,
    version: number,
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): void {
    // Every update adds at least 1 to a version that starts at 0.
    assert(version > 0, "an INV carries an update's timestamp, above the initial 0.0");
    const store = this.#store;
    if (slot < 0) {
      // A new key: stored with the INV's value at once (one slot of the right class); #adopt below
      // then writes the same value in place along with the timestamp.
      slot = store.insertMissed(key, keyAt, keyLength, value, valueAt, valueLength, 0);
      if (slot < 0) {
        // No room for the key: as if the INV were lost (its coordinator sends it again).
        this.counters.storeFullDrops++;
        return;
      }
    } else {
      const side = store.side(slot);
      if (side !== null && side.stale && side.staleEpoch !== this.#epoch) {
        // A live update of the same version replaces a stale key even with a lower ts. A lower
        // version gets no answer until the join ends: a Reject with the stale state could spread a
        // lost RMW, and an ACK would claim a state this replica may not have (see beginJoin). In the
        // epoch in which the key went stale nothing committed without us: it answers as usual (its
        // Reject may be all that stops a lower RMW racing the one it holds, whose coordinator it may be).
        if (!this.#liveUpdateMeetsStale(side, from, version, writer, rmw, value, valueAt, valueLength, nowMs)) return;
        this.#sendTs(from, MsgKind.Ack, slot, version, writer, this.#epoch);
        return;
      }
    }
    const order = compareTs(version, writer, store.version(slot), store.writer(slot));
    if (order < 0 && this.rejectsLowerInv(rmw)) {
      // HRRcvRMWInv: a stale RMW gets this node's newer state instead of an ACK. We answer a stale
      // write the same way: its coordinator then learns of the higher update and finishes the
      // write in Trans, without VALs, so it never makes a superseded value readable. (With a plain
      // ACK it could validate its lower write while a higher RMW, computed from an older base,
      // is still in flight: the RMW would then overwrite a value that was read.)
      this.#sendOwn(from, MsgKind.Reject, slot);
      return;
    }
    if (order === 0 && store.state(slot) === KeyState.Write && store.side(slot)!.pendingRmw) {
      // Someone replays our own pending RMW. We do not ACK it: while we are a member, our RMW then
      // commits only through us, so when we see a higher ts we know it has not committed (and, as
      // we now hold the higher ts, never will in an epoch we belong to). Answering the client right
      // depends on this; we finish the RMW ourselves, since we are alive.
      return;
    }
    if (order > 0) {
      if (!this.#adopt(slot, from, version, writer, rmw, value, valueAt, valueLength, nowMs)) {
        // No room for the value: as if the INV were lost; the key keeps its state.
        this.counters.storeFullDrops++;
        return;
      }
    } else if (order === 0 && store.state(slot) === KeyState.Invalid) {
      store.side(slot)!.invalidSinceMs = nowMs; // the update is alive
    }
    // Equal (a retransmission or a replay) or higher: ACK.
    this.#sendTs(from, MsgKind.Ack, slot, version, writer, this.#epoch);
  }

  #onReject(
    slot: number,
    from: NodeId,
    version: number,
    writer: WriterId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): void {
    // The sender held a ts above an INV's, and every INV is above 0.0.
    assert(version > 0, "a Reject carries a timestamp above the initial 0.0");
    if (slot < 0) return;
    const store = this.#store;
    // Treated like an INV with a higher ts (the spec's RINV), without an ACK back.
    if (compareTs(version, writer, store.version(slot), store.writer(slot)) > 0) {
      if (!this.#adopt(slot, from, version, writer, rmw, value, valueAt, valueLength, nowMs)) {
        this.counters.storeFullDrops++;
        return;
      }
    }
    // For a pending write (not an RMW), the sender holds a ts above it, which is all an ACK of a
    // write says: count it. A pending RMW has been aborted by the adoption above.
    const side = store.side(slot);
    if (
      side !== null &&
      side.hasPending() &&
      !side.pendingRmw &&
      compareTs(version, writer, side.pendingVersion, side.pendingWriter) > 0
    ) {
      this.#countAck(side, from, epoch, nowMs);
    }
  }

  /**
   * A_I: take a higher ts and its value; the state follows the spec's RMW rules. False, changing
   * nothing, when the store has no room for the value.
   */
  #adopt(
    slot: number,
    from: NodeId,
    version: number,
    writer: WriterId,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
    nowMs: number,
  ): boolean {
    const store = this.#store;
    assert(
      compareTs(version, writer, store.version(slot), store.writer(slot)) > 0,
      "a key adopts only a higher timestamp",
    );
    assertIsNodeId(from, "the adopted update's sender is a node id 0..31");
    const state = store.state(slot) as KeyState;
    let side = store.side(slot);
    // W goes to Trans unless its RMW aborts: the own pending value must outlive the key's item.
    const toTrans = state === KeyState.Write && !(side!.pendingRmw && this.abortsOwnRmw());
    const kept = toTrans ? store.copyValue(slot) : null;
    if (!store.setValue(slot, value, valueAt, valueLength, 0)) return false;
    store.setTs(slot, version, writer, rmw, from);
    if (this.#journal !== null) this.#journalInstalled(slot);
    side ??= this.#attachSide(slot);
    side.invalidSinceMs = nowMs;
    side.stale = false;
    switch (state) {
      case KeyState.Valid:
      case KeyState.Invalid:
        store.setState(slot, KeyState.Invalid);
        break;
      case KeyState.Trans:
        break;
      case KeyState.Write:
        if (!toTrans) {
          // The RMW lost. Its client waits until the abort is final (key Valid at a higher ts),
          // then the op is evaluated again from the front of the queue.
          this.counters.rmwAborts++;
          const op = side.pendingOp;
          side.clearPending();
          store.setState(slot, KeyState.Invalid);
          if (op !== null) {
            op.retries++;
            side.waiting.unshift(op);
            this.#waitingKeys.add(side);
          }
        } else {
          side.pendingValue = kept;
          store.setState(slot, KeyState.Trans);
        }
        break;
      case KeyState.Replay:
        // The spec sends a replayer to invalid: the higher update supersedes the one replayed.
        side.clearPending();
        store.setState(slot, KeyState.Invalid);
        break;
    }
    this.#unsettled.add(side);
    return true;
  }

  #onAck(slot: number, from: NodeId, version: number, writer: WriterId, epoch: Epoch, nowMs: number): void {
    assert(version > 0, "an ACK echoes an INV's timestamp, above the initial 0.0");
    if (slot < 0) return;
    const side = this.#store.side(slot);
    if (side === null || !side.hasPending()) return;
    if (side.pendingVersion !== version || side.pendingWriter !== writer) return;
    this.#countAck(side, from, epoch, nowMs);
  }

  #countAck(side: KeySide, from: NodeId, epoch: Epoch, nowMs: number): void {
    assert(side.hasPending(), "ACKs count only towards a pending update");
    assert(from !== this.self, "an ACK never comes from this replica itself");
    assertIsNodeId(from, "an ACK comes from a node id 0..31");
    // Each epoch names one view, and only its members send in it. An ACK that says otherwise comes
    // from a confused or hostile sender, not from a bug here, so it is dropped rather than asserted.
    if (epoch === this.#epoch && !this.#isMemberId(from)) {
      this.counters.foreignAcks++;
      return;
    }
    const bit = 1 << from;
    if ((side.acks & bit) !== 0) return;
    side.acks |= bit;
    if (this.#probe !== null)
      this.#probe.ackCounted(this.self, this.#store.keyString(side.slot), from, epoch, this.#epoch);
    this.#maybeFinishPending(side, nowMs);
  }

  #onVal(slot: number, version: number, writer: WriterId, nowMs: number): void {
    assert(version > 0, "a VAL names a committed update's timestamp, above the initial 0.0");
    if (slot < 0) return;
    const store = this.#store;
    if (store.state(slot) === KeyState.Valid) return;
    if (store.version(slot) !== version || store.writer(slot) !== writer) return;
    const side = store.side(slot)!;
    // The current ts is committed. An own pending update is finished too: in Trans it is a lower
    // write linearized just before this one; in W or R someone replayed exactly it.
    if (side.hasPending()) {
      const op = side.pendingOp;
      const pendingVersion = side.pendingVersion;
      const pendingWriter = side.pendingWriter;
      const fromStore = store.state(slot) !== KeyState.Trans;
      const kept = side.pendingValue;
      side.clearPending();
      if (op !== null) this.#answerUpdate(op, slot, fromStore, kept, pendingVersion, pendingWriter);
    }
    this.#validate(side, nowMs);
  }

  /** Finish the pending update if every other member has ACKed it in this epoch. */
  #maybeFinishPending(side: KeySide, nowMs: number): void {
    if (!side.hasPending() || (side.acks & this.#othersMask) !== this.#othersMask) return;
    const store = this.#store;
    const slot = side.slot;
    const op = side.pendingOp;
    const version = side.pendingVersion;
    const writer = side.pendingWriter;
    const fromStore = store.state(slot) !== KeyState.Trans;
    const kept = side.pendingValue;
    side.clearPending();
    this.counters.updatesCommitted++;
    if (store.state(slot) === KeyState.Trans) {
      // A lower write finished while a higher one is in flight: no VAL (O1), the key stays Invalid.
      store.setState(slot, KeyState.Invalid);
      side.invalidSinceMs = nowMs;
      // Not a commit in the spec's sense (no VALs, never readable): it may be linearized before
      // concurrent updates, so the probe does not report it.
      if (op !== null) this.#answerUpdate(op, slot, fromStore, kept, version, writer);
      this.#serveKey(side, nowMs);
      return;
    }
    assert(
      store.state(slot) === KeyState.Write || store.state(slot) === KeyState.Replay,
      "a pending update not in Trans is in W or R",
    );
    assert(store.version(slot) === version, "in W or R the key holds the pending ts (version)");
    assert(store.writer(slot) === writer, "in W or R the key holds the pending ts (writer)");
    if (this.#probe !== null) this.#probe.committed(this.self, store.keyString(slot), version, writer, store.rmw(slot));
    const page = store.page(slot);
    const keyAt = store.keyAt(slot);
    const keyLength = store.keyBytes(slot);
    for (const to of this.#others)
      this.#outbox.send(to, MsgKind.Val, page, keyAt, keyLength, version, writer, 0, false, null, 0, 0);
    if (op !== null) this.#answerUpdate(op, slot, fromStore, kept, version, writer);
    this.#validate(side, nowMs);
  }

  /**
   * Have every timestamp installed from now on reported to `journal` (null: none). A node with a
   * data dir sets it after its recovery, so that what it loads from disk is not logged again.
   */
  setJournal(journal: Journal | null): void {
    this.#journal = journal;
  }

  #journalInstalled(slot: number): void {
    this.#journalItem(slot, false);
  }

  #journalValidated(slot: number): void {
    this.#journalItem(slot, true);
  }

  /** Report the key at `slot` to the journal, lending its bytes from the store (no copy). */
  #journalItem(slot: number, validated: boolean): void {
    const store = this.#store;
    const journal = this.#journal!;
    const page = store.page(slot);
    const report = validated ? journal.validated : journal.installed;
    report.call(
      journal,
      page,
      store.keyAt(slot),
      store.keyBytes(slot),
      store.version(slot),
      store.writer(slot),
      store.rmw(slot),
      store.hasValue(slot) ? page : null,
      store.valueAt(slot),
      store.valueBytes(slot),
    );
  }

  #validate(side: KeySide, nowMs: number): void {
    const store = this.#store;
    const slot = side.slot;
    assert(!side.hasPending(), "a key goes Valid only once its own pending update is finished");
    assert(store.state(slot) !== KeyState.Valid, "only an unsettled key is validated");
    store.setState(slot, KeyState.Valid);
    if (this.#journal !== null) this.#journalValidated(slot);
    side.stale = false;
    this.#unsettled.delete(side);
    if (this.#probe !== null)
      this.#probe.validated(this.self, store.keyString(slot), store.version(slot), store.writer(slot));
    if (this.changes !== null) this.#tellChange(slot);
    this.#serveKey(side, nowMs);
  }

  #tellChange(slot: number): void {
    this.#store.read(slot, this.#changeView);
    this.changes!.changed(this.#changeView);
  }

  // ---------------------------------------------------------------------------------------------
  // Ordered scans (prefix listings)

  /**
   * Visit keys in byte order from the first key > `after` (or >= `prefix` when `after` sorts below
   * it) while they start with `prefix`, until `visit` returns false. Each key is visited with its
   * fields in a lent view and whether it is readable now (Valid, with the lease valid at `nowMs`):
   * a readable key's value is what a linearizable read would return at this moment. Keys never
   * written or deleted (no value) are visited too; the caller skips them. Returns false without
   * visiting when the replica serves no reads (not a member, joining, stopped, lease expired).
   * No op is submitted and nothing waits: the caller decides what to do with unreadable keys.
   */
  scanValid(
    prefix: Uint8Array,
    prefixLength: number,
    after: Uint8Array | null,
    afterLength: number,
    nowMs: number,
    visit: (view: ItemView, readable: boolean) => boolean,
  ): boolean {
    if (this.#stopped || !this.#member || this.#joining || !this.leaseValid(nowMs)) return false;
    const store = this.#store;
    if (!store.ordered) return false; // built without the index (config.orderedKeys false): lists nothing
    const cursor = this.#cursor;
    if (after !== null && compareBytes(after, afterLength, prefix, prefixLength) >= 0)
      store.seekOrdered(cursor, after, 0, afterLength, true);
    else store.seekOrdered(cursor, prefix, 0, prefixLength, false);
    const view = this.#scanView;
    for (let slot = store.slotAt(cursor); slot >= 0; store.nextOrdered(cursor), slot = store.slotAt(cursor)) {
      store.read(slot, view);
      if (!startsWith(view.page, view.keyAt, view.keyBytes, prefix, prefixLength)) break;
      if (!visit(view, this.readable(view.state as KeyState, nowMs))) break;
    }
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Time: retransmissions, replays, timeouts

  tick(nowMs: number): void {
    if (this.#stopped) return;
    this.#expireOps(nowMs);
    if (!this.#member) return;
    const store = this.#store;
    for (const side of this.#unsettled) {
      if (side.hasPending()) {
        if (nowMs - side.invSentMs >= side.retransmitWaitMs) this.#retransmitInv(side, nowMs);
      } else if (store.state(side.slot) === KeyState.Invalid && !side.stale) {
        if (nowMs - side.invalidSinceMs >= this.config.mltMs || !this.#isMemberId(store.lastWriter(side.slot))) {
          this.#startReplay(side, nowMs);
        }
      }
    }
  }

  #expireOps(nowMs: number): void {
    for (;;) {
      const op = this.#deadlines.peekLive();
      if (op === null || op.deadlineMs > nowMs) return;
      this.#deadlines.pop();
      const side = op.side;
      if (side !== null) {
        const index = side.waiting.indexOf(op);
        if (index >= 0) {
          side.waiting.splice(index, 1);
          if (side.waiting.length === 0) this.#waitingKeys.delete(side);
        } else if (side.pendingOp === op) {
          side.pendingOp = null; // the update goes on; only its client gives up
        }
      }
      // An op that was issued may still take effect (it may be re-queued after a non-final abort).
      this.#answer(op, op.issued ? OpStatus.Unknown : OpStatus.Timeout, 0, 0);
      if (side !== null) this.#releaseIfSettled(side);
    }
  }

  /** HFollowerWriteReplay: take over the update this key was invalidated with, same ts and value. */
  #startReplay(side: KeySide, nowMs: number): void {
    const store = this.#store;
    const slot = side.slot;
    assert(store.state(slot) === KeyState.Invalid, "replays start from Invalid");
    assert(!side.hasPending(), "replays start with nothing pending (Invalid holds no own update)");
    this.counters.replaysStarted++;
    store.setState(slot, KeyState.Replay);
    side.pendingVersion = store.version(slot);
    side.pendingWriter = store.writer(slot);
    side.pendingValue = null; // the key's own value is replayed
    side.pendingRmw = store.rmw(slot);
    side.acks = 0;
    side.writeEpoch = this.#epoch;
    store.setLastWriter(slot, this.self);
    side.pendingOp = null;
    this.#broadcastInv(side, nowMs);
    this.#maybeFinishPending(side, nowMs);
  }

  #broadcastInv(side: KeySide, nowMs: number): void {
    assert(side.hasPending(), "INVs are sent only for a pending update");
    side.invSentMs = nowMs;
    side.retransmitWaitMs = this.config.retransmitMs;
    this.counters.invsSent += this.#sendPendingInvs(side, 0);
  }

  #retransmitInv(side: KeySide, nowMs: number): void {
    assert(side.hasPending(), "INVs are re-sent only for a pending update");
    side.invSentMs = nowMs;
    // Exponential backoff: under load ACKs are late, not lost, and re-sending every INV on a fixed
    // timer would add load exactly when there is too much (measured: nearly every INV re-sent).
    side.retransmitWaitMs = Math.min(side.retransmitWaitMs * 2, this.config.retransmitMs * retransmitBackoffMax);
    this.counters.invsRetransmitted += this.#sendPendingInvs(side, side.acks);
  }

  // ---------------------------------------------------------------------------------------------
  // Messages out: keys and values are lent from the store (or the side's kept value)

  /**
   * INVs of the key's pending update to the other members not in `skip` (a mask of node ids);
   * returns how many. The value is the key's own in W and R, the side's copy in Trans.
   */
  #sendPendingInvs(side: KeySide, skip: number): number {
    const item = this.#view;
    this.#store.read(side.slot, item);
    let value: Uint8Array | null;
    let valueAt: number;
    let valueLength: number;
    if (item.state === KeyState.Trans) {
      value = side.pendingValue;
      valueAt = 0;
      valueLength = value === null ? 0 : value.length;
    } else {
      value = item.hasValue ? item.page : null;
      valueAt = item.valueAt;
      valueLength = item.valueBytes;
    }
    let sent = 0;
    for (const to of this.#others) {
      if ((skip & (1 << to)) !== 0) continue;
      this.#outbox.send(
        to,
        MsgKind.Inv,
        item.page,
        item.keyAt,
        item.keyBytes,
        side.pendingVersion,
        side.pendingWriter,
        this.#epoch,
        side.pendingRmw,
        value,
        valueAt,
        valueLength,
      );
      sent++;
    }
    return sent;
  }

  /** A message carrying the key's own timestamp and value (a Reject). */
  #sendOwn(to: NodeId, kind: MsgKind, slot: number): void {
    const store = this.#store;
    const page = store.page(slot);
    const keyAt = store.keyAt(slot);
    const keyLength = store.keyBytes(slot);
    const value = store.hasValue(slot) ? page : null;
    this.#outbox.send(
      to,
      kind,
      page,
      keyAt,
      keyLength,
      store.version(slot),
      store.writer(slot),
      this.#epoch,
      store.rmw(slot),
      value,
      keyAt + keyLength,
      store.valueBytes(slot),
    );
  }

  /** A message with a timestamp and no value (ACK, VAL). */
  #sendTs(to: NodeId, kind: MsgKind, slot: number, version: number, writer: WriterId, epoch: Epoch): void {
    const store = this.#store;
    this.#outbox.send(
      to,
      kind,
      store.page(slot),
      store.keyAt(slot),
      store.keyBytes(slot),
      version,
      writer,
      epoch,
      false,
      null,
      0,
      0,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Answers

  /** Answer an op without a value. */
  #answer(op: Op, status: OpStatus, version: number, writer: WriterId): void {
    const id = op.id;
    this.#release(op);
    this.#completions.complete(id, status, null, 0, 0, version, writer);
  }

  /**
   * An own update committed (or finished below a higher one): Ok with its ts; an Incr gets its new
   * value, lent: the key's own (`fromStore`, in W and R) or the copy kept in Trans.
   */
  #answerUpdate(
    op: Op,
    slot: number,
    fromStore: boolean,
    kept: Uint8Array | null,
    version: number,
    writer: WriterId,
  ): void {
    const id = op.id;
    const incr = op.kind === OpKind.Incr;
    this.#release(op);
    const store = this.#store;
    if (!incr) this.#completions.complete(id, OpStatus.Ok, null, 0, 0, version, writer);
    else if (!fromStore)
      this.#completions.complete(id, OpStatus.Ok, kept, 0, kept === null ? 0 : kept.length, version, writer);
    else if (!store.hasValue(slot)) this.#completions.complete(id, OpStatus.Ok, null, 0, 0, version, writer);
    else
      this.#completions.complete(
        id,
        OpStatus.Ok,
        store.page(slot),
        store.valueAt(slot),
        store.valueBytes(slot),
        version,
        writer,
      );
  }

  /** An op is answered exactly once: it goes back to the pool before its completion. */
  #release(op: Op): void {
    assert(!op.done, "every op is answered exactly once");
    op.done = true;
    this.#pool.release(op);
  }

  /** Leaving the membership or stopping: nothing here will make progress any more. */
  #abandonAll(): void {
    for (const side of this.#waitingKeys) {
      for (const op of side.waiting) this.#answer(op, op.issued ? OpStatus.Unknown : OpStatus.Unavailable, 0, 0);
      side.waiting.length = 0;
    }
    const waited = [...this.#waitingKeys];
    this.#waitingKeys.clear();
    for (const side of this.#unsettled) {
      const op = side.pendingOp;
      side.pendingOp = null;
      if (op !== null) this.#answer(op, OpStatus.Unknown, 0, 0);
    }
    for (const side of waited) this.#releaseIfSettled(side);
  }

  // ---------------------------------------------------------------------------------------------
  // Rules as overridable predicates: the mutation tests subclass Replica and break exactly one.

  /** Reads are served only in Valid, and only while the lease is valid at the moment of answering. */
  protected readable(state: KeyState, nowMs: number): boolean {
    return state === KeyState.Valid && this.leaseValid(nowMs);
  }
  /** INV, ACK and Reject count only in the epoch they were sent in. */
  protected epochAccepted(epoch: Epoch): boolean {
    return epoch === this.#epoch;
  }
  /** Reset the ACK set of a pending update when the epoch changes (the spec's 2024 fix). */
  protected resetAcksOnEpochChange(side: KeySide): void {
    side.acks = 0;
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
  // Keys and side objects

  /** Encode a string key into #keyScratch (grown for long keys); returns its length in bytes. */
  #encodeKey(key: string): number {
    let length = utf8Encode(key, this.#keyScratch, 0, this.#keyScratch.length);
    if (length < 0) {
      const bytes = utf8Length(key);
      assert(bytes <= storeKeyBytesMax, "a key is at most 65535 UTF-8 bytes");
      this.#keyScratch = new Uint8Array(bytes);
      length = utf8Encode(key, this.#keyScratch, 0, bytes);
    }
    return length;
  }

  /** Look a string key up by its UTF-8 bytes. */
  #findString(key: string): number {
    const length = this.#encodeKey(key);
    return this.#store.find(this.#keyScratch, 0, length);
  }

  #attachSide(slot: number): KeySide {
    const side = this.#freeSides.pop() ?? new KeySide();
    this.#store.attachSide(slot, side);
    return side;
  }

  /** A key that is Valid with nothing waiting needs no side object: give it back to the pool. */
  #releaseIfSettled(side: KeySide): void {
    if (side.slot < 0 || side.waiting.length > 0 || this.#store.state(side.slot) !== KeyState.Valid) return;
    assert(!side.hasPending(), "a Valid key has no pending update");
    this.#store.detachSide(side);
    side.reset();
    if (this.#freeSides.length < freeSidesMax) this.#freeSides.push(side);
  }

  #isMemberId(id: NodeId): boolean {
    return (this.#membersMask & (1 << id)) !== 0;
  }
}
