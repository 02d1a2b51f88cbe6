// One node cut off from etcd ONLY (nftables drops in both directions between its namespace and
// etcd's), while it still reaches its peers and the clients:
// - it stops serving once its lease ends: from then on every answer it gives is 503 (never a stale
//   read, never an acknowledged write);
// - nothing else stalls: the other two keep acknowledging updates (after the lease at the latest),
//   and etcd removes the cut node;
// - after the heal it rejoins and serves current data;
// - no acknowledged write is lost, and the whole history, final reads included, is linearizable.

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
  probeStatuses,
  startWorkload,
} from "./harness.ts";

const seed = testSeed(0xe7cd_0001);
const leaseMs = 1000;
const cut = 2;
const majority = [0, 1];
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];
const support = netnsSupport();

let cluster: NetnsCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe.skipIf(!support.ok)(`netns: etcd-only isolation${support.ok ? "" : ` (skipped: ${support.reason})`}`, () => {
  beforeAll(ensureBinary, 180_000);
  test(`a node cut off from etcd only stops serving at its lease's end; the others do not stall; it rejoins on heal (seed ${seed})`, async () => {
    cluster = await NetnsCluster.start({ nodes: 3, leaseMs });
    const c = cluster;
    const w = startWorkload({ urls: c.urls(), keys, counters, seed });
    const onMajority = (r: { node: number }) => r.node !== cut;
    try {
      await waitFor(
        "100 acknowledged updates before the fault",
        () => acked(w.recorder, () => true).length >= 100,
        30_000,
      );

      const faultAt = performance.now();
      await c.cut(`n${cut}`, ["etcd"]);

      // Its lease runs out: it says so, and answers nothing but 503 from then on.
      await waitFor(`n${cut} to stop serving`, async () => (await c.node(cut).status())?.serving === false, 10_000, 20);
      const stoppedAt = performance.now();
      // etcd removes it; the others serve without it.
      await c.waitMembers(majority, 15_000, majority);
      const removedAt = performance.now();
      await waitFor(
        "50 updates acknowledged on the majority after the removal",
        () => acked(w.recorder, (r) => onMajority(r) && r.call > removedAt).length >= 50,
        30_000,
      );
      const probes = await probeStatuses(c.node(cut).url, keys, `${seed}`);
      expect(probes).toEqual(probes.map(() => 503));
      const fromCut = w.recorder.records.filter(
        (r) => r.node === cut && r.call > stoppedAt && typeof r.status === "number",
      );
      expect(fromCut.filter((r) => r.status !== 503).map((r) => `${r.kind} ${r.key} ${r.status}`)).toEqual([]);
      // The cut node still reaches its peers: they must not have waited on it beyond its lease.
      const healAt = performance.now();
      const gap = longestAckGap(w.recorder, faultAt, healAt, onMajority);
      expect(gap, `the majority acknowledged nothing for ${ms(gap)}`).toBeLessThan(leaseMs + 3000);
      const firstMajorityAck = firstAckAfter(w.recorder, faultAt, onMajority);

      await c.heal();
      await c.waitMembers([0, 1, 2], 30_000);
      const servingAt = performance.now();
      await waitFor(
        `20 updates acknowledged by n${cut} after the heal`,
        () => acked(w.recorder, (r) => r.node === cut && r.call > healAt).length >= 20,
        30_000,
      );
      const firstCutAck = firstAckAfter(w.recorder, healAt, (r) => r.node === cut);
      await w.stop();

      console.error(
        `netns etcd-only: fault->n${cut} not serving ${ms(stoppedAt - faultAt)}, fault->removed from the view ${ms(removedAt - faultAt)}, ` +
          `fault->first majority ack ${ms(firstMajorityAck === null ? null : firstMajorityAck - faultAt)}, longest majority ack gap ${ms(gap)}; ` +
          `${fromCut.length} load ops + ${probes.length} probes answered 503 by n${cut}; heal->all serving ${ms(servingAt - healAt)}, ` +
          `heal->first n${cut} ack ${ms(firstCutAck === null ? null : firstCutAck - healAt)}`,
      );
      await finalChecks(c, w, [...keys, ...counters], "etcd-only");
    } catch (error) {
      console.error(c.logs(80));
      throw error;
    } finally {
      await w.stop();
      await c.close();
    }
  }, 150_000);
});
