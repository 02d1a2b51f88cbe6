// The eviction rule (src/membership/eviction-rule.ts) as a pure function: the shapes the issue
// names (one-way partitions, mutual suspicion, an isolated node, 3/5/7 members), properties over
// random suspicion graphs, and the filter that decides which published suspicions count
// (evictionInput: dead or re-registered suspecters, suspicions older than a registration).

import { describe, expect, test } from "bun:test";
import {
  decideEviction,
  evictionMembersMin,
  tallySuspicions,
  type EvictionInput,
} from "../../src/membership/eviction-rule.ts";
import { evictionInput, pendingEviction } from "../../src/membership/etcd-eviction.ts";
import {
  ClusterKeys,
  ClusterRecords,
  encodeEviction,
  encodeSuspects,
  parseEviction,
  parseSuspects,
} from "../../src/membership/cluster-records.ts";
import type { EtcdKv } from "../../src/membership/etcd-client.ts";
import { prng, testSeed } from "../lib/prng.ts";

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function input(members: number[], suspicions: Record<number, number[]>): EvictionInput {
  return { members, suspicions: new Map(Object.entries(suspicions).map(([k, v]) => [Number(k), v])) };
}

describe("eviction rule", () => {
  test("no suspicion, no eviction; fewer than 3 members never evict (one of 2 is no majority)", () => {
    expect(evictionMembersMin).toBe(3);
    for (const n of [3, 5, 7]) expect(decideEviction(input(range(n), {}))).toBeNull();
    expect(decideEviction(input([0, 1], { 0: [1], 1: [0] }))).toBeNull();
    expect(decideEviction(input([4], {}))).toBeNull();
  });

  for (const n of [3, 5, 7]) {
    const members = range(n);
    const others = (x: number): number[] => members.filter((m) => m !== x);

    test(`${n} members: x -> peers lost (the peers suspect x): x is evicted by the majority, every x`, () => {
      for (const x of members) {
        const suspicions: Record<number, number[]> = {};
        for (const p of others(x)) suspicions[p] = [x];
        const d = decideEviction(input(members, suspicions))!;
        expect(d.target).toBe(x);
        expect(d.reason).toBe("majority");
        expect(d.suspectedBy).toEqual(others(x));
        expect(d.decider).toBe(others(x)[0]!);
      }
    });

    test(`${n} members: peers -> x lost (only x suspects, everyone): x is evicted, nobody else, every x`, () => {
      for (const x of members) {
        const d = decideEviction(input(members, { [x]: others(x) }))!;
        expect(d.target).toBe(x);
        expect(d.reason).toBe("links");
        expect(d.suspectedBy).toEqual([]);
        expect(d.links).toBe(n - 1);
        expect(d.decider).toBe(others(x)[0]!);
      }
    });

    test(`${n} members: a both-ways cut of x, however much of the evidence is published: x`, () => {
      for (const x of members) {
        // x's own record alone, the peers' records alone, or both.
        const variants: Record<number, number[]>[] = [
          { [x]: others(x) },
          Object.fromEntries(others(x).map((p) => [p, [x]])),
          { [x]: others(x), ...Object.fromEntries(others(x).map((p) => [p, [x]])) },
        ];
        for (const suspicions of variants) expect(decideEviction(input(members, suspicions))!.target).toBe(x);
      }
    });

    test(`${n} members: two members that suspect each other: the higher id; the one suspected by more first`, () => {
      for (const a of members) {
        for (const b of members) {
          if (b <= a) continue;
          const mutual = decideEviction(input(members, { [a]: [b], [b]: [a] }))!;
          expect(mutual.target).toBe(b);
          expect(mutual.reason).toBe("links");
          expect(decideEviction(input(members, { [b]: [a], [a]: [b] }))!.target).toBe(b);
          // One more member cannot hear a: a is on more broken links and suspected by more.
          const third = members.find((m) => m !== a && m !== b);
          if (third === undefined) continue;
          expect(decideEviction(input(members, { [a]: [b], [b]: [a], [third]: [a] }))!.target).toBe(a);
        }
      }
    });
  }

  test("a minority cut off from a majority: only minority members go, one at a time, the majority is never evicted, whoever's records are in", () => {
    const r = prng(testSeed(0x5e1e_0001));
    for (const n of [3, 5, 7]) {
      for (let trial = 0; trial < 200; trial++) {
        const members = range(n);
        const size = 1 + Math.floor(r() * Math.floor((n - 1) / 2));
        const minority = [...members]
          .sort(() => r() - 0.5)
          .slice(0, size)
          .sort((a, b) => a - b);
        const majority = members.filter((m) => !minority.includes(m));
        // Every cross pair is broken; each side's records may or may not be in yet, but every
        // member of at least one side has published (the suspicions of one side name every link).
        const suspicions: Record<number, number[]> = {};
        const majorityPublished = r() < 0.5;
        for (const m of majorityPublished ? majority : minority)
          suspicions[m] = majorityPublished ? minority : majority;
        for (const m of majorityPublished ? minority : majority)
          if (r() < 0.5) suspicions[m] = majorityPublished ? majority : minority;
        // One eviction at a time, each decided on the membership the previous one left.
        let current = members;
        const evicted: number[] = [];
        for (;;) {
          const d = decideEviction(input(current, suspicions));
          if (d === null) break;
          expect(minority).toContain(d.target);
          evicted.push(d.target);
          current = current.filter((m) => m !== d.target);
        }
        expect(evicted.length).toBeGreaterThan(0);
        expect(current.filter((m) => majority.includes(m))).toEqual(majority);
      }
    }
  });

  test("random suspicion graphs (3/5/7 members): a member is evicted only when a link is broken, the decider is the lowest other id, and the answer ignores input order", () => {
    const r = prng(testSeed(0x5e1e_0002));
    for (let trial = 0; trial < 3000; trial++) {
      const n = [3, 5, 7][trial % 3]!;
      const members = range(n);
      const suspicions = new Map<number, number[]>();
      for (const s of members) {
        if (r() < 0.5) continue;
        suspicions.set(
          s,
          members.filter((x) => x !== s && r() < 0.3),
        );
      }
      const d = decideEviction({ members, suspicions });
      const tally = tallySuspicions({ members, suspicions });
      if (tally.brokenLinks === 0) {
        expect(d).toBeNull();
        continue;
      }
      expect(d).not.toBeNull();
      expect(members).toContain(d!.target);
      expect(d!.decider).toBe(members.find((m) => m !== d!.target)!);
      expect(d!.links).toBeGreaterThan(0);
      const majorityTargets = members.filter((m) => 2 * tally.suspectedBy.get(m)!.length > n);
      if (majorityTargets.length > 0) expect(majorityTargets).toContain(d!.target);
      else expect(d!.links).toBe(Math.max(...members.map((m) => tally.links.get(m)!)));
      // Same answer for the same state in another order (every node computes the same).
      const reversed = new Map([...suspicions].reverse().map(([k, v]) => [k, [...v].reverse()]));
      expect(decideEviction({ members: [...members].reverse(), suspicions: reversed })).toEqual(d);
    }
  });

  test("an isolated member's suspicions alone never evict anybody else (3/5/7 members, any id)", () => {
    for (const n of [3, 5, 7]) {
      const members = range(n);
      for (const x of members) {
        const d = decideEviction(input(members, { [x]: members.filter((m) => m !== x) }))!;
        expect(d.target).toBe(x);
        // Alone, x is never a majority against anyone: at most one suspecter each.
        expect(tallySuspicions(input(members, { [x]: members })).suspectedBy.get((x + 1) % n)!.length).toBe(1);
      }
    }
  });

  test("suspicions by non-members, of non-members and of oneself are ignored", () => {
    expect(decideEviction(input([0, 1, 2], { 7: [0, 1], 0: [0, 9] }))).toBeNull();
    expect(decideEviction(input([0, 1, 2], { 7: [0], 1: [2] }))!.target).toBe(2);
  });
});

