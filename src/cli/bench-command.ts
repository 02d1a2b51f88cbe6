// `hermes-kv bench`: a closed-loop benchmark in the style of the Hermes reference's run-hermesKV.sh.
// M replicas with W workers each run in this process over the real transport; request slots inside
// every worker issue reads, writes and RMWs straight into the replica (no HTTP), refilling each slot
// as soon as its op completes. Prints per-node throughput every second and ends with one summary
// line that scripts can parse.

import { LocalRm } from "../membership/local.ts";
import { HermesNode, nodeDefaults } from "../node/node.ts";
import type { ShardStats } from "../worker/messages.ts";
import { latencyBucketsUs } from "../worker/bench-clients.ts";
import { expectPositionals, parseArgs, parseIntegerFlag, UsageError } from "./args.ts";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../base/cluster-key.ts";
import { resolveTransport } from "./transport-choice.ts";
import { existsSync } from "node:fs";
import { durabilityFlagSpecs, localReplicaDir, openDataDir, parseDurabilityFlags } from "./durability-flags.ts";

export const benchUsage = `usage: hermes-kv bench [-M replicas] [-W workers] [-w permille] [-R permille] [-d seconds]
                      [-b slots] [-k keys] [-v value-bytes] [--transport auto|tcp|udp|rdma]
                      [--frame-mac off|on]
                      [--data-dir DIR --durability fsync|async [--fsync-interval-ms MS]]

Closed-loop benchmark of a local cluster (M replicas in this process, W Hermes workers each),
bypassing HTTP, like the reference's run-hermesKV.sh. Each worker keeps -b requests outstanding
over -k uniformly chosen keys.

  -M N    replicas (default 3)              -W N    workers per replica (default 1)
  -w N    updates, in tenths of a percent (default 50 = 5%)
  -R N    RMWs (CAS) among updates, in tenths of a percent (default 0)
  -d S    measured seconds (default 10), after 1 s of warm-up
  -b N    outstanding requests per worker (default 256, like the reference's batch of 250)
  -k N    keys per worker (default 1000000)   -v N    value bytes (default 32)
  --transport T   auto|tcp|udp|rdma (default auto)
  --frame-mac M   off|on: tag every replica frame with a MAC under a random cluster key, as nodes
                  with --cluster-key-file do (default off; compare the two in one session)
  --no-ordered-keys   run the replicas without the ordered key index of prefix listings (only to
                  measure what the index costs: such a cluster answers no listing)
  --data-dir DIR  log every replica's updates to DIR/replica-i (a new or empty DIR; left there after)
  --durability M  fsync|async (default fsync with --data-dir; none without)
  --fsync-interval-ms MS  async's window (default 100)

Prints per-node Mreq/s every second, then one line:
throughput_mreqs=… read_p50_us=… read_p99_us=… write_p50_us=… write_p99_us=…

hermes-kv bench --endpoints URL[,URL…] [flags] is another benchmark: closed-loop HTTP load against
running hermes-kv nodes (or etcd, --target etcd), ending with throughput_reqs=… p50_us=… p99_us=…
errors=…; \`hermes-kv bench --endpoints URL --help\` lists its flags.`;

const specs = {
  M: { kind: "string", short: "M" },
  W: { kind: "string", short: "W" },
  w: { kind: "string", short: "w" },
  R: { kind: "string", short: "R" },
  d: { kind: "string", short: "d" },
  b: { kind: "string", short: "b" },
  k: { kind: "string", short: "k" },
  v: { kind: "string", short: "v" },
  transport: { kind: "string" },
  "frame-mac": { kind: "string" },
  "no-ordered-keys": { kind: "boolean" },
  ...durabilityFlagSpecs,
  help: { kind: "boolean", short: "h" },
} as const;

interface Totals {
  ops: number;
  reads: number;
  writes: number;
  rmws: number;
  rmwAborts: number;
}

function totals(stats: ShardStats[]): Totals {
  const t: Totals = { ops: 0, reads: 0, writes: 0, rmws: 0, rmwAborts: 0 };
  for (const s of stats) {
    if (s.bench === null) continue;
    t.reads += s.bench.reads;
    t.writes += s.bench.writes;
    t.rmws += s.bench.rmws;
    t.rmwAborts += s.bench.rmwAborts;
  }
  t.ops = t.reads + t.writes + t.rmws;
  return t;
}

