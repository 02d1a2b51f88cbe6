// SideSet (src/core/side-set.ts) against a built-in Set under random adds, deletes and clears, and
// its iteration when members are deleted and added during it.

import { describe, expect, test } from "bun:test";
import { SideSet, type SideSetMember } from "../../src/core/side-set.ts";

class Member implements SideSetMember {
  readonly setAt = [-1, -1];
  constructor(readonly name: number) {}
}

describe("SideSet", () => {
  test("holds the same members as a Set under random adds, deletes and clears; two sets share a member", () => {
    const members = Array.from({ length: 40 }, (_, i) => new Member(i));
    const sets = [new SideSet<Member>(0), new SideSet<Member>(1)];
    const models = [new Set<Member>(), new Set<Member>()];
    let seed = 7;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return Math.floor((seed / 2 ** 32) * n);
    };
    for (let step = 0; step < 20_000; step++) {
      const which = random(2);
      const set = sets[which]!;
      const model = models[which]!;
      const member = members[random(members.length)]!;
      const action = random(100);
      if (action < 50) {
        set.add(member);
        model.add(member);
      } else if (action < 99) {
        expect(set.delete(member)).toBe(model.delete(member));
      } else {
        set.clear();
        model.clear();
      }
      expect(set.size).toBe(model.size);
      expect(set.has(member)).toBe(model.has(member));
      set.checkInvariants();
      if (step % 500 === 0) expect(new Set(set)).toEqual(model);
    }
  });

  test("iteration visits the members present at its start, once each, minus those deleted before their turn", () => {
    const members = Array.from({ length: 10 }, (_, i) => new Member(i));
    const set = new SideSet<Member>(0);
    for (const m of members) set.add(m);
    const visited: number[] = [];
    for (const m of set) {
      visited.push(m.name);
      if (m.name === 2) {
        set.delete(m); // the member visited: its place is taken by the last, which is still visited
        set.delete(members[7]!); // one not yet visited: skipped
        set.add(new Member(99)); // added during the iteration: not visited
        set.add(m); // deleted and added back: not visited again
      }
      // A nested iteration has its own copy.
      if (m.name === 4) expect([...set].length).toBe(set.size);
    }
    expect(visited.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9]);
    expect(set.size).toBe(10);
    set.checkInvariants();
  });
});
