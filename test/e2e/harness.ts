// Shared pieces of the end-to-end tests: a local 3-replica cluster over real HTTP and TCP on
// 127.0.0.1, and an HTTP client that records every op it issues in a HistoryRecorder, mapping each
// answer to the model of test/lib/kv-model.ts:
//
//   200                               -> ok (read value / write / cas ok / incr value)
//   412 on a CAS or create            -> cas { ok: false }
//   404 on a GET                      -> read null
//   409 not_a_number on incr          -> incr-nan
//   504, network error, client timeout on an update -> unknown (may or may not have happened)
//   503, 429, 400, 409 aborted on an update          -> failed (nothing was written)
//   any failure of a read             -> failed (a read has no effect)
//
// Anything else (a 500, a status the contract does not have for that route) is an unexpected
// answer: it is recorded conservatively (unknown for updates, failed for reads) and also kept in
// `unexpected`, which every test asserts is empty.

import { expect } from "bun:test";
import { LocalCluster, type LocalClusterOptions } from "../../src/cli/local-cluster.ts";
import { HistoryRecorder, type HistoryOp, type KvInput } from "../lib/history.ts";
import { checkLinearizable, type LinResult } from "../lib/linearizability.ts";
import { prng, testSeed } from "../lib/prng.ts";

/** Short leases so that a stopped replica is removed in well under a second. */
export const testRm = { leaseMs: 300, renewEveryMs: 30, removalMarginMs: 20 } as const;

/**
 * How long a client waits for one answer. The server answers an update it cannot finish within
 * opTimeoutMs (5 s) with 504; waiting longer than that means the client hears the server's verdict
 * in all but pathological cases. A client-side timeout is recorded like a 504 (unknown).
 */
export const requestTimeoutMs = 8000;

/** Log lines of the cluster, kept (bounded) so that a failing test can print them. */
export const clusterLogLinesMax = 2000;

export interface TestCluster {
  cluster: LocalCluster;
  log: string[];
}

/**
 * For tests that stop no replica, so leases need not be short (testRm is for failover): with
 * 3 x W shard workers on a shared 2-core machine, a 300 ms lease can lapse for a moment when
 * renewals are starved of CPU, and the node then answers 503 (correctly, but such tests require a
 * healthy cluster to answer every op). A lapse of this lease needs a 5 s stall.
 */
export const steadyRm = { leaseMs: 5000, renewEveryMs: 50, removalMarginMs: 50 } as const;

/** `replicas` replicas of `shards` shard workers each, over TCP on 127.0.0.1, with leases `rm`. */
export async function startCluster(
  replicas = 3,
  {
    shards = 1,
    rm = testRm,
    security,
  }: { shards?: number; rm?: typeof testRm | typeof steadyRm; security?: LocalClusterOptions["security"] } = {},
): Promise<TestCluster> {
  const log: string[] = [];
  const cluster = await LocalCluster.start({
    replicas,
    host: "127.0.0.1",
    httpPort: 0,
    shards,
    transport: "tcp",
    rm,
    node: {},
    log: (line) => {
      if (log.length < clusterLogLinesMax) log.push(`${performance.now().toFixed(1)} ${line}`);
    },
    ...(security === undefined ? {} : { security }),
  });
  return { cluster, log };
}

/** A cluster for a test that stops no replica: `shards` shard workers per replica, leases steadyRm. */
export function startSteadyCluster(shards: number, replicas = 3): Promise<TestCluster> {
  return startCluster(replicas, { shards, rm: steadyRm });
}

// Every random choice of a test comes from one seeded PRNG, so seeds replay the choices.
export { prng, testSeed };

/** One HTTP answer, or why there was none. */
export type Answer =
  | {
      kind: "response";
      status: number;
      etag: string | null;
      body: string;
      contentType: string | null;
      outcome: string | null;
    }
  | { kind: "timeout" }
  | { kind: "network"; message: string };

/** What every request() carries besides its own init: a secured cluster's token and TLS (see setRequestCredentials). */
export interface RequestCredentials {
  headers?: Record<string, string>;
  tls?: { ca?: string; cert?: string; key?: string };
}
let credentials: RequestCredentials = {};

/** Set the credentials of every request() from now on (a test of a secured cluster); {} resets them. */
export function setRequestCredentials(next: RequestCredentials): void {
  credentials = next;
}

