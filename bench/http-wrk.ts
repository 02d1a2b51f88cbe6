// wrk against HTTP endpoints in alternating rounds, so that machine noise hits all of them alike:
// GET of one key, or a GET/PUT mix over many keys. Prints req/s and latency percentiles per
// endpoint and round, and each endpoint's ratio to the first one of the same round.
//   bun bench/http-wrk.ts --endpoint NAME=URL [--endpoint NAME=URL ...] [--put-pct P] [--keys N]
//                         [--seconds S] [--rounds R] [--connections C]
// URL is a server's base (http://127.0.0.1:8080); requests go to /v1/kv/<key>. With --put-pct 0 and
// --keys 1 every request is GET /v1/kv/bench-0 (written once before the rounds). An endpoint named
// "trivial" gets GET / only (a server that answers everything the same).

import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const argv = process.argv.slice(2);
const endpoints: { name: string; url: string }[] = [];
let putPct = 0;
let keys = 1;
let seconds = 4;
let rounds = 3;
let connections = 32;
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i]!;
  const value = argv[++i];
  if (value === undefined) throw new Error(`${flag} needs a value`);
  if (flag === "--endpoint") {
    const eq = value.indexOf("=");
    endpoints.push({ name: value.slice(0, eq), url: value.slice(eq + 1) });
  } else if (flag === "--put-pct") putPct = Number(value);
  else if (flag === "--keys") keys = Number(value);
  else if (flag === "--seconds") seconds = Number(value);
  else if (flag === "--rounds") rounds = Number(value);
  else if (flag === "--connections") connections = Number(value);
  else throw new Error(`unknown flag ${flag}`);
}
if (endpoints.length === 0) throw new Error("give at least one --endpoint NAME=URL");

// Every key exists before the rounds, so that GETs answer 200 (wrk counts other statuses apart).
for (const { name, url } of endpoints) {
  if (name === "trivial") continue;
  for (let k = 0; k < keys; k++) {
    const response = await fetch(`${url}/v1/kv/bench-${k}`, { method: "PUT", body: `value-${k}` });
    if (response.status !== 200) throw new Error(`${name}: PUT bench-${k} answered ${response.status}`);
  }
}

const script = join(tmpdir(), `hermes-http-wrk-${process.pid}.lua`);
writeFileSync(
  script,
  `math.randomseed(${Date.now() % 100000})
local n = 0
request = function()
  n = n + 1
  local k = "bench-" .. math.random(0, ${keys - 1})
  if math.random(100) <= ${putPct} then
    return wrk.format("PUT", "/v1/kv/" .. k, nil, "value-" .. n)
  end
  return wrk.format("GET", "/v1/kv/" .. k)
end
`,
);

interface WrkResult {
  rate: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function ms(text: string): number {
  const m = text.match(/^([0-9.]+)(us|ms|s)$/);
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}

async function wrk(name: string, url: string): Promise<WrkResult> {
  const args = ["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--latency"];
  // One key and no PUTs: a plain URL, no Lua per request (as for the trivial server).
  const plain = putPct === 0 && keys === 1;
  if (name !== "trivial" && !plain) args.push("-s", script);
  const target = name === "trivial" ? `${url}/` : plain ? `${url}/v1/kv/bench-0` : url;
  const proc = Bun.spawn([...args, target], { stdout: "pipe" });
  const out = await new Response(proc.stdout).text();
  const rate = out.match(/Requests\/sec:\s+([0-9.]+)/);
  const p50 = out.match(/\s50%\s+([0-9.]+[a-z]+)/);
  const p99 = out.match(/\s99%\s+([0-9.]+[a-z]+)/);
  const non2xx = out.match(/Non-2xx or 3xx responses:\s+([0-9]+)/);
  const socketErrors = out.match(/Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/);
  if (rate === null || p50 === null || p99 === null) throw new Error(`wrk output not understood:\n${out}`);
  const errors =
    Number(non2xx?.[1] ?? 0) + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((a, b) => a + Number(b), 0));
  return { rate: Number(rate[1]), p50Ms: ms(p50[1]!), p99Ms: ms(p99[1]!), errors };
}

console.log(
  `wrk -t1 -c${connections} -d${seconds}s, ${rounds} rounds, ${putPct}% PUT over ${keys} key(s); load ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
);
for (let round = 1; round <= rounds; round++) {
  const parts: string[] = [];
  let first: WrkResult | null = null;
  for (const { name, url } of endpoints) {
    const r = await wrk(name, url);
    first ??= r;
    const ratio = r === first ? "" : ` (x${(r.rate / first.rate).toFixed(2)})`;
    parts.push(
      `${name} ${(r.rate / 1000).toFixed(1)}k req/s${ratio} p50 ${r.p50Ms.toFixed(2)} ms p99 ${r.p99Ms.toFixed(2)} ms${r.errors > 0 ? ` errors ${r.errors}` : ""}`,
    );
  }
  console.log(`round ${round}: ${parts.join(" | ")}`);
}
