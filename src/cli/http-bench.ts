// `hermes-kv bench --endpoints URL[,URL…]`: a closed-loop HTTP load generator for any running
// cluster (hermes-kv nodes, or etcd's v3 JSON gateway with --target etcd), in the spirit of
// redis-benchmark and etcd's `benchmark` tool. bench-command.ts dispatches here when --endpoints is
// given. The load itself is http-bench-load.ts (one thread's connections; several threads run in
// Bun Workers), the numbers and closing lines http-bench-report.ts, the sockets http-bench-client.ts.

import { FatalError } from "./fatal-error.ts";
import { tokenEnv } from "./client-credentials.ts";
import { UsageError, expectPositionals, parseArgs, parseIntegerFlag } from "./args.ts";
import {
  type ClientKind,
  type Endpoint,
  type HttpRequest,
  type TlsFiles,
  openConnection,
  parseEndpoint,
} from "./http-bench-client.ts";
import { batchBinaryMagic } from "../http/batch-binary.ts";
import { encodeBinaryBatch } from "../http/batch-binary-client.ts";
import {
  type LoadConfig,
  Phase,
  type Target,
  fillDoneIndex,
  progressIndex,
  runLoadThread,
  batchContentType,
  sharedInts,
  valueBytesMin,
} from "./http-bench-load.ts";
import {
  type HttpBenchResult,
  type LoadCounts,
  mergeCounts,
  newCounts,
  reportLines,
  summarize,
} from "./http-bench-report.ts";

export const httpBenchUsage = `usage: hermes-kv bench --endpoints URL[,URL…] [flags]

Closed-loop HTTP load against running servers: every connection sends one request, waits for the
answer and sends the next (keep-alive). Connections are spread round-robin over the endpoints.
Prints req/s every second (total and per endpoint), then the HTTP status counts and one line:
throughput_reqs=… p50_us=… p99_us=… errors=…   (latency of HTTP requests, in microseconds),
after a line with reads' and updates' latency apart (--batch 1): per_kind: read_p50_us=… read_p99_us=…
write_p50_us=… write_p99_us=…

  --endpoints URLS   comma-separated http:// or https:// base URLs (required)
  --target T         hermes (default): GET/PUT /v1/kv/{key}, CAS = PUT If-Match;
                     etcd: the v3 JSON gateway, POST /v3/kv/range (linearizable), /v3/kv/put,
                     CAS = /v3/kv/txn on mod_revision
  -c N               connections, each with one request outstanding (default 48)
  -t, --threads N    load threads; above 1 they are Bun Workers (default 1: one thread keeps up
                     with wrk on a 2-core machine)
  --read-pct P       percent of ops that are reads (default 95)
  --cas-pct P        percent of ops that are CAS (default 0); the rest are blind writes. A CAS
                     uses the ETag (etcd: mod_revision) this connection last saw for the key, or
                     create-if-absent when it saw none; a lost CAS (412) is not an error
  -k N               keys, chosen uniformly (default 10000)
  -v, --value-bytes N  value size (default 32). Every written value is unique: it starts with
                     "<key>.<connection>.<sequence>." in base 36, padded with 'x'
  --key-prefix S     key names are S followed by the key's index (default "bench-")
  --batch N          ops per request (default 1). Above 1: POST /v1/batch with N ops (get, put,
                     cas, create; hermes only); a server without /v1/batch (404) ends the run
                     at once. Latency and throughput_reqs count requests; ops_per_s counts ops
  --batch-format F   json (default) or binary (application/vnd.hermes-kv.batch, README
                     "Batches"): the format of the batches of --batch above 1
  -d S               measured seconds (default 10; decimals allowed)
  --warmup S         seconds of load before measuring (default 1)
  --fill             write every key once before the warm-up, so that reads find values
  --seed N           seed of the key and op choices (default: from the clock)
  --timeout-ms N     a request with no answer after N ms is an error (default 10000)
  --client K         raw (default: our own HTTP/1.1 sockets) or fetch (Bun's fetch, keep-alive)
  --cacert F, --cert F, --key F   TLS: CA bundle, client certificate and key (PEM files), for
                     https:// endpoints
  --token T          sends "Authorization: Bearer T" with every request (default: $HERMES_KV_TOKEN)
  -h, --help         this help

Errors are ops that got no answer (net_error, timeout) or a status outside their contract
(hermes: a read other than 200/404, a write other than 200, a CAS other than 200/412; etcd:
anything but 200). Exit code 0 when the run completed (even with errors), 1 when it could not run.`;