/** The p-th percentile (0..1) of a 1 µs histogram; the overflow bucket reads as its lower bound. */
export function percentileUs(histogram: number[], p: number): number {
  let total = 0;
  for (const n of histogram) total += n;
  if (total === 0) return 0;
  const rank = Math.ceil(p * total);
  let seen = 0;
  for (let us = 0; us < histogram.length; us++) {
    seen += histogram[us]!;
    if (seen >= rank) return us;
  }
  return histogram.length - 1;
}

function subtract(a: number[], b: number[] | undefined): number[] {
  return a.map((n, i) => n - (b?.[i] ?? 0));
}

export async function runBenchCommand(argv: readonly string[]): Promise<number> {
  // --endpoints selects the HTTP load generator, which has flags of its own.
  if (argv.some((a) => a === "--endpoints" || a.startsWith("--endpoints="))) {
    return (await import("./http-bench.ts")).runHttpBenchCommand(argv);
  }
  const { flags, positionals } = parseArgs(argv, specs);
  if (flags.help) {
    console.log(benchUsage);
    return 0;
  }
  expectPositionals(positionals, 0, 0, "");
  const replicas = flags.M === undefined ? 3 : parseIntegerFlag("-M", flags.M, 1, 7);
  const workers = flags.W === undefined ? 1 : parseIntegerFlag("-W", flags.W, 1, 32);
  const writePerMille = flags.w === undefined ? 50 : parseIntegerFlag("-w", flags.w, 0, 1000);
  const rmwPerMille = flags.R === undefined ? 0 : parseIntegerFlag("-R", flags.R, 0, 1000);
  const seconds = flags.d === undefined ? 10 : parseIntegerFlag("-d", flags.d, 1, 3600);
  const slots = flags.b === undefined ? 256 : parseIntegerFlag("-b", flags.b, 1, 4096);
  const keys = flags.k === undefined ? 1_000_000 : parseIntegerFlag("-k", flags.k, 1, 100_000_000);
  const valueBytes = flags.v === undefined ? 32 : parseIntegerFlag("-v", flags.v, 0, 16 * 1024);
  const transport = resolveTransport(flags.transport ?? "auto", (line) => console.error(line));
  const frameMacFlag = flags["frame-mac"] ?? "off";
  if (frameMacFlag !== "off" && frameMacFlag !== "on") throw new UsageError("--frame-mac must be off or on");
  const frameKey = frameMacFlag === "on" ? deriveClusterKey(generateClusterKey(), clusterKeyLabel.frameMac) : null;

  const durability = parseDurabilityFlags(flags);
  // The bench's replicas start as a new cluster: recovered data would make them join instead.
  if (durability !== null && existsSync(localReplicaDir(durability.dataDir, 0)))
    throw new UsageError(`--data-dir ${durability.dataDir} holds data already: give the bench a new or empty dir`);
  const dataDirs =
    durability === null
      ? []
      : Array.from({ length: replicas }, (_, id) =>
          openDataDir(localReplicaDir(durability.dataDir, id), "bench", id, workers),
        );

  console.log(
    `bench: ${replicas} replicas x ${workers} workers, ${transport}, updates ${writePerMille / 10}% (RMW ${rmwPerMille / 10}% of them), ` +
      `${slots} slots/worker, ${keys} keys, ${valueBytes} B values, ${seconds} s, frame MAC ${frameMacFlag}` +
      (flags["no-ordered-keys"] === true ? ", no ordered key index" : "") +
      `, durability ${durability?.mode ?? "none"}` +
      (durability?.mode === "async" ? ` (${durability.fsyncIntervalMs} ms)` : ""),
  );
  const rm = new LocalRm({ leaseMs: 5000, renewEveryMs: 200, log: () => {} });
  const nodes = await Promise.all(
    Array.from({ length: replicas }, (_, id) =>
      HermesNode.start({
        nodeId: id,
        clusterId: nodeDefaults.clusterId,
        shards: workers,
        transport,
        host: "127.0.0.1",
        basePort: 0,
        httpAddress: "none",
        keyBytesMax: nodeDefaults.keyBytesMax,
        valueBytesMax: Math.max(valueBytes, 64),
        frameBytesMax: nodeDefaults.frameBytesMax,
        opsInFlightMaxPerShard: 1024,
        replica: { opsMax: slots * 4 + 1024, keysMax: keys + 1024, orderedKeys: flags["no-ordered-keys"] !== true },
        numa: true,
        bench: { slots, keys, valueBytes, writePerMille, rmwPerMille },
        frameKey,
        durability: durability === null ? null : { ...durability, dataDir: localReplicaDir(durability.dataDir, id) },
      }),
    ),
  );
  try {
    const handles = rm.registerAll(nodes.map((n) => n.memberInfo()));
    nodes.forEach((node, i) => node.attachMembership(handles[i]!));
    // Wait until every worker has the view (its epoch) before the clients start.
    for (let i = 0; i < 500; i++) {
      const stats = await Promise.all(nodes.map((n) => n.refreshStats()));
      if (stats.every((s) => s.every((shard) => shard.epoch === 1))) break;
      await Bun.sleep(10);
    }
    for (const node of nodes) node.startBench();

    await Bun.sleep(1000); // warm-up, not measured
    const first = await Promise.all(nodes.map((n) => n.refreshStats()));
    let previous = first;
    const started = performance.now();
    for (let second = 1; second <= seconds; second++) {
      await Bun.sleep(Math.max(0, started + second * 1000 - performance.now()));
      const now = await Promise.all(nodes.map((n) => n.refreshStats()));
      const parts = nodes.map((_, i) => {
        const d = totals(now[i]!).ops - totals(previous[i]!).ops;
        return `node${i} ${(d / 1e6).toFixed(3)}`;
      });
      const all = now.reduce((sum, s, i) => sum + totals(s).ops - totals(previous[i]!).ops, 0);
      console.log(`[${second}s] MReqs/s: ${parts.join(" | ")} | total ${(all / 1e6).toFixed(3)}`);
      previous = now;
    }
    const elapsedS = (performance.now() - started) / 1000;
    const last = previous;
    let ops = 0;
    let reads = 0;
    let updates = 0;
    let aborts = 0;
    const readHist = new Array<number>(latencyBucketsUs + 1).fill(0);
    const writeHist = new Array<number>(latencyBucketsUs + 1).fill(0);
    for (let n = 0; n < nodes.length; n++) {
      for (let s = 0; s < workers; s++) {
        const a = first[n]![s]!.bench!;
        const b = last[n]![s]!.bench!;
        reads += b.reads - a.reads;
        updates += b.writes - a.writes + b.rmws - a.rmws;
        aborts += b.rmwAborts - a.rmwAborts;
        subtract(b.readLatencyUs, a.readLatencyUs).forEach((v, i) => (readHist[i]! += v));
        subtract(b.writeLatencyUs, a.writeLatencyUs).forEach((v, i) => (writeHist[i]! += v));
      }
    }
    ops = reads + updates;
    let refused = 0;
    let retransmits = 0;
    for (const node of last)
      for (const shard of node) {
        refused += shard.counters.framesRefused ?? 0;
        retransmits += shard.counters.invsRetransmitted ?? 0;
      }
    console.log(
      `done: ${ops} ops in ${elapsedS.toFixed(1)} s (reads ${reads}, updates ${updates}, realized update ratio ${((updates / Math.max(1, ops)) * 100).toFixed(1)}%, RMW aborts ${aborts}, ` +
        `frames refused for want of credit ${refused}, INV retransmissions ${retransmits})`,
    );
    if (durability !== null) {
      let fsyncs = 0;
      let logBytes = 0;
      for (let n = 0; n < nodes.length; n++)
        for (let s = 0; s < workers; s++) {
          fsyncs += (last[n]![s]!.durability?.syncs ?? 0) - (first[n]![s]!.durability?.syncs ?? 0);
          logBytes += (last[n]![s]!.durability?.logBytes ?? 0) - (first[n]![s]!.durability?.logBytes ?? 0);
        }
      console.log(
        `durability ${durability.mode}: ${(updates / elapsedS).toFixed(0)} updates/s, ${(fsyncs / elapsedS).toFixed(0)} fdatasyncs/s ` +
          `(${(updates / Math.max(1, fsyncs)).toFixed(1)} updates per fdatasync, all replicas), ${(logBytes / elapsedS / 1e6).toFixed(1)} MB/s of log`,
      );
    }
    console.log(
      `throughput_mreqs=${(ops / elapsedS / 1e6).toFixed(4)} read_p50_us=${percentileUs(readHist, 0.5)} read_p99_us=${percentileUs(readHist, 0.99)} ` +
        `write_p50_us=${percentileUs(writeHist, 0.5)} write_p99_us=${percentileUs(writeHist, 0.99)}`,
    );
    return 0;
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
    rm.close();
    for (const dir of dataDirs) dir.close();
  }
}
