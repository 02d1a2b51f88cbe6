// Linearizability checker for client histories of the KV store.
//
// The question: is there a total order of the ops, each placed at one instant inside its own
// [call, ret] interval, in which every recorded output is what the sequential model (kv-model.ts)
// answers? Ops with an unknown outcome may be placed at any instant after their call, or nowhere.
//
// How (the ideas of Wing & Gong, Lowe, and Porcupine; this code is our own):
// - Linearizability is compositional (local): a history is linearizable iff each key's
//   sub-history is. So each key is checked on its own, which keeps every search small.
// - Per key, a depth-first search builds the order from the front. An op may go next only if its
//   call is not after the earliest return among the ops not yet placed (else that returned op
//   would be ordered after an op that started after it returned). The known-outcome ops are kept
//   in a list of call and return events sorted by time; placing an op unlinks its two events and
//   backtracking relinks them (dancing links), so a step costs O(ops in flight), not O(history).
//   The ops that may go next are tried in order of their returns.
// - Memoization: a search state is (set of placed ops, model state). Reaching a state seen before
//   means its whole subtree was already explored (and failed), so it is skipped. Without this
//   cache, concurrent ops make the search exponential.
// - Greedy observers: a known op that fits the current state without changing it (a read of the
//   current value, a CAS that fails, an incr on a non-number) is placed at once, as the state's
//   only child. Any linearization can be rearranged to place it first: it changes nothing, and it
//   may go next, so no real-time constraint is broken.
// - Lookahead: when the op with the earliest return needs a value (a read, a successful CAS) that
//   the state does not hold and that no op still placeable can write, the state is a dead end at
//   once, instead of after trying every order of the ops in flight.
// - Unknown-outcome ops accept any output, so they never have to be placed: a state is done once
//   every op with a known outcome is placed (the rest can go "at the end", where nobody observes
//   them). They are tried only after the known ops, and these rules keep them from multiplying
//   the orders to try, each without losing any linearization:
//   - An unknown op is placed only where it changes the state: elsewhere it is the same as absent.
//   - A write never follows an unknown op u while every op placed since u would also have fit
//     without u: the write hides u's effect, so the same order without u (which then never
//     happens) is just as good. Whether such a "window" is open, and the state before u, is part of
//     the cached state, since this rule depends on it.
//   - Unknown ops with identical inputs are placed in call order: swapping two of them changes no
//     state and no output, and the earlier call can take the later one's place.
//   - Dominance: a state is skipped when a finished (failed) state had the same placed known ops,
//     model state and window, and placed a subset of its unknown ops: whatever the larger set can
//     do, the smaller can too, by placing the difference at the end.
//   And before the search, unknown writes whose value nothing can observe are removed
//   (`dropUnobservableOps`).
// - The search is bounded by `statesMax` (states added to the cache). Past it, that key's answer
//   is "unknown" rather than a hang. Proving that no order exists can take exponentially many
//   states when many ops overlap, so before searching, quick checks catch the usual violations
//   directly (a value never written, not yet written, or already overwritten when it was read);
//   they also give the most precise witness.
// The tests cross-check every verdict against a brute-force search of all orders on thousands of
// small random histories, which is what keeps these rules honest.

import { formatHistoryOp, formatKvOutput, formatKvValue, type HistoryOp, validateHistoryOp } from "./history.ts";
import { kvApply, kvOutputsEqual, kvStep, parseKvInteger, type KvState } from "./kv-model.ts";

export type LinResult =
  | { ok: true; keys: number; ops: number }
  | { ok: false; key: string; message: string; witness: string[] }
  | { ok: "unknown"; key: string; message: string };

export interface LinOptions {
  /** Search states per key before answering "unknown" for that key. */
  statesMax?: number;
  /**
   * Run the quick checks for reads of values never written, not yet written or already
   * overwritten before the search (default true). They answer the common violations at once and
   * with a precise witness; tests turn them off to make the search itself find violations.
   */
  quickChecks?: boolean;
}

/**
 * Default search bound per key. A state costs about 40 bytes in the visit table, plus 4 bytes per
 * 32 unknown-outcome ops; at this bound a search has used about 300 MB and several seconds.
 * Linearizable histories of thousands of ops need a few thousand states.
 */
export const linStatesMaxDefault = 2_000_000;

/** Witness size: how many ops of the longest linearizable prefix, and of the stuck ops, are shown. */
const witnessPrefixOpsMax = 12;
const witnessCandidateOpsMax = 12;

/** One line per entry: the verdict, then the witness, for printing a failure. */
export function formatLinResult(result: LinResult): string {
  if (result.ok === true) return `linearizable: ${String(result.ops)} ops on ${String(result.keys)} keys`;
  if (result.ok === "unknown") return `linearizability unknown: ${result.message}`;
  return [result.message, ...result.witness].join("\n");
}

/** The verdict for one key, with how many search states it took (for tests and benchmarks). */
export type KeyCheck =
  | { kind: "ok"; states: number; opsSearched: number }
  | { kind: "fail"; states: number; message: string; witness: string[] }
  | { kind: "unknown"; states: number; message: string };

/**
 * Checks a whole history. The first key (in sorted order) that is not linearizable decides the
 * answer; if none fails but some key's search hit `statesMax`, the answer is "unknown" for it.
 * Throws on a malformed history (that is a bug in the test, not in the store).
 */
export function checkLinearizable(ops: HistoryOp[], opts: LinOptions = {}): LinResult {
  const ids = new Set<number>();
  const byKey = new Map<string, HistoryOp[]>();
  for (const op of ops) {
    validateHistoryOp(op);
    if (ids.has(op.id)) throw new Error(`checkLinearizable: op id ${String(op.id)} appears twice`);
    ids.add(op.id);
    let list = byKey.get(op.key);
    if (list === undefined) {
      list = [];
      byKey.set(op.key, list);
    }
    list.push(op);
  }

  // Sorted so that the verdict (which key is reported) does not depend on the history's order.
  const keys = [...byKey.keys()].sort();
  let firstUnknown: LinResult | null = null;
  for (const key of keys) {
    const check = checkKeyLinearizable(key, byKey.get(key) as HistoryOp[], opts);
    if (check.kind === "fail") return { ok: false, key, message: check.message, witness: check.witness };
    if (check.kind === "unknown" && firstUnknown === null)
      firstUnknown = { ok: "unknown", key, message: check.message };
  }
  return firstUnknown ?? { ok: true, keys: keys.length, ops: ops.length };
}

