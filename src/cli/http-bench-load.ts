// The load of `hermes-kv bench --endpoints`: what one thread runs. Its connections each issue one
// request at a time (a closed loop), choose keys uniformly, reads / blind writes / CAS by the
// configured mix, and count what they see. The same code runs on the main thread (--threads 1) or
// in Bun Workers (http-bench-worker.ts).
//
// Phases are one Int32 in a SharedArrayBuffer, set by the main thread: fill (write every key once,
// if asked), warm-up, measure, stop. Only requests answered while the phase is "measure" count in
// the result; every answer counts in the per-endpoint progress counters of the same buffer.
//
// Values are unique per write: "<key index>.<connection>.<sequence>." in base 36, padded with 'x'
// to --value-bytes; parseValueTag reads one back (the tests check that every value the cluster
// holds is one this tool wrote to that key).
//
// Targets:
//   hermes  GET/PUT /v1/kv/{key}; CAS = PUT with If-Match on the ETag last seen for the key by
//           this thread (from a read, a write or a 412's ETag), or If-None-Match: * if the key was
//           seen absent; --batch N > 1: POST /v1/batch {"ops":[{"op":"get"|"put"|"cas"|"create",…}]}
//           with N ops, each answered in {"results":[{"status":…,"etag":…},…]}.
//   etcd    v3 JSON gateway: POST /v3/kv/range {key} (linearizable), /v3/kv/put {key,value},
//           CAS = /v3/kv/txn comparing mod_revision with the last one seen (0: absent), with a
//           range on failure so that a lost CAS learns the current revision (like a 412's ETag).
// A CAS on a key whose version the thread has not seen yet is preceded by a read of the key (a
// read-modify-write, as a client would do it); that read is counted as a read. So a CAS fails
// (412) only when another writer got in between, not because the tool guessed.

import {
  type ClientKind,
  type Endpoint,
  type HttpAnswer,
  type HttpConnection,
  type HttpRequest,
  RequestTimeout,
  type TlsFiles,
  openConnection,
} from "./http-bench-client.ts";
import { type LoadCounts, bucketOfUs, bump, newCounts } from "./http-bench-report.ts";
import {
  BinaryFlag,
  BinaryOp,
  batchBinaryHeaderBytes,
  batchBinaryMagic,
  batchBinaryType,
} from "../http/batch-binary.ts";
import { scanBinaryResults } from "../http/batch-binary-client.ts";
import { etagOf } from "../http/outcomes.ts";

/** The Content-Type of every request of a run: etcd's and JSON batches are JSON. */
export function batchContentType(cfg: Pick<LoadConfig, "batchFormat" | "target">): string {
  return cfg.target === "hermes" && cfg.batchFormat === "binary" ? batchBinaryType : "application/json";
}

export type Target = "hermes" | "etcd";

/** Everything a thread needs; plain data, so that it can be posted to a Worker. */
export interface LoadConfig {
  target: Target;
  endpoints: Endpoint[];
  connections: number;
  threads: number;
  /** Percent of ops that are reads, and CAS; the rest are blind writes. */
  readPct: number;
  casPct: number;
  keys: number;
  valueBytes: number;
  batch: number;
  /** The format of batches (batch > 1): JSON with base64 values, or the binary one. */
  batchFormat: "json" | "binary";
  keyPrefix: string;
  fill: boolean;
  seed: number;
  timeoutMs: number;
  client: ClientKind;
  tls: TlsFiles | null;
  token: string | null;
}

export const Phase = { fill: 0, warmup: 1, measure: 2, stop: 3 } as const;

/**
 * Layout of the shared Int32Array: [0] phase; then per thread: [1 + t] fill done (0/1); then per
 * thread and endpoint: answers and errors (wrapping counters, read as deltas).
 */
export function sharedInts(threads: number, endpoints: number): number {
  return 1 + threads + threads * endpoints * 2;
}
export function fillDoneIndex(thread: number): number {
  return 1 + thread;
}
export function progressIndex(threads: number, endpoints: number, thread: number, endpoint: number): number {
  return 1 + threads + (thread * endpoints + endpoint) * 2;
}

/** The global indices of the connections thread `thread` runs: every `threads`-th one. */
export function connectionsOf(config: Pick<LoadConfig, "connections" | "threads">, thread: number): number[] {
  const out: number[] = [];
  for (let g = thread; g < config.connections; g += config.threads) out.push(g);
  return out;
}

