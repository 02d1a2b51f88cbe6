// SIGTERM ends a node process cleanly (exit 0, lease revoked) whether it serves or is still joining.
//
// The joining case: the only replica of a cluster is stopped and started again. The cluster is
// marked initialized in etcd and no member is left to load from, so the node waits (correctly:
// serving empty would lose the data) and answers /health 503. An operator's SIGTERM must still
// stop it. The process is given stopBoundMs to exit by itself before the helper SIGKILLs it; a
// process that is still there after that never exits on its own (see the report for why).

import { afterAll, expect, test } from "bun:test";
import { ProcCluster, waitFor } from "./helpers.ts";

/** Liveness bound, not a performance figure: a clean stop takes well under a second here. */
const stopBoundMs = 10_000;

let cluster: ProcCluster | null = null;
afterAll(async () => {
  await cluster?.close();
}, 30_000);

test("SIGTERM stops a serving node: exit 0", async () => {
  cluster = await ProcCluster.start({ nodes: 1, leaseMs: 1000 });
  const node = cluster.node(0);
  expect(await node.healthy()).toBe(true);
  await node.stop(stopBoundMs);
  expect(node.ended).toEqual({ exitCode: 0, signal: null });
}, 60_000);

test("SIGTERM stops a node that is still joining (nothing to load from): exit 0", async () => {
  const c = cluster!;
  const node = c.node(0);
  // The clean stop above revoked the lease, so the same id registers again at once.
  await node.spawn();
  await waitFor(
    "the restarted node to be a member that is not serving (joining, no source)",
    async () => {
      const s = await node.status();
      return s !== null && s.members.includes(0) && !s.serving;
    },
    15_000,
  );
  expect(await node.healthy()).toBe(false);
  await node.stop(stopBoundMs);
  expect(node.ended, node.logTail()).toEqual({ exitCode: 0, signal: null });
}, 60_000);
