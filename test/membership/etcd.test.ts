// The etcd-backed reliable membership against a real etcd (test/lib/etcd.ts).
// Lease TTL 1 s (the test etcd's minimum). No timing thresholds: the assertions are the protocol's
// ordering facts (a member drops its lease before anyone sees it removed; removal is seen only
// after the member's own deadline), view agreement (one membership per epoch on every node), and
// counters. waitFor() bounds are liveness bounds, not measurements.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { startEtcd, type EtcdServer } from "../lib/etcd.ts";
import {
  createEtcdMembership,
  DuplicateMemberError,
  memberKey,
  type EtcdMembership,
} from "../../src/membership/etcd.ts";
import { EtcdClient } from "../../src/membership/etcd-client.ts";
import type { MemberInfo, MembershipView } from "../../src/membership/membership.ts";
import { monotonicMs } from "../../src/base/clock.ts";

const leaseTtlMs = 1000;
const waitMaxMs = 15_000;

let etcd: EtcdServer;
let client: EtcdClient;
let clusterSeq = 0;
const opened: EtcdMembership[] = [];
const logs: string[] = [];
/** Membership log lines are kept for failure messages; HERMES_TEST_LOG=1 also prints them, timestamped. */
function log(line: string): void {
  logs.push(line);
  if (process.env.HERMES_TEST_LOG) console.error(`${monotonicMs().toFixed(0)} ${line}`);
}

beforeAll(async () => {
  etcd = await startEtcd();
  client = new EtcdClient([etcd.clientUrl], { requestTimeoutMs: 2000 });
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((m) => m.close()));
});

afterAll(async () => {
  await etcd?.cleanup();
});

function info(id: number): MemberInfo {
  return {
    id,
    http: `127.0.0.1:${8000 + id}`,
    transport: "udp",
    shardAddresses: [`127.0.0.1:${9000 + id}`, `127.0.0.1:${9100 + id}`],
  };
}

function newCluster(): string {
  return `t${process.pid}-${++clusterSeq}`;
}

interface Observation {
  at: number;
  epoch: number;
  ids: number[];
  leaseUntilMs: number;
}

/** Records every view each node reports, and checks that all nodes agree on each epoch. */
class Recorder {
  readonly byNode = new Map<number, Observation[]>();
  private readonly membersByEpoch = new Map<number, string>();

  attach(id: number, m: EtcdMembership): void {
    const list: Observation[] = [];
    this.byNode.set(id, list);
    const record = (view: MembershipView): void => {
      list.push({
        at: monotonicMs(),
        epoch: view.epoch,
        ids: view.members.map((x) => x.id),
        leaseUntilMs: m.leaseUntilMs(),
      });
      const members = JSON.stringify(view.members);
      const known = this.membersByEpoch.get(view.epoch);
      if (known !== undefined && known !== members)
        throw new Error(`two memberships for epoch ${view.epoch}: ${known} vs ${members}`);
      this.membersByEpoch.set(view.epoch, members);
    };
    record(m.view());
    m.onChange(record);
  }

  of(id: number): Observation[] {
    const list = this.byNode.get(id);
    if (list === undefined) throw new Error(`node ${id} not recorded`);
    return list;
  }

  /** Per node: epochs never go back; a repeated epoch is a lease-loss report (lease 0). */
  checkOrder(): void {
    for (const [id, list] of this.byNode) {
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1];
        const cur = list[i];
        expect({ id, i, forward: cur.epoch >= prev.epoch }).toEqual({ id, i, forward: true });
        if (cur.epoch === prev.epoch) expect({ id, i, lease: cur.leaseUntilMs }).toEqual({ id, i, lease: 0 });
      }
    }
  }
}

async function join(
  cluster: string,
  id: number,
  recorder: Recorder,
  endpoint = etcd.clientUrl,
): Promise<EtcdMembership> {
  const m = await createEtcdMembership({ endpoints: [endpoint], cluster, self: info(id), leaseTtlMs, log });
  opened.push(m);
  recorder.attach(id, m);
  return m;
}