/** Base-36 sequence numbers up to this many digits fit the minimum value size. */
const seqDigits36 = 7;

/** The smallest --value-bytes that always holds a value's unique tag. */
export function valueBytesMin(keys: number, connections: number): number {
  return (keys - 1).toString(36).length + (connections - 1).toString(36).length + seqDigits36 + 3;
}

export function valueTag(keyIndex: number, connection: number, seq: number): string {
  return `${keyIndex.toString(36)}.${connection.toString(36)}.${seq.toString(36)}.`;
}

/** Reads back the tag of a value this tool wrote; null if `value` is not one. */
export function parseValueTag(
  value: string,
  valueBytes: number,
): { keyIndex: number; connection: number; seq: number } | null {
  const m = /^([0-9a-z]+)\.([0-9a-z]+)\.([0-9a-z]+)\.(x*)$/.exec(value);
  if (m === null || value.length !== valueBytes) return null;
  return { keyIndex: parseInt(m[1]!, 36), connection: parseInt(m[2]!, 36), seq: parseInt(m[3]!, 36) };
}

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OpType = { read: 0, write: 1, cas: 2 } as const;
type OpType = (typeof OpType)[keyof typeof OpType];
interface BatchOp {
  op: OpType;
  keyIndex: number;
}

const etcdRevision = /"revision":"([0-9]+)"/;
const etcdModRevision = /"mod_revision":"([0-9]+)"/;

/** Pause before reconnecting after a failure, so that a dead endpoint is not spun on. */
const reconnectPauseMs = 20;
/** How often a thread looks for requests older than --timeout-ms. */
const timeoutScanMs = 100;
/** How often an idle thread looks at the phase while waiting for the next one. */
const phasePollMs = 2;

/** HTTP statuses are below 600; the tally of op statuses is indexed by them. */
const statusCodesMax = 600;

/** Most keys whose UTF-8 bytes a thread keeps for binary batches (about 10 bytes each); above, each is encoded per use. */
const keyTableKeysMax = 1_000_000;

/** Every key's UTF-8 bytes in one buffer, `at[i]..at[i+1]`: a binary batch copies them instead of encoding strings. */
interface KeyTable {
  bytes: Uint8Array;
  at: Int32Array;
}

const keyTables = new Map<string, KeyTable>();

/** The key table of a run (one per thread, shared by its connections), or null for too many keys. */
function keyTableOf(cfg: LoadConfig): KeyTable | null {
  if (cfg.keys > keyTableKeysMax) return null;
  const name = `${cfg.keyPrefix}\u0000${cfg.keys}`;
  let table = keyTables.get(name);
  if (table === undefined) {
    const keys = Array.from({ length: cfg.keys }, (_, i) => Buffer.from(cfg.keyPrefix + i, "utf8"));
    const at = new Int32Array(cfg.keys + 1);
    for (let i = 0; i < cfg.keys; i++) at[i + 1] = at[i]! + keys[i]!.length;
    const bytes = new Uint8Array(at[cfg.keys]!);
    for (let i = 0; i < cfg.keys; i++) bytes.set(keys[i]!, at[i]!);
    table = { bytes, at };
    keyTables.set(name, table);
  }
  return table;
}

/** One closed-loop connection: its own PRNG, ETags (or etcd revisions) and write sequence. */
class LoadConnection {
  conn: HttpConnection | null = null;
  seq = 0;
  readonly #random: () => number;
  readonly #pad: string;
  /** Batches: keys whose CAS waits for the read of its version in the batch just sent. */
  readonly #deferredCas: number[] = [];
  readonly #asciiPrefix: boolean;
  /** "/v1/kv/" and the percent-encoded key prefix: a key's path is this and the index's digits. */
  readonly #pathPrefix: string;
  readonly #common: (readonly [string, string])[];
  readonly #binary: boolean;
  /** Op statuses of the batch being counted (#countStatus), and which are non-zero. */
  readonly #statusTally = new Int32Array(statusCodesMax);
  readonly #statusesSeen: number[] = [];
  /** Binary batches: every key's bytes (null for more than keyTableKeysMax keys). */
  readonly #keyTable: KeyTable | null;
  /** Binary batches: the op code of each op of the batch in flight (a get's answer carries a value). */
  readonly #opCodes: number[] = [];

