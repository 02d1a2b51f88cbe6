// `hermes-kv bench --endpoints`: the HTTP load tool against a real local 3-replica cluster (the
// `hermes-kv local` machinery, in this process, HTTP and TCP on 127.0.0.1) and against a real etcd,
// for about a second each. Checks the summary line's fields, the status counts, and that what the
// servers hold afterwards is what the tool wrote: every key read back, from every replica, has the
// same value, written by the tool to that key, by a connection that existed, with a sequence
// number that connection had issued. No timing assertion: speed is measured in benchmarks.
// Also: --cacert/--token pass-through against a Bun.serve with a self-signed certificate, the
// failures reported instead of a run (no /v1/batch, nobody listening), and unit tests of the
// response parser, the histogram and the flag checks.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../src/cli/args.ts";
import { FatalError } from "../../src/cli/fatal-error.ts";
import { parseResponse } from "../../src/cli/http-bench-client.ts";
import { parseValueTag, valueTag } from "../../src/cli/http-bench-load.ts";
import {
  bucketLowUs,
  bucketOfUs,
  histogramBuckets,
  newHistogram,
  parseStatusesLine,
  parseSummaryLine,
  percentileOfHistogram,
} from "../../src/cli/http-bench-report.ts";
import { type HttpBenchConfig, parseHttpBenchArgs, runHttpBench } from "../../src/cli/http-bench.ts";
import { LocalCluster } from "../../src/cli/local-cluster.ts";
import { etcdAvailable, startEtcd, type EtcdServer } from "../lib/etcd.ts";

let cluster: LocalCluster;
let urls: string[];

beforeAll(async () => {
  cluster = await LocalCluster.start({
    replicas: 3,
    host: "127.0.0.1",
    httpPort: 0,
    shards: 1,
    transport: "tcp",
    // Leases long enough that a busy machine does not make a replica lose its lease mid-run.
    rm: { leaseMs: 3000, renewEveryMs: 100 },
    node: {},
    log: () => {},
  });
  urls = [0, 1, 2].map((i) => cluster.url(i));
});

afterAll(async () => {
  await cluster?.close();
});

interface Run {
  lines: string[];
  result: Awaited<ReturnType<typeof runHttpBench>>;
  cfg: HttpBenchConfig;
}

async function run(argv: string[]): Promise<Run> {
  const cfg = await parseHttpBenchArgs(argv);
  const lines: string[] = [];
  const result = await runHttpBench(cfg, (line) => lines.push(line));
  return { lines, result, cfg };
}

/** The checks every run's output must pass; returns the parsed status counts. */
function checkReport(r: Run, allowedStatuses: string[]): Record<string, number> {
  const summary = parseSummaryLine(r.lines[r.lines.length - 1]!);
  if (summary === null) throw new Error(`no summary line at the end:\n${r.lines.join("\n")}`);
  expect(summary.throughputReqs).toBeGreaterThan(0);
  expect(summary.p50Us).toBeGreaterThan(0);
  expect(summary.p99Us).toBeGreaterThanOrEqual(summary.p50Us);
  expect(summary.errors).toBe(0);
  expect(summary.throughputReqs).toBeCloseTo(r.result.throughputReqs, 1);
  const statusLine = r.lines.find((l) => l.startsWith("statuses: "));
  const statuses = parseStatusesLine(statusLine ?? "");
  if (statuses === null) throw new Error(`no statuses line:\n${r.lines.join("\n")}`);
  for (const status of Object.keys(statuses)) expect(allowedStatuses).toContain(status);
  // Every answered request has a status, and nothing else is counted.
  expect(Object.values(statuses).reduce((a, b) => a + b, 0)).toBe(r.result.counts.requests);
  const c = r.result.counts;
  expect(c.reads + c.writes + c.cas).toBe(c.ops);
  if (r.cfg.batch === 1) {
    // Reads and updates timed apart: every measured request is in exactly one of the two histograms.
    const sum = (h: Uint32Array): number => h.reduce((a, b) => a + b, 0);
    expect(sum(c.readHistogram) + sum(c.writeHistogram)).toBe(c.requests);
    expect(sum(c.readHistogram)).toBe(c.reads);
    const m = /^per_kind: read_p50_us=(\d+) read_p99_us=(\d+) write_p50_us=(\d+) write_p99_us=(\d+)$/.exec(
      r.lines.find((l) => l.startsWith("per_kind: ")) ?? "",
    );
    if (m === null) throw new Error(`no per_kind line:\n${r.lines.join("\n")}`);
    expect(Number(m[2])).toBeGreaterThanOrEqual(Number(m[1]));
    expect(Number(m[4])).toBeGreaterThanOrEqual(Number(m[3]));
    if (c.writes + c.cas > 0) expect(Number(m[3])).toBeGreaterThan(0);
  }
  // A progress line every second, naming every endpoint.
  const progress = r.lines.filter((l) => /^\[[0-9.]+s\] [0-9]+ req\/s/.test(l));
  expect(progress.length).toBeGreaterThanOrEqual(1);
  for (const e of r.cfg.endpoints) expect(progress[0]).toContain(e.host);
  return statuses;
}