/** Checks the sub-history of one key. `ops` must all be of `key` and valid (see validateHistoryOp). */
export function checkKeyLinearizable(key: string, ops: HistoryOp[], opts: LinOptions = {}): KeyCheck {
  const statesMax = opts.statesMax ?? linStatesMaxDefault;
  if (!Number.isSafeInteger(statesMax) || statesMax <= 0)
    throw new Error(`checkLinearizable: statesMax must be a positive integer, got ${String(statesMax)}`);
  for (const op of ops)
    if (op.key !== key)
      throw new Error(
        `checkKeyLinearizable: op #${String(op.id)} is of key ${JSON.stringify(op.key)}, not ${JSON.stringify(key)}`,
      );
  const searched = dropUnobservableOps(ops);
  if (opts.quickChecks ?? true) {
    const quick = findImpossibleObservation(key, searched) ?? findStaleOrFutureObservation(key, searched);
    if (quick !== null) return quick;
  }
  return new KeySearch(key, searched, ops.length - searched.length, statesMax).run();
}

/**
 * Removes unknown-outcome ops that cannot change the verdict, before the search:
 * - reads: no effect, and any output is acceptable, so they constrain nothing;
 * - a write or CAS u of value v such that no read returned v, no CAS expects v, no CAS that failed
 *   (known outcome) returned after u's call, and no incr either is unknown or returned after u's
 *   call. Proof sketch: take a linearization that places u. Until the next write, every op sees v:
 *   no known read can (none returned v), no CAS can succeed (none expects v), no failed CAS or
 *   incr with a known outcome is there (each would have returned after u's call), and an unknown
 *   incr or CAS there has no effect (v is not an integer, or not expected) and can move to the
 *   very end. Removing u and moving those gives a linearization without u; the converse holds by
 *   placing u at the end. A failed CAS or an incr can use a value nobody reads (to fail, or to
 *   answer not-a-number), which is why those keep u.
 * Timed-out writes that nobody read are common in fault-injection runs, and each one left in the
 * history widens the search.
 */
function dropUnobservableOps(ops: HistoryOp[]): HistoryOp[] {
  const kept = ops.filter((op) => !(op.output === null && op.input.type === "read"));
  const observed = new Set<KvState>();
  // The latest return of an op that can observe a value nobody reads; Infinity for unknown incrs.
  let observerRetMax = Number.NEGATIVE_INFINITY;
  for (const op of kept) {
    if (op.output !== null && op.output.type === "read") observed.add(op.output.value);
    if (op.input.type === "cas") observed.add(op.input.expected);
    const failedCas = op.output !== null && op.output.type === "cas" && !op.output.ok;
    if (failedCas || op.input.type === "incr")
      observerRetMax = Math.max(observerRetMax, op.ret ?? Number.POSITIVE_INFINITY);
  }
  return kept.filter((op) => {
    if (op.output !== null) return true;
    if (op.input.type !== "write" && op.input.type !== "cas") return true;
    return observed.has(op.input.value) || observerRetMax >= op.call;
  });
}

/**
 * A fast, clear answer for the most common violation: a read (or a successful CAS) that observed a
 * value no op of this key ever wrote.
 */
function findImpossibleObservation(key: string, ops: HistoryOp[]): KeyCheck | null {
  const written = new Set<KvState>([null]);
  let counter = false;
  for (const op of ops) {
    if (op.input.type === "write" || op.input.type === "cas") written.add(op.input.value);
    if (op.input.type === "incr") counter = true;
  }
  const producible = (value: KvState): boolean =>
    written.has(value) || (counter && value !== null && parseKvInteger(value) !== null);
  for (const op of ops) {
    let seen: KvState | undefined;
    if (op.output !== null && op.output.type === "read") seen = op.output.value;
    if (op.output !== null && op.output.type === "cas" && op.output.ok && op.input.type === "cas")
      seen = op.input.expected;
    if (seen === undefined || producible(seen)) continue;
    const what = op.input.type === "read" ? "read" : "successful cas expected";
    return {
      kind: "fail",
      states: 0,
      message: `key ${JSON.stringify(key)}: not linearizable: ${formatHistoryOp(op)} ${what} ${formatKvValue(seen)}, which no op of this key writes`,
      witness: [
        `key ${JSON.stringify(key)}: no write, cas or incr of this key produces ${formatKvValue(seen)}, but this op observed it:`,
        `  ${formatHistoryOp(op)}`,
      ],
    };
  }
  return null;
}

/**
 * The usual stale and future reads, found without a search, when the value observed (by a read,
 * or a successful CAS's expected value) is not absent and has exactly one producer w (the write or
 * CAS of that value; values are unique per key in tests, and with repeats this check stays out):
 * - future: w was called after the observer returned, so it cannot have been placed before it;
 * - stale: w (known outcome) returned before some op x with a known outcome that changes the value
 *   (a write, a successful CAS, an incr that answered a number) was called, and x returned before
 *   the observer was called. Every linearization then orders w, x, observer, and after x the
 *   value is never the observed one again, since only w writes it.
 * On keys with incr, an integer value can also come from an incr, so such values are skipped.
 */
