// Runs the benchmark sweeps and draws them as SVG figures into docs/ (bench/svg.ts writes them):
//
//   docs/throughput-vs-write-ratio.svg   the in-process engine bench (hermes-kv bench -M 3 -W 1,
//                                        no HTTP) at write ratios 0, 1, 5, 20, 100 % (-w 0, 10, 50,
//                                        200, 1000), like the Hermes paper's throughput figure
//   docs/http-vs-etcd.svg                HTTP req/s of a 3-node hermes-kv and a 3-member etcd, same
//                                        load tool, reads 100 / 95 / 50 % (bench/vs-etcd.ts)
//   docs/http-vs-etcd-p99.svg            the p99 latency of the same runs
//
//   bun scripts/plots.ts [--quick] [--out DIR]
//
// --quick runs every point for 2 s instead of 8 s (engine) / 5 s (HTTP). Every figure is drawn
// from the run that just happened, and carries its numbers in its <desc> and its labels; the
// numbers are printed too.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { barChartSvg, formatNumber, lineChartSvg } from "../bench/svg.ts";
import { runVsEtcd, tableLines, vsEtcdDefaults } from "../bench/vs-etcd.ts";
import { latencyBucketsUs } from "../src/worker/bench-clients.ts";
import { repoRoot } from "../test/cluster/helpers.ts";

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  console.log("usage: bun scripts/plots.ts [--quick] [--out DIR (default docs)]");
  process.exit(0);
}
const quick = argv.includes("--quick");
const outIndex = argv.indexOf("--out");
const outDir = outIndex >= 0 ? argv[outIndex + 1]! : join(repoRoot, "docs");
const engineSeconds = quick ? 2 : 8;
const httpSeconds = quick ? 2 : 5;
const writePerMilles = [0, 10, 50, 200, 1000];
const engineKeys = 100_000;

interface EnginePoint {
  writePerMille: number;
  mreqs: number;
  readP99Us: number;
  writeP99Us: number;
}