/**
 * Batches: the op_statuses line counts every op of the answered batches, each with a status that a
 * read, write or CAS may have (200, 404, 412).
 */
function checkOpStatuses(r: Run): void {
  const opStatuses = parseStatusesLine(
    (r.lines.find((l) => l.startsWith("op_statuses: ")) ?? "").replace("op_statuses:", "statuses:"),
  );
  if (opStatuses === null) throw new Error(`no op_statuses line:\n${r.lines.join("\n")}`);
  for (const s of Object.keys(opStatuses)) expect(["200", "404", "412"]).toContain(s);
  expect(Object.values(opStatuses).reduce((a, b) => a + b, 0)).toBe(r.result.counts.ops);
}

/** Every value must be one the tool wrote to that key; returns how many keys hold a value. */
function checkValue(value: string, keyIndex: number, r: Run): void {
  const tag = parseValueTag(value, r.cfg.valueBytes);
  if (tag === null) throw new Error(`key ${keyIndex}: ${JSON.stringify(value)} is not a value the tool writes`);
  expect(tag.keyIndex).toBe(keyIndex);
  expect(tag.connection).toBeLessThan(r.cfg.connections);
  expect(tag.seq).toBeLessThan(r.result.counts.writesIssued[tag.connection] ?? 0);
}

async function checkClusterHolds(r: Run): Promise<number> {
  let present = 0;
  for (let k = 0; k < r.cfg.keys; k++) {
    const path = `/v1/kv/${encodeURIComponent(`${r.cfg.keyPrefix}${k}`)}`;
    const answers = await Promise.all(
      urls.map(async (url) => {
        const response = await fetch(`${url}${path}`);
        return { status: response.status, etag: response.headers.get("etag"), body: await response.text() };
      }),
    );
    // The tool waited for its last requests, so the replicas agree (same timestamp, same value).
    for (const a of answers)
      expect(`${a.status} ${a.etag} ${a.status === 200 ? a.body : ""}`).toBe(
        `${answers[0]!.status} ${answers[0]!.etag} ${answers[0]!.status === 200 ? answers[0]!.body : ""}`,
      );
    const a = answers[0]!;
    expect([200, 404]).toContain(a.status);
    if (a.status === 200) {
      present++;
      checkValue(a.body, k, r);
    }
  }
  return present;
}

