// Where a shard worker's time goes on POST /v1/batch: three replicas (three Shards with real TCP
// transports on loopback) in ONE thread, the first serving HTTP exactly as a shard worker does
// (serveHttp with a WorkerBackend), while `hermes-kv bench --endpoints` sends batches to it (95 %
// reads, 10,000 keys filled first). One thread so that a CPU profile sees everything. Prints the
// thread's CPU time per op. Run under the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/batch-profile.ts [seconds] [json|binary] [batch]

import { Route } from "../src/http/metrics.ts";
import { startOneThreadCluster } from "./one-thread-cluster.ts";

const seconds = Number(process.argv[2] ?? 5);
const format = process.argv[3] ?? "json";
const batch = process.argv[4] ?? "64";
const cluster = await startOneThreadCluster();
const { metrics, url } = cluster;
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
await cluster.stop();