  constructor(
    readonly index: number,
    readonly endpointIndex: number,
    private readonly cfg: LoadConfig,
    private readonly counts: LoadCounts,
    /**
     * Key index -> the version this thread last saw: ETag (hermes, "" = absent) or mod_revision
     * (etcd, "0" = absent). Shared by the thread's connections; only kept when CAS is in the mix.
     */
    private readonly versions: Map<number, string>,
  ) {
    this.#random = prng((cfg.seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
    this.#pad = "x".repeat(cfg.valueBytes);
    this.#asciiPrefix = /^[\x00-\x7f]*$/.test(cfg.keyPrefix);
    this.#pathPrefix = `/v1/kv/${encodeURIComponent(cfg.keyPrefix)}`;
    this.#common = [];
    if (cfg.token !== null) this.#common.push(["Authorization", `Bearer ${cfg.token}`]);
    if (cfg.target === "etcd" || cfg.batch > 1) this.#common.push(["Content-Type", batchContentType(cfg)]);
    this.#binary = cfg.target === "hermes" && cfg.batch > 1 && cfg.batchFormat === "binary";
    this.#keyTable = this.#binary ? keyTableOf(cfg) : null;
  }

  get endpoint(): Endpoint {
    return this.cfg.endpoints[this.endpointIndex]!;
  }

  async connect(): Promise<HttpConnection> {
    // A connection the server closed after its last answer (Connection: close) is replaced quietly.
    if (this.conn !== null && this.conn.closed) this.conn = null;
    if (this.conn === null) {
      this.conn = await openConnection(this.cfg.client, {
        endpoint: this.endpoint,
        tls: this.cfg.tls,
        commonHeaders: this.#common,
      });
    }
    return this.conn;
  }

  drop(): void {
    this.conn?.close();
    this.conn = null;
  }