describe("hermes-kv bench --endpoints against a local 3-replica cluster", () => {
  test("reads, writes and CAS over 3 endpoints, 2 Worker threads: summary, statuses, and the data", async () => {
    const r = await run([
      "--endpoints",
      urls.join(","),
      "-c",
      "12",
      "-t",
      "2",
      "-k",
      "40",
      "--key-prefix",
      "hb-mix-",
      "--read-pct",
      "50",
      "--cas-pct",
      "25",
      "-d",
      "1",
      "--warmup",
      "0.2",
      "--fill",
      "--seed",
      "7",
    ]);
    const statuses = checkReport(r, ["200", "404", "412"]);
    // Filled first, never deleted: no read finds a key absent.
    expect(statuses["404"] ?? 0).toBe(0);
    const c = r.result.counts;
    expect(c.filled).toBe(40);
    expect(c.fillErrors).toBe(0);
    expect(c.reads).toBeGreaterThan(0);
    expect(c.writes).toBeGreaterThan(0);
    expect(c.cas).toBeGreaterThan(0);
    expect(statuses["412"] ?? 0).toBe(c.casFailed);
    // Every connection wrote (its fill share at least), and the per-endpoint spread is round-robin.
    expect(Object.keys(c.writesIssued).length).toBe(12);
    expect(await checkClusterHolds(r)).toBe(40);
  });

  test("blind writes without a fill: keys never written read as absent, the others hold the tool's values", async () => {
    const r = await run([
      "--endpoints",
      urls.join(","),
      "-c",
      "6",
      "-k",
      "2000",
      "--key-prefix",
      "hb-sparse-",
      "--read-pct",
      "50",
      "-d",
      "1",
      "--warmup",
      "0",
      "--seed",
      "11",
    ]);
    checkReport(r, ["200", "404"]);
    expect(r.result.counts.readsAbsent).toBeGreaterThan(0);
    const present = await checkClusterHolds({ ...r, cfg: { ...r.cfg, keys: 300 } });
    expect(present).toBeGreaterThan(0);
  });

  test("--batch 4 uses POST /v1/batch when the server has it", async () => {
    const probe = await fetch(`${urls[0]}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"ops":[]}',
    });
    if (probe.status === 404) {
      // This tree has no batch endpoint yet: the tool must refuse at once (see the next test).
      await expect(run(["--endpoints", urls[0]!, "--batch", "4", "-d", "1"])).rejects.toThrow(
        /404 to POST \/v1\/batch/,
      );
      return;
    }
    const r = await run([
      "--endpoints",
      urls.join(","),
      "-c",
      "6",
      "-k",
      "30",
      "--key-prefix",
      "hb-batch-",
      "--batch",
      "4",
      "--read-pct",
      "50",
      "--cas-pct",
      "20",
      "-d",
      "1",
      "--warmup",
      "0",
      "--fill",
      "--seed",
      "3",
    ]);
    checkReport(r, ["200"]);
    const c = r.result.counts;
    expect(c.ops).toBe(c.requests * 4);
    checkOpStatuses(r);
    expect(await checkClusterHolds(r)).toBe(30);
  });
});

describe("binary batches", () => {
  test("--batch 4 --batch-format binary: reads, writes and CAS; every key holds a value the tool wrote", async () => {
    const r = await run([
      "--endpoints",
      urls.join(","),
      "-c",
      "6",
      "-k",
      "30",
      "--key-prefix",
      "hb-binary-",
      "--batch",
      "4",
      "--batch-format",
      "binary",
      "--read-pct",
      "50",
      "--cas-pct",
      "20",
      "-d",
      "1",
      "--warmup",
      "0",
      "--fill",
      "--seed",
      "5",
    ]);
    checkReport(r, ["200"]);
    const c = r.result.counts;
    expect(c.ops).toBe(c.requests * 4);
    expect(c.cas).toBeGreaterThan(0);
    expect(c.writes).toBeGreaterThan(0);
    checkOpStatuses(r);
    expect(await checkClusterHolds(r)).toBe(30);
  });
});

describe("failures the tool reports instead of running", () => {
  test("--batch above 1 against a server without POST /v1/batch ends with a clear message", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) =>
        new URL(request.url).pathname === "/v1/batch"
          ? new Response('{"error":{"code":"unknown_route"}}', { status: 404 })
          : new Response("x"),
    });
    try {
      const cfg = await parseHttpBenchArgs([
        "--endpoints",
        `http://127.0.0.1:${server.port}`,
        "--batch",
        "8",
        "-d",
        "1",
      ]);
      const error = await runHttpBench(cfg, () => {}).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FatalError);
      expect(String(error)).toContain("answered 404 to POST /v1/batch");
      expect(String(error)).toContain("--batch 1");
    } finally {
      server.stop(true);
    }
  });

  test("a server that closes the connection after every answer: the tool reconnects, with no error", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response("x", { headers: { connection: "close" } }),
    });
    try {
      const cfg = await parseHttpBenchArgs([
        "--endpoints",
        `http://127.0.0.1:${server.port}`,
        "-c",
        "4",
        "-d",
        "0.5",
        "--warmup",
        "0",
        "--read-pct",
        "100",
      ]);
      const result = await runHttpBench(cfg, () => {});
      expect(result.counts.requests).toBeGreaterThan(0);
      expect(result.counts.errors).toBe(0);
      expect(Object.keys(result.counts.statuses)).toEqual(["200"]);
    } finally {
      server.stop(true);
    }
  });

  test("an endpoint nobody listens on", async () => {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    const cfg = await parseHttpBenchArgs(["--endpoints", `http://127.0.0.1:${port}`, "-d", "1"]);
    await expect(runHttpBench(cfg, () => {})).rejects.toThrow(/cannot reach/);
  });

  test("flag checks", async () => {
    const base = ["--endpoints", "http://127.0.0.1:1"];
    for (const argv of [
      [],
      ["--endpoints", "ftp://x"],
      ["--endpoints", "http://127.0.0.1:1/v1"],
      [...base, "--read-pct", "80", "--cas-pct", "30"],
      [...base, "--value-bytes", "4"],
      [...base, "--target", "etcd", "--batch", "2"],
      [...base, "--target", "redis"],
      [...base, "--cacert", "/nonexistent"],
      [...base, "-t", "4", "-c", "2"],
      [...base, "-d", "0"],
      [...base, "--batch", "8", "--batch-format", "xml"],
      [...base, "--batch-format", "binary"],
    ]) {
      await expect(parseHttpBenchArgs(argv)).rejects.toBeInstanceOf(UsageError);
    }
    const cfg = await parseHttpBenchArgs([...base, "-d", "1.5", "--token", "abc"]);
    expect(cfg.seconds).toBe(1.5);
    expect(cfg.connections).toBe(48);
    expect(cfg.token).toBe("abc");
    expect(cfg.batchFormat).toBe("json");
    expect((await parseHttpBenchArgs([...base, "--batch", "8", "--batch-format", "binary"])).batchFormat).toBe(
      "binary",
    );
  });
});