const specs = {
  endpoints: { kind: "string" },
  target: { kind: "string" },
  c: { kind: "string", short: "c" },
  threads: { kind: "string", short: "t" },
  "read-pct": { kind: "string" },
  "cas-pct": { kind: "string" },
  k: { kind: "string", short: "k" },
  "value-bytes": { kind: "string", short: "v" },
  "key-prefix": { kind: "string" },
  batch: { kind: "string" },
  "batch-format": { kind: "string" },
  d: { kind: "string", short: "d" },
  warmup: { kind: "string" },
  fill: { kind: "boolean" },
  seed: { kind: "string" },
  "timeout-ms": { kind: "string" },
  client: { kind: "string" },
  cacert: { kind: "string" },
  cert: { kind: "string" },
  key: { kind: "string" },
  token: { kind: "string" },
  help: { kind: "boolean", short: "h" },
} as const;

export interface HttpBenchConfig extends LoadConfig {
  seconds: number;
  warmupSeconds: number;
}

/** Bounds of the flags, named. */
const connectionsMax = 4096;
const threadsMax = 64;
const keysMax = 100_000_000;
const valueBytesMax = 1024 * 1024;
const batchMax = 1024;
const secondsMax = 86_400;
const keyPrefixBytesMax = 512;
/** How long the fill phase may take before the run gives up. */
const fillTimeoutMs = 600_000;
/** Extra time allowed, beyond --timeout-ms, for the threads to hand in their counts after stop. */
const stopGraceMs = 5000;

