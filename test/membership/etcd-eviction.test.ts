// Evictions through a real etcd (test/lib/etcd.ts), with the suspicions published by hand: the
// transport side is test/cluster/peer-partition.test.ts's. Lease TTL 1 s (the test etcd's minimum).
// Asserted: the protocol's ordering facts (the evicted member stops serving before anyone installs
// its removal, and that install comes after the last deadline it ever held, a full TTL after the
// eviction), the candidacy (no re-registration until it reaches every member; old suspicions do not
// evict it again), and that the transaction's guard lets exactly one of two racing deciders act and
// none that decided on an old membership.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { startEtcd, type EtcdServer } from "../lib/etcd.ts";
import { createEtcdMembership, type EtcdMembership } from "../../src/membership/etcd.ts";
import { EtcdClient, type EtcdKv } from "../../src/membership/etcd-client.ts";
import { ClusterKeys, ClusterRecords, encodeSuspects, parseEviction } from "../../src/membership/cluster-records.ts";
import { Evictor } from "../../src/membership/etcd-eviction.ts";
import { encodeMemberInfo, MemberTable } from "../../src/membership/etcd-view.ts";
import type { MemberInfo } from "../../src/membership/membership.ts";
import { monotonicMs } from "../../src/base/clock.ts";

const leaseTtlMs = 1000;
const waitMaxMs = 15_000;

let etcd: EtcdServer;
let client: EtcdClient;
let clusterSeq = 0;
const opened: EtcdMembership[] = [];
const logs: string[] = [];
function log(line: string): void {
  logs.push(`${monotonicMs().toFixed(0)} ${line}`);
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
  return { id, http: `127.0.0.1:${8000 + id}`, transport: "tcp", shardAddresses: [`127.0.0.1:${9000 + id}`] };
}

function newCluster(): string {
  return `ev${process.pid}-${++clusterSeq}`;
}

async function waitFor(what: string, condition: () => boolean, onPoll?: () => void): Promise<number> {
  const startedAt = monotonicMs();
  for (;;) {
    onPoll?.();
    if (condition()) return monotonicMs();
    if (monotonicMs() - startedAt > waitMaxMs)
      throw new Error(`timed out waiting for: ${what}\n${logs.slice(-30).join("\n")}`);
    await Bun.sleep(5);
  }
}

const ids = (m: EtcdMembership): number[] => m.view().members.map((x) => x.id);