async function waitFor(what: string, condition: () => boolean, onPoll?: () => void): Promise<void> {
  const startedAt = monotonicMs();
  for (;;) {
    onPoll?.();
    if (condition()) return;
    if (monotonicMs() - startedAt > waitMaxMs)
      throw new Error(`timed out waiting for: ${what}\n${logs.slice(-20).join("\n")}`);
    await Bun.sleep(5);
  }
}

const ids = (m: EtcdMembership): number[] => m.view().members.map((x) => x.id);

function converged(members: EtcdMembership[], expected: number[]): boolean {
  const epoch = members[0].view().epoch;
  return members.every(
    (m) => m.view().epoch === epoch && JSON.stringify(ids(m)) === JSON.stringify(expected) && m.leaseUntilMs() > 0,
  );
}

describe("etcd membership", () => {
  test("three members register and all see the same view and epoch", async () => {
    const cluster = newCluster();
    const r = new Recorder();
    const a = await join(cluster, 1, r);
    expect(ids(a)).toEqual([1]);
    expect(a.leaseUntilMs()).toBeGreaterThan(0);
    const b = await join(cluster, 2, r);
    const c = await join(cluster, 3, r);
    await waitFor("all see [1,2,3]", () => converged([a, b, c], [1, 2, 3]));
    expect(a.view()).toEqual(b.view());
    expect(b.view()).toEqual(c.view());
    expect(a.view().members).toEqual([info(1), info(2), info(3)]);
    // The epoch is the etcd revision of the last change: member 3's registration.
    const key3 = await client.range(memberKey(cluster, 3));
    expect(a.view().epoch).toBe(key3.kvs[0].modRevision);
    expect(JSON.parse(key3.kvs[0].value)).toEqual(info(3));
    // Node 1 saw every change: its own view, then 2 joining, then 3 joining.
    expect(r.of(1).map((o) => o.ids)).toEqual([[1], [1, 2], [1, 2, 3]]);
    r.checkOrder();
    // One log line per reported view.
    expect(logs.filter((l) => l.startsWith(`membership[${cluster}/1] epoch=`)).length).toBe(a.counters().viewChanges);
    expect(a.grantedTtlMs()).toBe(leaseTtlMs);
  });

  test("a member that closes leaves; the others see the same new epoch", async () => {
    const cluster = newCluster();
    const r = new Recorder();
    const [a, b, c] = [await join(cluster, 1, r), await join(cluster, 2, r), await join(cluster, 3, r)];
    await waitFor("all see [1,2,3]", () => converged([a, b, c], [1, 2, 3]));
    const before = a.view().epoch;
    const reportsOfC = r.of(3).length;
    await c.close();
    await c.close();
    expect(c.leaseUntilMs()).toBe(0);
    await waitFor("a and b see [1,2]", () => converged([a, b], [1, 2]));
    expect(a.view().epoch).toBeGreaterThan(before);
    expect(a.view()).toEqual(b.view());
    expect((await client.range(memberKey(cluster, 3))).kvs).toEqual([]);
    // A closed membership reports nothing more.
    expect(r.of(3).length).toBe(reportsOfC);
    r.checkOrder();
  });

  test("a member cut off from etcd drops its lease before the others see it removed, then rejoins", async () => {
    const cluster = newCluster();
    const r = new Recorder();
    const [a, b, c] = [await join(cluster, 1, r), await join(cluster, 2, r), await join(cluster, 3, r)];
    await waitFor("all see [1,2,3]", () => converged([a, b, c], [1, 2, 3]));
    const epochBefore = c.view().epoch;
    let lastDeadlineOfC = 0;
    let lostAt = 0;
    let removedSeenAt = 0;
    c.onChange(() => {
      if (lostAt === 0 && c.leaseUntilMs() === 0) lostAt = monotonicMs();
    });
    a.onChange((view) => {
      if (removedSeenAt === 0 && !view.members.some((m) => m.id === 3)) removedSeenAt = monotonicMs();
    });
    const sampleC = (): void => {
      const until = c.leaseUntilMs();
      if (until > 0) lastDeadlineOfC = until;
    };
    sampleC();
    const partitionedFrom = r.of(3).length;
    c.simulatePartition(true);
    await waitFor("a sees 3 removed", () => removedSeenAt > 0, sampleC);

    // The protocol's ordering facts.
    expect(lostAt).toBeGreaterThan(0);
    expect(lostAt).toBeLessThan(removedSeenAt);
    expect(removedSeenAt).toBeGreaterThanOrEqual(lastDeadlineOfC);
    expect(c.leaseUntilMs()).toBe(0);
    // Cut off, node 3 keeps its last view: exactly one report since (the lease loss), same epoch.
    expect(
      r
        .of(3)
        .slice(partitionedFrom)
        .map((o) => [o.epoch, o.leaseUntilMs]),
    ).toEqual([[epochBefore, 0]]);
    expect(c.view().epoch).toBe(epochBefore);
    await waitFor("b sees [1,2]", () => converged([a, b], [1, 2]));
    const removalEpoch = a.view().epoch;
    expect(removalEpoch).toBeGreaterThan(epochBefore);

    c.simulatePartition(false);
    // The watch may show our put before the registration's reply arrives: wait for the count too.
    await waitFor(
      "all see [1,2,3] again, rejoin counted",
      () => converged([a, b, c], [1, 2, 3]) && c.counters().rejoins === 1,
    );
    expect(c.view().epoch).toBeGreaterThan(removalEpoch);
    expect(c.counters()).toMatchObject({ leaseLosses: 1, rejoins: 1 });
    expect(c.counters().keepaliveFailures).toBeGreaterThan(0);
    expect(a.counters()).toMatchObject({ leaseLosses: 0, rejoins: 0, keepaliveFailures: 0 });
    r.checkOrder();
  });

  test("a member whose key is deleted stops serving at once and rejoins with a new epoch", async () => {
    const cluster = newCluster();
    const r = new Recorder();
    const [a, b] = [await join(cluster, 1, r), await join(cluster, 2, r)];
    await waitFor("both see [1,2]", () => converged([a, b], [1, 2]));
    const from = r.of(2).length;
    const deleted = await client.deleteRange(memberKey(cluster, 2));
    expect(deleted.deleted).toBe(1);
    await waitFor(
      "both see [1,2] at a later epoch, rejoin counted",
      () => converged([a, b], [1, 2]) && b.view().epoch > deleted.revision && b.counters().rejoins === 1,
    );
    // Node 2 reported the view without itself with no lease (one report for both), then its rejoin.
    const seen = r.of(2).slice(from);
    expect(seen[0]).toMatchObject({ epoch: deleted.revision, ids: [1], leaseUntilMs: 0 });
    expect(seen[seen.length - 1].ids).toEqual([1, 2]);
    expect(seen[seen.length - 1].leaseUntilMs).toBeGreaterThan(0);
    expect(b.counters()).toMatchObject({ leaseLosses: 1, rejoins: 1 });
    r.checkOrder();
  });

  test("a duplicate id is rejected at startup and disturbs nobody", async () => {
    const cluster = newCluster();
    const r = new Recorder();
    const a = await join(cluster, 1, r);
    const epoch = a.view().epoch;
    const err = await createEtcdMembership({
      endpoints: [etcd.clientUrl],
      cluster,
      self: info(1),
      leaseTtlMs,
      log,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DuplicateMemberError);
    expect((err as Error).message).toContain(memberKey(cluster, 1));
    expect((err as DuplicateMemberError).id).toBe(1);
    // Give a (wrong) watch event time to arrive; then nothing changed for the registered member.
    const b = await join(cluster, 2, r);
    await waitFor("a sees 2", () => converged([a, b], [1, 2]));
    expect(r.of(1).map((o) => o.ids)).toEqual([[1], [1, 2]]);
    expect(a.view().epoch).toBeGreaterThan(epoch);
    expect(a.counters().leaseLosses).toBe(0);
  });

  test("startup fails clearly when etcd is unreachable", async () => {
    const err = await createEtcdMembership({
      endpoints: ["http://127.0.0.1:1"],
      cluster: newCluster(),
      self: info(1),
      leaseTtlMs,
      startTimeoutMs: 200,
      log,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain("could not register with etcd");
  });

  test("a dead endpoint is skipped for the next one", async () => {
    const cluster = newCluster();
    const m = await createEtcdMembership({
      endpoints: ["http://127.0.0.1:1", etcd.clientUrl],
      cluster,
      self: info(1),
      leaseTtlMs,
      log,
    });
    opened.push(m);
    expect(m.view().members).toEqual([info(1)]);
    expect(m.leaseUntilMs()).toBeGreaterThan(0);
  });

  test("options are validated", async () => {
    const base = { endpoints: [etcd.clientUrl], cluster: newCluster(), self: info(1), leaseTtlMs };
    await expect(createEtcdMembership({ ...base, leaseTtlMs: 1500 })).rejects.toThrow(/whole number of seconds/);
    await expect(createEtcdMembership({ ...base, cluster: "a/b" })).rejects.toThrow(/cluster name/);
    await expect(createEtcdMembership({ ...base, self: { ...info(1), id: 99 } })).rejects.toThrow(/id must be/);
    await expect(createEtcdMembership({ ...base, endpoints: [] })).rejects.toThrow(/endpoint/);
  });
});

describe("etcd membership across an etcd crash", () => {
  test("members keep their leases until the deadline, keep their view, and re-register when etcd is back", async () => {
    const server = await startEtcd();
    const members: EtcdMembership[] = [];
    try {
      const cluster = newCluster();
      const r = new Recorder();
      for (const id of [1, 2, 3, 4]) members.push(await join(cluster, id, r, server.clientUrl));
      const [a, b, c, d] = members;
      await waitFor("all see [1,2,3,4]", () => converged(members, [1, 2, 3, 4]));
      const epochBefore = a.view().epoch;
      const lastDeadline = new Map<number, number>();
      const lostAt = new Map<number, number>();
      for (const [i, m] of members.entries()) {
        m.onChange(() => {
          if (!lostAt.has(i) && m.leaseUntilMs() === 0) lostAt.set(i, monotonicMs());
        });
      }
      const sample = (): void => {
        for (const [i, m] of members.entries()) if (m.leaseUntilMs() > 0) lastDeadline.set(i, m.leaseUntilMs());
      };
      sample();
      const from = [1, 2, 3, 4].map((id) => r.of(id).length);

      await server.kill();
      await waitFor("every lease runs out", () => members.every((m) => m.leaseUntilMs() === 0), sample);
      for (const [i, m] of members.entries()) {
        // Kept the lease until its own deadline, and no longer.
        expect(lostAt.get(i)).toBeGreaterThanOrEqual(lastDeadline.get(i)!);
        // The view stays as it was: one report (the lease loss) at the old epoch.
        expect(m.view().epoch).toBe(epochBefore);
        expect(
          r
            .of(i + 1)
            .slice(from[i])
            .map((o) => [o.epoch, o.leaseUntilMs]),
        ).toEqual([[epochBefore, 0]]);
      }
      // Leaving while etcd is down: close() is bounded and leaves the key to expire.
      await d.close();
      expect(d.leaseUntilMs()).toBe(0);

      await server.start();
      // etcd restores (and refreshes) the old leases: 1-3 revoke theirs and re-register; 4's
      // key goes when its lease expires.
      await waitFor(
        "1,2,3 re-registered",
        () => converged([a, b, c], [1, 2, 3]) && [a, b, c].every((m) => m.counters().rejoins === 1),
      );
      expect(a.view().epoch).toBeGreaterThan(epochBefore);
      for (const m of [a, b, c]) expect(m.counters()).toMatchObject({ leaseLosses: 1, rejoins: 1 });
      for (const m of [a, b, c]) expect(m.counters().keepaliveFailures).toBeGreaterThan(0);
      r.checkOrder();
    } finally {
      await Promise.all(members.map((m) => m.close()));
      await server.cleanup();
    }
  });
});
