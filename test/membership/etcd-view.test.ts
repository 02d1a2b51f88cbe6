// The pure part of the etcd membership: how views and epochs are derived from etcd data.

import { describe, expect, test } from "bun:test";
import { encodeMemberInfo, MemberTable, memberInfoProblem } from "../../src/membership/etcd-view.ts";
import { prefixRangeEnd, type EtcdEvent, type EtcdKv } from "../../src/membership/etcd-client.ts";
import type { MemberInfo } from "../../src/membership/membership.ts";

const prefix = "/hermes-kv/c1/members/";

function info(id: number): MemberInfo {
  return { id, http: `127.0.0.1:${8000 + id}`, transport: "udp", shardAddresses: [`127.0.0.1:${9000 + id}`] };
}

function kv(id: number | string, modRevision: number, lease = "7", value?: string): EtcdKv {
  return {
    key: prefix + id,
    value: value ?? encodeMemberInfo(info(Number(id))),
    createRevision: modRevision,
    modRevision,
    lease,
  };
}

const put = (id: number, rev: number, lease = "7"): EtcdEvent => ({ type: "put", kv: kv(id, rev, lease) });
const del = (id: number, rev: number): EtcdEvent => ({
  type: "delete",
  kv: { key: prefix + id, value: "", createRevision: 0, modRevision: rev, lease: "0" },
});
const ids = (t: MemberTable): number[] => t.view().members.map((m) => m.id);

