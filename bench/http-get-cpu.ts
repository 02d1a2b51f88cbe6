// One replica's single-key GET against a trivial Bun.serve (issue 8), with the servers it is
// compared with in the same run: wrk -t1 -c32 in alternating rounds over
//   trivial   Bun.serve({ fetch: () => new Response("hello") })
//   contract  a Bun.serve doing only what the GET contract needs of Bun (bench/http-floor-servers.ts)
//   before    `hermes-kv local --replicas 3` run from the --before checkout (default /work/base)
//   after     the same from the --after checkout (default: this one)
// and, besides req/s and each one's ratio to the trivial server of the same round, the CPU time per
// GET of each server process and of its busiest thread (the serving shard worker), from
// /proc/<pid>/task/*/stat over the wrk run: a request rate on this shared 2-core machine swings
// with other jobs, CPU per request much less. Ends with each server's medians over the rounds:
// its req/s ratio to trivial, and its busiest thread's CPU per GET (as a ratio: trivial's / its).
//   bun bench/http-get-cpu.ts [--rounds R] [--seconds S] [--before DIR] [--after DIR] [--port-base P]
//                             [--floors trivial,contract,...] [--clusters 0|1]
// --floors: the reference servers, kinds of bench/http-floor-servers.ts (the first must be trivial);
// --clusters 0 leaves out before and after (to price Bun's own parts alone).
// GETs go to replica 1 of each cluster (key bench-0, a 5-byte value written once through replica 0).

import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

const argv = process.argv.slice(2);
let rounds = 3;
let seconds = 4;
let beforeDir = "/work/base";
let afterDir = process.cwd();
let portBase = 20000 + Math.floor(Math.random() * 39000);
let floors = ["trivial", "contract"];
let clusters = true;
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i]!;
  const value = argv[++i];
  if (value === undefined) throw new Error(`${flag} needs a value`);
  if (flag === "--rounds") rounds = Number(value);
  else if (flag === "--seconds") seconds = Number(value);
  else if (flag === "--before") beforeDir = resolve(value);
  else if (flag === "--after") afterDir = resolve(value);
  else if (flag === "--port-base") portBase = Number(value);
  else if (flag === "--floors") floors = value.split(",");
  else if (flag === "--clusters") clusters = value !== "0";
  else throw new Error(`unknown flag ${flag}`);
}

interface Server {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  url: string;
}

const bun = resolve("node_modules/.bin/bun");

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return text.trim();
}

async function floorServer(kind: string): Promise<Server> {
  const proc = Bun.spawn([bun, resolve(import.meta.dir, "http-floor-servers.ts"), kind], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const port = Number(await firstLine(proc.stdout as ReadableStream<Uint8Array>));
  if (!Number.isInteger(port) || port <= 0) throw new Error(`${kind} server did not report a port`);
  return { name: kind, proc, url: `http://127.0.0.1:${port}/v1/kv/bench-0` };
}

/** A local 3-replica cluster from `dir`, with bench-0 written; GETs go to replica 1. */
async function cluster(name: string, dir: string, httpPort: number): Promise<Server> {
  const proc = Bun.spawn(
    [resolve(dir, "node_modules/.bin/bun"), "src/main.ts", "local", "--replicas", "3", "--http-port", String(httpPort)],
    { cwd: dir, stdout: "ignore", stderr: "inherit" },
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${httpPort}/v1/kv/bench-0`, { method: "PUT", body: "hello" });
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name}: no 200 to PUT bench-0 within 30 s`);
    await Bun.sleep(200);
  }
  return { name, proc, url: `http://127.0.0.1:${httpPort + 1}/v1/kv/bench-0` };
}

/** CPU ticks (user + system) of each thread of `pid`, by thread id. */
function threadTicks(pid: number): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks.set(tid, Number(fields[11]) + Number(fields[12]));
    } catch {
      // the thread ended
    }
  }
  return ticks;
}

const tickUs = 1_000_000 / 100; // USER_HZ is 100 on Linux

interface Result {
  rate: number;
  cpuUs: number;
  busiestUs: number;
  p50: string;
  p99: string;
  errors: number;
}

