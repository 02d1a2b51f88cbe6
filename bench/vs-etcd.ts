// hermes-kv beside etcd, through the same load tool (`hermes-kv bench --endpoints`), in one run.
//
//   bun bench/vs-etcd.ts [--seconds S] [--warmup S] [--quick] [--calibrate] [--etcd-dir DIR]
//
// Starts, on 127.0.0.1 ports:
// - a real 3-member etcd cluster (Debian's etcd-server, /usr/bin/etcd or $ETCD_BIN), each member
//   with its own temporary data dir (under --etcd-dir, default the OS temp dir: on this machine a
//   disk, so etcd fsyncs its WAL as in production);
// - a 3-node hermes-kv cluster (`hermes-kv node` processes, 1 shard each, TCP), whose membership
//   lives in its own, separate single-member etcd (test/cluster/helpers.ts), so the etcd under
//   test serves only the benchmark.
// Then, for each workload (reads 100 %, 95 %, 50 %; the rest blind writes), it runs the load tool
// once against etcd (--target etcd: v3 JSON gateway, linearizable reads) and once against
// hermes-kv, alternating which goes first, with the same flags: 48 connections spread over the 3
// members, 10,000 keys filled once before the first run, 32-byte values. Prints req/s and p99 of
// both and their ratios. With --calibrate it first measures the load tool against wrk on the same
// targets (a trivial Bun.serve, and a hermes-kv node's GET), to show the tool is not the bottleneck.
//
// Everything it starts is stopped and its directories removed at the end, on error, on SIGINT /
// SIGTERM, and (by watchdog shells, as in the tests) if this process is killed.

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parseStatusesLine, parseSummaryLine, type ParsedSummary } from "../src/cli/http-bench-report.ts";
import { ProcCluster, freePort, repoRoot, waitFor } from "../test/cluster/helpers.ts";

const bunBin = process.execPath;
const etcdBin = process.env.ETCD_BIN ?? "/usr/bin/etcd";

export interface VsEtcdOptions {
  seconds: number;
  warmupSeconds: number;
  connections: number;
  keys: number;
  valueBytes: number;
  readPcts: number[];
  etcdDir: string;
  calibrate: boolean;
  log: (line: string) => void;
}

export const vsEtcdDefaults: Omit<VsEtcdOptions, "log"> = {
  seconds: 5,
  warmupSeconds: 1,
  connections: 48,
  keys: 10_000,
  valueBytes: 32,
  readPcts: [100, 95, 50],
  etcdDir: tmpdir(),
  calibrate: false,
};

export interface SystemRun {
  summary: ParsedSummary;
  statuses: Record<string, number>;
}

export interface VsEtcdRow {
  readPct: number;
  etcd: SystemRun;
  hermes: SystemRun;
}

export interface Calibration {
  target: string;
  wrk: number[];
  tool: number[];
}

export interface VsEtcdResult {
  rows: VsEtcdRow[];
  calibration: Calibration[];
  etcdVersion: string;
  loadAverage: string;
}

// --- a 3-member etcd cluster -----------------------------------------------------------------

interface EtcdMember {
  name: string;
  clientUrl: string;
  proc: Subprocess;
  watchdog: Subprocess;
}

/** Everything started here, for the exit hook. */
const live = new Set<Subprocess>();
const dirs = new Set<string>();