function findStaleOrFutureObservation(key: string, ops: HistoryOp[]): KeyCheck | null {
  const producers = new Map<string, HistoryOp[]>();
  let counter = false;
  for (const op of ops) {
    if (op.input.type === "incr") counter = true;
    if ((op.input.type === "write" || op.input.type === "cas") && op.input.value !== null) {
      const list = producers.get(op.input.value);
      if (list === undefined) producers.set(op.input.value, [op]);
      else list.push(op);
    }
  }
  // Known ops that change the value, by call; suffixRetMin[k] = the earliest return among changers[k..].
  const changers = ops
    .filter(
      (op) =>
        op.output !== null &&
        (op.output.type === "write" || (op.output.type === "cas" && op.output.ok) || op.output.type === "incr"),
    )
    .sort((a, b) => a.call - b.call);
  const suffixRetMin = new Float64Array(changers.length + 1).fill(Number.POSITIVE_INFINITY);
  const suffixRetMinOp = new Int32Array(changers.length + 1).fill(-1);
  for (let k = changers.length - 1; k >= 0; k--) {
    const ret = (changers[k] as HistoryOp).ret as number;
    const later = suffixRetMin[k + 1] as number;
    suffixRetMin[k] = Math.min(ret, later);
    suffixRetMinOp[k] = ret <= later ? k : (suffixRetMinOp[k + 1] as number);
  }
  for (const op of ops) {
    let seen: string | null = null;
    if (op.output?.type === "read") seen = op.output.value;
    if (op.output?.type === "cas" && op.output.ok && op.input.type === "cas") seen = op.input.expected;
    if (seen === null || (counter && parseKvInteger(seen) !== null)) continue;
    const only = producers.get(seen);
    if (only === undefined || only.length !== 1) continue;
    const writer = only[0] as HistoryOp;
    const observerRet = op.ret as number;
    if (writer.call > observerRet) {
      return quickFailure(
        key,
        `${formatHistoryOp(op)} observed ${formatKvValue(seen)}, which only #${String(writer.id)} writes, and that was called after it returned`,
        [op, writer],
      );
    }
    if (writer.ret === null) continue;
    // The first changer called after the writer returned, then the earliest return from there on.
    let low = 0;
    let high = changers.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if ((changers[mid] as HistoryOp).call > writer.ret) high = mid;
      else low = mid + 1;
    }
    if ((suffixRetMin[low] as number) < op.call) {
      const between = changers[suffixRetMinOp[low] as number] as HistoryOp;
      return quickFailure(
        key,
        `${formatHistoryOp(op)} observed ${formatKvValue(seen)}, which only #${String(writer.id)} writes, but #${String(between.id)} changed the value after that write returned and before this op was called`,
        [writer, between, op],
      );
    }
  }
  return null;
}

function quickFailure(key: string, why: string, ops: HistoryOp[]): KeyCheck {
  return {
    kind: "fail",
    states: 0,
    message: `key ${JSON.stringify(key)}: not linearizable: ${why}`,
    witness: [`key ${JSON.stringify(key)}: ${why}:`, ...ops.map((op) => `  ${formatHistoryOp(op)}`)],
  };
}

/** Path marker (in place of a phase): the op was placed as its state's only child (an observer). */
const phaseForced = 2;

const enum Push {
  /** The op is placed and the search goes on from the new state. */
  Pushed = 0,
  /** The new state was seen (or is dominated): the op is not placed. */
  Pruned = 1,
  /** Every known op is placed: linearizable. */
  Done = 2,
  /** statesMax reached. */
  GaveUp = 3,
}

/**
 * The search over one key's ops (see the file comment). Ops are indexed in call order. Known ops
 * have events e = 2·op + (0 call | 1 return) in a linked list, node = e + 1, head node 0, and -1
 * ends it. Unknown ops never return, so they are kept apart, in call order.
 */
class KeySearch {
  readonly #key: string;
  readonly #droppedCount: number;
  readonly #statesMax: number;
  readonly #sorted: HistoryOp[];
  readonly #n: number;

  // Known ops: dense indices (`slot`) in call order; unknown ops: bit positions, in call order.
  readonly #known: Uint8Array;
  readonly #slot: Int32Array;
  readonly #knownCount: number;
  readonly #knownCall: Float64Array;
  readonly #knownRet: Float64Array;
  readonly #unknownCount: number;
  // Unknown ops with identical inputs (up to #intern) form a group, placed in call order (see the
  // file comment), so each group's placed members are a prefix: `#groupPlaced` counts them.
  readonly #groupOf: Int32Array;
  readonly #groupStart: Int32Array;
  readonly #groupSize: Int32Array;
  readonly #groupMembers: Int32Array;
  readonly #groupPlaced: Int32Array;
  readonly #groupCount: number;
  // Groups of unknown CASes by the state they expect, and groups of unknown incrs: the unknown ops
  // that are not writes, which #enables looks up by state.
  readonly #casGroupsByExpected = new Map<number, number[]>();
  readonly #incrGroups: number[] = [];

  // The event list of known ops.
  readonly #next: Int32Array;
  readonly #prev: Int32Array;
  readonly #nodeTime: Float64Array;

  /** Writes: a write may not follow an unknown op while its window is open. */
  readonly #blindWrite: Uint8Array;

  // Model states, interned: the cache holds small integers instead of values. Values that no op
  // can tell apart share one id (see #intern).
  readonly #stateValues: KvState[] = [null];
  readonly #stateIds = new Map<string, number>();
  readonly #observed = new Set<string>();
  #unobservedId = -1;

  // Lookahead: the state each op needs (known reads and successful CASes), or -1; the ops that can
  // produce each state, in call order; whether incr can produce integers on this key.
  readonly #needs: Int32Array;
  readonly #producers = new Map<number, number[]>();
  #counterKey = false;

  // The placed set: known ops as `#placedKnown`, `#firstUnplaced` (every placed known op above it
  // was placed while it was unplaced, so its call is before that op's return: the set is "all
  // below" plus a few ops in flight with it) and a Zobrist hash; unknown ops as a bitset.
  readonly #placedKnown: Uint8Array;
  #placedKnownCount = 0;
  #firstUnplaced = 0;
  readonly #zobrist: Int32Array;
  #placedHash = 0;
  readonly #unknownBits: Uint32Array;
  #unknownUnplacedCount: number;
  readonly #above: Int32Array;

  readonly #visits: VisitTable;

  // The path: op placed at each depth, the state, window and visit entry before/at it, and the
  // phase it was tried in.
  readonly #pathOp: Int32Array;
  readonly #pathStateBefore: Int32Array;
  readonly #pathWindowBefore: Int32Array;
  readonly #pathPhase: Uint8Array;
  readonly #pathVisit: Int32Array;
  #depth = 0;
  #stateId = 0;
  /** The open unknown-op window: the state before the unknown op u, or -1 (see the file comment). */
  #window = -1;
  #states = 0;

  // The current scan: the first return event (its op must be placed before any op that starts
  // after it), its time, the latest return among the known ops that may go next, and an observer
  // among them that fits the state as it is (or -1).
  #firstReturn = -1;
  #firstReturnTime = 0;
  #candidatesRetMax = 0;
  #observerNow = -1;

