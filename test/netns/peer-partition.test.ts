// Peer-only partitions of one node (n2): nftables drop rules between its namespace and its peers'
// data addresses, while it still reaches etcd (so it keeps renewing its lease) and the clients.
// Three shapes: both directions, n2 -> peers only, peers -> n2 only.
//
// The cut node keeps its etcd lease, so only the failure detector can take it out: its peers (or,
// when only the peers -> n2 direction is lost, n2 itself) stop hearing it, publish the suspicion in
// etcd, node 0 evicts it (src/membership/eviction-rule.ts), and the majority installs the view
// without it once its lease has surely expired. Asserted, for each shape:
// - liveness: the majority's longest gap between acknowledged updates during the cut stays under
//   detectorBoundMs + leaseMs + 1000 (the removal's hold is one lease), updates invoked after
//   that are acknowledged before the heal, and n2 stopped serving (503) during the cut;
// - no stale read, no lost acknowledged write, a linearizable history (final reads included);
// - full recovery after the heal: n2 registers again once it reaches every member, then every node
//   serves with every member, acknowledges updates and answers the same current data.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testSeed, waitFor } from "../cluster/helpers.ts";
import {
  NetnsCluster,
  acked,
  ensureBinary,
  finalChecks,
  firstAckAfter,
  longestAckGap,
  ms,
  netnsSupport,
  startWorkload,
} from "./harness.ts";

const leaseMs = 1000;
/**
 * The detector's bound from a cut to the eviction of the cut node: the suspicion timeout (the
 * default --suspect-ms is the lease TTL), the settle time and the etcd round trips.
 */
const detectorBoundMs = leaseMs + 500;
/**
 * How long each cut lasts: long enough for the eviction, the hold of one lease and a stretch of
 * updates on the majority after it (HKV_NETNS_CUT_MS overrides, for measuring).
 */
const cutMs = Number(process.env.HKV_NETNS_CUT_MS ?? 6 * leaseMs);
const cutNode = 2;
const all = [0, 1, 2];
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];
const support = netnsSupport();

interface Shape {
  name: string;
  seed: number;
  apply: (c: NetnsCluster) => Promise<void>;
}

const shapes: Shape[] = [
  { name: "both directions", seed: testSeed(0xe7cd_0005), apply: (c) => c.cut(`n${cutNode}`, ["n0", "n1"]) },
  {
    name: "n2 -> peers lost (peers -> n2 delivered)",
    seed: testSeed(0xe7cd_0006),
    apply: (c) => c.drop(`n${cutNode}`, ["n0", "n1"]),
  },
  {
    name: "peers -> n2 lost (n2 -> peers delivered)",
    seed: testSeed(0xe7cd_0007),
    apply: async (c) => {
      await c.drop("n0", [`n${cutNode}`]);
      await c.drop("n1", [`n${cutNode}`]);
    },
  },
];

const clusters = new Set<NetnsCluster>();
afterAll(async () => {
  await Promise.all([...clusters].map((c) => c.close()));
}, 60_000);

describe.skipIf(!support.ok)(
  `netns: peer-only partition of one node${support.ok ? "" : ` (skipped: ${support.reason})`}`,
  () => {
    beforeAll(ensureBinary, 180_000);
    for (const shape of shapes) {
      test(`peer-only cut of n${cutNode}, ${shape.name}: the majority goes on without it, safe (no stale read, nothing lost), full recovery after the heal (seed ${shape.seed})`, async () => {
        const c = await NetnsCluster.start({ nodes: 3, leaseMs });
        clusters.add(c);
        const w = startWorkload({ urls: c.urls(), keys, counters, seed: shape.seed });
        const onMajority = (r: { node: number }) => r.node !== cutNode;
        try {
          await waitFor(
            "100 acknowledged updates before the cut",
            () => acked(w.recorder, () => true).length >= 100,
            30_000,
          );

          const faultAt = performance.now();
          await shape.apply(c);
          const appliedAt = performance.now();
          // Watch the cut node's own view during the cut: it must stop serving.
          let keptLease = true;
          while (performance.now() - faultAt < cutMs) {
            const s = await c.node(cutNode).status();
            if (s === null || !s.serving || !s.members.includes(cutNode)) keptLease = false;
            await Bun.sleep(200);
          }
          const healAt = performance.now();
          // Invoked once the rules were in place, acknowledged before the heal.
          const duringMajority = acked(
            w.recorder,
            (r) => onMajority(r) && r.call >= appliedAt && r.ret < healAt,
          ).length;
          const duringCut = acked(
            w.recorder,
            (r) => r.node === cutNode && r.call >= appliedAt && r.ret < healAt,
          ).length;
          const gap = longestAckGap(w.recorder, faultAt, healAt, onMajority);
          const resumedAfterBound = acked(
            w.recorder,
            (r) => onMajority(r) && r.call > faultAt + detectorBoundMs + leaseMs && r.ret < healAt,
          ).length;

          await c.heal();
          await c.waitMembers(all, 30_000);
          const servingAt = performance.now();
          await waitFor(
            "20 updates acknowledged by every node after the heal",
            () => all.every((id) => acked(w.recorder, (r) => r.node === id && r.call > healAt).length >= 20),
            30_000,
          );
          const allAckedAt = performance.now();
          const firstAcks = all.map((id) => firstAckAfter(w.recorder, healAt, (r) => r.node === id));
          await w.stop();

          console.error(
            `netns peer-only (${shape.name}): cut ${ms(healAt - faultAt)}; n${cutNode} kept its lease and membership throughout: ${keptLease}; ` +
              `updates invoked and acknowledged during the cut: ${duringMajority} on the majority, ${duringCut} on n${cutNode}; longest majority ack gap ${ms(gap)}; ` +
              `heal->all serving ${ms(servingAt - healAt)}, heal->first ack on n0,n1,n2 ` +
              `${firstAcks.map((t) => ms(t === null ? null : t - healAt)).join(", ")}, heal->20 acks on every node ${ms(allAckedAt - healAt)}`,
          );
          await finalChecks(c, w, [...keys, ...counters], `peer-only ${shape.name}`);
          expect(firstAcks.every((t) => t !== null)).toBe(true);
          expect(gap).toBeLessThan(detectorBoundMs + leaseMs + 1000);
          expect(resumedAfterBound).toBeGreaterThan(0);
          expect(keptLease).toBe(false); // the cut node stopped serving (503) during the cut
        } catch (error) {
          console.error(c.logs(80));
          throw error;
        } finally {
          await w.stop();
          await c.close();
          clusters.delete(c);
        }
      }, 150_000);
    }
  },
);
