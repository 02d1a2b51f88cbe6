// Where a shard worker's HTTP time goes: three replicas (three Shards with real TCP transports on
// loopback) in ONE thread, the first serving HTTP exactly as a shard worker does (serveHttp with a
// WorkerBackend), while wrk GETs one key (or runs a GET/PUT mix). One thread so that a CPU profile
// sees everything (Bun's profiler samples the main thread only). Run under the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/http-profile.ts [seconds] [putPct]

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
const putPct = Number(process.argv[3] ?? 0);
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
const answered = (): number => metrics.requests(Route.kvGet, 200) + metrics.requests(Route.kvPut, 200);
const url = `http://127.0.0.1:${server.port}`;
const requestsBefore = answered();
const cpuBefore = process.cpuUsage();
const wrk = Bun.spawn(
  [
    "node_modules/.bin/bun",
    "bench/http-wrk.ts",
    "--endpoint",
    `shard0=${url}`,
    "--seconds",
    String(seconds),
    "--rounds",
    "1",
    "--put-pct",
    String(putPct),
    "--keys",
    putPct === 0 ? "1" : "1000",
  ],
  { stdout: "inherit", stderr: "inherit" },
);
await wrk.exited;
// CPU time per request of this one thread (HTTP, the fast path and all three replicas): unlike a
// request rate, hardly moved by other load on the machine.
const cpu = process.cpuUsage(cpuBefore);
const requests = answered() - requestsBefore;
console.log(`cpu ${((cpu.user + cpu.system) / requests).toFixed(2)} us/request over ${requests} requests`);
server.stop(true);
for (const s of shards) s.stop();
await Promise.all(runs);
