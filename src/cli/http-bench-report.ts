// The numbers of `hermes-kv bench --endpoints`: a latency histogram that threads can merge, the
// counters of one run, and the lines printed at the end. The last line is the one scripts parse:
//
//   throughput_reqs=41234.5 p50_us=1090 p99_us=3870 errors=0
//
// parseSummaryLine reads it back (bench/vs-etcd.ts, scripts/plots.ts and the tests use it).

/**
 * Log-linear latency buckets in microseconds, like HdrHistogram with 7 significant bits: 1 µs
 * resolution below histogramLinearUs, then 128 buckets per doubling (under 1 % error) up to 2^31 µs
 * (35 minutes). A bucket count fits a Uint32.
 */
export const histogramLinearUs = 2048;
const subBucketsLog2 = 7;
const subBuckets = 1 << subBucketsLog2;
const linearLog2 = 11; // log2(histogramLinearUs)
const topLog2 = 31;
export const histogramBuckets = histogramLinearUs + (topLog2 - linearLog2) * subBuckets;
const usMax = 2 ** topLog2 - 1;

export function bucketOfUs(us: number): number {
  const v = us <= 0 ? 0 : us >= usMax ? usMax : Math.floor(us);
  if (v < histogramLinearUs) return v;
  const log2 = 31 - Math.clz32(v);
  return histogramLinearUs + (log2 - linearLog2) * subBuckets + ((v >>> (log2 - subBucketsLog2)) & (subBuckets - 1));
}

/** The smallest latency (µs) that falls in `bucket`. */
export function bucketLowUs(bucket: number): number {
  if (bucket < histogramLinearUs) return bucket;
  const rest = bucket - histogramLinearUs;
  const log2 = linearLog2 + Math.floor(rest / subBuckets);
  return (subBuckets + (rest % subBuckets)) * 2 ** (log2 - subBucketsLog2);
}

export function newHistogram(): Uint32Array {
  return new Uint32Array(histogramBuckets);
}

/** The p-th percentile (0..1) in µs: the lower bound of the bucket holding that rank; 0 if empty. */
export function percentileOfHistogram(histogram: ArrayLike<number>, p: number): number {
  let total = 0;
  for (let i = 0; i < histogram.length; i++) total += histogram[i]!;
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(p * total));
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= rank) return bucketLowUs(i);
  }
  return bucketLowUs(histogram.length - 1);
}

/** What one thread of the load generator counted during the measured window (and a little more). */
export interface LoadCounts {
  /** HTTP responses received in the window, whatever their status. */
  requests: number;
  /** Key operations those requests carried (requests x batch size). */
  ops: number;
  reads: number;
  /** Reads that found no value (404; etcd: no kvs). */
  readsAbsent: number;
  writes: number;
  cas: number;
  /** CAS that lost (412; etcd: txn not succeeded): an expected outcome, not an error. */
  casFailed: number;
  /** Ops that failed: network error, time-out, or a status outside the op's contract. */
  errors: number;
  /** HTTP status of each request ("200", "404", …), plus "net_error" and "timeout" for requests with no answer. */
  statuses: Record<string, number>;
  /** Batches only: the status of each op inside the batch answers. */
  opStatuses: Record<string, number>;
  /** Latency of every request answered in the window. */
  histogram: Uint32Array;
  /** The same, of single-op reads and of single-op updates (writes, CAS) apart: --batch 1 only. */
  readHistogram: Uint32Array;
  writeHistogram: Uint32Array;
  /** Fill phase: keys written, and fill writes that failed. */
  filled: number;
  fillErrors: number;
  /** Per connection (global index): writes issued so far (the next value's sequence number). */
  writesIssued: Record<number, number>;
}

export function newCounts(): LoadCounts {
  return {
    requests: 0,
    ops: 0,
    reads: 0,
    readsAbsent: 0,
    writes: 0,
    cas: 0,
    casFailed: 0,
    errors: 0,
    statuses: {},
    opStatuses: {},
    histogram: newHistogram(),
    readHistogram: newHistogram(),
    writeHistogram: newHistogram(),
    filled: 0,
    fillErrors: 0,
    writesIssued: {},
  };
}