async function measure(server: Server): Promise<Result> {
  const before = threadTicks(server.proc.pid);
  const wrk = Bun.spawn(["wrk", "-t1", "-c32", `-d${seconds}s`, "--latency", server.url], { stdout: "pipe" });
  const out = await new Response(wrk.stdout).text();
  const after = threadTicks(server.proc.pid);
  const requests = Number(out.match(/(\d+) requests in/)?.[1]);
  const rate = Number(out.match(/Requests\/sec:\s+([0-9.]+)/)?.[1]);
  if (!(requests > 0) || !(rate > 0)) throw new Error(`wrk output not understood:\n${out}`);
  let total = 0;
  let busiest = 0;
  for (const [tid, t] of after) {
    const delta = t - (before.get(tid) ?? 0);
    total += delta;
    busiest = Math.max(busiest, delta);
  }
  const non2xx = Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0);
  const socket = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const errors = non2xx + (socket === null ? 0 : socket.slice(1).reduce((a, b) => a + Number(b), 0));
  return {
    rate,
    cpuUs: (total * tickUs) / requests,
    busiestUs: (busiest * tickUs) / requests,
    p50: out.match(/\s50%\s+(\S+)/)?.[1] ?? "?",
    p99: out.match(/\s99%\s+(\S+)/)?.[1] ?? "?",
    errors,
  };
}

const load = (): string => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const servers: Server[] = [];
/** Per server: each round's ratio to the trivial server (req/s, and CPU of the busiest thread), and its CPU per GET. */
const rateRatios = new Map<string, number[]>();
const cpuRatios = new Map<string, number[]>();
const busiest = new Map<string, number[]>();
const push = (table: Map<string, number[]>, name: string, x: number): void => {
  table.set(name, [...(table.get(name) ?? []), x]);
};
const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
try {
  if (floors[0] !== "trivial") throw new Error("--floors must start with trivial (the ratios' denominator)");
  for (const kind of floors) servers.push(await floorServer(kind));
  if (clusters)
    servers.push(await cluster("before", beforeDir, portBase), await cluster("after", afterDir, portBase + 10));
  console.log(
    `wrk -t1 -c32 -d${seconds}s, ${rounds} rounds, GET of one 5-byte value; before=${beforeDir} after=${afterDir}`,
  );
  console.log("per server: req/s (ratio to trivial), p50/p99, CPU per GET of the process [of its busiest thread]");
  for (let round = 1; round <= rounds; round++) {
    const startLoad = load();
    const parts: string[] = [];
    let trivial = 0;
    let trivialCpu = 0;
    for (const server of servers) {
      const r = await measure(server);
      if (server.name === "trivial") {
        trivial = r.rate;
        trivialCpu = r.busiestUs;
      }
      push(rateRatios, server.name, r.rate / trivial);
      push(cpuRatios, server.name, trivialCpu / r.busiestUs);
      push(busiest, server.name, r.busiestUs);
      parts.push(
        `${server.name} ${(r.rate / 1000).toFixed(1)}k (x${(r.rate / trivial).toFixed(2)}) ${r.p50}/${r.p99} ` +
          `${r.cpuUs.toFixed(2)} [${r.busiestUs.toFixed(2)}] us${r.errors > 0 ? ` ERRORS ${r.errors}` : ""}`,
      );
    }
    console.log(`round ${round} (load ${startLoad}): ${parts.join(" | ")}`);
  }
  console.log(
    "medians over the rounds: " +
      servers
        .map(
          ({ name }) =>
            `${name} x${median(rateRatios.get(name)!).toFixed(2)} req/s, ` +
            `${median(busiest.get(name)!).toFixed(2)} us CPU per GET in the busiest thread (x${median(cpuRatios.get(name)!).toFixed(2)} of trivial's)`,
        )
        .join(" | "),
  );
} finally {
  for (const server of servers) server.proc.kill("SIGINT");
  await Promise.race([Promise.all(servers.map((s) => s.proc.exited)), Bun.sleep(10_000)]);
  for (const server of servers) if (server.proc.exitCode === null) server.proc.kill("SIGKILL");
}