describe("MemberTable", () => {
  test("starts empty at epoch 0", () => {
    const t = new MemberTable(prefix);
    expect(t.view()).toEqual({ epoch: 0, members: [] });
    expect(t.leaseOf(1)).toBeNull();
  });

  test("a snapshot gives the set at its revision, sorted by id, with that revision as epoch", () => {
    const t = new MemberTable(prefix);
    const view = t.applySnapshot(12, [kv(3, 12, "30"), kv(1, 4, "10"), kv(2, 9, "20")]);
    expect(view).not.toBeNull();
    expect(view!.epoch).toBe(12);
    expect(view!.members).toEqual([info(1), info(2), info(3)]);
    expect(t.view()).toBe(view!);
    expect(t.leaseOf(2)).toBe("20");
    expect(t.revision).toBe(12);
  });

  test("a snapshot must contain the change at its own revision, and never a later one", () => {
    const t = new MemberTable(prefix);
    expect(() => t.applySnapshot(12, [kv(1, 4)])).toThrow(/no key modified at that revision/);
    expect(() => t.applySnapshot(12, [kv(1, 12), kv(2, 13)])).toThrow(/modified at 13/);
    expect(t.view().epoch).toBe(0);
  });

  test("snapshots and events at or below the table's revision are ignored", () => {
    const t = new MemberTable(prefix);
    t.applySnapshot(10, [kv(1, 10)]);
    expect(t.applySnapshot(10, [kv(1, 10), kv(2, 10)])).toBeNull();
    expect(t.applySnapshot(8, [kv(2, 8)])).toBeNull();
    expect(t.applyEvents([put(2, 9), del(1, 10)])).toEqual([]);
    expect(ids(t)).toEqual([1]);
    expect(t.view().epoch).toBe(10);
  });

  test("watch events give one view per revision, in order", () => {
    const t = new MemberTable(prefix);
    t.applySnapshot(5, [kv(1, 5)]);
    const views = t.applyEvents([put(2, 6), put(3, 7), del(1, 8)]);
    expect(views.map((v) => v.epoch)).toEqual([6, 7, 8]);
    expect(views.map((v) => v.members.map((m) => m.id))).toEqual([
      [1, 2],
      [1, 2, 3],
      [2, 3],
    ]);
    expect(t.view()).toBe(views[2]);
  });

  test("events of one revision (one transaction) make one view", () => {
    const t = new MemberTable(prefix);
    t.applySnapshot(5, [kv(1, 5), kv(2, 5)]);
    const views = t.applyEvents([del(1, 6), del(2, 6), put(4, 7)]);
    expect(views.map((v) => [v.epoch, v.members.map((m) => m.id)])).toEqual([
      [6, []],
      [7, [4]],
    ]);
  });

  test("two tables fed the same history from different starting points agree on every epoch", () => {
    // Node A watched from the beginning; node B registered at revision 7 (its snapshot).
    const history: EtcdEvent[] = [put(1, 3), put(2, 5), del(1, 6), put(3, 7), del(2, 9)];
    const a = new MemberTable(prefix);
    const seenA = new Map<number, number[]>();
    for (const v of a.applyEvents(history))
      seenA.set(
        v.epoch,
        v.members.map((m) => m.id),
      );
    const b = new MemberTable(prefix);
    const first = b.applySnapshot(7, [kv(2, 5), kv(3, 7)])!;
    const seenB = new Map<number, number[]>([[first.epoch, first.members.map((m) => m.id)]]);
    for (const v of b.applyEvents(history))
      seenB.set(
        v.epoch,
        v.members.map((m) => m.id),
      );
    for (const [epoch, members] of seenB) expect(seenA.get(epoch)).toEqual(members);
    expect([...seenB.keys()]).toEqual([7, 9]);
    expect(a.view()).toEqual(b.view());
  });

  test("out-of-order events are an invariant violation", () => {
    const t = new MemberTable(prefix);
    t.applySnapshot(5, [kv(1, 5)]);
    expect(() => t.applyEvents([put(2, 8), put(3, 7)])).toThrow(/out of order/);
  });

  test("unusable keys and values count as absent members, and are reported", () => {
    const problems: string[] = [];
    const t = new MemberTable(prefix, (key, problem) => problems.push(`${key}: ${problem}`));
    t.applySnapshot(5, [kv(1, 5), kv(2, 4)]);
    const views = t.applyEvents([
      { type: "put", kv: kv(2, 6, "7", "not json") }, // replaces a good record: member 2 is gone
      { type: "put", kv: { ...kv(3, 7), value: encodeMemberInfo(info(4)) } }, // id differs from the key
      { type: "put", kv: { ...kv(5, 8), key: prefix + "x5" } }, // key does not end with an id
      { type: "put", kv: { ...kv(1, 9), key: prefix + "40", value: JSON.stringify({ ...info(1), id: 40 }) } }, // id out of range
    ]);
    expect(views.map((v) => v.epoch)).toEqual([6, 7, 8, 9]);
    expect(ids(t)).toEqual([1]);
    expect(problems.length).toBe(4);
    expect(problems[0]).toContain("not JSON");
    expect(problems[1]).toContain("differs from the key");
  });

  test("published views are immutable", () => {
    const t = new MemberTable(prefix);
    const view = t.applySnapshot(5, [kv(1, 5)])!;
    expect(Object.isFrozen(view)).toBe(true);
    expect(Object.isFrozen(view.members)).toBe(true);
    expect(Object.isFrozen(view.members[0])).toBe(true);
  });
});

describe("member records", () => {
  test("encodeMemberInfo keeps only the contract's fields and rejects invalid records", () => {
    const extra = { ...info(2), secret: "x" } as MemberInfo;
    expect(JSON.parse(encodeMemberInfo(extra))).toEqual(info(2));
    expect(() => encodeMemberInfo({ ...info(2), id: 32 })).toThrow(/id must be/);
    expect(() => encodeMemberInfo({ ...info(2), shardAddresses: [] })).toThrow(/shardAddresses/);
    expect(() => encodeMemberInfo({ ...info(2), transport: "carrier-pigeon" as "udp" })).toThrow(/transport/);
  });

  test("memberInfoProblem accepts the contract's shape", () => {
    expect(memberInfoProblem(info(0))).toBeNull();
    expect(memberInfoProblem({ ...info(0), http: "" })).toContain("http");
    expect(memberInfoProblem(null)).toBe("not an object");
  });
});

describe("prefixRangeEnd", () => {
  test("increments the last byte", () => {
    expect(prefixRangeEnd("/a/")).toBe("/a0");
    expect(prefixRangeEnd("ab")).toBe("ac");
  });
});