process.on("exit", () => {
  for (const p of live) {
    try {
      p.kill("SIGKILL");
    } catch {
      // gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class EtcdCluster {
  constructor(
    readonly dir: string,
    readonly members: EtcdMember[],
  ) {}

  static async start(parent: string, size: number): Promise<EtcdCluster> {
    const dir = mkdtempSync(join(parent, "hermes-vs-etcd-"));
    dirs.add(dir);
    const ports: number[] = [];
    while (ports.length < size * 2) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const names = Array.from({ length: size }, (_, i) => `m${i}`);
    const peer = (i: number): string => `http://127.0.0.1:${ports[size + i]}`;
    const initial = names.map((n, i) => `${n}=${peer(i)}`).join(",");
    const token = `vs-etcd-${process.pid}-${Date.now()}`;
    const members: EtcdMember[] = [];
    const cluster = new EtcdCluster(dir, members);
    try {
      for (let i = 0; i < size; i++) {
        const clientUrl = `http://127.0.0.1:${ports[i]}`;
        const log = openSync(join(dir, `${names[i]}.log`), "a");
        let proc: Subprocess;
        try {
          proc = Bun.spawn(
            [
              etcdBin,
              "--name",
              names[i]!,
              "--data-dir",
              join(dir, names[i]!),
              "--listen-client-urls",
              clientUrl,
              "--advertise-client-urls",
              clientUrl,
              "--listen-peer-urls",
              peer(i),
              "--initial-advertise-peer-urls",
              peer(i),
              "--initial-cluster",
              initial,
              "--initial-cluster-state",
              "new",
              "--initial-cluster-token",
              token,
            ],
            { stdin: "ignore", stdout: log, stderr: log },
          );
        } finally {
          closeSync(log);
        }
        live.add(proc);
        // Reads a pipe only this process writes: EOF (this process died, even by SIGKILL) kills etcd.
        const watchdog = Bun.spawn(
          ["sh", "-c", `trap '' TERM INT HUP; read _ ; kill -9 ${proc.pid} 2>/dev/null; rm -rf '${dir}'`],
          {
            stdin: "pipe",
            stdout: "ignore",
            stderr: "ignore",
          },
        );
        live.add(watchdog);
        members.push({ name: names[i]!, clientUrl, proc, watchdog });
      }
      await waitFor(
        "the etcd members to be healthy",
        async () => {
          for (const m of members) {
            if (m.proc.exitCode !== null)
              throw new Error(`etcd ${m.name} exited (${m.proc.exitCode}):\n${cluster.logTail(m.name)}`);
          }
          const health = await Promise.all(
            members.map(async (m) => {
              try {
                const r = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
                return ((await r.json()) as { health?: string }).health === "true";
              } catch {
                return false;
              }
            }),
          );
          return health.every(Boolean);
        },
        30_000,
        100,
      );
      return cluster;
    } catch (error) {
      await cluster.close();
      throw error;
    }
  }

  urls(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  logTail(name: string, lines = 20): string {
    try {
      return readFileSync(join(this.dir, `${name}.log`), "utf8")
        .split("\n")
        .slice(-lines)
        .join("\n");
    } catch {
      return "(no log)";
    }
  }

  async close(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill("SIGTERM");
        const timer = setTimeout(() => m.proc.kill("SIGKILL"), 5000);
        await m.proc.exited;
        clearTimeout(timer);
        live.delete(m.proc);
        m.watchdog.kill("SIGKILL");
        await m.watchdog.exited;
        live.delete(m.watchdog);
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }
}

// --- running the load tool -------------------------------------------------------------------

/** Runs `hermes-kv bench --endpoints …` as a child process; returns its parsed summary. */
export async function runLoadTool(args: string[], log: (line: string) => void): Promise<SystemRun> {
  const proc = Bun.spawn([bunBin, "src/main.ts", "bench", ...args], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
  live.add(proc);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  live.delete(proc);
  const lines = out.trim().split("\n");
  const summary = parseSummaryLine(lines[lines.length - 1] ?? "");
  const statuses = lines.map(parseStatusesLine).find((s) => s !== null) ?? null;
  if (code !== 0 || summary === null || statuses === null) {
    throw new Error(`load tool failed (exit ${code}): bench ${args.join(" ")}\n${out}\n${err}`);
  }
  log(`    ${lines[lines.length - 1]}  (${lines.find((l) => l.startsWith("statuses:"))})`);
  return { summary, statuses };
}

async function wrk(url: string, connections: number, seconds: number): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, url], { stdout: "pipe", stderr: "pipe" });
  live.add(proc);
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  live.delete(proc);
  const m = /Requests\/sec:\s+([0-9.]+)/.exec(out);
  if (m === null) throw new Error(`wrk output not understood:\n${out}`);
  return Number(m[1]);
}

async function trivialServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const proc = Bun.spawn(
    [
      bunBin,
      "-e",
      `const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("hello") }); console.log(s.port);`,
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  live.add(proc);
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(text.trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`trivial server did not report a port: ${text}`);
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      proc.kill();
      await proc.exited;
      live.delete(proc);
    },
  };
}

/** wrk and the load tool, alternately, on one URL (GET of one key): the tool must keep up. */
async function calibrate(name: string, base: string, o: VsEtcdOptions, rounds: number): Promise<Calibration> {
  const c: Calibration = { target: name, wrk: [], tool: [] };
  const seconds = Math.max(2, Math.round(o.seconds / 2));
  for (let r = 0; r < rounds; r++) {
    c.wrk.push(await wrk(`${base}/v1/kv/bench-0`, o.connections, seconds));
    const run = await runLoadTool(
      [
        "--endpoints",
        base,
        "-c",
        String(o.connections),
        "-k",
        "1",
        "--read-pct",
        "100",
        "-d",
        String(seconds),
        "--warmup",
        "0.5",
      ],
      () => {},
    );
    c.tool.push(run.summary.throughputReqs);
    o.log(
      `  ${name}, round ${r + 1}: wrk ${c.wrk[r]!.toFixed(0)} req/s, load tool ${c.tool[r]!.toFixed(0)} req/s, ratio ${(c.tool[r]! / c.wrk[r]!).toFixed(2)}`,
    );
  }
  return c;
}

// --- the comparison --------------------------------------------------------------------------

function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

export async function runVsEtcd(o: VsEtcdOptions): Promise<VsEtcdResult> {
  const versionProc = Bun.spawnSync([etcdBin, "--version"]);
  const etcdVersion = /etcd Version: (\S+)/.exec(versionProc.stdout.toString())?.[1] ?? "?";
  let etcd: EtcdCluster | null = null;
  let hermes: ProcCluster | null = null;
  const calibration: Calibration[] = [];
  try {
    o.log(
      `starting a 3-member etcd ${etcdVersion} cluster (data under ${o.etcdDir}) and a 3-node hermes-kv cluster (membership in its own etcd)`,
    );
    [etcd, hermes] = await Promise.all([
      EtcdCluster.start(o.etcdDir, 3),
      ProcCluster.start({ nodes: 3, leaseMs: 2000 }),
    ]);
    const etcdUrls = etcd.urls().join(",");
    const hermesUrls = hermes.urls().join(",");
    o.log(`etcd: ${etcdUrls}\nhermes-kv: ${hermesUrls}`);

    if (o.calibrate) {
      o.log("calibration: the load tool against wrk -t1, same connections, GET of one key");
      const trivial = await trivialServer();
      try {
        calibration.push(await calibrate("trivial Bun.serve", trivial.url, o, 3));
      } finally {
        await trivial.stop();
      }
      await fetch(`${hermes.urls()[0]}/v1/kv/bench-0`, { method: "PUT", body: "hello" });
      calibration.push(await calibrate("hermes-kv node GET", hermes.urls()[0]!, o, 3));
    }

    const common = [
      "-c",
      String(o.connections),
      "-k",
      String(o.keys),
      "-v",
      String(o.valueBytes),
      "-d",
      String(o.seconds),
      "--warmup",
      String(o.warmupSeconds),
    ];
    const rows: VsEtcdRow[] = [];
    let first = true;
    for (const [i, readPct] of o.readPcts.entries()) {
      const fill = first ? ["--fill"] : [];
      first = false;
      const run = async (system: "etcd" | "hermes"): Promise<SystemRun> => {
        o.log(`  reads ${readPct}%: ${system === "etcd" ? "etcd" : "hermes-kv"}`);
        const target = system === "etcd" ? ["--target", "etcd", "--endpoints", etcdUrls] : ["--endpoints", hermesUrls];
        return runLoadTool([...target, ...common, "--read-pct", String(readPct), ...fill], o.log);
      };
      // Alternate which system goes first, so that a trend in the machine's load hits both.
      let etcdRun: SystemRun;
      let hermesRun: SystemRun;
      if (i % 2 === 0) {
        etcdRun = await run("etcd");
        hermesRun = await run("hermes");
      } else {
        hermesRun = await run("hermes");
        etcdRun = await run("etcd");
      }
      rows.push({ readPct, etcd: etcdRun, hermes: hermesRun });
    }
    return { rows, calibration, etcdVersion, loadAverage: loadAverage() };
  } finally {
    await Promise.allSettled([etcd?.close(), hermes?.close()]);
  }
}

export function tableLines(result: VsEtcdResult): string[] {
  const lines = [
    "| workload | etcd req/s | etcd p99 | hermes-kv req/s | hermes-kv p99 | req/s hermes-kv / etcd | p99 etcd / hermes-kv |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of result.rows) {
    const e = r.etcd.summary;
    const h = r.hermes.summary;
    lines.push(
      `| ${r.readPct}% reads | ${e.throughputReqs.toFixed(0)} | ${(e.p99Us / 1000).toFixed(2)} ms | ${h.throughputReqs.toFixed(0)} | ${(h.p99Us / 1000).toFixed(2)} ms | ` +
        `${(h.throughputReqs / Math.max(1e-9, e.throughputReqs)).toFixed(2)}x | ${(e.p99Us / Math.max(1, h.p99Us)).toFixed(2)}x |`,
    );
  }
  for (const c of result.calibration) {
    const ratios = c.tool.map((t, i) => (t / c.wrk[i]!).toFixed(2));
    lines.push(
      `calibration, ${c.target}: wrk ${c.wrk.map((v) => v.toFixed(0)).join("/")} req/s, load tool ${c.tool.map((v) => v.toFixed(0)).join("/")} req/s, ratio ${ratios.join("/")}`,
    );
  }
  return lines;
}

function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(
      "usage: bun bench/vs-etcd.ts [--seconds S (5)] [--warmup S (1)] [--quick (2 s each)] [--calibrate] [--etcd-dir DIR]",
    );
    process.exit(0);
  }
  const quick = argv.includes("--quick");
  const options: VsEtcdOptions = {
    ...vsEtcdDefaults,
    seconds: Number(argValue(argv, "--seconds") ?? (quick ? 2 : vsEtcdDefaults.seconds)),
    warmupSeconds: Number(argValue(argv, "--warmup") ?? (quick ? 0.5 : vsEtcdDefaults.warmupSeconds)),
    etcdDir: argValue(argv, "--etcd-dir") ?? vsEtcdDefaults.etcdDir,
    calibrate: argv.includes("--calibrate"),
    log: (line) => console.log(line),
  };
  if (!(options.seconds > 0) || !(options.warmupSeconds >= 0)) {
    console.error("--seconds must be > 0 and --warmup >= 0");
    process.exit(64);
  }
  // A signal ends the run through the finally blocks (and the exit hook as a last resort).
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));
  const result = await runVsEtcd(options);
  console.log(
    `\netcd ${result.etcdVersion}; ${options.connections} connections, ${options.keys} keys, ${options.valueBytes} B values, ${options.seconds} s per run; load average at the end ${result.loadAverage}`,
  );
  for (const line of tableLines(result)) console.log(line);
}