describe.skipIf(Bun.which("openssl") === null)(
  "--cacert and --token are passed through (the server side of both comes later)",
  () => {
    let dir: string;
    let server: ReturnType<typeof Bun.serve>;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "hermes-bench-tls-"));
      const made = Bun.spawnSync(
        [
          "openssl",
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ],
        { stdout: "ignore", stderr: "pipe" },
      );
      if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr.toString()}`);
      server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") },
        fetch: (request) =>
          new Response("v", { status: request.headers.get("authorization") === "Bearer t0ken" ? 200 : 401 }),
      });
    });
    afterAll(() => {
      server?.stop(true);
      rmSync(dir, { recursive: true, force: true });
    });

    for (const client of ["raw", "fetch"]) {
      test(`${client} client: https with the CA and the bearer token`, async () => {
        const cfg = await parseHttpBenchArgs([
          "--endpoints",
          `https://127.0.0.1:${server.port}`,
          "--cacert",
          join(dir, "cert.pem"),
          "--token",
          "t0ken",
          "--client",
          client,
          "-c",
          "2",
          "-d",
          "0.3",
          "--warmup",
          "0",
          "--read-pct",
          "100",
        ]);
        const result = await runHttpBench(cfg, () => {});
        expect(result.counts.requests).toBeGreaterThan(0);
        expect(Object.keys(result.counts.statuses)).toEqual(["200"]);
        expect(result.counts.errors).toBe(0);
      });
    }

    test("without the CA the certificate is refused", async () => {
      const cfg = await parseHttpBenchArgs(["--endpoints", `https://127.0.0.1:${server.port}`, "-d", "0.3"]);
      await expect(runHttpBench(cfg, () => {})).rejects.toThrow(/TLS handshake .* failed/);
    });
  },
);