export async function request(url: string, init: RequestInit = {}, timeoutMs = requestTimeoutMs): Promise<Answer> {
  try {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(credentials.headers ?? {}))
      if (!headers.has(name)) headers.set(name, value);
    const response = await fetch(url, {
      ...init,
      headers,
      ...(credentials.tls === undefined ? {} : { tls: credentials.tls }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await response.text();
    return {
      kind: "response",
      status: response.status,
      etag: response.headers.get("etag"),
      body,
      contentType: response.headers.get("content-type"),
      outcome: response.headers.get("x-outcome"),
    };
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === "TimeoutError" || name === "AbortError") return { kind: "timeout" };
    return { kind: "network", message: String(error) };
  }
}

/** The JSON error code of a 4xx/5xx answer, or null if the body is not the contract's error shape. */
export function errorCode(body: string): string | null {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === "string" && typeof parsed.error.message === "string") return parsed.error.code;
  } catch {
    // not JSON
  }
  return null;
}

/** How the answers of a run were distributed, for assertions and for the test log. */
export class Tally {
  readonly counts = new Map<string, number>();
  add(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }
  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }
  sumMatching(prefix: string): number {
    let sum = 0;
    for (const [name, count] of this.counts) if (name.startsWith(prefix)) sum += count;
    return sum;
  }
  toString(): string {
    return [...this.counts.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, count]) => `${name}=${count}`)
      .join(" ");
  }
}

/** What a client last learned about a key's current value: enough to CAS on it. */
interface Known {
  value: string;
  etag: string;
}

export type Outcome = "ok" | "unknown" | "failed";

/** Every op of every client of a test: the history plus what the answers were. */
export class Recorder {
  readonly history = new HistoryRecorder();
  readonly tally = new Tally();
  /** Answers outside the contract (see the file comment); tests assert this is empty. */
  readonly unexpected: string[] = [];
  /** Times (performance.now) and replicas of every acknowledged update, for the failure test. */
  readonly acked: { call: number; ret: number; replica: number; kind: string }[] = [];

  note(what: string): void {
    if (this.unexpected.length < 100) this.unexpected.push(what);
  }

  ops(): HistoryOp[] {
    return this.history.ops();
  }

  check(): LinResult {
    return checkLinearizable(this.ops());
  }
}

/**
 * One client of the store, bound to one replica (which may change). Every op is recorded; each
 * method returns the outcome as recorded so that workloads can react (e.g. back off after 503).
 */
export class Client {
  readonly id: number;
  replica: number;
  readonly #urls: (i: number) => string;
  readonly #rec: Recorder;
  readonly #known = new Map<string, Known>();
  lastStatus = 0;

  /** Headers sent with every request (e.g. `connection: close`, a new connection per request). */
  readonly #headers: Record<string, string>;

  constructor(
    id: number,
    replica: number,
    urls: (i: number) => string,
    recorder: Recorder,
    options: { freshConnections?: boolean } = {},
  ) {
    this.id = id;
    this.replica = replica;
    this.#urls = urls;
    this.#rec = recorder;
    // A node's shard workers all accept on its port: new connections spread over them.
    this.#headers = options.freshConnections === true ? { connection: "close" } : {};
  }

  /** The value and ETag this client last saw for `key` (null if none, or absent). */
  known(key: string): Known | null {
    return this.#known.get(key) ?? null;
  }

