// etcd's host cut off from everyone: the host end of its veth set down (the cable pulled). No node
// can renew its lease, so:
// - the nodes serve while their leases last, and no update or read invoked after the leases have
//   surely run out is answered 200;
// - then every node stops serving (503 to every read and write);
// - after the heal (link up) they register again, rejoin (merging the state they kept: nobody was
//   serving) and serve, with nothing lost;
// - the whole history, final reads on every node included, is linearizable.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testSeed, waitFor } from "../cluster/helpers.ts";
import {
  NetnsCluster,
  acked,
  ensureBinary,
  finalChecks,
  firstAckAfter,
  ms,
  netnsSupport,
  probeStatuses,
  startWorkload,
} from "./harness.ts";

const seed = testSeed(0xe7cd_0002);
const leaseMs = 1000;
/** Past this long after the fault no node may hold a lease (the TTL, plus slack for etcd granting a longer one). */
const leaseBoundMs = 2 * leaseMs;
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];
const all = [0, 1, 2];
const support = netnsSupport();

let cluster: NetnsCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe.skipIf(!support.ok)(`netns: etcd isolated${support.ok ? "" : ` (skipped: ${support.reason})`}`, () => {
  beforeAll(ensureBinary, 180_000);
  test(`etcd's link down: nodes serve while leased, then 503, then recover on heal (seed ${seed})`, async () => {
    cluster = await NetnsCluster.start({ nodes: 3, leaseMs });
    const c = cluster;
    const w = startWorkload({ urls: c.urls(), keys, counters, seed });
    try {
      await waitFor(
        "100 acknowledged updates before the fault",
        () => acked(w.recorder, () => true).length >= 100,
        30_000,
      );

      const faultAt = performance.now();
      await c.linkDown("etcd", "ctl");
      await waitFor(
        "every node to stop serving",
        async () => (await Promise.all(all.map((id) => c.node(id).status()))).every((s) => s !== null && !s.serving),
        10_000,
        20,
      );
      const allStoppedAt = performance.now();
      // Stay down a while: every answer now is 503.
      await Bun.sleep(1500);
      const probes = (await Promise.all(all.map((id) => probeStatuses(c.node(id).url, keys, `${seed}-${id}`)))).flat();
      expect(probes).toEqual(probes.map(() => 503));
      const healAt = performance.now();
      // Nothing invoked once every lease had surely ended was answered 200 (no read, no update).
      const late = w.recorder.records.filter(
        (r) => r.call > faultAt + leaseBoundMs && r.call < healAt && r.status === 200,
      );
      expect(late.map((r) => `${r.kind} ${r.key} on n${r.node} at +${(r.call - faultAt).toFixed(0)} ms`)).toEqual([]);
      const lastAck = Math.max(0, ...acked(w.recorder, (r) => r.call < healAt).map((r) => r.ret));
      const servedAfterFault = acked(w.recorder, (r) => r.call >= faultAt && r.call < healAt).length;

      await c.heal();
      await c.waitMembers(all, 30_000);
      const servingAt = performance.now();
      await waitFor(
        "20 updates acknowledged by every node after the heal",
        () => all.every((id) => acked(w.recorder, (r) => r.node === id && r.call > healAt).length >= 20),
        30_000,
      );
      const firstAcks = all.map((id) => firstAckAfter(w.recorder, healAt, (r) => r.node === id));
      await w.stop();

      console.error(
        `netns etcd isolated: ${servedAfterFault} updates invoked after the fault acknowledged, the last ${ms(lastAck - faultAt)} after it; ` +
          `fault->all not serving ${ms(allStoppedAt - faultAt)}; ${probes.length} probes answered 503; heal->all serving ${ms(servingAt - healAt)}, ` +
          `heal->first ack on n0,n1,n2 ${firstAcks.map((t) => ms(t === null ? null : t - healAt)).join(", ")}`,
      );
      await finalChecks(c, w, [...keys, ...counters], "etcd isolated");
    } catch (error) {
      console.error(c.logs(80));
      throw error;
    } finally {
      await w.stop();
      await c.close();
    }
  }, 150_000);
});