function parseDecimal(flag: string, text: string, min: number, max: number): number {
  if (!/^[0-9]{1,9}(\.[0-9]{1,6})?$/.test(text))
    throw new UsageError(`${flag} must be a number, got ${JSON.stringify(text)}`);
  const value = Number(text);
  if (value < min || value > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${text}`);
  return value;
}

async function readPem(flag: string, path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UsageError(`${flag}: no such file: ${path}`);
  return file.text();
}

export async function parseHttpBenchArgs(argv: readonly string[]): Promise<HttpBenchConfig> {
  const { flags, positionals } = parseArgs(argv, specs);
  expectPositionals(positionals, 0, 0, "no arguments besides flags");
  if (flags.endpoints === undefined) throw new UsageError("--endpoints is required");
  const endpoints: Endpoint[] = [];
  for (const text of flags.endpoints.split(",")) {
    const e = parseEndpoint(text.trim());
    if (typeof e === "string") throw new UsageError(`--endpoints: ${e}`);
    endpoints.push(e);
  }
  const target = (flags.target ?? "hermes") as Target;
  if (target !== "hermes" && target !== "etcd")
    throw new UsageError(`--target must be hermes or etcd, got ${JSON.stringify(flags.target)}`);
  const client = (flags.client ?? "raw") as ClientKind;
  if (client !== "raw" && client !== "fetch")
    throw new UsageError(`--client must be raw or fetch, got ${JSON.stringify(flags.client)}`);
  const connections = flags.c === undefined ? 48 : parseIntegerFlag("-c", flags.c, 1, connectionsMax);
  const threads = flags.threads === undefined ? 1 : parseIntegerFlag("--threads", flags.threads, 1, threadsMax);
  if (threads > connections) throw new UsageError(`--threads (${threads}) cannot exceed -c (${connections})`);
  const readPct = flags["read-pct"] === undefined ? 95 : parseDecimal("--read-pct", flags["read-pct"], 0, 100);
  const casPct = flags["cas-pct"] === undefined ? 0 : parseDecimal("--cas-pct", flags["cas-pct"], 0, 100);
  if (readPct + casPct > 100) throw new UsageError(`--read-pct + --cas-pct is ${readPct + casPct}, more than 100`);
  const keys = flags.k === undefined ? 10_000 : parseIntegerFlag("-k", flags.k, 1, keysMax);
  const valueBytes =
    flags["value-bytes"] === undefined ? 32 : parseIntegerFlag("--value-bytes", flags["value-bytes"], 1, valueBytesMax);
  const minimum = valueBytesMin(keys, connections);
  if (valueBytes < minimum) {
    throw new UsageError(
      `--value-bytes must be at least ${minimum} with ${keys} keys and ${connections} connections: every value carries a unique tag`,
    );
  }
  const batch = flags.batch === undefined ? 1 : parseIntegerFlag("--batch", flags.batch, 1, batchMax);
  if (batch > 1 && target !== "hermes")
    throw new UsageError("--batch above 1 is for --target hermes (POST /v1/batch) only");
  const batchFormat = flags["batch-format"] ?? "json";
  if (batchFormat !== "json" && batchFormat !== "binary")
    throw new UsageError(`--batch-format must be json or binary, got ${JSON.stringify(batchFormat)}`);
  if (flags["batch-format"] !== undefined && batch === 1)
    throw new UsageError("--batch-format is for batches: give --batch above 1 too");
  const keyPrefix = flags["key-prefix"] ?? "bench-";
  if (Buffer.byteLength(keyPrefix) > keyPrefixBytesMax)
    throw new UsageError(`--key-prefix is longer than ${keyPrefixBytesMax} bytes`);
  const seconds = flags.d === undefined ? 10 : parseDecimal("-d", flags.d, 0.1, secondsMax);
  const warmupSeconds = flags.warmup === undefined ? 1 : parseDecimal("--warmup", flags.warmup, 0, secondsMax);
  const seed = flags.seed === undefined ? Date.now() >>> 0 : parseIntegerFlag("--seed", flags.seed, 0, 2 ** 32 - 1);
  const timeoutMs =
    flags["timeout-ms"] === undefined ? 10_000 : parseIntegerFlag("--timeout-ms", flags["timeout-ms"], 1, 3_600_000);
  const tlsGiven = flags.cacert !== undefined || flags.cert !== undefined || flags.key !== undefined;
  if (tlsGiven && !endpoints.every((e) => e.tls)) throw new UsageError("--cacert/--cert/--key need https:// endpoints");
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError("--cert and --key go together");
  let tls: TlsFiles | null = null;
  if (tlsGiven) {
    tls = {};
    const ca = await readPem("--cacert", flags.cacert);
    const cert = await readPem("--cert", flags.cert);
    const key = await readPem("--key", flags.key);
    if (ca !== undefined) tls.ca = ca;
    if (cert !== undefined) tls.cert = cert;
    if (key !== undefined) tls.key = key;
  }
  const token = flags.token ?? (process.env[tokenEnv] || null);
  if (token !== null && !/^[\x21-\x7e]+$/.test(token))
    throw new UsageError("--token must be printable ASCII with no spaces");
  return {
    target,
    endpoints,
    connections,
    threads,
    readPct,
    casPct,
    keys,
    valueBytes,
    batch,
    batchFormat,
    keyPrefix,
    fill: flags.fill,
    seed,
    timeoutMs,
    client,
    tls,
    token,
    seconds,
    warmupSeconds,
  };
}

/**
 * One request to every endpoint before the run, so that an unreachable endpoint, or a server
 * without POST /v1/batch, ends the run with a clear message instead of a run full of errors.
 */
async function probe(cfg: HttpBenchConfig): Promise<void> {
  const key = `${cfg.keyPrefix}0`;
  const common: [string, string][] = [];
  if (cfg.token !== null) common.push(["Authorization", `Bearer ${cfg.token}`]);
  if (cfg.target === "etcd" || cfg.batch > 1) common.push(["Content-Type", batchContentType(cfg)]);
  for (const endpoint of cfg.endpoints) {
    const request: HttpRequest =
      cfg.target === "etcd"
        ? { method: "POST", path: "/v3/kv/range", body: `{"key":"${btoa(key)}"}`, headers: null }
        : cfg.batch > 1
          ? {
              method: "POST",
              path: "/v1/batch",
              body:
                cfg.batchFormat === "binary"
                  ? encodeBinaryBatch([{ op: "get", key }])
                  : `{"ops":[{"op":"get","key":${JSON.stringify(key)}}]}`,
              headers: null,
            }
          : { method: "GET", path: `/v1/kv/${encodeURIComponent(key)}`, body: null, headers: null };
    let status: number;
    let body: string;
    let binaryAnswer = false;
    try {
      const conn = await openConnection(cfg.client, { endpoint, tls: cfg.tls, commonHeaders: common });
      const timer = setInterval(() => conn.checkTimeout(performance.now(), cfg.timeoutMs), 100);
      try {
        const answer = await conn.request(request);
        status = answer.status;
        body = new TextDecoder().decode(answer.body.subarray(0, 300));
        binaryAnswer = batchBinaryMagic.every((b, i) => answer.body[i] === b);
      } finally {
        clearInterval(timer);
        conn.close();
      }
    } catch (error) {
      throw new FatalError(
        `cannot reach ${endpoint.origin}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (cfg.batch > 1 && status === 404) {
      throw new FatalError(
        `${endpoint.origin} answered 404 to POST /v1/batch: this server has no batch endpoint. --batch above 1 needs a hermes-kv with POST /v1/batch; run with --batch 1`,
      );
    }
    if (cfg.batch > 1 && status !== 200)
      throw new FatalError(`${endpoint.origin} answered ${status} to a one-op POST /v1/batch: ${body}`);
    if (cfg.batchFormat === "binary" && cfg.batch > 1 && !binaryAnswer) {
      throw new FatalError(
        `${endpoint.origin} did not answer a binary POST /v1/batch in the binary format: ${body}; use --batch-format json`,
      );
    }
    if (cfg.target === "etcd" && status !== 200) {
      throw new FatalError(
        `${endpoint.origin} answered ${status} to POST /v3/kv/range: not an etcd v3 JSON gateway (etcd 3.4+)? ${body}`,
      );
    }
  }
}

