// A set of side objects that the replica adds to and deletes from on every update (the unsettled
// keys, the keys with waiting ops): an array with swap-remove, each member holding its position, so
// add, delete and has are a few array and field accesses. A built-in Set of objects costs 30-80 ns
// per add and delete pair here (bench/core-profile.ts showed them as a fifth of a write round).
//
// Iteration visits the members present when it starts, skipping those deleted before their turn;
// members added meanwhile are not visited (a Set would visit them). The replica's loops change
// only the member they visit, and a key added back is handled by the call that added it.

import { assert } from "../base/assert.ts";

/** A member's position in each of the sets it can belong to (-1: not in it), indexed by the set's `which`. */
export interface SideSetMember {
  readonly setAt: number[];
}

export class SideSet<T extends SideSetMember> {
  readonly #items: T[] = [];
  /** Which of the member's positions this set uses. */
  readonly #which: number;
  /** Reusable copies of #items for iterations in progress (one per nesting level). */
  readonly #copies: T[][] = [];
  #iterating = 0;

  constructor(which: number) {
    assert(Number.isInteger(which) && which >= 0, "a side set's position index is a natural number");
    this.#which = which;
  }

  get size(): number {
    return this.#items.length;
  }

  has(member: T): boolean {
    return member.setAt[this.#which]! >= 0;
  }

  add(member: T): void {
    if (member.setAt[this.#which]! >= 0) return;
    member.setAt[this.#which] = this.#items.length;
    this.#items.push(member);
  }

  delete(member: T): boolean {
    const at = member.setAt[this.#which]!;
    if (at < 0) return false;
    assert(this.#items[at] === member, "a side set's member sits at its recorded position");
    const last = this.#items.pop()!;
    if (last !== member) {
      this.#items[at] = last;
      last.setAt[this.#which] = at;
    }
    member.setAt[this.#which] = -1;
    return true;
  }

  clear(): void {
    for (const member of this.#items) member.setAt[this.#which] = -1;
    this.#items.length = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    const level = this.#iterating++;
    if (level === this.#copies.length) this.#copies.push([]);
    const copy = this.#copies[level]!;
    for (const member of this.#items) copy.push(member);
    try {
      for (const member of copy) if (member.setAt[this.#which]! >= 0) yield member;
    } finally {
      copy.length = 0;
      this.#iterating--;
    }
  }

  /** Whole-state check for tests (O(size)); throws AssertionError. */
  checkInvariants(): void {
    for (let at = 0; at < this.#items.length; at++)
      assert(this.#items[at]!.setAt[this.#which] === at, "every member of a side set knows its position");
  }
}
