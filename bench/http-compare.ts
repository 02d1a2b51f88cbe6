// HTTP rate of one hermes-kv replica's GET against a trivial Bun.serve handler, measured in the same
// run with wrk (Debian's), alternating rounds so that machine noise hits both. Prints the ratio.
//   bun bench/http-compare.ts [seconds] [rounds]

import { LocalCluster } from "../src/cli/local-cluster.ts";

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 2);

const trivial = Bun.spawn(
  [
    "node_modules/.bin/bun",
    "-e",
    `
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("hello") });
  console.log(s.port);`,
  ],
  { stdout: "pipe", stderr: "inherit" },
);
const trivialPort = await firstLineNumber(trivial.stdout as ReadableStream<Uint8Array>);

async function firstLineNumber(stream: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stream.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(text.trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`trivial server did not report a port: ${text}`);
  return port;
}

const cluster = await LocalCluster.start({
  replicas: 3,
  host: "127.0.0.1",
  httpPort: 0,
  shards: 1,
  transport: "tcp",
  rm: { leaseMs: 2000, renewEveryMs: 200 },
  node: {},
  log: () => {},
});
await fetch(`${cluster.url(0)}/v1/kv/greeting`, { method: "PUT", body: "hello" });

/** Asynchronous on purpose: this process serves the cluster's HTTP while wrk runs. */
async function wrk(url: string): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", "-c32", `-d${seconds}s`, url], { stdout: "pipe" });
  const out = await new Response(proc.stdout).text();
  const m = out.match(/Requests\/sec:\s+([0-9.]+)/);
  if (m === null) throw new Error(`wrk output not understood:\n${out}`);
  return Number(m[1]);
}

console.log(`wrk -t1 -c32 -d${seconds}s, ${rounds} rounds; replica GET of a 5-byte value vs trivial Bun.serve`);
for (let r = 1; r <= rounds; r++) {
  const a = await wrk(`http://127.0.0.1:${trivialPort}/`);
  const b = await wrk(`${cluster.url(1)}/v1/kv/greeting`);
  console.log(
    `round ${r}: trivial ${a.toFixed(0)} req/s, hermes-kv GET ${b.toFixed(0)} req/s, ratio ${(b / a).toFixed(2)}`,
  );
}
trivial.kill();
await cluster.close();