describe.skipIf(!etcdAvailable())("--target etcd against a real etcd", () => {
  let etcd: EtcdServer;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.cleanup();
  });

  test("range / put / txn: summary, statuses, and every key holds a value the tool wrote to it", async () => {
    const r = await run([
      "--target",
      "etcd",
      "--endpoints",
      etcd.clientUrl,
      "-c",
      "8",
      "-k",
      "30",
      "--key-prefix",
      "hb-etcd-",
      "--read-pct",
      "50",
      "--cas-pct",
      "25",
      "-d",
      "1",
      "--warmup",
      "0",
      "--fill",
      "--seed",
      "5",
    ]);
    checkReport(r, ["200"]);
    const c = r.result.counts;
    expect(c.filled).toBe(30);
    expect(c.cas).toBeGreaterThan(0);
    expect(c.readsAbsent).toBe(0);
    for (let k = 0; k < 30; k++) {
      const response = await fetch(`${etcd.clientUrl}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: btoa(`hb-etcd-${k}`) }),
      });
      const body = (await response.json()) as { kvs?: { value: string }[] };
      expect(body.kvs?.length).toBe(1);
      checkValue(atob(body.kvs![0]!.value), k, r);
    }
  });
});

describe("pieces", () => {
  test("value tags round-trip and are unique per (key, connection, sequence)", () => {
    const value = valueTag(9999, 47, 123456).padEnd(32, "x");
    expect(parseValueTag(value, 32)).toEqual({ keyIndex: 9999, connection: 47, seq: 123456 });
    expect(parseValueTag(value, 31)).toBeNull();
    expect(parseValueTag("hello", 5)).toBeNull();
  });

  test("response parser: Content-Length, chunked, split arrival, ETag in any case, keep-alive rest", () => {
    const one = Buffer.from(
      'HTTP/1.1 200 OK\r\ncontent-type: x\r\nETAG: "3.1"\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404',
    );
    const parsed = parseResponse(one);
    if (parsed === null || typeof parsed === "string") throw new Error(String(parsed));
    expect(parsed.answer.status).toBe(200);
    expect(parsed.answer.etag).toBe('"3.1"');
    expect(parsed.answer.text()).toBe("hello");
    expect(parsed.rest?.toString()).toBe("HTTP/1.1 404");
    expect(parseResponse(one.subarray(0, 40))).toBeNull();
    expect(parseResponse(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"))).toBeNull();
    const chunked = Buffer.from(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    const c = parseResponse(chunked);
    if (c === null || typeof c === "string") throw new Error(String(c));
    expect(c.answer.text()).toBe("abcde");
    expect(c.answer.etag).toBeNull();
    expect(c.rest).toBeNull();
    expect(parseResponse(chunked.subarray(0, chunked.length - 3))).toBeNull();
    expect(typeof parseResponse(Buffer.from("SSH-2.0-x\r\n\r\n"))).toBe("string");
    const close = parseResponse(Buffer.from("HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
    if (close === null || typeof close === "string") throw new Error(String(close));
    expect(close.close).toBe(true);
    expect(close.answer.status).toBe(503);
  });

  test("latency histogram: buckets ordered, under 1 % wide, percentiles", () => {
    let previous = -1;
    for (const us of [0, 1, 2047, 2048, 2049, 4095, 4096, 1e5, 123_456, 9e6, 2 ** 31 - 1]) {
      const b = bucketOfUs(us);
      expect(b).toBeGreaterThanOrEqual(previous);
      expect(b).toBeLessThan(histogramBuckets);
      expect(bucketLowUs(b)).toBeLessThanOrEqual(us);
      expect(us - bucketLowUs(b)).toBeLessThanOrEqual(Math.max(0, us * 0.008));
      previous = b;
    }
    const h = newHistogram();
    for (let us = 1; us <= 100; us++) h[bucketOfUs(us)]!++;
    expect(percentileOfHistogram(h, 0.5)).toBe(50);
    expect(percentileOfHistogram(h, 0.99)).toBe(99);
    expect(percentileOfHistogram(newHistogram(), 0.5)).toBe(0);
  });

  test("summary line round-trip", () => {
    expect(parseSummaryLine("throughput_reqs=1234.5 p50_us=100 p99_us=900 errors=2")).toEqual({
      throughputReqs: 1234.5,
      p50Us: 100,
      p99Us: 900,
      errors: 2,
    });
    expect(parseSummaryLine("done: x")).toBeNull();
    expect(parseStatusesLine("statuses: 200=5 412=1 net_error=2")).toEqual({ "200": 5, "412": 1, net_error: 2 });
  });
});