/** Where the Worker's code is: next to this file, or in the compiled binary's tree (src/ is its root). */
function workerUrl(): URL {
  return import.meta.url.includes("$bunfs")
    ? new URL("./cli/http-bench-worker.ts", import.meta.url)
    : new URL("./http-bench-worker.ts", import.meta.url);
}

/** Runs thread `t`: on this thread for --threads 1, else in a Worker. */
function startThread(cfg: HttpBenchConfig, t: number, sab: SharedArrayBuffer, stop: () => void): Promise<LoadCounts> {
  if (cfg.threads === 1) {
    return runLoadThread(cfg, t, new Int32Array(sab)).catch((error) => {
      stop();
      throw error;
    });
  }
  return new Promise<LoadCounts>((resolve, reject) => {
    const worker = new Worker(workerUrl());
    const fail = (message: string): void => {
      worker.terminate();
      stop();
      reject(new FatalError(`load thread ${t}: ${message}`));
    };
    worker.onmessage = (event: MessageEvent<{ ok: true; counts: LoadCounts } | { ok: false; message: string }>) => {
      const m = event.data;
      if (m.ok) {
        worker.terminate();
        resolve(m.counts);
      } else fail(m.message);
    };
    worker.onerror = (event) => {
      const hint = /ModuleNotFound/.test(event.message)
        ? " (a compiled binary needs src/cli/http-bench-worker.ts as an extra entrypoint, see scripts/build.sh; or run with --threads 1)"
        : "";
      fail(`the worker failed: ${event.message}${hint}`);
    };
    worker.postMessage({ config: cfg, thread: t, shared: sab });
  });
}

function label(e: Endpoint): string {
  return e.host;
}