export function bump(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

/** Adds b into a (threads' counts into the run's). */
export function mergeCounts(a: LoadCounts, b: LoadCounts): void {
  a.requests += b.requests;
  a.ops += b.ops;
  a.reads += b.reads;
  a.readsAbsent += b.readsAbsent;
  a.writes += b.writes;
  a.cas += b.cas;
  a.casFailed += b.casFailed;
  a.errors += b.errors;
  a.filled += b.filled;
  a.fillErrors += b.fillErrors;
  for (const [k, v] of Object.entries(b.statuses)) bump(a.statuses, k, v);
  for (const [k, v] of Object.entries(b.opStatuses)) bump(a.opStatuses, k, v);
  for (let i = 0; i < a.histogram.length; i++) {
    a.histogram[i]! += b.histogram[i]!;
    a.readHistogram[i]! += b.readHistogram[i]!;
    a.writeHistogram[i]! += b.writeHistogram[i]!;
  }
  for (const [k, v] of Object.entries(b.writesIssued)) a.writesIssued[Number(k)] = v;
}

/** The result of one run, as printed and as returned to scripts and tests. */
export interface HttpBenchResult {
  counts: LoadCounts;
  seconds: number;
  connections: number;
  endpoints: string[];
  throughputReqs: number;
  opsPerSecond: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export function summarize(
  counts: LoadCounts,
  seconds: number,
  connections: number,
  endpoints: string[],
): HttpBenchResult {
  const h = counts.histogram;
  let maxBucket = 0;
  for (let i = h.length - 1; i >= 0; i--) {
    if (h[i]! > 0) {
      maxBucket = i;
      break;
    }
  }
  return {
    counts,
    seconds,
    connections,
    endpoints,
    throughputReqs: seconds > 0 ? counts.requests / seconds : 0,
    opsPerSecond: seconds > 0 ? counts.ops / seconds : 0,
    p50Us: percentileOfHistogram(h, 0.5),
    p90Us: percentileOfHistogram(h, 0.9),
    p99Us: percentileOfHistogram(h, 0.99),
    p999Us: percentileOfHistogram(h, 0.999),
    maxUs: bucketLowUs(maxBucket),
  };
}

function countsText(map: Record<string, number>): string {
  const entries = Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? "(none)" : entries.map(([k, v]) => `${k}=${v}`).join(" ");
}

/** The closing lines: details, status counts, then the summary line (always last). */
export function reportLines(r: HttpBenchResult, batch: number): string[] {
  const c = r.counts;
  const lines = [
    `done: ${c.requests} requests in ${r.seconds.toFixed(2)} s from ${r.connections} connections over ${r.endpoints.length} endpoint(s); ` +
      `ops ${c.ops}: reads ${c.reads} (absent ${c.readsAbsent}), writes ${c.writes}, CAS ${c.cas} (failed ${c.casFailed}); ` +
      `latency p90_us=${r.p90Us} p999_us=${r.p999Us} max_us=${r.maxUs}`,
    `statuses: ${countsText(c.statuses)}`,
  ];
  if (batch === 1) {
    const h = (name: string, histogram: Uint32Array): string =>
      `${name}_p50_us=${percentileOfHistogram(histogram, 0.5)} ${name}_p99_us=${percentileOfHistogram(histogram, 0.99)}`;
    lines.push(`per_kind: ${h("read", c.readHistogram)} ${h("write", c.writeHistogram)}`);
  }
  if (batch > 1) {
    lines.push(`op_statuses: ${countsText(c.opStatuses)}`);
    lines.push(`ops_per_s=${r.opsPerSecond.toFixed(1)} batch=${batch}`);
  }
  lines.push(summaryLine(r));
  return lines;
}

export function summaryLine(r: HttpBenchResult): string {
  return `throughput_reqs=${r.throughputReqs.toFixed(1)} p50_us=${r.p50Us} p99_us=${r.p99Us} errors=${r.counts.errors}`;
}

export interface ParsedSummary {
  throughputReqs: number;
  p50Us: number;
  p99Us: number;
  errors: number;
}

/** Reads a summary line back; null if `line` is not one. */
export function parseSummaryLine(line: string): ParsedSummary | null {
  const m = /^throughput_reqs=([0-9.]+) p50_us=([0-9]+) p99_us=([0-9]+) errors=([0-9]+)$/.exec(line.trim());
  if (m === null) return null;
  return { throughputReqs: Number(m[1]), p50Us: Number(m[2]), p99Us: Number(m[3]), errors: Number(m[4]) };
}

/** Reads a `statuses: 200=… 404=…` line back into counts; null if it is not one. */
export function parseStatusesLine(line: string): Record<string, number> | null {
  const m = /^statuses: (.*)$/.exec(line.trim());
  if (m === null) return null;
  const out: Record<string, number> = {};
  if (m[1] === "(none)") return out;
  for (const part of m[1]!.split(" ")) {
    const eq = part.indexOf("=");
    if (eq <= 0) return null;
    const n = Number(part.slice(eq + 1));
    if (!Number.isInteger(n)) return null;
    out[part.slice(0, eq)] = n;
  }
  return out;
}
