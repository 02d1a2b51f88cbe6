// A node SIGKILLed under load and restarted in its namespace (same id, same addresses):
// - updates it acknowledged just before it died are readable on the survivors;
// - the survivors acknowledge updates again once etcd has removed it (its lease ran out);
// - it acknowledges nothing invoked after the kill;
// - restarted, it rejoins with current data (same answer as the others for every key) and serves;
// - no acknowledged write is lost, and the whole history is linearizable.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { LoadClient, request, testSeed, waitFor } from "../cluster/helpers.ts";
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

const seed = testSeed(0xe7cd_0003);
const leaseMs = 1000;
const victim = 2;
const survivors = [0, 1];
const keys = ["hot-a", "hot-b", "hot-c"];
const counters = ["ctr-x"];
const markerKeys = ["marker-0", "marker-1"];
const support = netnsSupport();

let cluster: NetnsCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe.skipIf(!support.ok)(`netns: SIGKILL and restart${support.ok ? "" : ` (skipped: ${support.reason})`}`, () => {
  beforeAll(ensureBinary, 180_000);
  test(`a node SIGKILLed and restarted in its namespace: writes resume, it rejoins with current data (seed ${seed})`, async () => {
    cluster = await NetnsCluster.start({ nodes: 3, leaseMs });
    const c = cluster;
    const urls = c.urls();
    const w = startWorkload({ urls, keys, counters, seed });
    const onSurvivors = (r: { node: number }) => r.node !== victim;
    try {
      await waitFor(
        "100 acknowledged updates before the kill",
        () => acked(w.recorder, () => true).length >= 100,
        30_000,
      );
      // Acknowledged by the victim right before it dies: must survive it.
      const marker = new LoadClient(900, victim, urls, w.recorder);
      const markerValues = new Map<string, string>();
      for (const key of markerKeys) {
        const value = `marker-${key}-${seed}`;
        expect((await marker.write(key, value)).status).toBe(200);
        markerValues.set(key, value);
      }

      const killedAt = performance.now();
      await c.node(victim).kill();
      await c.waitMembers(survivors, 15_000, survivors);
      const removedAt = performance.now();
      await waitFor(
        "50 updates acknowledged on the survivors after the kill",
        () => acked(w.recorder, (r) => onSurvivors(r) && r.call > killedAt).length >= 50,
        30_000,
      );
      const firstSurvivorAck = firstAckAfter(w.recorder, killedAt, onSurvivors);
      const gap = longestAckGap(w.recorder, killedAt, performance.now(), onSurvivors);
      expect(acked(w.recorder, (r) => r.node === victim && r.call > killedAt)).toEqual([]);
      for (const id of survivors) {
        for (const [key, value] of markerValues) {
          const answer = await request(`${urls[id]}/v1/kv/${key}`);
          expect(answer.kind === "response" && answer.status === 200 && answer.body).toBe(value);
        }
      }

      const restartedAt = performance.now();
      await c.node(victim).spawn();
      await c.node(victim).waitHealthy(30_000);
      await c.waitMembers([0, 1, 2], 15_000);
      const servingAt = performance.now();
      await waitFor(
        `20 updates acknowledged by the restarted n${victim}`,
        () => acked(w.recorder, (r) => r.node === victim && r.call > restartedAt).length >= 20,
        30_000,
      );
      const firstVictimAck = firstAckAfter(w.recorder, restartedAt, (r) => r.node === victim);
      await w.stop();

      console.error(
        `netns kill-restart: kill->removed from the view ${ms(removedAt - killedAt)}, kill->first survivor ack ${ms(firstSurvivorAck === null ? null : firstSurvivorAck - killedAt)}, ` +
          `longest survivor ack gap ${ms(gap)}; restart->serving ${ms(servingAt - restartedAt)}, restart->first n${victim} ack ${ms(firstVictimAck === null ? null : firstVictimAck - restartedAt)}`,
      );
      await finalChecks(c, w, [...keys, ...counters, ...markerKeys], "kill-restart");
    } catch (error) {
      console.error(c.logs(80));
      throw error;
    } finally {
      await w.stop();
      await c.close();
    }
  }, 150_000);
});
