// Partition benchmark: how long writes stall on the majority when one node is cut off from its
// peers but not from etcd (it keeps its lease, so only the failure detector can take it out), and
// how long the cut node takes to serve again after the heal. etcd and three `hermes-kv node`
// processes, each in its own network namespace, faults from the kernel (nftables), the netns test
// tier's harness (test/netns/harness.ts; needs root, iproute2, nftables). Measures; asserts nothing.
//
//   bun bench/partition.ts                              TTLs 1,2 s; 3 shapes; 5 repetitions each
//   PARTITION_TTLS=1 PARTITION_REPS=3 PARTITION_SHAPES=both bun bench/partition.ts
//   PARTITION_LOGS=1 ...                              also print the nodes' logs at the end
//
// Shapes: "both" (n2 <-> n0,n1 dropped), "out" (n2 -> peers dropped), "in" (peers -> n2 dropped).
// One repetition: writers on n0 and n1 keep PUTting (each to its own key); t0 is when the fault
// script starts (its nftables rules take effect before it returns: t0 is an upper bound); "resume"
// is t0 to the first acknowledged write on n0 or n1 *invoked after the script returned*. The cut is
// kept until n2 could register again had it been healed (its removal installed plus one TTL, the
// candidacy's wait), then healed at h; "heal -> serving" is h to n2's /health 200 (it reached
// every member, registered again, loaded the state). The next repetition starts once all three
// serve with all three members. Also reported: t0 to n2 not serving (it learned of its eviction).

import { NetnsCluster, netnsSupport } from "../test/netns/harness.ts";
import { request, waitFor } from "../test/cluster/helpers.ts";

const ttlsS = (process.env.PARTITION_TTLS ?? "1,2").split(",").map(Number);
const reps = Number(process.env.PARTITION_REPS ?? 5);
const shapeNames = (process.env.PARTITION_SHAPES ?? "both,out,in").split(",");
const cut = 2;
const survivors = [0, 1];
/** Concurrent writers per survivor. */
const writersPerNode = 4;
/** Client-side bound on one write; a stalled one is simply retried. */
const writeTimeoutMs = 15_000;

const shapes: Record<string, (c: NetnsCluster) => Promise<void>> = {
  both: (c) => c.cut(`n${cut}`, ["n0", "n1"]),
  out: (c) => c.drop(`n${cut}`, ["n0", "n1"]),
  in: async (c) => {
    await c.drop("n0", [`n${cut}`]);
    await c.drop("n1", [`n${cut}`]);
  },
};

interface Sample {
  scriptMs: number;
  resumeMs: number;
  stoppedMs: number;
  healToServingMs: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function healthy(url: string): Promise<boolean> {
  const answer = await request(`${url}/health`, {}, 1000);
  return answer.kind === "response" && answer.status === 200;
}

async function measure(c: NetnsCluster, ttlS: number, shape: string, rep: number): Promise<Sample> {
  let faultAt = Number.POSITIVE_INFINITY;
  let firstAckAt = Number.POSITIVE_INFINITY;
  let stop = false;
  const writers = survivors.flatMap((node) =>
    Array.from({ length: writersPerNode }, async (_, w) => {
      const url = `${c.node(node).url}/v1/kv/partition-${node}-${w}`;
      for (let seq = 0; !stop; seq++) {
        const call = performance.now();
        const answer = await request(url, { method: "PUT", body: `v${rep}-${seq}` }, writeTimeoutMs);
        const ret = performance.now();
        if (answer.kind === "response" && answer.status === 200 && call > faultAt && ret < firstAckAt) firstAckAt = ret;
        if (answer.kind !== "response" || answer.status !== 200) await Bun.sleep(5);
      }
    }),
  );
  try {
    await Bun.sleep(500); // writers warm up
    // The rules take effect somewhere while the script runs: time from its start (an upper bound),
    // count only writes invoked after it returned (writes invoked before may have got through).
    const scriptAt = performance.now();
    await shapes[shape]!(c);
    faultAt = performance.now();
    let stoppedAt = Number.POSITIVE_INFINITY;
    await waitFor(
      "n2 stops serving and the majority acknowledges a write",
      async () => {
        if (stoppedAt === Number.POSITIVE_INFINITY && !(await healthy(c.node(cut).url))) stoppedAt = performance.now();
        return stoppedAt < Number.POSITIVE_INFINITY && firstAckAt < Number.POSITIVE_INFINITY;
      },
      60_000,
      10,
    );
    await c.waitMembers(survivors, 30_000, survivors);
    // Past the candidacy's wait (its removal's hold, one TTL, the slack): a heal now is met at once.
    await Bun.sleep(ttlS * 1000 * 1.2 + 500);
    const healAt = performance.now();
    await c.heal();
    await waitFor("n2 serves again", () => healthy(c.node(cut).url), 60_000, 10);
    const servingAt = performance.now();
    await c.waitMembers([0, 1, 2], 30_000);
    const sample = {
      resumeMs: firstAckAt - scriptAt,
      stoppedMs: stoppedAt - scriptAt,
      healToServingMs: servingAt - healAt,
      scriptMs: faultAt - scriptAt,
    };
    console.error(
      `ttl ${ttlS}s ${shape} rep ${rep + 1}/${reps}: writes resume ${sample.resumeMs.toFixed(0)} ms, n2 stops serving ${sample.stoppedMs.toFixed(0)} ms, ` +
        `heal -> serving ${sample.healToServingMs.toFixed(0)} ms (the fault script took ${sample.scriptMs.toFixed(0)} ms)`,
    );
    return sample;
  } finally {
    stop = true;
    await Promise.all(writers);
  }
}

const support = netnsSupport();
if (!support.ok) {
  console.error(`bench/partition.ts needs network namespaces: ${support.reason}`);
  process.exit(2);
}
const rows: string[] = [];
const started = performance.now();
for (const ttlS of ttlsS) {
  const c = await NetnsCluster.start({ nodes: 3, leaseMs: ttlS * 1000 });
  try {
    for (const shape of shapeNames) {
      const samples: Sample[] = [];
      for (let rep = 0; rep < reps; rep++) samples.push(await measure(c, ttlS, shape, rep));
      const r = samples.map((s) => s.resumeMs);
      const fmt = (v: number): string => v.toFixed(0).padStart(7);
      rows.push(
        `| ${String(ttlS).padStart(5)} | ${shape.padEnd(5)} | ${String(samples.length).padStart(4)} | ${fmt(Math.min(...r))} | ${fmt(median(r))} | ${fmt(Math.max(...r))} | ${fmt(median(samples.map((s) => s.stoppedMs)))} | ${fmt(median(samples.map((s) => s.healToServingMs)))} | ${fmt(Math.max(...samples.map((s) => s.healToServingMs)))} |`,
      );
    }
    if (process.env.PARTITION_LOGS) console.error(c.logs(400));
  } catch (error) {
    console.error(c.logs(60));
    throw error;
  } finally {
    await c.close();
  }
}
console.log(
  "\npeer-only partition of one of 3 nodes (ms; resume: from the cut to the first acknowledged write invoked after it on the majority)",
);
console.log(
  "| TTL s | shape | reps | resume min | resume median | resume max | n2 stops md | heal->serving md | heal->serving max |",
);
console.log("|------:|:------|-----:|--------:|--------:|--------:|--------:|--------:|--------:|");
for (const row of rows) console.log(row);
console.log(
  `(${((performance.now() - started) / 1000).toFixed(0)} s in all; --suspect-ms default (one TTL); times from the fault script's start; shapes: both = n2 <-> peers, out = n2 -> peers, in = peers -> n2)`,
);
