// Client ops inside the replica, recycled through a bounded pool so the data path does not allocate
// once the pool is warm. A recycled op bumps its generation so stale references can tell.

import { assert } from "../base/assert.ts";
import { OpKind } from "../base/kinds.ts";
import type { NodeId } from "../base/ids.ts";
import type { KeySide } from "./key-side.ts";

export class Op {
  generation = 0;
  /** The caller's handle, echoed in the completion. */
  id = 0;
  kind: OpKind = OpKind.Read;
  /** The side object of the op's key while the op waits on it or is its pending update. */
  side: KeySide | null = null;
  value: Uint8Array | null = null;
  expectedVersion = 0;
  expectedWriter: NodeId = 0;
  by = 0;
  deadlineMs = 0;
  /** An INV was sent for this op: from now on it may take effect, so only Ok or Unknown may answer it. */
  issued = false;
  /** Incr: how many times its RMW lost a race (each loss final before retrying). */
  retries = 0;
  done = false;
}

export class OpPool {
  readonly #free: Op[] = [];
  #live = 0;
  readonly opsMax: number;

  constructor(opsMax: number) {
    assert(opsMax > 0, "opsMax must be positive");
    this.opsMax = opsMax;
  }

  get live(): number {
    return this.#live;
  }

  /** Null when opsMax ops are live: the caller answers Busy. */
  take(): Op | null {
    if (this.#live >= this.opsMax) return null;
    this.#live++;
    const op = this.#free.pop() ?? new Op();
    op.done = false;
    op.issued = false;
    op.retries = 0;
    return op;
  }

  release(op: Op): void {
    assert(op.done, "only answered ops go back to the pool");
    assert(this.#live > 0, "pool underflow");
    this.#live--;
    op.generation++;
    op.value = null;
    op.side = null;
    this.#free.push(op);
  }

  /** Whole-state check for tests (O(free ops)); throws AssertionError. */
  checkInvariants(): void {
    assert(this.#live >= 0, "the live count is not negative");
    assert(this.#live <= this.opsMax, "at most opsMax ops are live");
    // Every op ever made is live or free, and take() makes one only when the free list is empty.
    assert(this.#live + this.#free.length <= this.opsMax, "the pool never makes more than opsMax ops");
    for (const op of this.#free) {
      assert(op.done, "a free op has been answered");
      assert(op.value === null, "a free op holds no value");
      assert(op.side === null, "a free op is on no key");
    }
  }
}

/**
 * Ops in submission order with the generation they had, so that timeouts are found from the head
 * without scanning: every op has the same timeout, so submission order is deadline order.
 */
export class DeadlineQueue {
  readonly #ops: (Op | null)[];
  readonly #generations: Int32Array;
  #head = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#ops = new Array(capacity).fill(null);
    this.#generations = new Int32Array(capacity);
  }

  push(op: Op): void {
    // Answered ops linger until they reach the head; squeeze them out when the ring is full.
    if (this.#size === this.#ops.length) this.#compact();
    assert(this.#size < this.#ops.length, "deadline queue holds at most opsMax live ops");
    const index = (this.#head + this.#size) % this.#ops.length;
    this.#ops[index] = op;
    this.#generations[index] = op.generation;
    this.#size++;
  }

  /** The oldest op still unanswered, dropping answered ones from the head; null if none. */
  peekLive(): Op | null {
    while (this.#size > 0) {
      const op = this.#ops[this.#head]!;
      if (op.generation === this.#generations[this.#head] && !op.done) return op;
      this.pop();
    }
    return null;
  }

  #compact(): void {
    const capacity = this.#ops.length;
    let kept = 0;
    for (let i = 0; i < this.#size; i++) {
      const from = (this.#head + i) % capacity;
      const op = this.#ops[from]!;
      const generation = this.#generations[from]!;
      this.#ops[from] = null;
      if (op.generation !== generation || op.done) continue;
      const to = (this.#head + kept) % capacity;
      this.#ops[to] = op;
      this.#generations[to] = generation;
      kept++;
    }
    this.#size = kept;
  }

  pop(): void {
    assert(this.#size > 0, "pop from an empty deadline queue");
    this.#ops[this.#head] = null;
    this.#head = (this.#head + 1) % this.#ops.length;
    this.#size--;
  }

  /**
   * Whole-state check for tests (O(entries)); throws AssertionError. Returns how many entries are
   * live (unanswered, same generation): each live op has exactly one, so this equals the pool's live count.
   */
  checkInvariants(): number {
    const capacity = this.#ops.length;
    assert(this.#size >= 0, "the ring size is not negative");
    assert(this.#size <= capacity, "the ring holds at most its capacity");
    assert(Number.isInteger(this.#head), "the ring head is an index");
    assert(this.#head >= 0, "the ring head is an index into the ring");
    assert(this.#head < capacity, "the ring head is an index into the ring");
    let live = 0;
    let lastDeadlineMs = -Infinity;
    for (let i = 0; i < this.#size; i++) {
      const index = (this.#head + i) % capacity;
      const op = this.#ops[index] ?? null;
      assert(op !== null, "slots inside the ring's window hold an op");
      if (op.generation !== this.#generations[index] || op.done) continue;
      live++;
      // Every op gets the same timeout and time never goes back, so submission order is deadline order.
      assert(op.deadlineMs >= lastDeadlineMs, "live ops are in deadline order, which expiry from the head relies on");
      lastDeadlineMs = op.deadlineMs;
    }
    return live;
  }
}