  #value(keyIndex: number): string {
    const tag = valueTag(keyIndex, this.index, this.seq++);
    this.counts.writesIssued[this.index] = this.seq;
    return tag.length >= this.cfg.valueBytes ? tag : tag + this.#pad.slice(tag.length);
  }

  /** The key's base64 (etcd): btoa for an ASCII prefix, UTF-8 bytes otherwise. */
  #key64(keyIndex: number): string {
    const key = this.cfg.keyPrefix + keyIndex;
    return this.#asciiPrefix ? btoa(key) : Buffer.from(key, "utf8").toString("base64");
  }

  /** The key as a JSON string in ASCII (requests must be ASCII; see HttpRequest). */
  #keyJson(keyIndex: number): string {
    const json = JSON.stringify(this.cfg.keyPrefix + keyIndex);
    return this.#asciiPrefix
      ? json
      : json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  }

  nextKey(): number {
    return Math.floor(this.#random() * this.cfg.keys);
  }

  nextOp(): OpType {
    const r = this.#random() * 100;
    if (r < this.cfg.readPct) return OpType.read;
    if (r < this.cfg.readPct + this.cfg.casPct) return OpType.cas;
    return OpType.write;
  }

  /** The request for one op (batch 1). */
  request(op: OpType, keyIndex: number): HttpRequest {
    if (this.cfg.target === "etcd") {
      const k = this.#key64(keyIndex);
      if (op === OpType.read) return { method: "POST", path: "/v3/kv/range", body: `{"key":"${k}"}`, headers: null };
      const v = btoa(this.#value(keyIndex));
      if (op === OpType.write)
        return { method: "POST", path: "/v3/kv/put", body: `{"key":"${k}","value":"${v}"}`, headers: null };
      const rev = this.versions.get(keyIndex) ?? "0";
      return {
        method: "POST",
        path: "/v3/kv/txn",
        body:
          `{"compare":[{"key":"${k}","target":"MOD","result":"EQUAL","mod_revision":"${rev}"}],` +
          `"success":[{"request_put":{"key":"${k}","value":"${v}"}}],"failure":[{"request_range":{"key":"${k}"}}]}`,
        headers: null,
      };
    }
    const path = this.#pathPrefix + keyIndex;
    if (op === OpType.read) return { method: "GET", path, body: null, headers: null };
    const value = this.#value(keyIndex);
    if (op === OpType.write) return { method: "PUT", path, body: value, headers: null };
    const etag = this.versions.get(keyIndex);
    return {
      method: "PUT",
      path,
      body: value,
      headers: [etag === undefined || etag === "" ? ["If-None-Match", "*"] : ["If-Match", etag]],
    };
  }

  /**
   * A batch of `cfg.batch` ops. A CAS goes in as "cas" on the ETag last seen, or "create" when the
   * key was seen absent; when its version is unknown, the batch carries a get of the key instead
   * and the CAS goes into this connection's next batch (the same read-modify-write as batch 1).
   */
  batchRequest(ops: BatchOp[]): HttpRequest {
    if (this.#binary) return this.#binaryBatchRequest(ops);
    const items: string[] = [];
    while (ops.length < this.cfg.batch) {
      const next = this.#nextBatchOp();
      if (next === null) continue;
      const { op, keyIndex } = next;
      const key = this.#keyJson(keyIndex);
      ops.push(next);
      if (op === OpType.read) {
        items.push(`{"op":"get","key":${key}}`);
        continue;
      }
      const value = btoa(this.#value(keyIndex));
      if (op === OpType.write) items.push(`{"op":"put","key":${key},"value":"${value}"}`);
      else {
        const etag = this.versions.get(keyIndex)!;
        items.push(
          etag === ""
            ? `{"op":"create","key":${key},"value":"${value}"}`
            : `{"op":"cas","key":${key},"etag":${JSON.stringify(etag)},"value":"${value}"}`,
        );
      }
    }
    return { method: "POST", path: "/v1/batch", body: `{"ops":[${items.join(",")}]}`, headers: null };
  }

  /** Counts one answered single op; returns false when it is an error. */
  record(op: OpType, keyIndex: number, answer: HttpAnswer, measured: boolean): boolean {
    const c = this.counts;
    const cas = this.cfg.casPct > 0;
    const status = answer.status;
    let ok = false;
    if (this.cfg.target === "etcd") {
      if (status === 200) {
        const body = answer.text();
        ok = true;
        if (op === OpType.read) {
          const present = body.includes('"kvs"');
          if (measured) {
            c.reads++;
            if (!present) c.readsAbsent++;
          }
          if (cas) this.#remember(keyIndex, present ? etcdModRevision.exec(body)?.[1] : "0");
        } else if (op === OpType.write) {
          if (measured) c.writes++;
          if (cas) this.#remember(keyIndex, etcdRevision.exec(body)?.[1]);
        } else {
          const succeeded = body.includes('"succeeded":true');
          if (measured) {
            c.cas++;
            if (!succeeded) c.casFailed++;
          }
          if (succeeded) this.#remember(keyIndex, etcdRevision.exec(body)?.[1]);
          else this.#remember(keyIndex, body.includes('"kvs"') ? etcdModRevision.exec(body)?.[1] : "0");
        }
      }
    } else if (op === OpType.read) {
      ok = status === 200 || status === 404;
      if (ok && measured) {
        c.reads++;
        if (status === 404) c.readsAbsent++;
      }
      if (ok && cas) this.#remember(keyIndex, answer.etag ?? "");
    } else if (op === OpType.write) {
      ok = status === 200;
      if (ok && measured) c.writes++;
      if (ok && cas) this.#remember(keyIndex, answer.etag ?? undefined);
    } else {
      ok = status === 200 || status === 412;
      if (ok && measured) {
        c.cas++;
        if (status === 412) c.casFailed++;
      }
      // A 412 without an ETag: the key was never written (If-Match), so create it next time.
      if (ok) this.#remember(keyIndex, answer.etag ?? "");
    }
    if (measured) {
      c.ops++;
      if (!ok) c.errors++;
    }
    return ok;
  }

  /** The next op of a batch: a deferred CAS first (see batchRequest); null when it is dropped. */
  #nextBatchOp(): BatchOp | null {
    const deferred = this.#deferredCas.pop();
    // A deferred CAS whose read failed is dropped (it would only be deferred again).
    if (deferred !== undefined && !this.versions.has(deferred)) return null;
    if (deferred !== undefined) return { op: OpType.cas, keyIndex: deferred };
    const op = this.nextOp();
    const keyIndex = this.nextKey();
    if (op === OpType.cas && !this.versions.has(keyIndex)) {
      this.#deferredCas.push(keyIndex);
      return { op: OpType.read, keyIndex };
    }
    return { op, keyIndex };
  }

  /** batchRequest in the binary format (batch-binary.ts): keys and values written straight into the body. */
  #binaryBatchRequest(ops: BatchOp[]): HttpRequest {
    const table = this.#keyTable;
    const keys: (Buffer | null)[] = [];
    const values: (string | null)[] = [];
    const codes = this.#opCodes;
    codes.length = 0;
    let size = batchBinaryHeaderBytes;
    while (ops.length < this.cfg.batch) {
      const next = this.#nextBatchOp();
      if (next === null) continue;
      ops.push(next);
      if (table === null) {
        const key = Buffer.from(this.cfg.keyPrefix + next.keyIndex, "utf8");
        keys.push(key);
        size += 3 + key.length;
      } else {
        keys.push(null);
        size += 3 + table.at[next.keyIndex + 1]! - table.at[next.keyIndex]!;
      }
      if (next.op === OpType.read) {
        codes.push(BinaryOp.get);
        values.push(null);
        continue;
      }
      const value = this.#value(next.keyIndex);
      values.push(value);
      size += 4 + value.length;
      if (next.op === OpType.write) codes.push(BinaryOp.put);
      else if (this.versions.get(next.keyIndex) === "") codes.push(BinaryOp.create);
      else {
        codes.push(BinaryOp.cas);
        size += 12;
      }
    }
    const body = Buffer.allocUnsafe(size);
    body.set(batchBinaryMagic, 0);
    body.writeUInt32LE(ops.length, 4);
    let at = batchBinaryHeaderBytes;
    for (let i = 0; i < ops.length; i++) {
      const code = codes[i]!;
      body[at] = code;
      const key = keys[i];
      let keyLength: number;
      if (key === null || key === undefined) {
        // A byte loop: keys are a few bytes, shorter than what subarray() and set() cost.
        const from = table!.at[ops[i]!.keyIndex]!;
        keyLength = table!.at[ops[i]!.keyIndex + 1]! - from;
        const bytes = table!.bytes;
        for (let k = 0; k < keyLength; k++) body[at + 3 + k] = bytes[from + k]!;
      } else {
        keyLength = key.length;
        body.set(key, at + 3);
      }
      body.writeUInt16LE(keyLength, at + 1);
      at += 3 + keyLength;
      if (code === BinaryOp.cas) {
        // The ETag last seen, "v.w" with its quotes.
        const etag = this.versions.get(ops[i]!.keyIndex)!;
        const dot = etag.indexOf(".");
        const version = Number(etag.slice(1, dot));
        body.writeUInt32LE(version % 0x1_0000_0000, at);
        body.writeUInt32LE(Math.floor(version / 0x1_0000_0000), at + 4);
        body.writeUInt32LE(Number(etag.slice(dot + 1, -1)), at + 8);
        at += 12;
      }
      const value = values[i];
      if (value === null || value === undefined) continue;
      // Values are ASCII (a base-36 tag padded with 'x').
      body.writeUInt32LE(value.length, at);
      body.write(value, at + 4, "latin1");
      at += 4 + value.length;
    }
    return { method: "POST", path: "/v1/batch", body, headers: null };
  }

  /** Counts one op of an answered batch; returns whether it is within its contract. */
  #recordBatchOp(op: OpType, keyIndex: number, status: number, etag: string, measured: boolean): boolean {
    const c = this.counts;
    let ok: boolean;
    if (op === OpType.read) ok = status === 200 || status === 404;
    else if (op === OpType.write) ok = status === 200;
    else ok = status === 200 || status === 412;
    if (ok && (this.cfg.casPct > 0 || op === OpType.cas)) this.#remember(keyIndex, etag);
    if (!measured) return ok;
    this.#countStatus(status);
    if (!ok) return ok;
    if (op === OpType.read) {
      c.reads++;
      if (status === 404) c.readsAbsent++;
    } else if (op === OpType.write) c.writes++;
    else {
      c.cas++;
      if (status === 412) c.casFailed++;
    }
    return ok;
  }

  /** recordBatch of a binary answer. */
  #recordBinaryBatch(ops: BatchOp[], answer: HttpAnswer, measured: boolean): number {
    const c = this.counts;
    let failed = 0;
    const tracked = this.cfg.casPct > 0;
    const scanned =
      answer.status !== 200
        ? null
        : scanBinaryResults(
            answer.body,
            (index, status, flags, version, writer) => {
              const { op, keyIndex } = ops[index]!;
              const etag =
                (tracked || op === OpType.cas) && (flags & BinaryFlag.etag) !== 0 ? etagOf(version, writer) : "";
              if (!this.#recordBatchOp(op, keyIndex, status, etag, measured)) failed++;
            },
            this.#opCodes,
          );
    if (typeof scanned === "number") {
      if (measured) c.errors += failed;
      return failed;
    }
    if (scanned !== null && measured) bump(c.opStatuses, "malformed");
    // A malformed answer may have been counted in part: what is left counts as failed.
    if (measured) c.errors += ops.length;
    return ops.length;
  }

  /** Counts the ops of an answered batch; returns the number of ops that failed. */
  recordBatch(ops: BatchOp[], answer: HttpAnswer, measured: boolean): number {
    const c = this.counts;
    if (measured) c.ops += ops.length;
    try {
      return this.#binary
        ? this.#recordBinaryBatch(ops, answer, measured)
        : this.#recordJsonBatch(ops, answer, measured);
    } finally {
      this.#flushStatuses();
    }
  }

  /** Counts an op's status in a per-batch tally (a string key per op cost more than the rest of the count). */
  #countStatus(status: number): void {
    if (!(Number.isInteger(status) && status >= 0 && status < statusCodesMax)) {
      bump(this.counts.opStatuses, String(status));
      return;
    }
    if (this.#statusTally[status]++ === 0) this.#statusesSeen.push(status);
  }

  #flushStatuses(): void {
    for (const status of this.#statusesSeen) {
      bump(this.counts.opStatuses, String(status), this.#statusTally[status]!);
      this.#statusTally[status] = 0;
    }
    this.#statusesSeen.length = 0;
  }

  #recordJsonBatch(ops: BatchOp[], answer: HttpAnswer, measured: boolean): number {
    const c = this.counts;
    let results: { status?: unknown; etag?: unknown }[] | null = null;
    if (answer.status === 200) {
      try {
        const parsed = JSON.parse(answer.text()) as { results?: unknown };
        if (Array.isArray(parsed.results) && parsed.results.length === ops.length)
          results = parsed.results as { status?: unknown }[];
      } catch {
        // counted below
      }
      if (results === null && measured) bump(c.opStatuses, "malformed");
    }
    if (results === null) {
      if (measured) c.errors += ops.length;
      return ops.length;
    }
    let failed = 0;
    for (let i = 0; i < ops.length; i++) {
      const { op, keyIndex } = ops[i]!;
      const result = results[i]!;
      const etag = typeof result.etag === "string" ? result.etag : "";
      if (!this.#recordBatchOp(op, keyIndex, Number(result.status), etag, measured)) failed++;
    }
    if (measured) c.errors += failed;
    return failed;
  }

  /** Whether a CAS on the key can go straight to the conditional write. */
  knowsVersion(keyIndex: number): boolean {
    return this.versions.has(keyIndex);
  }

  #remember(keyIndex: number, version: string | undefined): void {
    if (version === undefined) this.versions.delete(keyIndex);
    else this.versions.set(keyIndex, version);
  }

  /** The fill write of one key (single PUT or etcd put, whatever --batch). */
  fillRequest(keyIndex: number): HttpRequest {
    if (this.cfg.target === "etcd") {
      return {
        method: "POST",
        path: "/v3/kv/put",
        body: `{"key":"${this.#key64(keyIndex)}","value":"${btoa(this.#value(keyIndex))}"}`,
        headers: null,
      };
    }
    return { method: "PUT", path: this.#pathPrefix + keyIndex, body: this.#value(keyIndex), headers: null };
  }
}

