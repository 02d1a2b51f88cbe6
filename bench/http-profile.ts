// Where a shard worker's HTTP time goes: three replicas (three Shards with real TCP transports on
// loopback) in ONE thread, the first serving HTTP exactly as a shard worker does (serveHttp with a
// WorkerBackend), while wrk GETs one key (or runs a GET/PUT mix). One thread so that a CPU profile
// sees everything (Bun's profiler samples the main thread only). Run under the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/http-profile.ts [seconds] [putPct]

import { Route } from "../src/http/metrics.ts";
import { startOneThreadCluster } from "./one-thread-cluster.ts";

const seconds = Number(process.argv[2] ?? 5);
const putPct = Number(process.argv[3] ?? 0);
const cluster = await startOneThreadCluster();
const { metrics, url } = cluster;
const answered = (): number => metrics.requests(Route.kvGet, 200) + metrics.requests(Route.kvPut, 200);
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
await cluster.stop();