  // The deepest dead end (by known ops placed), for the witness.
  #bestKnown = -1;
  #bestPath = new Int32Array(0);
  #bestStateId = 0;
  #bestCandidates: number[] = [];
  #bestBlocking = -1;

  constructor(key: string, ops: HistoryOp[], droppedCount: number, statesMax: number) {
    this.#key = key;
    this.#droppedCount = droppedCount;
    this.#statesMax = statesMax;
    const sorted = ops.slice().sort((a, b) => a.call - b.call || a.id - b.id);
    const n = sorted.length;
    this.#sorted = sorted;
    this.#n = n;

    this.#known = new Uint8Array(n);
    this.#slot = new Int32Array(n);
    let knownCount = 0;
    let unknownCount = 0;
    for (let i = 0; i < n; i++) {
      if ((sorted[i] as HistoryOp).output !== null) {
        this.#known[i] = 1;
        this.#slot[i] = knownCount++;
      } else {
        this.#slot[i] = unknownCount++;
      }
    }
    this.#knownCount = knownCount;
    this.#unknownCount = unknownCount;
    this.#unknownUnplacedCount = unknownCount;
    this.#knownCall = new Float64Array(knownCount);
    this.#knownRet = new Float64Array(knownCount);
    for (let i = 0; i < n; i++) {
      const op = sorted[i] as HistoryOp;
      const s = this.#slot[i] as number;
      if (this.#known[i] === 1) {
        this.#knownCall[s] = op.call;
        this.#knownRet[s] = op.ret as number;
      }
    }

    // Event list of known ops, sorted by time; at equal times calls come first (closed intervals:
    // touching ops are concurrent).
    this.#next = new Int32Array(2 * n + 1).fill(-1);
    this.#prev = new Int32Array(2 * n + 1).fill(-1);
    this.#nodeTime = new Float64Array(2 * n + 1);
    const events: number[] = [];
    for (let i = 0; i < n; i++) {
      if (this.#known[i] === 0) continue;
      const op = sorted[i] as HistoryOp;
      events.push(2 * i, 2 * i + 1);
      this.#nodeTime[2 * i + 1] = op.call;
      this.#nodeTime[2 * i + 2] = op.ret as number;
    }
    const time = this.#nodeTime;
    events.sort((a, b) => (time[a + 1] as number) - (time[b + 1] as number) || (a & 1) - (b & 1) || a - b);
    let tail = 0;
    for (const e of events) {
      this.#next[tail] = e + 1;
      this.#prev[e + 1] = tail;
      tail = e + 1;
    }
    this.#next[tail] = -1;

    for (const op of sorted) {
      if (op.output?.type === "read" && op.output.value !== null) this.#observed.add(op.output.value);
      if (op.input.type === "cas" && op.input.expected !== null) this.#observed.add(op.input.expected);
      if (op.input.type === "incr") this.#counterKey = true;
    }
    this.#blindWrite = new Uint8Array(n);
    const groupBySignature = new Map<string, number[]>();
    this.#needs = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const op = sorted[i] as HistoryOp;
      if (op.input.type === "write") this.#blindWrite[i] = 1;
      if (op.output?.type === "read") this.#needs[i] = this.#intern(op.output.value);
      if (op.output?.type === "cas" && op.output.ok && op.input.type === "cas")
        this.#needs[i] = this.#intern(op.input.expected);
      if (op.input.type === "write" || op.input.type === "cas") {
        const id = this.#intern(op.input.value);
        const list = this.#producers.get(id);
        if (list === undefined) this.#producers.set(id, [i]);
        else list.push(i);
      }
      if (this.#known[i] === 1) continue;
      const signature = this.#inputSignature(op);
      const members = groupBySignature.get(signature);
      if (members === undefined) groupBySignature.set(signature, [i]);
      else members.push(i);
    }
    // Groups in order of their first member's call (Map keeps insertion order).
    this.#groupCount = groupBySignature.size;
    this.#groupOf = new Int32Array(n).fill(-1);
    this.#groupStart = new Int32Array(this.#groupCount);
    this.#groupSize = new Int32Array(this.#groupCount);
    this.#groupMembers = new Int32Array(unknownCount);
    this.#groupPlaced = new Int32Array(this.#groupCount);
    let g = 0;
    let at = 0;
    for (const members of groupBySignature.values()) {
      this.#groupStart[g] = at;
      this.#groupSize[g] = members.length;
      const input = (sorted[members[0] as number] as HistoryOp).input;
      if (input.type === "incr") this.#incrGroups.push(g);
      if (input.type === "cas") {
        const expected = this.#intern(input.expected);
        const list = this.#casGroupsByExpected.get(expected);
        if (list === undefined) this.#casGroupsByExpected.set(expected, [g]);
        else list.push(g);
      }
      for (const i of members) {
        this.#groupOf[i] = g;
        this.#groupMembers[at++] = i;
      }
      g++;
    }

    this.#placedKnown = new Uint8Array(knownCount);
    this.#zobrist = new Int32Array(knownCount);
    const zobristNext = splitMix32(0x9e3779b9 ^ knownCount);
    for (let k = 0; k < knownCount; k++) this.#zobrist[k] = zobristNext();
    this.#unknownBits = new Uint32Array(Math.max(1, Math.ceil(unknownCount / 32)));
    this.#above = new Int32Array(knownCount);
    this.#visits = new VisitTable(unknownCount === 0 ? 0 : this.#unknownBits.length);

    this.#pathOp = new Int32Array(n);
    this.#pathStateBefore = new Int32Array(n);
    this.#pathWindowBefore = new Int32Array(n);
    this.#pathPhase = new Uint8Array(n);
    this.#pathVisit = new Int32Array(n).fill(-1);
  }

  run(): KeyCheck {
    const next = this.#next;
    const sorted = this.#sorted;
    // Phase 0 tries the known ops that may go next, in order of their returns (node walks the
    // event list from the first return); phase 1 the unknown ones, the next of each group (cursor
    // walks the groups).
    let phase = 0;
    let node = -1;
    let cursor = 0;
    let hopeless = false;
    // Just arrived in this state (not back from a child): the observer shortcut applies.
    let fresh = false;
    const enter = (): void => {
      this.#beginScan();
      phase = 0;
      node = this.#firstReturn;
      cursor = 0;
      hopeless = this.#blockedForever();
      fresh = true;
    };
    enter();
    while (this.#placedKnownCount < this.#knownCount) {
      const arrived = fresh;
      fresh = false;
      if (arrived && !hopeless && this.#observerNow >= 0) {
        const push = this.#push(this.#observerNow, this.#stateId, phaseForced);
        if (push === Push.Done) break;
        if (push === Push.GaveUp) return this.#gaveUp();
        if (push === Push.Pruned) hopeless = true;
        else enter();
        continue;
      }

      let candidate = -1;
      if (!hopeless) {
        if (phase === 0) {
          while (node !== -1 && (this.#nodeTime[node] as number) <= this.#candidatesRetMax) {
            const i = (node - 1) >> 1;
            if (((node - 1) & 1) === 1 && (sorted[i] as HistoryOp).call <= this.#firstReturnTime) {
              candidate = i;
              break;
            }
            node = next[node] as number;
          }
          if (candidate < 0 && this.#unknownUnplacedCount > 0) {
            phase = 1;
            cursor = 0;
          }
        }
        if (phase === 1) {
          for (; cursor < this.#groupCount; cursor++) {
            const i = this.#groupNext(cursor);
            if (i >= 0 && (sorted[i] as HistoryOp).call <= this.#firstReturnTime) {
              candidate = i;
              break;
            }
          }
        }
      }

      if (candidate < 0) {
        // Dead end: back to the previous state, to its next candidate.
        this.#recordDeadEnd();
        if (this.#depth === 0) return this.#failure();
        const i = this.#pop();
        phase = this.#pathPhase[this.#depth] as number;
        hopeless = phase === phaseForced;
        if (phase === 0) node = next[2 * i + 2] as number;
        else if (phase === 1) cursor = (this.#groupOf[i] as number) + 1;
        continue;
      }

      if (phase === 0) node = next[node] as number;
      else cursor++;
      const afterId = this.#fits(candidate);
      if (afterId < 0) continue;
      const push = this.#push(candidate, afterId, phase);
      if (push === Push.Done) break;
      if (push === Push.GaveUp) return this.#gaveUp();
      if (push === Push.Pushed) enter();
    }
    return { kind: "ok", states: this.#states, opsSearched: this.#n };
  }

  /** The state after op i if it may be placed now (outputs and the unknown-op rules), else -1. */
  #fits(i: number): number {
    const known = this.#known[i] === 1;
    if (this.#blindWrite[i] === 1 && this.#window >= 0) return -1;
    const op = this.#sorted[i] as HistoryOp;
    const before = this.#stateValues[this.#stateId] as KvState;
    const after = kvStep(before, op.input, op.output);
    if (after === undefined) return -1;
    // An unknown op that would not change the state here is never placed here: leaving it out
    // (its output is unconstrained) is equivalent, and keeps it available for later.
    if (!known && after === before) return -1;
    const afterId = this.#intern(after);
    if (!known && !this.#enables(i, afterId)) return -1;
    return afterId;
  }

  /**
   * Whether, after unknown op u takes the state to `afterId`, some op could come next: a known op
   * that may go next and fits (a write may not: u's window is open), or the next op of a group of
   * unknown ops that would change the state (not a write, for the same reason). If none can, no
   * linearization places u here, and trying it would only add a state that dies at once; at a
   * dead end, that is most unknown ops.
   */
  #enables(u: number, afterId: number): boolean {
    const state = this.#stateValues[afterId] as KvState;
    const sorted = this.#sorted;
    for (let node = this.#next[0] as number; node !== -1 && ((node - 1) & 1) === 0; node = this.#next[node] as number) {
      const c = (node - 1) >> 1;
      const op = sorted[c] as HistoryOp;
      if (this.#blindWrite[c] === 0 && kvStep(state, op.input, op.output) !== undefined) return true;
    }
    const casGroups = this.#casGroupsByExpected.get(afterId) ?? noGroups;
    for (let k = 0; k < casGroups.length + this.#incrGroups.length; k++) {
      const g = (k < casGroups.length ? casGroups[k] : this.#incrGroups[k - casGroups.length]) as number;
      let c = this.#groupNext(g);
      if (g === this.#groupOf[u]) {
        // u's own group: the member after u is next once u is placed.
        const position = (this.#groupStart[g] as number) + (this.#groupPlaced[g] as number) + 1;
        c =
          position < (this.#groupStart[g] as number) + (this.#groupSize[g] as number)
            ? (this.#groupMembers[position] as number)
            : -1;
      }
      if (c < 0) continue;
      const op = sorted[c] as HistoryOp;
      if (op.call <= this.#firstReturnTime && kvStep(state, op.input, null) !== state) return true;
    }
    return false;
  }

  /** Places op i, going to state `afterId`, unless the new state was seen. */
  #push(i: number, afterId: number, phase: number): Push {
    const nextWindow = this.#windowAfter(i, afterId);
    this.#place(i);
    if (this.#placedKnownCount === this.#knownCount) return Push.Done;
    const visit = this.#visit(afterId, nextWindow);
    if (visit < 0) {
      this.#unplace(i);
      return Push.Pruned;
    }
    this.#states++;
    if (this.#states > this.#statesMax) return Push.GaveUp;
    const d = this.#depth++;
    this.#pathOp[d] = i;
    this.#pathStateBefore[d] = this.#stateId;
    this.#pathWindowBefore[d] = this.#window;
    this.#pathPhase[d] = phase;
    this.#pathVisit[d] = visit;
    this.#stateId = afterId;
    this.#window = nextWindow;
    if (this.#known[i] === 1) this.#lift(i);
    return Push.Pushed;
  }

  /** Undoes the last push (its subtree is finished) and returns its op; the scan is restarted. */
  #pop(): number {
    const d = --this.#depth;
    const i = this.#pathOp[d] as number;
    this.#visits.finish(this.#pathVisit[d] as number);
    this.#unplace(i);
    this.#stateId = this.#pathStateBefore[d] as number;
    this.#window = this.#pathWindowBefore[d] as number;
    if (this.#known[i] === 1) this.#unlift(i);
    this.#beginScan();
    return i;
  }

  /** The window after placing op i in the current state, going to `afterId` (see the file comment). */
  #windowAfter(i: number, afterId: number): number {
    if (this.#known[i] === 0) return this.#stateId; // placed only where it changes the state
    if (afterId !== this.#stateId || this.#window < 0) return -1;
    const op = this.#sorted[i] as HistoryOp;
    const beforeWindow = this.#stateValues[this.#window] as KvState;
    return kvStep(beforeWindow, op.input, op.output) === beforeWindow ? this.#window : -1;
  }

  #beginScan(): void {
    const next = this.#next;
    const state = this.#stateValues[this.#stateId] as KvState;
    let node = next[0] as number;
    let retMax = Number.NEGATIVE_INFINITY;
    let observer = -1;
    while (node !== -1 && ((node - 1) & 1) === 0) {
      const i = (node - 1) >> 1;
      retMax = Math.max(retMax, this.#knownRet[this.#slot[i] as number] as number);
      if (observer < 0 && observesOnly(this.#sorted[i] as HistoryOp, state)) observer = i;
      node = next[node] as number;
    }
    this.#firstReturn = node;
    this.#firstReturnTime = node === -1 ? Number.POSITIVE_INFINITY : (this.#nodeTime[node] as number);
    this.#candidatesRetMax = retMax;
    this.#observerNow = observer;
  }

  /**
   * Whether the current state is a dead end that no order of the candidates can get out of: the op
   * with the earliest return must be placed before any op that starts after that return, and if it
   * needs a value (a read, a successful CAS) that the state does not hold and that no unplaced op
   * starting in time can write, it never fits. Without this, the search would try every order of
   * the ops in flight before noticing, which is exponential in the number of clients.
   */
  #blockedForever(): boolean {
    if (this.#firstReturn === -1) return false;
    const need = this.#needs[(this.#firstReturn - 1) >> 1] as number;
    if (need < 0 || need === this.#stateId) return false;
    if (this.#counterKey && need !== 0 && parseKvInteger(this.#stateValues[need] as string) !== null) return false;
    for (const p of this.#producers.get(need) ?? noProducers) {
      if ((this.#sorted[p] as HistoryOp).call > this.#firstReturnTime) break;
      if (this.#known[p] === 1 ? this.#placedKnown[this.#slot[p] as number] === 0 : !this.#isPlacedUnknown(p))
        return false;
    }
    return true;
  }

  /**
   * The id of a value. The model tells values apart only by equality with a value read or expected
   * by a CAS, and (for incr) by whether they are integers. So all other values, typically those of
   * writes nobody read, are one state: the first of them stands for all. This merges search states
   * that differ only in which unread value the key holds, and makes unknown writes of such values
   * interchangeable (see #inputSignature).
   */
  #intern(value: KvState): number {
    if (value === null) return 0;
    let id = this.#stateIds.get(value);
    if (id !== undefined) return id;
    const distinguishable = this.#observed.has(value) || (this.#counterKey && parseKvInteger(value) !== null);
    if (!distinguishable && this.#unobservedId >= 0) id = this.#unobservedId;
    else {
      id = this.#stateValues.length;
      this.#stateValues.push(value);
      if (!distinguishable) this.#unobservedId = id;
    }
    this.#stateIds.set(value, id);
    return id;
  }

  /** A string equal for two unknown ops exactly when their inputs are equal, up to #intern. */
  #inputSignature(op: HistoryOp): string {
    switch (op.input.type) {
      case "read":
        return "r";
      case "write":
        return `w${String(this.#intern(op.input.value))}`;
      case "cas":
        return `c${String(this.#intern(op.input.expected))},${String(this.#intern(op.input.value))}`;
      case "incr":
        return `i${String(op.input.by)}`;
    }
  }

  #place(i: number): void {
    const s = this.#slot[i] as number;
    if (this.#known[i] === 1) {
      assertInvariant(this.#placedKnown[s] === 0, "placing a placed op");
      this.#placedKnown[s] = 1;
      this.#placedKnownCount++;
      this.#placedHash ^= this.#zobrist[s] as number;
      while (this.#firstUnplaced < this.#knownCount && this.#placedKnown[this.#firstUnplaced] === 1)
        this.#firstUnplaced++;
    } else {
      const g = this.#groupOf[i] as number;
      assertInvariant(this.#groupNext(g) === i, "placing an unknown op out of its group's order");
      this.#groupPlaced[g] = (this.#groupPlaced[g] as number) + 1;
      this.#unknownBits[s >>> 5] = (this.#unknownBits[s >>> 5] as number) | (1 << (s & 31));
      this.#unknownUnplacedCount--;
    }
  }

  #unplace(i: number): void {
    const s = this.#slot[i] as number;
    if (this.#known[i] === 1) {
      assertInvariant(this.#placedKnown[s] === 1, "unplacing an unplaced op");
      this.#placedKnown[s] = 0;
      this.#placedKnownCount--;
      this.#placedHash ^= this.#zobrist[s] as number;
      if (s < this.#firstUnplaced) this.#firstUnplaced = s;
    } else {
      const g = this.#groupOf[i] as number;
      this.#groupPlaced[g] = (this.#groupPlaced[g] as number) - 1;
      assertInvariant(this.#groupNext(g) === i, "unplacing an unknown op out of its group's order");
      this.#unknownBits[s >>> 5] = (this.#unknownBits[s >>> 5] as number) & ~(1 << (s & 31));
      this.#unknownUnplacedCount++;
    }
  }

  /** The next unplaced op of group g, or -1. */
  #groupNext(g: number): number {
    const placed = this.#groupPlaced[g] as number;
    return placed < (this.#groupSize[g] as number)
      ? (this.#groupMembers[(this.#groupStart[g] as number) + placed] as number)
      : -1;
  }

  #isPlacedUnknown(i: number): boolean {
    const s = this.#slot[i] as number;
    return ((this.#unknownBits[s >>> 5] as number) & (1 << (s & 31))) !== 0;
  }

  // Known op i's call node is 2i+1 and its return node 2i+2. Relinking in reverse order of
  // unlinking restores the list exactly, which the stack discipline of the search guarantees.
  #lift(i: number): void {
    this.#unlink(2 * i + 1);
    this.#unlink(2 * i + 2);
  }

  #unlift(i: number): void {
    this.#relink(2 * i + 2);
    this.#relink(2 * i + 1);
  }

  #unlink(node: number): void {
    const after = this.#next[node] as number;
    this.#next[this.#prev[node] as number] = after;
    if (after !== -1) this.#prev[after] = this.#prev[node] as number;
  }

  #relink(node: number): void {
    const after = this.#next[node] as number;
    if (after !== -1) this.#prev[after] = node;
    this.#next[this.#prev[node] as number] = node;
  }

  /** Records the state after a push; the visit entry, or -1 if it (or a dominating state) was seen. */
  #visit(stateId: number, window: number): number {
    // The placed known ops above the first unplaced one are all in flight with it.
    let aboveCount = 0;
    const retFirst = this.#knownRet[this.#firstUnplaced] as number;
    for (let j = this.#firstUnplaced + 1; j < this.#knownCount && (this.#knownCall[j] as number) <= retFirst; j++) {
      if (this.#placedKnown[j] === 1) this.#above[aboveCount++] = j;
    }
    assertInvariant(
      this.#firstUnplaced + aboveCount === this.#placedKnownCount,
      "a placed op is not in flight with the first unplaced op",
    );
    const hash = (this.#placedHash ^ Math.imul(stateId, 0x9e3779b1) ^ Math.imul(window + 1, 0x85ebca6b)) | 0;
    if (this.#visits.covers(hash, this.#firstUnplaced, stateId, window, this.#above, aboveCount, this.#unknownBits))
      return -1;
    return this.#visits.add(hash, this.#firstUnplaced, stateId, window, this.#above, aboveCount, this.#unknownBits);
  }

  #recordDeadEnd(): void {
    if (this.#placedKnownCount <= this.#bestKnown) return;
    this.#bestKnown = this.#placedKnownCount;
    this.#bestPath = this.#pathOp.slice(0, this.#depth);
    this.#bestStateId = this.#stateId;
    const candidates: number[] = [];
    let node = this.#next[0] as number;
    while (node !== -1 && ((node - 1) & 1) === 0) {
      candidates.push((node - 1) >> 1);
      node = this.#next[node] as number;
    }
    this.#bestBlocking = node === -1 ? -1 : (node - 1) >> 1;
    for (let g = 0; g < this.#groupCount && candidates.length <= witnessCandidateOpsMax * 2; g++) {
      const i = this.#groupNext(g);
      if (i >= 0 && (this.#sorted[i] as HistoryOp).call <= this.#firstReturnTime) candidates.push(i);
    }
    this.#bestCandidates = candidates;
  }

  #gaveUp(): KeyCheck {
    // The deepest dead end so far shows where the search was spending its states.
    const deepest = this.#bestKnown < 0 ? [] : this.#witness().lines;
    return {
      kind: "unknown",
      states: this.#states,
      message: [
        `key ${JSON.stringify(this.#key)}: search gave up after statesMax=${String(this.#statesMax)} states (${String(this.#knownCount)} ops with known outcomes, ${String(this.#unknownCount)} unknown; at most ${String(Math.max(this.#bestKnown, this.#placedKnownCount))} placed); raise statesMax or check shorter histories. Deepest dead end so far:`,
        ...deepest,
      ].join("\n"),
    };
  }

  #failure(): KeyCheck {
    const { lines, summary, state } = this.#witness();
    return {
      kind: "fail",
      states: this.#states,
      message: `key ${JSON.stringify(this.#key)}: not linearizable: the longest linearizable prefix has ${String(this.#bestPath.length)} ops, value ${formatKvValue(state)}${summary}`,
      witness: lines,
    };
  }

  /** The report around the deepest dead end: the end of the prefix, and the ops that cannot follow. */
  #witness(): { lines: string[]; summary: string; state: KvState } {
    const sorted = this.#sorted;
    // Replayed with the real values (the search's state may be a stand-in, see #intern).
    let state: KvState = null;
    for (const i of this.#bestPath) state = kvApply(state, (sorted[i] as HistoryOp).input).state;
    assertInvariant(
      this.#intern(state) === this.#bestStateId,
      "witness replay of the prefix does not reach the recorded state",
    );
    const why = (op: HistoryOp): string => {
      if (op.output === null) return "outcome unknown; no order of the remaining ops fits after it";
      const applied = kvApply(state, op.input);
      if (!kvOutputsEqual(applied.output, op.output)) return `model answers ${formatKvOutput(applied.output)} here`;
      return "fits here, but no order of the remaining ops fits after it";
    };
    const lines: string[] = [];
    const dropped =
      this.#droppedCount > 0
        ? `; ${String(this.#droppedCount)} unknown-outcome ops that nothing observes were set aside`
        : "";
    lines.push(
      `key ${JSON.stringify(this.#key)}: ${String(this.#knownCount)} ops with known outcomes, ${String(this.#unknownCount)} unknown${dropped}; ${String(this.#states)} search states`,
    );
    const path = this.#bestPath;
    lines.push(
      `longest linearizable prefix: ${String(path.length)} ops (${String(this.#bestKnown)} with known outcomes); its last ${String(Math.min(witnessPrefixOpsMax, path.length))}, with the value after each:`,
    );
    let value: KvState = null;
    const shownFrom = Math.max(0, path.length - witnessPrefixOpsMax);
    for (let d = 0; d < path.length; d++) {
      const op = sorted[path[d] as number] as HistoryOp;
      value = kvApply(value, op.input).state;
      if (d >= shownFrom) lines.push(`  ${formatHistoryOp(op)}   => ${formatKvValue(value)}`);
    }
    lines.push(`value after the prefix: ${formatKvValue(state)}`);
    let summary = "";
    if (this.#bestBlocking >= 0) {
      const blocking = sorted[this.#bestBlocking] as HistoryOp;
      lines.push("must come next (earliest return among the ops not placed), but cannot:");
      lines.push(`  ${formatHistoryOp(blocking)}   <- ${why(blocking)}`);
      summary = `; ${formatHistoryOp(blocking)} cannot be placed after it (${why(blocking)})`;
    }
    const others = this.#bestCandidates.filter((i) => i !== this.#bestBlocking);
    if (others.length > 0) {
      lines.push(
        `other ops that could have come next (${others.length > witnessCandidateOpsMax ? "some of them" : String(others.length)}):`,
      );
      for (const i of others.slice(0, witnessCandidateOpsMax)) {
        const op = sorted[i] as HistoryOp;
        lines.push(`  ${formatHistoryOp(op)}   <- ${why(op)}`);
      }
    }
    return { lines, summary, state };
  }
}

const noProducers: number[] = [];
const noGroups: number[] = [];

/** Whether a known op fits in `state` without changing it: it only observes. */
function observesOnly(op: HistoryOp, state: KvState): boolean {
  const output = op.output;
  if (output === null) return false;
  switch (output.type) {
    case "read":
      return output.value === state;
    case "cas":
      return !output.ok && op.input.type === "cas" && op.input.expected !== state;
    case "incr-nan":
      return op.input.type === "incr" && kvStep(state, op.input, output) !== undefined;
    default:
      return false;
  }
}

/**
 * The memo of visited search states, as a chained hash table over parallel typed arrays: no object
 * per state, so millions of states cost tens of MB and no GC pressure. An entry holds the exact
 * state (first unplaced known op, the placed known ops above it, model state, window, and the
 * unknown-op bitset), so a hash collision can never become a false hit. Entries that differ only
 * in their unknown sets share a hash; only entries whose subtree is finished (`done`) may prune a
 * state whose unknown set includes theirs (a state still on the search path has not failed yet).
 */
class VisitTable {
  static readonly #entriesInitial = 1 << 12;
  #count = 0;
  #heads = new Int32Array(VisitTable.#entriesInitial).fill(-1);
  #hash = new Int32Array(VisitTable.#entriesInitial);
  #first = new Int32Array(VisitTable.#entriesInitial);
  #stateId = new Int32Array(VisitTable.#entriesInitial);
  #window = new Int32Array(VisitTable.#entriesInitial);
  #aboveStart = new Int32Array(VisitTable.#entriesInitial);
  #aboveCount = new Int32Array(VisitTable.#entriesInitial);
  #done = new Uint8Array(VisitTable.#entriesInitial);
  #chain = new Int32Array(VisitTable.#entriesInitial);
  #abovePool = new Int32Array(VisitTable.#entriesInitial * 4);
  #abovePoolUsed = 0;
  #bits: Uint32Array;
  readonly #bitsWords: number;

  constructor(bitsWords: number) {
    this.#bitsWords = bitsWords;
    this.#bits = new Uint32Array(Math.max(1, bitsWords) * VisitTable.#entriesInitial);
  }

  covers(
    hash: number,
    first: number,
    stateId: number,
    window: number,
    above: Int32Array,
    aboveCount: number,
    bits: Uint32Array,
  ): boolean {
    const words = this.#bitsWords;
    for (let e = this.#heads[hash & (this.#heads.length - 1)] as number; e >= 0; e = this.#chain[e] as number) {
      if (
        this.#hash[e] !== hash ||
        this.#first[e] !== first ||
        this.#stateId[e] !== stateId ||
        this.#window[e] !== window ||
        this.#aboveCount[e] !== aboveCount
      )
        continue;
      const start = this.#aboveStart[e] as number;
      let same = true;
      for (let k = 0; k < aboveCount && same; k++) same = this.#abovePool[start + k] === above[k];
      if (!same) continue;
      if (words === 0) return true;
      if (this.#done[e] === 0) continue;
      const base = e * words;
      let subset = true;
      for (let w = 0; w < words && subset; w++)
        subset = ((this.#bits[base + w] as number) & ~(bits[w] as number)) === 0;
      if (subset) return true;
    }
    return false;
  }

  add(
    hash: number,
    first: number,
    stateId: number,
    window: number,
    above: Int32Array,
    aboveCount: number,
    bits: Uint32Array,
  ): number {
    if (this.#count === this.#hash.length) this.#growEntries();
    while (this.#abovePoolUsed + aboveCount > this.#abovePool.length)
      this.#abovePool = grown(this.#abovePool, this.#abovePool.length * 2);
    const e = this.#count++;
    this.#hash[e] = hash;
    this.#first[e] = first;
    this.#stateId[e] = stateId;
    this.#window[e] = window;
    this.#aboveStart[e] = this.#abovePoolUsed;
    this.#aboveCount[e] = aboveCount;
    // Plain loops: subarray() allocates a view per call, which costs more than these few copies.
    for (let k = 0; k < aboveCount; k++) this.#abovePool[this.#abovePoolUsed + k] = above[k] as number;
    this.#abovePoolUsed += aboveCount;
    this.#done[e] = 0;
    const base = e * this.#bitsWords;
    for (let w = 0; w < this.#bitsWords; w++) this.#bits[base + w] = bits[w] as number;
    const bucket = hash & (this.#heads.length - 1);
    this.#chain[e] = this.#heads[bucket] as number;
    this.#heads[bucket] = e;
    return e;
  }

  /** The entry's subtree has been fully explored without finding a linearization. */
  finish(e: number): void {
    this.#done[e] = 1;
  }

  #growEntries(): void {
    const size = this.#hash.length * 2;
    this.#hash = grown(this.#hash, size);
    this.#first = grown(this.#first, size);
    this.#stateId = grown(this.#stateId, size);
    this.#window = grown(this.#window, size);
    this.#aboveStart = grown(this.#aboveStart, size);
    this.#aboveCount = grown(this.#aboveCount, size);
    this.#done = grown(this.#done, size);
    this.#chain = grown(this.#chain, size);
    if (this.#bitsWords > 0) this.#bits = grown(this.#bits, size * this.#bitsWords);
    // Keep about one entry per bucket: rebuild the chains over twice the buckets.
    this.#heads = new Int32Array(size).fill(-1);
    for (let e = 0; e < this.#count; e++) {
      const bucket = (this.#hash[e] as number) & (size - 1);
      this.#chain[e] = this.#heads[bucket] as number;
      this.#heads[bucket] = e;
    }
  }
}

function grown<T extends Int32Array | Uint32Array | Uint8Array>(array: T, length: number): T {
  const bigger = new (array.constructor as new (length: number) => T)(length);
  bigger.set(array);
  return bigger;
}

/** A small deterministic PRNG (SplitMix32) for the Zobrist words: verdicts never depend on luck. */
function splitMix32(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return z ^ (z >>> 16);
  };
}

function assertInvariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`linearizability checker invariant: ${message}`);
}