describe("evictions through etcd", () => {
  test("a member suspected by a majority: stops serving at once, removed only after its last deadline, rejoins only once it reaches every member, not evicted again by old suspicions", async () => {
    const cluster = newCluster();
    const reaches = new Map<number, boolean>([
      [1, true],
      [2, true],
      [3, false],
    ]);
    const join = async (id: number): Promise<EtcdMembership> => {
      const m = await createEtcdMembership({
        endpoints: [etcd.clientUrl],
        cluster,
        self: info(id),
        leaseTtlMs,
        log,
        detector: { settleMs: 50, silentTargetGraceMs: 50, reachesMembers: () => reaches.get(id)! },
      });
      opened.push(m);
      return m;
    };
    const [a, b, c] = [await join(1), await join(2), await join(3)];
    await waitFor("all see [1,2,3]", () =>
      [a, b, c].every((m) => JSON.stringify(ids(m)) === "[1,2,3]" && m.leaseUntilMs() > 0),
    );
    // Views must agree per epoch on every node, and removal comes after node 3's last deadline.
    const membersByEpoch = new Map<number, string>();
    let lastDeadlineOf3 = c.leaseUntilMs();
    let lostAt = 0;
    const removedAt = new Map<number, number>();
    for (const [id, m] of [
      [1, a],
      [2, b],
      [3, c],
    ] as const) {
      m.onChange((view) => {
        const members = JSON.stringify(view.members.map((x) => x.id));
        expect(membersByEpoch.get(view.epoch) ?? members).toBe(members);
        membersByEpoch.set(view.epoch, members);
        if (id === 3 && lostAt === 0 && c.leaseUntilMs() === 0) lostAt = monotonicMs();
        if (id !== 3 && !removedAt.has(id) && !view.members.some((x) => x.id === 3)) removedAt.set(id, monotonicMs());
      });
    }
    const sample3 = (): void => {
      const until = c.leaseUntilMs();
      if (until > 0) lastDeadlineOf3 = Math.max(lastDeadlineOf3, until);
    };

    const suspectedAt = monotonicMs();
    a.publishSuspects([3]);
    b.publishSuspects([3]);
    await waitFor("node 3 loses its lease", () => lostAt > 0, sample3);
    await waitFor("nodes 1 and 2 install the removal of 3", () => removedAt.size === 2, sample3);
    for (const at of removedAt.values()) {
      expect(at).toBeGreaterThan(lostAt);
      expect(at).toBeGreaterThan(lastDeadlineOf3);
      // Held for the TTL plus the margin after the key went (which was after the suspicions).
      expect(at - suspectedAt).toBeGreaterThanOrEqual(leaseTtlMs);
    }
    expect(logs.some((l) => l.includes(`membership[${cluster}/1] evicting node 3`))).toBe(true);
    expect(
      logs.filter(
        (l) => l.includes(`[${cluster}/`) && l.includes("removes evicted node(s) [3]: installing it in 1100 ms"),
      ).length,
    ).toBe(2);
    expect(a.counters()).toMatchObject({ evictionsDecided: 1, evictionHolds: 1, evictionsOfSelf: 0 });
    expect(b.counters()).toMatchObject({ evictionsDecided: 0, evictionHolds: 1 });
    expect(c.counters().evictionsOfSelf).toBe(1);
    const record = parseEviction((await client.range(`/hermes-kv/${cluster}/evictions/3`)).kvs[0]!.value)!;
    expect(record).toMatchObject({ member: 3, by: 1, reason: "majority", suspectedBy: [1, 2], ttlMs: leaseTtlMs });

    // A candidate until it reaches every member: its candidate key is there, it does not register.
    await waitFor(
      "node 3 is a candidate the others see",
      () => c.detectorStatus().candidate && a.candidates().some((x) => x.id === 3),
    );
    await Bun.sleep(3 * leaseTtlMs);
    expect(ids(a)).toEqual([1, 2]);
    expect(c.leaseUntilMs()).toBe(0);
    reaches.set(3, true);
    await waitFor("all see [1,2,3] again", () =>
      [a, b, c].every((m) => JSON.stringify(ids(m)) === "[1,2,3]" && m.leaseUntilMs() > 0),
    );
    expect(c.detectorStatus().candidate).toBe(false);
    await waitFor("the candidate key is gone", () => a.candidates().length === 0);
    // Nodes 1 and 2 still publish [3], but those records predate its new registration.
    await Bun.sleep(2 * leaseTtlMs);
    expect([a, b, c].map(ids)).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(a.counters().evictionsDecided).toBe(1);
    expect(a.detectorStatus().decision).toBeNull();
  }, 30_000);

  test("fewer than 3 members: suspicions evict nobody", async () => {
    const cluster = newCluster();
    const make = async (id: number) => {
      const m = await createEtcdMembership({
        endpoints: [etcd.clientUrl],
        cluster,
        self: info(id),
        leaseTtlMs,
        log,
        detector: { settleMs: 0, silentTargetGraceMs: 0, reachesMembers: () => true },
      });
      opened.push(m);
      return m;
    };
    const [a, b] = [await make(1), await make(2)];
    a.publishSuspects([2]);
    b.publishSuspects([1]);
    await waitFor(
      "both records are seen",
      () => a.detectorStatus().suspectedBy.length === 1 && b.detectorStatus().suspectedBy.length === 1,
    );
    await Bun.sleep(500);
    expect([ids(a), ids(b)]).toEqual([
      [1, 2],
      [1, 2],
    ]);
    expect(a.counters().evictionsDecided + b.counters().evictionsDecided).toBe(0);
  });
});

// --- the transaction's guard, with Evictors over hand-made state ------------------------------

interface Fixture {
  keys: ClusterKeys;
  leases: Map<number, string>;
}

/** Member keys 0..n-1 under leases, and suspects records: `suspicions[i]` by member i. */
async function fixture(n: number, suspicions: Record<number, number[]>): Promise<Fixture> {
  const keys = new ClusterKeys(`/hermes-kv/${newCluster()}/`);
  const leases = new Map<number, string>();
  for (let id = 0; id < n; id++) {
    const lease = await client.leaseGrant(30);
    leases.set(id, lease.id);
    await client.put(keys.member(id), encodeMemberInfo(info(id)), lease.id);
  }
  for (const [id, suspects] of Object.entries(suspicions))
    await client.put(keys.suspectsOf(Number(id)), encodeSuspects(suspects), leases.get(Number(id))!);
  return { keys, leases };
}

/** The tables an Evictor reads, filled from one read of the cluster prefix. */
async function tables(keys: ClusterKeys): Promise<{ table: MemberTable; records: ClusterRecords }> {
  const { revision, kvs } = await client.range(keys.cluster, { prefix: true });
  const members = kvs.filter((kv: EtcdKv) => kv.key.startsWith(keys.members));
  const table = new MemberTable(keys.members);
  table.applySnapshot(Math.max(...members.map((kv) => kv.modRevision)), members);
  const records = new ClusterRecords(keys);
  records.applySnapshot(revision, kvs);
  return { table, records };
}

function evictor(
  self: number,
  t: { table: MemberTable; records: ClusterRecords },
  onEvicted: () => void,
  etcdClient = client,
  silentTargetGraceMs = 0,
): Evictor {
  return new Evictor({
    self,
    client: etcdClient,
    table: t.table,
    records: t.records,
    settleMs: 0,
    silentTargetGraceMs,
    registered: () => true,
    installing: () => false,
    log,
    onEvicted,
  });
}

