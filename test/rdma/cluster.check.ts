// A running hermes-kv cluster, checked from outside: 6 closed-loop HTTP clients spread over the
// replicas run the e2e mixed workload (reads, writes, deletes, CAS, create, incr on hot keys), the
// replicas are read once more after they converge, and the whole history must be linearizable.
// Every frame is authenticated (local makes a cluster key in memory): /metrics shows none dropped.
//
// Not a *.test.ts file: `bun test test/rdma` skips it. test/rdma/guest-cluster.sh starts
// `hermes-kv local --replicas 3 --transport rdma` and runs `bun test ./test/rdma/cluster.check.ts`
// with HERMES_CLUSTER_URLS (comma-separated base URLs), HERMES_TRANSPORT (the transport every
// replica must report in /v1/status) and optionally HERMES_CLUSTER_OPS (default 400).

import { expect, test } from "bun:test";
import { Client, Recorder, convergeAndReadAll, expectLinearizable, request, testSeed } from "../e2e/harness.ts";
import { runWorkload } from "../e2e/workload.ts";

const urls = (process.env.HERMES_CLUSTER_URLS ?? "").split(",").filter((u) => u !== "");
const transport = process.env.HERMES_TRANSPORT ?? "rdma";
const ops = Number(process.env.HERMES_CLUSTER_OPS ?? "400");
const seed = testSeed(0x5eed_0d3a);
const registerKeys = ["rdma-a", "rdma-b", "rdma-c"] as const;
const counterKeys = ["rdma-ctr"] as const;
const clientsPerCluster = 6;

test(`mixed workload over a running cluster (${transport}) is linearizable (seed ${seed})`, async () => {
  expect(urls.length, "HERMES_CLUSTER_URLS names no replica").toBeGreaterThanOrEqual(1);
  expect(Number.isInteger(ops) && ops > 0).toBe(true);
  // Every replica serves, in one view of all of them, over the transport under test.
  for (const url of urls) {
    const answer = await request(`${url}/v1/status`);
    expect(answer.kind).toBe("response");
    const status = JSON.parse(answer.kind === "response" ? answer.body : "{}") as {
      transport?: string;
      members?: number[];
      serving?: boolean;
    };
    expect({ url, transport: status.transport, members: status.members?.length }).toEqual({
      url,
      transport,
      members: urls.length,
    });
  }
  const recorder = new Recorder();
  const clients = Array.from(
    { length: clientsPerCluster },
    (_, id) => new Client(id, id % urls.length, (i) => urls[i]!, recorder),
  );
  const { invoked } = await runWorkload({
    clients,
    recorder,
    registerKeys,
    counterKeys,
    seed,
    opsMin: ops,
    opsMax: ops,
  });
  const { converged, answers } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
  console.error(`cluster check (${transport}, ${urls.length} replicas): ${invoked} ops; ${recorder.tally}`);

  expect(recorder.unexpected).toEqual([]);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
  // Most ops must have been answered with a definite outcome; timeouts (504) are allowed, since
  // an emulated machine can be slow, and they are checked as "may or may not have happened".
  let definite = 0;
  for (const [name, count] of recorder.tally.counts) if (/:(200|404|412)/.test(name)) definite += count;
  expect(definite).toBeGreaterThan(ops / 2);
  expect(recorder.tally.get("write:200")).toBeGreaterThan(0);
  expect(recorder.tally.get("incr:200")).toBeGreaterThan(0);
  expectLinearizable(recorder.check());
  // `local` authenticates every frame (a key made in memory): the frames that carried the workload
  // verified, and none failed (src/wire/frame-mac.ts over this transport).
  for (const url of urls) {
    let metrics = "";
    for (
      let attempt = 0;
      attempt < 50 && !/^hermes_wire_frames_accepted_total\{[^}]*\} [1-9]/m.test(metrics);
      attempt++
    ) {
      const answer = await request(`${url}/metrics`);
      metrics = answer.kind === "response" ? answer.body : "";
      await Bun.sleep(100);
    }
    expect(metrics).toMatch(/^hermes_wire_frames_accepted_total\{[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^hermes_wire_dropped_bad_mac_total\{[^}]*\} 0$/m);
    expect(metrics).toMatch(/^hermes_wire_dropped_unauthenticated_total\{[^}]*\} 0$/m);
  }
}, 600_000);
