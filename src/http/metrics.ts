// The HTTP layer's own metrics: requests by route and status, request durations, requests in flight.
// Labels come from fixed sets (route names, status codes), never from keys, so the number of series
// is bounded. Counters live in pre-allocated typed arrays: recording allocates nothing.
//
// Every shard worker of a node serves HTTP, each with its own HttpMetrics, whose counters live in a
// SharedArrayBuffer with one writer (that thread). A scrape may land on any of them, so render()
// sums the counters of every thread it was told about (`shareWith`), and lists how many requests
// each thread answered.

import type { Context } from "hono";

export const Route = {
  kvGet: 0,
  kvPut: 1,
  kvDelete: 2,
  kvIncr: 3,
  status: 4,
  health: 5,
  metrics: 6,
  /** No route matched (404 unknown_route) or the method is not allowed (405). */
  other: 7,
  /** POST /v1/batch, counted once per request (its ops: hermes_http_batch_ops_total). */
  batch: 8,
  /** GET /v1/kv?prefix= (a listing) and GET /v1/watch (counted when the stream's head is sent). */
  kvList: 9,
  watch: 10,
} as const;

export type RouteId = (typeof Route)[keyof typeof Route];

const routeNames = [
  "kv_get",
  "kv_put",
  "kv_delete",
  "kv_incr",
  "status",
  "health",
  "metrics",
  "other",
  "batch",
  "kv_list",
  "watch",
] as const;
const routeCount = routeNames.length;

/** The ops of a batch, by the name a client sends in `"op"`; an index into batchOpNames. */
export const batchOpNames = ["get", "put", "cas", "create", "delete", "incr"] as const;
export type BatchOpName = (typeof batchOpNames)[number];
const batchOpCount = batchOpNames.length;

/** HTTP status codes are three digits; anything else is recorded as 0 (and would be a bug). */
const statusCodesMax = 600;

/** Upper bounds in seconds, Prometheus' defaults shifted down: a local KV op is sub-millisecond. */
const durationBucketsS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const bucketCount = durationBucketsS.length;

const requestsWords = routeCount * statusCodesMax;
const bucketsWords = routeCount * (bucketCount + 1);
const batchOpsWords = batchOpCount * statusCodesMax;
/** requests[route * statusCodesMax + status] */
const requestsAt = 0;
/** Non-cumulative duration bucket counts; the last slot of each route is +Inf. */
const bucketsAt = requestsAt + requestsWords;
const sumAt = bucketsAt + bucketsWords;
const countAt = sumAt + routeCount;
/** batchOps[op * statusCodesMax + status]: each op of a batch, by the status it was answered. */
const batchOpsAt = countAt + routeCount;
const inFlightAt = batchOpsAt + batchOpsWords;
/** Size of the SharedArrayBuffer behind one thread's HTTP metrics. */
export const httpMetricsBytes = (inFlightAt + 1) * 8;