/** Sleeps until the shared phase is at least `phase` (or stop). */
async function waitPhase(shared: Int32Array, phase: number): Promise<void> {
  while (Atomics.load(shared, 0) < phase) await Bun.sleep(phasePollMs);
}

/**
 * Runs thread `thread`'s connections until the phase is stop, then waits for their last requests
 * (each bounded by the time-out) and returns what it counted.
 */
export async function runLoadThread(cfg: LoadConfig, thread: number, shared: Int32Array): Promise<LoadCounts> {
  const counts = newCounts();
  const endpoints = cfg.endpoints.length;
  const versions = new Map<number, string>();
  const connections = connectionsOf(cfg, thread).map(
    (g) => new LoadConnection(g, g % endpoints, cfg, counts, versions),
  );
  const scan = setInterval(() => {
    const now = performance.now();
    for (const c of connections) c.conn?.checkTimeout(now, cfg.timeoutMs);
  }, timeoutScanMs);
  const progress = (c: LoadConnection, error: boolean): void => {
    const at = progressIndex(cfg.threads, endpoints, thread, c.endpointIndex);
    Atomics.add(shared, at, 1);
    if (error) Atomics.add(shared, at + 1, 1);
  };
  const failure = (error: unknown, measured: boolean): void => {
    if (!measured) return;
    bump(counts.statuses, error instanceof RequestTimeout ? "timeout" : "net_error");
    counts.errors += cfg.batch;
    counts.ops += cfg.batch;
  };

  /** Answers by HTTP status (100..999), folded into counts.statuses at the end. */
  const statuses = new Uint32Array(1000);
  /** Sends one request and counts its answer's latency (also by kind: `op`, null for a batch) and status (when measured). */
  const timed = async (conn: HttpConnection, req: HttpRequest, op: OpType | null): Promise<HttpAnswer> => {
    const started = performance.now();
    const answer = await conn.request(req);
    if (Atomics.load(shared, 0) === Phase.measure) {
      counts.requests++;
      const bucket = bucketOfUs((performance.now() - started) * 1000);
      counts.histogram[bucket]!++;
      if (op !== null) (op === OpType.read ? counts.readHistogram : counts.writeHistogram)[bucket]!++;
      statuses[answer.status]!++;
    }
    return answer;
  };

  try {
    if (cfg.fill) {
      await Promise.all(
        connections.map(async (c) => {
          for (let keyIndex = c.index; keyIndex < cfg.keys; keyIndex += cfg.connections) {
            try {
              const answer = await (await c.connect()).request(c.fillRequest(keyIndex));
              if (answer.status === 200) counts.filled++;
              else counts.fillErrors++;
            } catch {
              counts.fillErrors++;
              c.drop();
              await Bun.sleep(reconnectPauseMs);
            }
          }
        }),
      );
    }
    Atomics.store(shared, fillDoneIndex(thread), 1);
    await waitPhase(shared, Phase.warmup);

    await Promise.all(
      connections.map(async (c) => {
        const ops: BatchOp[] = [];
        for (;;) {
          if (Atomics.load(shared, 0) >= Phase.stop) break;
          let conn: HttpConnection;
          try {
            conn = await c.connect();
          } catch (error) {
            failure(error, Atomics.load(shared, 0) === Phase.measure);
            progress(c, true);
            await Bun.sleep(reconnectPauseMs);
            continue;
          }
          let failed: boolean;
          try {
            if (cfg.batch > 1) {
              ops.length = 0;
              const req = c.batchRequest(ops);
              const answer = await timed(conn, req, null);
              failed = c.recordBatch(ops, answer, Atomics.load(shared, 0) === Phase.measure) > 0;
            } else {
              const op = c.nextOp();
              const keyIndex = c.nextKey();
              if (op === OpType.cas && !c.knowsVersion(keyIndex)) {
                const answer = await timed(conn, c.request(OpType.read, keyIndex), OpType.read);
                const readFailed = !c.record(OpType.read, keyIndex, answer, Atomics.load(shared, 0) === Phase.measure);
                progress(c, readFailed);
                if (readFailed || Atomics.load(shared, 0) >= Phase.stop) continue;
              }
              const answer = await timed(conn, c.request(op, keyIndex), op);
              failed = !c.record(op, keyIndex, answer, Atomics.load(shared, 0) === Phase.measure);
            }
          } catch (error) {
            failure(error, Atomics.load(shared, 0) === Phase.measure);
            progress(c, true);
            c.drop();
            await Bun.sleep(reconnectPauseMs);
            continue;
          }
          progress(c, failed);
        }
      }),
    );
  } finally {
    clearInterval(scan);
    for (const c of connections) c.drop();
  }
  statuses.forEach((n, status) => {
    if (n > 0) bump(counts.statuses, String(status), n);
  });
  return counts;
}