  #url(key: string, suffix = ""): string {
    return `${this.#urls(this.replica)}/v1/kv/${encodeURIComponent(key)}${suffix}`;
  }

  #label(kind: string, answer: Answer): string {
    if (answer.kind !== "response") return `${kind}:${answer.kind}`;
    const code = answer.status >= 400 ? errorCode(answer.body) : null;
    return `${kind}:${answer.status}${code === null ? "" : `:${code}`}`;
  }

  async read(key: string): Promise<{ outcome: Outcome; value: string | null }> {
    const replica = this.replica;
    const id = this.#rec.history.invoke(this.id, key, { type: "read" });
    const answer = await request(this.#url(key), { headers: this.#headers });
    this.#rec.tally.add(this.#label("read", answer));
    if (answer.kind === "response") this.lastStatus = answer.status;
    if (answer.kind === "response" && answer.status === 200) {
      if (answer.etag === null) this.#rec.note(`read ${key} on replica ${replica}: 200 without an ETag`);
      this.#rec.history.ok(id, { type: "read", value: answer.body });
      if (answer.etag !== null) this.#known.set(key, { value: answer.body, etag: answer.etag });
      return { outcome: "ok", value: answer.body };
    }
    if (answer.kind === "response" && answer.status === 404 && errorCode(answer.body) === "not_found") {
      this.#rec.history.ok(id, { type: "read", value: null });
      this.#known.delete(key);
      return { outcome: "ok", value: null };
    }
    // A read that failed in any way had no effect.
    if (answer.kind === "response" && ![503, 504, 429].includes(answer.status)) {
      this.#rec.note(`read ${key} on replica ${replica}: ${answer.status} ${answer.body.slice(0, 200)}`);
    }
    this.#rec.history.failed(id);
    return { outcome: "failed", value: null };
  }

  /** PUT a value: blind (write), If-Match (cas on `expected`'s ETag) or If-None-Match: * (create). */
  async put(
    key: string,
    value: string,
    condition: { ifMatch: Known } | { ifNoneMatch: true } | null = null,
  ): Promise<Outcome> {
    let input: KvInput;
    const headers: Record<string, string> = {};
    let kind: string;
    if (condition === null) {
      input = { type: "write", value };
      kind = "write";
    } else if ("ifMatch" in condition) {
      input = { type: "cas", expected: condition.ifMatch.value, value };
      headers["if-match"] = condition.ifMatch.etag;
      kind = "cas";
    } else {
      input = { type: "cas", expected: null, value };
      headers["if-none-match"] = "*";
      kind = "create";
    }
    return this.#update(kind, key, input, this.#url(key), { method: "PUT", body: value, headers }, value);
  }

  async remove(key: string): Promise<Outcome> {
    return this.#update("delete", key, { type: "write", value: null }, this.#url(key), { method: "DELETE" }, null);
  }

  /** Returns the outcome and, when ok, the new value. */
  async incr(key: string, by: number): Promise<{ outcome: Outcome; value: number | null }> {
    let result: number | null = null;
    const outcome = await this.#update(
      "incr",
      key,
      { type: "incr", by },
      this.#url(key, `/incr?by=${by}`),
      { method: "POST" },
      null,
      (body) => {
        result = (JSON.parse(body) as { value: number }).value;
        return result;
      },
    );
    return { outcome, value: result };
  }

  async #update(
    kind: string,
    key: string,
    input: KvInput,
    url: string,
    init: RequestInit,
    written: string | null,
    incrValue?: (body: string) => number,
  ): Promise<Outcome> {
    const replica = this.replica;
    const history = this.#rec.history;
    const call = performance.now();
    const id = history.invoke(this.id, key, input, call);
    const answer = await request(url, {
      ...init,
      headers: { ...this.#headers, ...(init.headers as Record<string, string> | undefined) },
    });
    this.#rec.tally.add(this.#label(kind, answer));
    if (answer.kind !== "response") {
      // The request may have reached the node and been applied: the outcome is unknown.
      this.#known.delete(key);
      history.unknown(id);
      return "unknown";
    }
    this.lastStatus = answer.status;
    const status = answer.status;
    const code = status >= 400 ? errorCode(answer.body) : null;
    if (status === 200) {
      if (input.type === "incr") {
        history.ok(id, { type: "incr", value: incrValue!(answer.body) });
      } else if (input.type === "cas") {
        history.ok(id, { type: "cas", ok: true });
      } else {
        history.ok(id, { type: "write" });
      }
      this.#rec.acked.push({ call, ret: performance.now(), replica, kind });
      if (answer.etag === null) this.#rec.note(`${kind} ${key} on replica ${replica}: 200 without an ETag`);
      if (written !== null && answer.etag !== null) this.#known.set(key, { value: written, etag: answer.etag });
      else this.#known.delete(key);
      return "ok";
    }
    if (status === 412 && input.type === "cas" && code === "precondition_failed") {
      history.ok(id, { type: "cas", ok: false });
      this.#known.delete(key);
      return "ok";
    }
    if (status === 409 && input.type === "incr" && code === "not_a_number") {
      history.ok(id, { type: "incr-nan" });
      return "ok";
    }
    const definitelyNothing =
      status === 503 || status === 429 || (status === 409 && input.type === "incr" && code === "aborted");
    if (definitelyNothing && code !== null) {
      history.failed(id);
      return "failed";
    }
    this.#known.delete(key);
    if (status === 504 && code === "outcome_unknown" && answer.outcome === "unknown") {
      history.unknown(id);
      return "unknown";
    }
    // Outside the contract: assume the worst (it may have been applied) and report it.
    this.#rec.note(`${kind} ${key} on replica ${replica}: ${status} ${answer.body.slice(0, 200)}`);
    history.unknown(id);
    return "unknown";
  }
}

