// Is the load tool the bottleneck for batches? wrk (one process per endpoint, -t1) sends binary
// batches of 64 ops at 95 % reads (precomputed bodies, embedded in a generated Lua script) to the
// same endpoints as `hermes-kv bench --endpoints ... --batch 64 --batch-format binary`, in
// alternating rounds; prints each one's ops/s and their ratio per round. The keys must be filled
// first (the tool's --fill). wrk's values repeat (they are precomputed); the tool's are unique.
//   bun bench/batch-wrk.ts URL[,URL...] [seconds] [rounds] [connections]

import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeBinaryBatch, type BinaryBatchOp } from "../src/http/batch-binary-client.ts";

const urls = (process.argv[2] ?? "").split(",").filter((u) => u !== "");
if (urls.length === 0) throw new Error("usage: bun bench/batch-wrk.ts URL[,URL...] [seconds] [rounds] [connections]");
const seconds = Number(process.argv[3] ?? 4);
const rounds = Number(process.argv[4] ?? 3);
const connections = Number(process.argv[5] ?? 24);
const batch = 64;
const keys = 10_000;
const bodies = 256;

let seed = 0x2545f491;
const random = (): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const lua: string[] = ["local bodies = {"];
for (let b = 0; b < bodies; b++) {
  const ops: BinaryBatchOp[] = [];
  for (let i = 0; i < batch; i++) {
    const key = `bench-${Math.floor(random() * keys)}`;
    ops.push(
      random() < 0.95 ? { op: "get", key } : { op: "put", key, value: Buffer.from(`wrk.${b}.${i}`.padEnd(32, "x")) },
    );
  }
  const body = encodeBinaryBatch(ops);
  lua.push(`"${Array.from(body, (byte) => `\\${byte}`).join("")}",`);
}
lua.push("}");
lua.push(`local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/vnd.hermes-kv.batch"}, bodies[(n % ${bodies}) + 1])
end`);
const script = join(tmpdir(), `hermes-batch-wrk-${process.pid}.lua`);
writeFileSync(script, lua.join("\n"));

async function wrkRound(): Promise<number> {
  const perEndpoint = Math.max(1, Math.round(connections / urls.length));
  const runs = urls.map((url) =>
    Bun.spawn(["wrk", "-t1", `-c${perEndpoint}`, `-d${seconds}s`, "-s", script, url], { stdout: "pipe" }),
  );
  let requests = 0;
  for (const run of runs) {
    const text = await new Response(run.stdout).text();
    const match = /Requests\/sec:\s+([0-9.]+)/.exec(text);
    if (match === null) throw new Error(`wrk printed no rate:\n${text}`);
    requests += Number(match[1]);
  }
  return requests * batch;
}

async function toolRound(): Promise<number> {
  const run = Bun.spawn(
    [
      "node_modules/.bin/bun",
      "src/main.ts",
      "bench",
      "--endpoints",
      urls.join(","),
      "-c",
      String(connections),
      "-k",
      String(keys),
      "-v",
      "32",
      "--batch",
      String(batch),
      "--batch-format",
      "binary",
      "-d",
      String(seconds),
      "--warmup",
      "0",
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  const text = await new Response(run.stdout).text();
  const match = /ops_per_s=([0-9.]+)/.exec(text);
  if (match === null) throw new Error(`the tool printed no rate:\n${text}`);
  return Number(match[1]);
}

for (let round = 1; round <= rounds; round++) {
  const wrk = await wrkRound();
  const tool = await toolRound();
  const load = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
  console.log(
    `round ${round}: wrk ${Math.round(wrk)} ops/s, hermes-kv bench ${Math.round(tool)} ops/s, tool/wrk ${(tool / wrk).toFixed(2)} (load ${load})`,
  );
}
