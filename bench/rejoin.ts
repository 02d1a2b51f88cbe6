// Rejoin benchmark: how long a killed node takes to serve again after a restart, by store size.
// A real etcd and three `hermes-kv node` processes on 127.0.0.1 (test/cluster/helpers.ts).
// Measures; asserts nothing. Prints a table.
//
//   bun bench/rejoin.ts                      100k and 1M keys
//   REJOIN_KEYS=100000,300000 REJOIN_INFLIGHT=256 bun bench/rejoin.ts
//
// The store is filled with concurrent PUTs spread over the three nodes (REJOIN_INFLIGHT in flight;
// progress printed every second); the sizes are cumulative, so one cluster serves every row.
// For each size: SIGKILL node 2, wait until the survivors removed it (its lease expired), restart
// it, and time spawn -> "node up" line -> /health 200. The node's own log line
// ("joined from node N: E entries in T ms") gives the state transfer alone; the rest is process
// start-up (Bun, workers, transport) and etcd registration. Then a sample of keys is read back
// from the rejoined node to check that it serves them.

import { ProcCluster, request, waitFor } from "../test/cluster/helpers.ts";

const sizes = (process.env.REJOIN_KEYS ?? "100000,1000000").split(",").map(Number);
const inflight = Number(process.env.REJOIN_INFLIGHT ?? 256);
const leaseMs = Number(process.env.REJOIN_LEASE_MS ?? 1000);
const victim = 2;
const valueBytes = 32;
/** Keys read back from the rejoined node to check it serves the loaded state. */
const verifyKeys = 200;
/** Attempts per PUT (100 ms apart, rotating over the nodes) before the fill gives up. */
const putAttemptsMax = 300;
const keyOf = (i: number): string => `k${i.toString().padStart(8, "0")}`;
const valueOf = (i: number): string => `v${i}`.padEnd(valueBytes, ".");

/** PUTs keys [from, to) with `inflight` concurrent requests; prints progress every second. */
async function fill(cluster: ProcCluster, from: number, to: number): Promise<number> {
  const urls = cluster.urls();
  let next = from;
  let done = 0;
  let failures = 0;
  const started = performance.now();
  const progress = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    console.error(
      `  fill: ${from + done}/${to} keys, ${(done / s).toFixed(0)} puts/s, ${failures} retries, lease losses so far ${leaseLosses(cluster)}`,
    );
  }, 1000);
  try {
    await Promise.all(
      Array.from({ length: inflight }, async (_, lane) => {
        for (;;) {
          const i = next++;
          if (i >= to) return;
          for (let attempt = 0; ; attempt++) {
            // A retry goes to the next node: the one that failed may be rejoining for a while.
            const answer = await request(
              `${urls[(i + lane + attempt) % urls.length]}/v1/kv/${keyOf(i)}`,
              { method: "PUT", body: valueOf(i) },
              30_000,
            );
            if (answer.kind === "response" && answer.status === 200) break;
            failures++;
            if (attempt >= putAttemptsMax)
              throw new Error(
                `PUT ${keyOf(i)} failed ${putAttemptsMax} times: ${JSON.stringify(answer).slice(0, 300)}`,
              );
            await Bun.sleep(100);
          }
          done++;
        }
      }),
    );
  } finally {
    clearInterval(progress);
  }
  return performance.now() - started;
}

/** Times any node logged losing its membership (lease) so far, from the kept log lines. */
function leaseLosses(cluster: ProcCluster): number {
  let count = 0;
  for (const n of cluster.nodes)
    count += n
      .logTail(400)
      .split("\n")
      .filter((line) => line.includes("lost the membership")).length;
  return count;
}

interface Row {
  keys: number;
  fillMs: number;
  upMs: number;
  healthyMs: number;
  transferMs: number | null;
  entries: number | null;
}

const cluster = await ProcCluster.start({ nodes: 3, leaseMs });
const rows: Row[] = [];
try {
  let loaded = 0;
  for (const size of sizes) {
    console.error(`filling to ${size} keys (${inflight} in flight)...`);
    const fillMs = await fill(cluster, loaded, size);
    loaded = size;
    const statuses = await Promise.all(cluster.nodes.map((n) => n.status()));
    console.error(
      `  filled in ${(fillMs / 1000).toFixed(1)} s; keys per node ${JSON.stringify(statuses.map((s) => s?.shards.reduce((a, b) => a + b.keys, 0)))}`,
    );

    const node = cluster.node(victim);
    await node.kill();
    await cluster.waitMembers([0, 1], 30_000, [0, 1]);
    const spawnAt = performance.now();
    await node.spawn();
    const upMs = performance.now() - spawnAt;
    await waitFor(`node ${victim} /health 200`, () => node.healthy(), 600_000, 20);
    const healthyMs = performance.now() - spawnAt;
    const joined = /joined from node \d+: (\d+) entries in (\d+) ms/.exec(node.currentLog().join("\n"));
    await cluster.waitMembers([0, 1, 2], 30_000);
    for (let j = 0; j < verifyKeys; j++) {
      const i = Math.floor((j * size) / verifyKeys);
      const answer = await request(`${node.url}/v1/kv/${keyOf(i)}`);
      if (answer.kind !== "response" || answer.status !== 200 || answer.body !== valueOf(i)) {
        throw new Error(`rejoined node answers ${JSON.stringify(answer).slice(0, 200)} for ${keyOf(i)}`);
      }
    }
    rows.push({
      keys: size,
      fillMs,
      upMs,
      healthyMs,
      transferMs: joined ? Number(joined[2]) : null,
      entries: joined ? Number(joined[1]) : null,
    });
    console.error(`  ${size} keys: rejoined in ${healthyMs.toFixed(0)} ms (${joined?.[0] ?? "no join line"})`);
  }
} catch (error) {
  console.error(cluster.logs(40));
  throw error;
} finally {
  await cluster.close();
}

console.log("\nrejoin of a SIGKILLed node (restart -> /health 200), 3 nodes, 1 shard, TCP, values of 32 bytes");
console.log("|      keys | fill s | puts/s | spawn->up ms | spawn->healthy ms | transfer ms (node log) | entries |");
console.log("|----------:|-------:|-------:|------------:|------------------:|-----------------------:|--------:|");
let previous = 0;
for (const r of rows) {
  const puts = (r.keys - previous) / (r.fillMs / 1000);
  previous = r.keys;
  console.log(
    `| ${String(r.keys).padStart(9)} | ${(r.fillMs / 1000).toFixed(1).padStart(6)} | ${puts.toFixed(0).padStart(6)} | ${r.upMs.toFixed(0).padStart(11)} | ${r.healthyMs.toFixed(0).padStart(17)} | ${String(r.transferMs ?? "?").padStart(22)} | ${String(r.entries ?? "?").padStart(7)} |`,
  );
}
