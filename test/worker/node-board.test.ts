// The node board: what every thread of a node reads to answer as the node would. Serving needs all
// of: a member of the view, a lease still running, not joining, no shard failed, not closed; the
// status page shows the same facts and each shard's own row.

import { expect, test } from "bun:test";
import { createNodeBoard, NodeBoard } from "../../src/worker/node-board.ts";

test("the node serves only as a member with a running lease, not joining, failed or closed", () => {
  const sab = createNodeBoard(2);
  const main = new NodeBoard(sab, 3, "tcp");
  // Another thread's view of the same buffer sees every write.
  const worker = new NodeBoard(sab, 3, "tcp");
  const now = 1_000_000;
  expect(worker.serving(now)).toBe(false);
  main.setView(7, [1, 3, 31]);
  expect(worker.serving(now)).toBe(false); // no lease yet
  main.setLeaseUntil(now + 500);
  expect(worker.serving(now)).toBe(true);
  expect(worker.serving(now + 500)).toBe(false); // the lease ends at its deadline
  main.setView(8, [1, 31]);
  expect(worker.serving(now)).toBe(false); // no longer a member
  main.setView(9, [3]);
  expect(worker.serving(now)).toBe(true);
  main.setJoining(true);
  expect(worker.serving(now)).toBe(false);
  main.setJoining(false);
  expect(worker.serving(now)).toBe(true);
  worker.setClosed();
  expect(main.serving(now)).toBe(false);
  const failed = new NodeBoard(createNodeBoard(1), 0, "tcp");
  failed.setView(1, [0]);
  failed.setLeaseUntil(now + 500);
  failed.setFailed();
  expect(failed.serving(now)).toBe(false);
});

test("status: the view, the lease left, has-state and every shard's own row", () => {
  const sab = createNodeBoard(2);
  const main = new NodeBoard(sab, 0, "udp");
  const shard1 = new NodeBoard(sab, 0, "udp");
  main.setView(4, [2, 0]);
  main.setLeaseUntil(10_400);
  main.setHasState(false);
  shard1.setShardRow(1, 42, 3);
  shard1.setShardPlacement(1, 0, 1);
  expect(main.status(10_000)).toEqual({
    nodeId: 0,
    epoch: 4,
    members: [0, 2],
    serving: true,
    hasState: false,
    leaseRemainingMs: 400,
    transport: "udp",
    shards: [
      { index: 0, keys: 0, opsInFlight: 0, numaNode: null, cpu: null },
      { index: 1, keys: 42, opsInFlight: 3, numaNode: 0, cpu: 1 },
    ],
  });
  expect(main.status(20_000).leaseRemainingMs).toBe(0);
});
