// The node's failure detector (src/node/peer-detector.ts) with a fake clock, fake per-peer times
// and a fake membership: when a member becomes suspected (suspectMs without a frame, counted from
// when it entered the view), refutation when it is heard again, what is published, the probes
// handed to the shards, and the candidate's reachability test.

import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/base/ids.ts";
import type { MemberInfo, MembershipView } from "../../src/membership/membership.ts";
import { PeerDetector, suspectsAt } from "../../src/node/peer-detector.ts";

const suspectMs = 1000;
const heartbeatMs = 100;

function info(id: NodeId): MemberInfo {
  return { id, http: `h:${id}`, transport: "tcp", shardAddresses: [`a:${id}`] };
}

function setup(self: NodeId, members: NodeId[]) {
  const clock = { now: 10_000 };
  const heard = new Map<NodeId, number>();
  const fresh = new Map<NodeId, number>();
  let view: MembershipView = { epoch: 5, members: members.map(info) };
  let candidates: MemberInfo[] = [];
  const published: NodeId[][] = [];
  const probes: NodeId[][] = [];
  const lines: string[] = [];
  const detector = new PeerDetector({
    self,
    suspectMs,
    heartbeatMs,
    lastHeardMs: (p) => heard.get(p) ?? 0,
    lastFreshMs: (p) => fresh.get(p) ?? 0,
    membership: {
      view: () => view,
      publishSuspects: (ids) => published.push([...ids]),
      candidates: () => candidates,
    },
    setProbes: (c) => probes.push(c.map((m) => m.id)),
    log: (line) => lines.push(line),
    clock: () => clock.now,
  });
  return {
    detector,
    clock,
    heard,
    fresh,
    published,
    probes,
    lines,
    setView(ids: NodeId[], epoch: number) {
      view = { epoch, members: ids.map(info) };
    },
    setCandidates(ids: NodeId[]) {
      candidates = ids.map(info);
    },
  };
}

describe("peer detector", () => {
  test("suspectsAt: silent for more than suspectMs since heard or since it entered the view", () => {
    expect(suspectsAt(5000, [{ id: 1, heardMs: 3999, sinceMs: 0 }], 1000)).toEqual([1]);
    expect(suspectsAt(5000, [{ id: 1, heardMs: 4000, sinceMs: 0 }], 1000)).toEqual([]);
    expect(suspectsAt(5000, [{ id: 1, heardMs: 0, sinceMs: 4500 }], 1000)).toEqual([]);
  });

  test("a member not heard for suspectMs is suspected and published; heard again, the suspicion ends", () => {
    const h = setup(0, [0, 1, 2]);
    h.heard.set(1, h.clock.now);
    h.heard.set(2, h.clock.now);
    h.detector.tick();
    expect(h.published.at(-1)).toEqual([]);
    h.clock.now += 600;
    h.heard.set(1, h.clock.now);
    h.clock.now += 500; // node 2 silent for 1100 ms, node 1 for 500
    h.detector.tick();
    expect(h.detector.suspects).toEqual([2]);
    expect(h.published.at(-1)).toEqual([2]);
    expect(h.lines.at(-1)).toContain("suspects node 2: not heard for 1100 ms");
    h.heard.set(2, h.clock.now);
    h.detector.tick();
    expect(h.detector.suspects).toEqual([]);
    expect(h.lines.at(-1)).toContain("no longer suspects node 2 (heard again)");
    expect(h.detector.counters).toEqual({ suspicionsRaised: 1, suspicionsRefuted: 1 });
    h.clock.now += 40;
    expect(h.detector.heardAgoMs()).toEqual({ "1": 540, "2": 40 });
  });

  test("a member that just entered the view, never heard yet, gets suspectMs of grace; a node out of the view suspects nobody", () => {
    const h = setup(0, [0, 1]);
    h.heard.set(1, h.clock.now);
    h.detector.tick();
    h.setView([0, 1, 3], 6);
    h.detector.tick(); // node 3's grace starts when the detector first sees it
    h.clock.now += 900;
    h.heard.set(1, h.clock.now);
    h.detector.tick();
    expect(h.detector.suspects).toEqual([]);
    h.clock.now += 200;
    h.heard.set(1, h.clock.now);
    h.detector.tick();
    expect(h.detector.suspects).toEqual([3]);
    expect(h.lines.at(-1)).toContain("suspects node 3: never heard");
    // Evicted: not in its own view any more; it suspects nobody and publishes [].
    h.setView([1, 3], 7);
    h.detector.tick();
    expect(h.detector.suspects).toEqual([]);
    expect(h.published.at(-1)).toEqual([]);
  });

  test("candidates go to the shards when they change", () => {
    const h = setup(0, [0, 1]);
    h.detector.tick();
    h.setCandidates([2]);
    h.detector.tick();
    h.detector.tick();
    h.setCandidates([]);
    h.detector.tick();
    expect(h.probes).toEqual([[], [2], []]);
  });

  test("a candidate reaches the members once its view lacks it and every member sent a fresh frame, recently, since the given time", () => {
    const h = setup(2, [0, 1, 2]);
    const since = h.clock.now;
    h.fresh.set(0, since + 10);
    h.fresh.set(1, since + 10);
    h.clock.now += 50;
    // Still in its own view: its shards' epoch is the old one, fresh frames prove nothing yet.
    expect(h.detector.reachesMembers(since)).toBe(false);
    h.setView([0, 1], 9);
    expect(h.detector.reachesMembers(since)).toBe(true);
    expect(h.detector.reachesMembers(since + 20)).toBe(false); // heard before `since`
    h.clock.now += 3 * heartbeatMs; // older than the echo window
    expect(h.detector.reachesMembers(since)).toBe(false);
    h.fresh.set(0, h.clock.now);
    expect(h.detector.reachesMembers(since)).toBe(false); // node 1 still silent
    h.fresh.set(1, h.clock.now);
    expect(h.detector.reachesMembers(since)).toBe(true);
  });
});