// --- which published suspicions count ---------------------------------------------------------

const keys = new ClusterKeys("/hermes-kv/c/");

function kv(key: string, value: string, lease: string, modRevision: number): EtcdKv {
  return { key, value, lease, createRevision: modRevision, modRevision };
}

describe("evictionInput: which records count", () => {
  const registrations = [
    { id: 0, lease: "100", createRevision: 10 },
    { id: 1, lease: "101", createRevision: 11 },
    { id: 2, lease: "102", createRevision: 50 },
  ];

  test("a dead suspecter's record (not under its current lease) and a non-member's do not count", () => {
    const records = new ClusterRecords(keys);
    records.applySnapshot(60, [
      kv(keys.suspectsOf(0), encodeSuspects([1]), "999", 55), // an earlier registration of 0
      kv(keys.suspectsOf(5), encodeSuspects([1]), "105", 56), // not a member
      kv(keys.suspectsOf(2), encodeSuspects([1]), "102", 57),
    ]);
    const i = evictionInput(registrations, records);
    expect([...i.suspicions]).toEqual([[2, [1]]]);
    // One broken link {1, 2}: equal on links, 1 is suspected by more.
    expect(decideEviction(i)!.target).toBe(1);
  });

  test("a suspicion written before the suspected member registered (its previous life) does not count", () => {
    const records = new ClusterRecords(keys);
    records.applySnapshot(60, [
      kv(keys.suspectsOf(0), encodeSuspects([1, 2]), "100", 40),
      kv(keys.suspectsOf(1), encodeSuspects([2]), "101", 45),
    ]);
    // Node 2 registered at 50: both suspicions of it predate it. 0's suspicion of 1 (registered at 11) counts.
    expect([...evictionInput(registrations, records).suspicions]).toEqual([[0, [1]]]);
  });

  test("a recorded eviction whose registration is still there is pending; a stale record (old lease) is not", () => {
    const records = new ClusterRecords(keys);
    const record = {
      member: 2,
      lease: "102",
      ttlMs: 1000,
      epoch: 52,
      by: 0,
      reason: "majority" as const,
      suspectedBy: [0, 1],
    };
    records.applySnapshot(60, [kv(keys.evictionOf(2), encodeEviction(record), "0", 58)]);
    expect(pendingEviction(registrations, records)).toEqual(record);
    records.applySnapshot(70, [kv(keys.evictionOf(2), encodeEviction({ ...record, lease: "77" }), "0", 65)]);
    expect(pendingEviction(registrations, records)).toBeNull();
  });

  test("records: unusable values count as absent; events after the snapshot apply, older ones do not", () => {
    expect(parseSuspects("[3,1,1]")).toEqual([1, 3]);
    for (const bad of ["", "{}", "[-1]", "[1.5]", "[32]", '["1"]', "x"]) expect(parseSuspects(bad)).toBeNull();
    expect(parseEviction('{"member":1}')).toBeNull();
    const records = new ClusterRecords(keys);
    records.applySnapshot(10, [kv(keys.suspectsOf(1), "nonsense", "101", 9)]);
    expect(records.suspicions().size).toBe(0);
    expect(records.applyEvent({ type: "put", kv: kv(keys.suspectsOf(1), "[2]", "101", 10) })).toBe(false);
    expect(records.applyEvent({ type: "put", kv: kv(keys.suspectsOf(1), "[2]", "101", 11) })).toBe(true);
    expect(records.suspicions().get(1)).toEqual({ suspects: [2], lease: "101", modRevision: 11 });
    expect(records.suspectsRevision).toBe(11);
    records.applyEvent({ type: "delete", kv: kv(keys.suspectsOf(1), "", "0", 12) });
    expect(records.suspicions().size).toBe(0);
    records.applyEvent({
      type: "put",
      kv: kv(
        keys.candidate(3),
        JSON.stringify({ id: 3, http: "h:1", transport: "tcp", shardAddresses: ["a:1"] }),
        "103",
        13,
      ),
    });
    expect(records.candidates().map((c) => c.id)).toEqual([3]);
    records.applyEvent({
      type: "put",
      kv: kv(
        keys.candidate(4),
        JSON.stringify({ id: 5, http: "h:1", transport: "tcp", shardAddresses: ["a:1"] }),
        "104",
        14,
      ),
    });
    expect(records.candidates().map((c) => c.id)).toEqual([3]);
  });
});
