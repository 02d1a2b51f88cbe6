// Three replicas (three Shards with real TCP transports on loopback) in ONE thread, the first
// serving HTTP exactly as a shard worker does (serveHttp with a WorkerBackend), for the profiling
// benchmarks (bench/http-profile.ts, bench/batch-profile.ts): one thread, so that a CPU profile sees
// everything (Bun's profiler samples the main thread only) and its CPU time per request is the whole
// cost of serving it.

import { defaultReplicaConfig } from "../src/core/types.ts";
import { HttpMetrics } from "../src/http/metrics.ts";
import { createTransport } from "../src/transport/factory.ts";
import { ControlClient } from "../src/worker/control-client.ts";
import { serveHttp } from "../src/worker/http-server.ts";
import { createNodeBoard, NodeBoard } from "../src/worker/node-board.ts";
import { Shard } from "../src/worker/shard.ts";
import { WorkerBackend } from "../src/worker/worker-backend.ts";
import { createWatchFeed } from "../src/worker/watch-feed.ts";

export interface OneThreadCluster {
  /** The HTTP base URL of the serving replica (node 0). */
  url: string;
  /** The serving replica's HTTP metrics (requests answered, by route and status). */
  metrics: HttpMetrics;
  stop(): Promise<void>;
}

export async function startOneThreadCluster(): Promise<OneThreadCluster> {
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
  return {
    url: `http://127.0.0.1:${server.port}`,
    metrics,
    async stop() {
      server.stop(true);
      for (const s of shards) s.stop();
      await Promise.all(runs);
    },
  };
}