function machine(): string {
  const cpus = navigator.hardwareConcurrency;
  let load = "?";
  try {
    load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    // not Linux
  }
  return `${cpus} cores, load average ${load}, Bun ${Bun.version}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

async function engineSweep(): Promise<EnginePoint[]> {
  const points: EnginePoint[] = [];
  for (const w of writePerMilles) {
    const args = [
      "src/main.ts",
      "bench",
      "-M",
      "3",
      "-W",
      "1",
      "-w",
      String(w),
      "-k",
      String(engineKeys),
      "-d",
      String(engineSeconds),
    ];
    console.log(`engine: bun ${args.join(" ")}`);
    const proc = Bun.spawn([process.execPath, ...args], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const m =
      /throughput_mreqs=([0-9.]+) read_p50_us=[0-9]+ read_p99_us=([0-9]+) write_p50_us=[0-9]+ write_p99_us=([0-9]+)/.exec(
        out,
      );
    if (code !== 0 || m === null) throw new Error(`engine bench failed (exit ${code}):\n${out}\n${err}`);
    const point = { writePerMille: w, mreqs: Number(m[1]), readP99Us: Number(m[2]), writeP99Us: Number(m[3]) };
    console.log(`  ${out.trim().split("\n").pop()}`);
    points.push(point);
  }
  return points;
}

const engine = await engineSweep();
const engineMachine = machine();
console.log("\nHTTP: hermes-kv beside etcd (bench/vs-etcd.ts)");
const vs = await runVsEtcd({
  ...vsEtcdDefaults,
  seconds: httpSeconds,
  warmupSeconds: quick ? 0.5 : 1,
  log: (line) => console.log(line),
});
const httpMachine = machine();

mkdirSync(outDir, { recursive: true });
const files: string[] = [];
const write = (name: string, svg: string): void => {
  const path = join(outDir, name);
  writeFileSync(path, svg);
  files.push(path);
};

write(
  "throughput-vs-write-ratio.svg",
  lineChartSvg({
    title: "hermes-kv: throughput against write ratio (3 replicas, in-process, no HTTP)",
    xLabel: "write ratio (% of requests that are updates)",
    yLabel: "throughput, all 3 replicas (M req/s)",
    xTicks: writePerMilles.map((w, i) => ({ value: i, label: `${w / 10}%` })),
    series: [
      {
        name: "hermes-kv bench -M 3 -W 1 (256 outstanding requests per worker)",
        points: engine.map((p, i) => ({
          x: i,
          y: p.mreqs,
          label: p.mreqs >= 1 ? `${p.mreqs.toFixed(2)}M` : `${Math.round(p.mreqs * 1000)}k`,
        })),
      },
    ],
    notes: [
      `hermes-kv bench -M 3 -W 1 -w {${writePerMilles.join(",")}} -k ${engineKeys} -d ${engineSeconds}: replicas as threads of one process, real TCP on loopback`,
      `Machine: ${engineMachine}; shared with other jobs, so a noisy sample.`,
    ],
  }),
);

const workloads = vs.rows.map((r) => `${r.readPct}% reads`);
const ratio = (a: number, b: number): string => `${(a / Math.max(1e-9, b)).toFixed(1)}x`;
const httpNotes = [
  `Same load tool (hermes-kv bench --endpoints): ${vsEtcdDefaults.connections} connections over 3 endpoints, ${vsEtcdDefaults.keys} keys, ${vsEtcdDefaults.valueBytes} B values, ${httpSeconds} s per run; the rest of the requests are writes.`,
  `etcd ${vs.etcdVersion}, 3 members (linearizable range, data dir on disk) vs 3 hermes-kv node processes (1 shard each), all on one machine.`,
  `Machine: ${httpMachine}; shared with other jobs, so a noisy sample.`,
];
write(
  "http-vs-etcd.svg",
  barChartSvg({
    title: "HTTP throughput: hermes-kv vs etcd (3 nodes each, same load tool)",
    yLabel: "requests per second",
    categories: workloads,
    series: [
      { name: `etcd ${vs.etcdVersion}`, values: vs.rows.map((r) => Math.round(r.etcd.summary.throughputReqs)) },
      {
        name: "hermes-kv",
        values: vs.rows.map((r) => Math.round(r.hermes.summary.throughputReqs)),
        labels: vs.rows.map(
          (r) =>
            `${formatNumber(Math.round(r.hermes.summary.throughputReqs))} (${ratio(r.hermes.summary.throughputReqs, r.etcd.summary.throughputReqs)})`,
        ),
      },
    ],
    notes: httpNotes,
  }),
);
write(
  "http-vs-etcd-p99.svg",
  barChartSvg({
    title: "HTTP p99 latency: hermes-kv vs etcd (lower is better)",
    yLabel: "p99 latency (ms)",
    categories: workloads,
    series: [
      { name: `etcd ${vs.etcdVersion}`, values: vs.rows.map((r) => r.etcd.summary.p99Us / 1000) },
      { name: "hermes-kv", values: vs.rows.map((r) => r.hermes.summary.p99Us / 1000) },
    ],
    notes: httpNotes,
  }),
);

console.log("\nengine sweep (hermes-kv bench -M 3 -W 1):");
console.log("| write ratio | M req/s | read p99 | write p99 |");
console.log("|---|---|---|---|");
/** The engine's histograms stop at latencyBucketsUs: a value there means "at least". */
const us = (v: number, any: boolean): string =>
  !any ? "–" : v >= latencyBucketsUs ? `≥${latencyBucketsUs / 1000} ms` : `${v} µs`;
for (const p of engine) {
  console.log(
    `| ${p.writePerMille / 10}% | ${p.mreqs.toFixed(3)} | ${us(p.readP99Us, p.writePerMille < 1000)} | ${us(p.writeP99Us, p.writePerMille > 0)} |`,
  );
}
console.log(`\nHTTP (etcd ${vs.etcdVersion}; load average at the end ${vs.loadAverage}):`);
for (const line of tableLines(vs)) console.log(line);
console.log(`\nwrote ${files.join(", ")}`);
