// Where a shard worker's time goes on POST /v1/batch: three replicas (three Shards with real TCP
// transports on loopback) in ONE thread, the first serving HTTP exactly as a shard worker does
// (serveHttp with a WorkerBackend), while `hermes-kv bench --endpoints` sends batches to it (95 %
// reads, 10,000 keys filled first). One thread so that a CPU profile sees everything. Prints the
// thread's CPU time per op. Run under the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/batch-profile.ts [seconds] [json|binary] [batch]

import { defaultReplicaConfig } from "../src/core/types.ts";
import { HttpMetrics, Route } from "../src/http/metrics.ts";
import { createTransport } from "../src/transport/factory.ts";
import { ControlClient } from "../src/worker/control-client.ts";
import { serveHttp } from "../src/worker/http-server.ts";
import { createNodeBoard, NodeBoard } from "../src/worker/node-board.ts";
import { Shard } from "../src/worker/shard.ts";
import { WorkerBackend } from "../src/worker/worker-backend.ts";
import { createWatchFeed } from "../src/worker/watch-feed.ts";

const seconds = Number(process.argv[2] ?? 5);
const format = process.argv[3] ?? "json";
const batch = process.argv[4] ?? "64";
const shards: Shard[] = [];
for (let id = 0; id < 3; id++) {
  const transport = await createTransport("tcp", { host: "127.0.0.1", port: 0, self: id, frameBytesMax: 60 * 1024 });
  const board = createNodeBoard(1);
  const writer = new NodeBoard(board, id, "tcp");
  writer.setView(1, [0, 1, 2]);
  writer.setLeaseUntil(Number.MAX_SAFE_INTEGER);
  shards.push(
    new Shard(
      {
        type: "init",
        nodeId: id,
        shardIndex: 0,
        clusterId: 1,
        transport: { kind: "tcp", host: "127.0.0.1", port: 0, frameBytesMax: 60 * 1024 },
        replica: { ...defaultReplicaConfig, self: id, valueBytesMax: 32 * 1024 },
        keyBytesMax: 1024,
        board,
        opsInFlightMax: 16384,
        numaNode: -1,
        bench: null,
      },
      transport,
    ),
  );
}
const members = shards.map((s, id) => ({ id, address: s.transport.address }));
for (const s of shards) {
  s.setMembership(1, members);
  s.setLease(Number.MAX_SAFE_INTEGER);
}
const runs = shards.map((s) => s.run());
const control = new ControlClient(() => {});
const metrics = new HttpMetrics();
const server = serveHttp(
  {
    type: "http-start",
    host: "127.0.0.1",
    port: 0,
    bodyBytesMax: 64 << 20,
    controlPathPrefixes: [],
    stopPaths: [],
    peerRings: null,
    watchFeed: createWatchFeed(1),
    browsePorts: null,
  },
  new WorkerBackend(shards[0]!, control),
  control,
  metrics,
);
const url = `http://127.0.0.1:${server.port}`;
// Fill the keys first (single PUTs), then measure only the batches.
const fill = Bun.spawn(
  [
    "node_modules/.bin/bun",
    "src/main.ts",
    "bench",
    "--endpoints",
    url,
    "-c",
    "8",
    "-k",
    "10000",
    "-d",
    "0.2",
    "--warmup",
    "0",
    "--fill",
  ],
  { stdout: "ignore", stderr: "inherit" },
);
await fill.exited;
const batchesBefore = metrics.requests(Route.batch, 200);
const cpuBefore = process.cpuUsage();
const load = Bun.spawn(
  [
    "node_modules/.bin/bun",
    "src/main.ts",
    "bench",
    "--endpoints",
    url,
    "-c",
    "24",
    "-k",
    "10000",
    "-v",
    "32",
    "--batch",
    batch,
    // The default format is JSON (and the only one of older builds).
    ...(format === "json" ? [] : ["--batch-format", format]),
    "-d",
    String(seconds),
    "--warmup",
    "0.5",
  ],
  { stdout: "inherit", stderr: "inherit" },
);
await load.exited;
// CPU time per op of this one thread (HTTP, the batch route and all three replicas): unlike a
// rate, hardly moved by other load on the machine. Includes the warm-up's batches on both sides.
const cpu = process.cpuUsage(cpuBefore);
const batches = metrics.requests(Route.batch, 200) - batchesBefore;
const ops = batches * Number(batch);
console.log(`cpu ${((cpu.user + cpu.system) / ops).toFixed(3)} us/op over ${batches} batches of ${batch} (${format})`);
server.stop(true);
for (const s of shards) s.stop();
await Promise.all(runs);