export class HttpMetrics {
  /** The counters, shared so that the other threads of the node can sum them. */
  readonly buffer: SharedArrayBuffer;
  readonly #words: Float64Array;
  /** Every thread's counters (this one's included), in shard order; only this one's by default. */
  #all: Float64Array[];

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(httpMetricsBytes)) {
    if (buffer.byteLength !== httpMetricsBytes)
      throw new RangeError(`HTTP metrics buffer of ${buffer.byteLength} bytes, expected ${httpMetricsBytes}`);
    this.buffer = buffer;
    this.#words = new Float64Array(buffer);
    this.#all = [this.#words];
  }

  /**
   * Render the sum over these threads' counters: the buffers of every HTTP-serving thread of the
   * node, this one's at `ownIndex` (a buffer that went through postMessage is another object).
   */
  shareWith(buffers: readonly SharedArrayBuffer[], ownIndex: number): void {
    if (buffers[ownIndex]?.byteLength !== httpMetricsBytes)
      throw new RangeError("shareWith: no metrics buffer at ownIndex");
    this.#all = buffers.map((b, i) => (i === ownIndex ? this.#words : new HttpMetrics(b).#words));
  }

  begin(): void {
    this.#words[inFlightAt]! += 1;
  }

  /** Count one finished request; `durationMs` from performance.now() differences. */
  end(route: RouteId, status: number, durationMs: number): void {
    const w = this.#words;
    w[inFlightAt]! -= 1;
    const code = Number.isInteger(status) && status >= 100 && status < statusCodesMax ? status : 0;
    w[requestsAt + route * statusCodesMax + code]! += 1;
    const durationS = durationMs / 1000;
    let bucket = 0;
    while (bucket < bucketCount && durationS > durationBucketsS[bucket]!) bucket += 1;
    w[bucketsAt + route * (bucketCount + 1) + bucket]! += 1;
    w[sumAt + route]! += durationS;
    w[countAt + route]! += 1;
  }

  /** Count one op of a batch (`op` indexes batchOpNames), answered with `status` inside the batch. */
  batchOp(op: number, status: number): void {
    const code = Number.isInteger(status) && status >= 100 && status < statusCodesMax ? status : 0;
    this.#words[batchOpsAt + op * statusCodesMax + code]! += 1;
  }

  /** Batch ops counted for an op and status over every thread (for tests). */
  batchOps(op: number, status: number): number {
    return this.#sum(batchOpsAt + op * statusCodesMax + status);
  }

  /** Requests counted for a route and status over every thread (for tests and the status page). */
  requests(route: RouteId, status: number): number {
    return this.#sum(requestsAt + route * statusCodesMax + status);
  }

  #sum(at: number): number {
    let total = 0;
    for (const words of this.#all) total += words[at]!;
    return total;
  }

  /** Prometheus text exposition format 0.0.4. Only non-zero request series are listed. */
  render(): string {
    const lines: string[] = [
      "# HELP hermes_http_requests_total HTTP requests answered, by route and status code.",
      "# TYPE hermes_http_requests_total counter",
    ];
    for (let route = 0; route < routeCount; route += 1) {
      for (let code = 0; code < statusCodesMax; code += 1) {
        const count = this.#sum(requestsAt + route * statusCodesMax + code);
        if (count > 0) lines.push(`hermes_http_requests_total{route="${routeNames[route]}",code="${code}"} ${count}`);
      }
    }
    lines.push(
      "# HELP hermes_http_batch_ops_total Ops inside POST /v1/batch requests, by op and the status each was answered.",
      "# TYPE hermes_http_batch_ops_total counter",
    );
    for (let op = 0; op < batchOpCount; op += 1) {
      for (let code = 0; code < statusCodesMax; code += 1) {
        const count = this.#sum(batchOpsAt + op * statusCodesMax + code);
        if (count > 0) lines.push(`hermes_http_batch_ops_total{op="${batchOpNames[op]}",code="${code}"} ${count}`);
      }
    }
    lines.push(
      "# HELP hermes_http_request_duration_seconds Time from routing a request to its response being ready.",
      "# TYPE hermes_http_request_duration_seconds histogram",
    );
    for (let route = 0; route < routeCount; route += 1) {
      // Routes never requested are left out: 17 zero lines each would bury the useful series.
      const count = this.#sum(countAt + route);
      if (count === 0) continue;
      const name = routeNames[route];
      let cumulative = 0;
      for (let bucket = 0; bucket <= bucketCount; bucket += 1) {
        cumulative += this.#sum(bucketsAt + route * (bucketCount + 1) + bucket);
        const le = bucket < bucketCount ? String(durationBucketsS[bucket]) : "+Inf";
        lines.push(`hermes_http_request_duration_seconds_bucket{route="${name}",le="${le}"} ${cumulative}`);
      }
      lines.push(`hermes_http_request_duration_seconds_sum{route="${name}"} ${this.#sum(sumAt + route)}`);
      lines.push(`hermes_http_request_duration_seconds_count{route="${name}"} ${count}`);
    }
    lines.push(
      "# HELP hermes_http_requests_in_flight HTTP requests received and not yet answered.",
      "# TYPE hermes_http_requests_in_flight gauge",
      `hermes_http_requests_in_flight ${this.#sum(inFlightAt)}`,
    );
    if (this.#all.length > 1) {
      lines.push(
        "# HELP hermes_http_requests_by_shard_total HTTP requests answered by each shard worker (all of them serve the node's HTTP port).",
        "# TYPE hermes_http_requests_by_shard_total counter",
      );
      this.#all.forEach((words, shard) => {
        let answered = 0;
        for (let route = 0; route < routeCount; route += 1) answered += words[countAt + route]!;
        lines.push(`hermes_http_requests_by_shard_total{shard="${shard}"} ${answered}`);
      });
    }
    return `${lines.join("\n")}\n`;
  }
}

export type Handler = (request: Request) => Promise<Response> | Response;

/**
 * Wrap a handler so that every answer, thrown errors included, is counted under its route.
 * Not an async function: an async wrapper would add a promise hop to every request.
 */
export function counted(metrics: HttpMetrics, route: RouteId, handler: Handler) {
  return (c: Context): Promise<Response> | Response => {
    const startMs = performance.now();
    metrics.begin();
    let result: Promise<Response> | Response;
    try {
      result = handler(c.req.raw);
    } catch (error) {
      metrics.end(route, 500, performance.now() - startMs);
      throw error;
    }
    if (result instanceof Response) {
      metrics.end(route, result.status, performance.now() - startMs);
      return result;
    }
    return result.then(
      (response) => {
        metrics.end(route, response.status, performance.now() - startMs);
        return response;
      },
      (error: unknown) => {
        metrics.end(route, 500, performance.now() - startMs);
        throw error;
      },
    );
  };
}