/** Runs the load and returns the result; every line it prints goes through `out`. */
export async function runHttpBench(cfg: HttpBenchConfig, out: (line: string) => void): Promise<HttpBenchResult> {
  await probe(cfg);
  const writePct = 100 - cfg.readPct - cfg.casPct;
  out(
    `bench: ${cfg.target} over HTTP, ${cfg.endpoints.length} endpoint(s), ${cfg.connections} connections, ${cfg.threads} thread(s), ${cfg.client} client; ` +
      `reads ${cfg.readPct}%, CAS ${cfg.casPct}%, writes ${+writePct.toFixed(6)}%; ${cfg.keys} keys "${cfg.keyPrefix}N", ${cfg.valueBytes} B values, batch ${cfg.batch}${cfg.batch > 1 ? ` (${cfg.batchFormat})` : ""}; ` +
      `${cfg.fill ? "fill, " : ""}${cfg.warmupSeconds} s warm-up, ${cfg.seconds} s measured; seed ${cfg.seed}`,
  );
  const endpoints = cfg.endpoints.length;
  const sab = new SharedArrayBuffer(sharedInts(cfg.threads, endpoints) * 4);
  const shared = new Int32Array(sab);
  let failed = false;
  const stop = (): void => {
    failed = true;
    Atomics.store(shared, 0, Phase.stop);
  };
  const threads = Array.from({ length: cfg.threads }, (_, t) => startThread(cfg, t, sab, stop));
  // A failure surfaces when the results are awaited; until then it only stops the phases.
  const results = Promise.all(threads);
  results.catch(() => {});

  try {
    if (cfg.fill) {
      const started = performance.now();
      for (;;) {
        let done = 0;
        for (let t = 0; t < cfg.threads; t++) done += Atomics.load(shared, fillDoneIndex(t));
        if (done === cfg.threads || failed) break;
        if (performance.now() - started > fillTimeoutMs) {
          stop();
          throw new FatalError(`the fill of ${cfg.keys} keys did not finish within ${fillTimeoutMs / 1000} s`);
        }
        await Bun.sleep(10);
      }
      out(`fill: ${cfg.keys} keys in ${((performance.now() - started) / 1000).toFixed(2)} s`);
    }

    const previous = new Int32Array(endpoints * 2);
    const sample = (): Int32Array => {
      const now = new Int32Array(endpoints * 2);
      for (let t = 0; t < cfg.threads; t++) {
        for (let e = 0; e < endpoints; e++) {
          const at = progressIndex(cfg.threads, endpoints, t, e);
          now[e * 2] = (now[e * 2]! + Atomics.load(shared, at)) | 0;
          now[e * 2 + 1] = (now[e * 2 + 1]! + Atomics.load(shared, at + 1)) | 0;
        }
      }
      return now;
    };
    /** Prints a progress line every second of a phase (and at its end); returns the phase's length. */
    const phase = async (name: string, seconds: number): Promise<number> => {
      const started = performance.now();
      let last = started;
      previous.set(sample());
      for (let tick = 1; !failed; tick++) {
        const due = Math.min(tick * 1000, seconds * 1000);
        await Bun.sleep(Math.max(0, started + due - performance.now()));
        const now = sample();
        const at = performance.now();
        const dt = (at - last) / 1000;
        last = at;
        let total = 0;
        let errors = 0;
        const parts: string[] = [];
        for (let e = 0; e < endpoints; e++) {
          const answered = (now[e * 2]! - previous[e * 2]!) >>> 0;
          total += answered;
          errors += (now[e * 2 + 1]! - previous[e * 2 + 1]!) >>> 0;
          parts.push(`${label(cfg.endpoints[e]!)} ${Math.round(answered / dt)}`);
        }
        previous.set(now);
        out(
          `[${name}${(due / 1000).toFixed(due % 1000 === 0 ? 0 : 1)}s] ${Math.round(total / dt)} req/s | ${parts.join(" | ")} | errors ${errors}`,
        );
        if (due >= seconds * 1000) break;
      }
      return (performance.now() - started) / 1000;
    };

    if (cfg.warmupSeconds > 0 && !failed) {
      Atomics.store(shared, 0, Phase.warmup);
      await phase("warmup ", cfg.warmupSeconds);
    }
    if (!failed) Atomics.store(shared, 0, Phase.measure);
    const started = performance.now();
    if (!failed) await phase("", cfg.seconds);
    Atomics.store(shared, 0, Phase.stop);
    const seconds = (performance.now() - started) / 1000;

    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new FatalError(`the load threads did not stop within ${cfg.timeoutMs + stopGraceMs} ms`)),
        cfg.timeoutMs + stopGraceMs,
      );
    });
    let perThread: LoadCounts[];
    try {
      perThread = await Promise.race([results, late]);
    } finally {
      clearTimeout(timer);
    }
    const counts = newCounts();
    for (const c of perThread) mergeCounts(counts, c);
    if (cfg.fill && counts.fillErrors > 0)
      out(`fill: ${counts.filled} keys written, ${counts.fillErrors} fill writes failed`);
    const result = summarize(
      counts,
      seconds,
      cfg.connections,
      cfg.endpoints.map((e) => e.origin),
    );
    for (const line of reportLines(result, cfg.batch)) out(line);
    return result;
  } finally {
    Atomics.store(shared, 0, Phase.stop);
  }
}

export async function runHttpBenchCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(httpBenchUsage);
    return 0;
  }
  const cfg = await parseHttpBenchArgs(argv);
  await runHttpBench(cfg, (line) => console.log(line));
  return 0;
}
