// Where a worker's CPU goes: three shards (three replicas) with real TCP transports on loopback and
// in-worker benchmark clients, all in ONE thread so that a CPU profile sees everything without
// thread-scheduling noise. Run under the profiler:
//   bun --cpu-prof-md --cpu-prof-dir=/tmp/prof bench/shard-profile.ts [writePerMille] [seconds]

import { defaultReplicaConfig } from "../src/core/types.ts";
import { createTransport } from "../src/transport/factory.ts";
import { createNodeBoard } from "../src/worker/node-board.ts";
import { Shard } from "../src/worker/shard.ts";

const writePerMille = Number(process.argv[2] ?? 1000);
const seconds = Number(process.argv[3] ?? 3);
const shards: Shard[] = [];
for (let id = 0; id < 3; id++) {
  const transport = await createTransport("tcp", { host: "127.0.0.1", port: 0, self: id, frameBytesMax: 60 * 1024 });
  shards.push(
    new Shard(
      {
        type: "init",
        nodeId: id,
        shardIndex: 0,
        clusterId: 1,
        transport: { kind: "tcp", host: "127.0.0.1", port: 0, frameBytesMax: 60 * 1024 },
        replica: { ...defaultReplicaConfig, self: id, valueBytesMax: 1024 },
        keyBytesMax: 1024,
        board: createNodeBoard(1),
        opsInFlightMax: 1024,
        numaNode: -1,
        bench: { slots: 64, keys: 10_000, valueBytes: 32, writePerMille, rmwPerMille: 0 },
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
for (const s of shards) s.bench!.start();
await Bun.sleep(seconds * 1000);
const ops = shards.reduce((n, s) => n + s.bench!.reads + s.bench!.writes + s.bench!.rmws, 0);
console.log(`${(ops / seconds / 1000).toFixed(1)} k ops/s in one thread (3 replicas, ${writePerMille / 10}% updates)`);
for (const s of shards) s.stop();
await Promise.all(runs);
