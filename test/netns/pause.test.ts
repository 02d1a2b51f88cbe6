// A node process SIGSTOPped well past its lease, then SIGCONTinued: it must never answer a stale
// read. While it is stopped, etcd removes it, the others go on and overwrite a key it had read;
// reads sent to it during the pause wait in its kernel socket buffers and are answered when it
// runs again, with its old (expired) lease and its old copy of the key in memory. Each of them must
// be a 503 or the new value, never the old one. Then it rejoins and serves current data; no
// acknowledged write is lost; the whole history is linearizable.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { LoadClient, testSeed, waitFor, type OpRecord } from "../cluster/helpers.ts";
import {
  NetnsCluster,
  acked,
  ensureBinary,
  finalChecks,
  firstAckAfter,
  ms,
  netnsSupport,
  startWorkload,
} from "./harness.ts";

const seed = testSeed(0xe7cd_0004);
const leaseMs = 1000;
/** How long the process stays stopped: three leases. */
const pauseMs = 3 * leaseMs;
const paused = 2;
const majority = [0, 1];
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];
const probeKey = "stale-probe";
const support = netnsSupport();

let cluster: NetnsCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe.skipIf(!support.ok)(
  `netns: process paused past its lease${support.ok ? "" : ` (skipped: ${support.reason})`}`,
  () => {
    beforeAll(ensureBinary, 180_000);
    test(`a node SIGSTOPped past its lease never answers a stale read after SIGCONT (seed ${seed})`, async () => {
      cluster = await NetnsCluster.start({ nodes: 3, leaseMs });
      const c = cluster;
      const urls = c.urls();
      const w = startWorkload({ urls, keys, counters, seed });
      const onPaused = new LoadClient(910, paused, urls, w.recorder);
      const onMajority = new LoadClient(911, 0, urls, w.recorder);
      let resumed = false;
      try {
        await waitFor(
          "100 acknowledged updates before the pause",
          () => acked(w.recorder, () => true).length >= 100,
          30_000,
        );
        const oldValue = `old-${seed}`;
        const newValue = `new-${seed}`;
        expect((await onMajority.write(probeKey, oldValue)).status).toBe(200);
        // The paused node holds the old value, valid, in memory.
        const before = await onPaused.read(probeKey);
        expect(before.value).toBe(oldValue);

        const pausedAt = performance.now();
        c.node(paused).pause();
        await c.waitMembers(majority, 15_000, majority);
        const removedAt = performance.now();
        const overwrite = await onMajority.write(probeKey, newValue);
        expect(overwrite.status).toBe(200);
        await waitFor(
          "50 updates acknowledged on the majority after the pause",
          () => acked(w.recorder, (r) => r.node !== paused && r.call > pausedAt).length >= 50,
          30_000,
        );
        const firstMajorityAck = firstAckAfter(w.recorder, pausedAt, (r) => r.node !== paused);
        // Reads queued at the stopped node, all invoked after the overwrite was acknowledged.
        const readers = Array.from({ length: 4 }, (_, i) => new LoadClient(920 + i, paused, urls, w.recorder));
        const pending: Promise<OpRecord>[] = readers.map((reader) => reader.read(probeKey));
        const remaining = pauseMs - (performance.now() - pausedAt);
        if (remaining > 0) await Bun.sleep(remaining);
        const resumedAt = performance.now();
        c.node(paused).resume();
        resumed = true;
        const queued = await Promise.all(pending);
        // Not one of them is the old value (a 503 or the new value once it has rejoined).
        expect(
          queued.filter((r) => r.outcome === "ok" && r.value !== newValue).map((r) => `${r.status} ${r.value}`),
        ).toEqual([]);
        // Fresh reads straight after the resume, too.
        const fresh = await Promise.all(readers.map((reader) => reader.read(probeKey)));
        expect(
          fresh.filter((r) => r.outcome === "ok" && r.value !== newValue).map((r) => `${r.status} ${r.value}`),
        ).toEqual([]);

        await c.waitMembers([0, 1, 2], 30_000);
        const servingAt = performance.now();
        await waitFor(
          `20 updates acknowledged by n${paused} after the resume`,
          () => acked(w.recorder, (r) => r.node === paused && r.call > resumedAt).length >= 20,
          30_000,
        );
        const rejoined = await onPaused.read(probeKey);
        expect(rejoined.value).toBe(newValue);
        await w.stop();

        console.error(
          `netns pause: paused ${ms(resumedAt - pausedAt)}; pause->removed from the view ${ms(removedAt - pausedAt)}, pause->first majority ack ${ms(firstMajorityAck === null ? null : firstMajorityAck - pausedAt)}; ` +
            `reads queued during the pause answered ${queued.map((r) => (r.outcome === "ok" ? "200 new" : String(r.status))).join(",")}; ` +
            `fresh reads after SIGCONT ${fresh.map((r) => (r.outcome === "ok" ? "200 new" : String(r.status))).join(",")}; resume->serving ${ms(servingAt - resumedAt)}`,
        );
        await finalChecks(c, w, [...keys, ...counters, probeKey], "pause");
      } catch (error) {
        console.error(c.logs(80));
        throw error;
      } finally {
        if (!resumed && c.node(paused).paused) c.node(paused).resume();
        await w.stop();
        await c.close();
      }
    }, 150_000);
  },
);