/** Asserts a linearizability verdict, printing the witness (and the cluster log) when it is not ok. */
export function expectLinearizable(result: LinResult, log: string[] = []): void {
  if (result.ok !== true) {
    const lines = result.ok === false ? [result.message, ...result.witness] : [result.message];
    console.error(`linearizability check failed:\n${lines.join("\n")}\ncluster log:\n${log.join("\n")}`);
  }
  expect(result.ok).toBe(true);
}

/** Polls `probe` every `everyMs` until it returns true or `attempts` run out; returns the last verdict. */
export async function eventually(probe: () => Promise<boolean>, attempts: number, everyMs: number): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (await probe()) return true;
    await Bun.sleep(everyMs);
  }
  return false;
}

/** What one replica answers for a key: status, ETag and value; equal across replicas once they converged. */
export async function snapshotKey(url: string, key: string): Promise<string> {
  const answer = await request(`${url}/v1/kv/${encodeURIComponent(key)}`);
  if (answer.kind !== "response") return answer.kind;
  return `${answer.status} ${answer.etag ?? "-"} ${answer.status === 200 ? JSON.stringify(answer.body) : ""}`;
}

/**
 * Waits until every replica answers the same for every key (an update that answered 504 may still
 * be finishing when the workload ends), then reads every key once more from every replica with
 * recorded reads, so that the linearizability check also covers the final state: a lost
 * acknowledged write shows up there as a read that no order can explain.
 * Returns the per-key answers of the replicas as seen by the last unrecorded poll.
 */
export async function convergeAndReadAll(
  urls: readonly string[],
  keys: readonly string[],
  recorder: Recorder,
  clientIdBase: number,
): Promise<{ converged: boolean; answers: Map<string, string[]> }> {
  const answers = new Map<string, string[]>();
  const converged = await eventually(
    async () => {
      let same = true;
      for (const key of keys) {
        const row = await Promise.all(urls.map((url) => snapshotKey(url, key)));
        answers.set(key, row);
        if (row.some((a) => a !== row[0])) same = false;
      }
      return same;
    },
    100,
    50,
  );
  const readers = urls.map((_, i) => new Client(clientIdBase + i, i, (r) => urls[r]!, recorder));
  for (const key of keys) await Promise.all(readers.map((reader) => reader.read(key)));
  return { converged, answers };
}

/**
 * The checks after concurrent increments of `counter` (every one positive) and other updates of
 * `keys`: no two acknowledged increments returned the same value; the replicas converge on every
 * key; and the final value, read from `readUrl`, is the acknowledged sum plus the sum of some
 * subset of the increments whose outcome is unknown, and no smaller than any returned value.
 * Returns the final value.
 */
export async function expectIncrementsAccountedFor(o: {
  urls: readonly string[];
  keys: readonly string[];
  counter: string;
  recorder: Recorder;
  readUrl: string;
  ackedSum: number;
  unknownBys: readonly number[];
  returned: readonly number[];
}): Promise<number> {
  const { counter, ackedSum, unknownBys, returned } = o;
  expect(new Set(returned).size).toBe(returned.length);
  const { converged, answers } = await convergeAndReadAll(o.urls, o.keys, o.recorder, 100);
  expect(converged, JSON.stringify([...answers])).toBe(true);
  const finalRead = await request(`${o.readUrl}/v1/kv/${counter}`);
  expect(finalRead.kind === "response" && finalRead.status).toBe(200);
  const final = Number(finalRead.kind === "response" ? finalRead.body : Number.NaN);
  const extra = final - ackedSum;
  const reachable = new Set([0]);
  for (const by of unknownBys) for (const s of [...reachable]) reachable.add(s + by);
  expect(reachable.has(extra), `final ${final}, acknowledged sum ${ackedSum}, unknown ${unknownBys.join(",")}`).toBe(
    true,
  );
  expect(Math.max(...returned)).toBeLessThanOrEqual(final);
  return final;
}