/** The shared client, recording transaction outcomes, with revokes delayed by `revokeDelayMs`. */
function spyClient(txns: boolean[], revokeDelayMs: number): EtcdClient {
  const spy = Object.create(client) as EtcdClient;
  spy.txn = async (compare, puts, options) => {
    const result = await client.txn(compare, puts, options);
    txns.push(result.succeeded);
    return result;
  };
  spy.leaseRevoke = async (id, options) => {
    await Bun.sleep(revokeDelayMs);
    return client.leaseRevoke(id, options);
  };
  return spy;
}

describe("the eviction transaction's guard", () => {
  test("two deciders acting on the same state at once: exactly one eviction is written", async () => {
    const f = await fixture(4, { 0: [3], 1: [3], 2: [3] });
    let evictions = 0;
    // Revokes wait, so that the second transaction meets the first one's record and not a membership
    // already without node 3: only the guard on the evictions prefix can stop it.
    const txns: boolean[] = [];
    const spy = spyClient(txns, 300);
    const deciders = [
      evictor(0, await tables(f.keys), () => evictions++, spy),
      evictor(0, await tables(f.keys), () => evictions++, spy),
    ];
    for (const d of deciders) d.tick(0); // the rule's answer starts to hold
    for (const d of deciders) d.tick(1); // settled (settleMs 0): both act
    await waitFor("both transactions answered", () => txns.length === 2);
    expect(txns.sort()).toEqual([false, true]);
    const deadline = monotonicMs() + 5000;
    while (monotonicMs() < deadline && (await client.range(f.keys.member(3))).kvs.length > 0) await Bun.sleep(10);
    await Bun.sleep(200);
    expect(evictions).toBe(1);
    expect((await client.range(f.keys.member(3))).kvs).toEqual([]);
    expect(parseEviction((await client.range(f.keys.evictionOf(3))).kvs[0]!.value)).toMatchObject({
      member: 3,
      lease: f.leases.get(3),
      by: 0,
    });
  });

  test("a decision made on a membership that has changed since is not carried out", async () => {
    const f = await fixture(4, { 0: [3], 1: [3], 2: [3] });
    let evictions = 0;
    const stale = evictor(0, await tables(f.keys), () => evictions++);
    const lease = await client.leaseGrant(30);
    await client.put(f.keys.member(4), encodeMemberInfo(info(4)), lease.id); // a member joins meanwhile
    stale.tick(0);
    stale.tick(1);
    await Bun.sleep(500);
    expect(evictions).toBe(0);
    expect((await client.range(f.keys.evictionOf(3))).kvs).toEqual([]);
    expect((await client.range(f.keys.member(3))).kvs.length).toBe(1);
  });

  test("a target that publishes no suspicion (it may have crashed) is given time for its lease to expire; one that does is not", async () => {
    const graceMs = 10_000;
    const silent = await fixture(4, { 0: [3], 1: [3], 2: [3] });
    let evictions = 0;
    const waits = evictor(0, await tables(silent.keys), () => evictions++, client, graceMs);
    for (const t of [0, 1, graceMs - 1]) waits.tick(t);
    await Bun.sleep(300);
    expect(evictions).toBe(0);
    waits.tick(graceMs);
    const deadline = monotonicMs() + 5000;
    while (monotonicMs() < deadline && evictions === 0) await Bun.sleep(10);
    expect(evictions).toBe(1);

    const speaking = await fixture(4, { 0: [3], 1: [3], 2: [3], 3: [0, 1, 2] });
    const acts = evictor(0, await tables(speaking.keys), () => evictions++, client, graceMs);
    acts.tick(0);
    acts.tick(1);
    const deadline2 = monotonicMs() + 5000;
    while (monotonicMs() < deadline2 && evictions === 1) await Bun.sleep(10);
    expect(evictions).toBe(2);
  });

  test("a decider that died between the record and the revoke: the next decider revokes", async () => {
    const f = await fixture(4, { 0: [3], 1: [3], 2: [3] });
    // The record, as the dead decider wrote it; the lease was never revoked.
    await client.put(
      f.keys.evictionOf(3),
      JSON.stringify({
        member: 3,
        lease: f.leases.get(3),
        ttlMs: 30_000,
        epoch: 1,
        by: 0,
        reason: "majority",
        suspectedBy: [0, 1, 2],
      }),
    );
    let evictions = 0;
    const next = evictor(0, await tables(f.keys), () => evictions++);
    next.tick(0);
    const deadline = monotonicMs() + 5000;
    while (monotonicMs() < deadline && (await client.range(f.keys.member(3))).kvs.length > 0) await Bun.sleep(10);
    expect((await client.range(f.keys.member(3))).kvs).toEqual([]);
    expect(evictions).toBe(0); // it finished an eviction, it did not decide one
  });
});
