// POST /v1/batch on a real 3-replica cluster (LocalCluster: shard workers in threads, TCP between
// replicas, HTTP on 127.0.0.1), with W=2 and W=4 shards and keys on every shard:
// - batch clients and single-op clients run concurrently on every replica, with unique values;
//   every op of every batch is recorded in the same client history as the single ops, and the
//   whole history (plus a final read of every key from every replica) must be linearizable;
// - CAS and create races where the racing ops sit inside batches (at most one winner), and
//   increments inside batches, several per batch on one counter (the final value is the sum of the
//   acknowledged ones plus some of those whose outcome is unknown);
// - binary values written by a batch read back byte for byte from every replica;
// - the same with binary batches (application/vnd.hermes-kv.batch) from some of the clients, W=2.
//
// A batch op is recorded like the single op it stands for (see harness.ts): invoked when the
// batch is sent, answered when the batch's answer arrives; its result's status maps as the single
// route's status does. A batch that gets no answer leaves its updates unknown and its reads failed.

import { afterEach, describe, expect, test } from "bun:test";
import { LocalCluster } from "../../src/cli/local-cluster.ts";
import { shardOf } from "../../src/worker/key-shard.ts";
import type { KvInput } from "../lib/history.ts";
import { checkLinearizable } from "../lib/linearizability.ts";
import {
  type Answer,
  Client,
  type Outcome,
  Recorder,
  convergeAndReadAll,
  errorCode,
  eventually,
  expectIncrementsAccountedFor,
  expectLinearizable,
  prng,
  request,
  requestTimeoutMs,
  startSteadyCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { runWorkload } from "./workload.ts";
import { batchBinaryType } from "../../src/http/batch-binary.ts";
import { type BinaryBatchOp, decodeBinaryResults, encodeBinaryBatch } from "../../src/http/batch-binary-client.ts";
import { jsonResultOf } from "../../src/cli/batch-binary-file.ts";

const replicas = 3;
const seed = testSeed(0x5eed_ba7c);

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

function urlsOf(cluster: LocalCluster): string[] {
  return Array.from({ length: replicas }, (_, i) => cluster.url(i));
}

/** `perShard` keys named `${prefix}${n}` on each of the `shards` shards. */
function keysOnEveryShard(prefix: string, shards: number, perShard: number): string[] {
  const byShard: string[][] = Array.from({ length: shards }, () => []);
  for (let n = 0; byShard.some((keys) => keys.length < perShard); n++) {
    const key = `${prefix}${n}`;
    const keys = byShard[shardOf(key, shards)]!;
    if (keys.length < perShard) keys.push(key);
  }
  return byShard.flat();
}

const b64 = (text: string | Uint8Array): string => Buffer.from(text).toString("base64");
const fromB64 = (text: string): string => Buffer.from(text, "base64").toString("latin1");

/** One op of a batch as planned by a client: the wire form plus what the history needs. */
type PlannedOp =
  | { op: "get"; key: string }
  | { op: "put"; key: string; value: string }
  | { op: "cas"; key: string; etag: string; value: string; expected: string }
  | { op: "create"; key: string; value: string }
  | { op: "delete"; key: string }
  | { op: "incr"; key: string; by: number };

interface BatchResult {
  status: number;
  value?: string | number;
  etag?: string;
  outcome?: string;
  error?: { code: string; message: string };
}

/** What became of one op of a batch, as recorded. */
interface OpOutcome {
  outcome: Outcome;
  status: number | null;
  /** get: the value read (null = absent); incr: the new value. */
  value: string | number | null;
}

function inputOf(op: PlannedOp): KvInput {
  switch (op.op) {
    case "get":
      return { type: "read" };
    case "put":
      return { type: "write", value: op.value };
    case "delete":
      return { type: "write", value: null };
    case "cas":
      return { type: "cas", expected: op.expected, value: op.value };
    case "create":
      return { type: "cas", expected: null, value: op.value };
    case "incr":
      return { type: "incr", by: op.by };
  }
}

function wireOf(op: PlannedOp): Record<string, unknown> {
  switch (op.op) {
    case "get":
    case "delete":
      return { op: op.op, key: op.key };
    case "put":
    case "create":
      return { op: op.op, key: op.key, value: b64(op.value) };
    case "cas":
      return { op: "cas", key: op.key, etag: op.etag, value: b64(op.value) };
    case "incr":
      return { op: "incr", key: op.key, by: op.by };
  }
}

type BatchFormat = "json" | "binary";

function binaryOf(op: PlannedOp): BinaryBatchOp {
  switch (op.op) {
    case "get":
    case "delete":
      return { op: op.op, key: op.key };
    case "put":
    case "create":
      return { op: op.op, key: op.key, value: Buffer.from(op.value, "latin1") };
    case "cas":
      return { op: "cas", key: op.key, etag: op.etag, value: Buffer.from(op.value, "latin1") };
    case "incr":
      return { op: "incr", key: op.key, by: op.by };
  }
}

/**
 * A binary batch (application/vnd.hermes-kv.batch), answered as `request` answers: a 200's binary
 * results are turned into the JSON form's text (values in base64), so that both formats are
 * recorded by the same code. A malformed binary answer becomes zero results (noted as unexpected).
 */
async function binaryBatchRequest(url: string, ops: PlannedOp[]): Promise<Answer> {
  const wire = ops.map(binaryOf);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": batchBinaryType },
      body: encodeBinaryBatch(wire),
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    const contentType = response.headers.get("content-type");
    let body = new TextDecoder().decode(bytes);
    if (response.status === 200) {
      const results = contentType === batchBinaryType ? decodeBinaryResults(bytes, wire) : "not binary";
      body = JSON.stringify({ results: typeof results === "string" ? [] : results.map(jsonResultOf) });
    }
    return { kind: "response", status: response.status, etag: null, body, contentType, outcome: null };
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === "TimeoutError" || name === "AbortError") return { kind: "timeout" };
    return { kind: "network", message: String(error) };
  }
}

/** A client that sends batches to one replica and records every op of every batch. */
class BatchClient {
  readonly id: number;
  replica: number;
  readonly #urls: readonly string[];
  readonly #rec: Recorder;
  readonly #known = new Map<string, { value: string; etag: string }>();
  readonly #format: BatchFormat;

  constructor(id: number, replica: number, urls: readonly string[], recorder: Recorder, format: BatchFormat = "json") {
    this.id = id;
    this.replica = replica;
    this.#urls = urls;
    this.#rec = recorder;
    this.#format = format;
  }

  known(key: string): { value: string; etag: string } | null {
    return this.#known.get(key) ?? null;
  }

  async batch(ops: PlannedOp[]): Promise<OpOutcome[]> {
    const history = this.#rec.history;
    const replica = this.replica;
    const call = performance.now();
    const ids = ops.map((op) => history.invoke(this.id, op.key, inputOf(op), call));
    const url = `${this.#urls[replica]}/v1/batch`;
    const answer =
      this.#format === "binary"
        ? await binaryBatchRequest(url, ops)
        : await request(url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ ops: ops.map(wireOf) }),
          });
    this.#rec.tally.add(`batch-format:${this.#format}:${answer.kind === "response" ? answer.status : answer.kind}`);
    let results: BatchResult[] | null = null;
    if (answer.kind === "response" && answer.status === 200) {
      results = (JSON.parse(answer.body) as { results: BatchResult[] }).results;
      if (results.length !== ops.length) {
        this.#rec.note(`batch on replica ${replica}: ${results.length} results for ${ops.length} ops`);
        results = null;
      }
    } else if (answer.kind === "response") {
      // Every batch these clients send is valid: a refusal of the whole batch is outside the contract.
      this.#rec.note(`batch on replica ${replica}: ${answer.status} ${answer.body.slice(0, 200)}`);
    }
    this.#rec.tally.add(answer.kind === "response" ? `batch:${answer.status}` : `batch:${answer.kind}`);
    if (results === null) {
      // No answer per op: an update may have happened (unknown), a read had no effect (failed).
      return ops.map((op, i) => {
        this.#known.delete(op.key);
        if (op.op === "get") history.failed(ids[i]!);
        else history.unknown(ids[i]!);
        return { outcome: op.op === "get" ? "failed" : "unknown", status: null, value: null };
      });
    }
    const ret = performance.now();
    return ops.map((op, i) => this.#record(op, ids[i]!, results[i]!, ret, replica));
  }

  #record(op: PlannedOp, id: number, result: BatchResult, ret: number, replica: number): OpOutcome {
    const history = this.#rec.history;
    const status = result.status;
    const code = result.error?.code ?? null;
    this.#rec.tally.add(`batch-${op.op}:${status}${code === null ? "" : `:${code}`}`);
    const where = `batch ${op.op} ${op.key} on replica ${replica}`;
    if (op.op === "get") {
      if (status === 200 && typeof result.value === "string" && result.etag !== undefined) {
        const value = fromB64(result.value);
        history.ok(id, { type: "read", value }, ret);
        this.#known.set(op.key, { value, etag: result.etag });
        return { outcome: "ok", status, value };
      }
      if (status === 404 && code === "not_found") {
        history.ok(id, { type: "read", value: null }, ret);
        this.#known.delete(op.key);
        return { outcome: "ok", status, value: null };
      }
      if (![503, 504, 429].includes(status)) this.#rec.note(`${where}: ${JSON.stringify(result)}`);
      history.failed(id);
      return { outcome: "failed", status, value: null };
    }
    if (status === 200) {
      if (result.etag === undefined) this.#rec.note(`${where}: 200 without an etag`);
      if (op.op === "incr") {
        if (typeof result.value !== "number") {
          this.#rec.note(`${where}: 200 without a number`);
          history.unknown(id);
          return { outcome: "unknown", status, value: null };
        }
        history.ok(id, { type: "incr", value: result.value }, ret);
        return { outcome: "ok", status, value: result.value };
      }
      history.ok(id, op.op === "cas" || op.op === "create" ? { type: "cas", ok: true } : { type: "write" }, ret);
      if ((op.op === "put" || op.op === "cas" || op.op === "create") && result.etag !== undefined) {
        this.#known.set(op.key, { value: op.value, etag: result.etag });
      } else this.#known.delete(op.key);
      return { outcome: "ok", status, value: null };
    }
    if (status === 412 && (op.op === "cas" || op.op === "create") && code === "precondition_failed") {
      history.ok(id, { type: "cas", ok: false }, ret);
      this.#known.delete(op.key);
      return { outcome: "ok", status, value: null };
    }
    if (status === 409 && op.op === "incr" && code === "not_a_number") {
      history.ok(id, { type: "incr-nan" }, ret);
      return { outcome: "ok", status, value: null };
    }
    const definitelyNothing =
      status === 503 || status === 429 || (status === 409 && op.op === "incr" && code === "aborted");
    if (definitelyNothing && code !== null) {
      history.failed(id);
      return { outcome: "failed", status, value: null };
    }
    this.#known.delete(op.key);
    if (status === 504 && code === "outcome_unknown" && result.outcome === "unknown") {
      history.unknown(id);
      return { outcome: "unknown", status, value: null };
    }
    this.#rec.note(`${where}: ${JSON.stringify(result)}`);
    history.unknown(id);
    return { outcome: "unknown", status, value: null };
  }
}

/** Closed-loop batch clients: each sends batches of 1..opsPerBatchMax random ops until `done`. */
async function runBatchWorkload(options: {
  clients: BatchClient[];
  registerKeys: readonly string[];
  counterKeys: readonly string[];
  opsPerBatchMax: number;
  done: () => boolean;
}): Promise<void> {
  const { clients, registerKeys, counterKeys, opsPerBatchMax, done } = options;
  await Promise.all(
    clients.map(async (client) => {
      const random = prng(seed ^ Math.imul(client.id + 1, 0x2545f491));
      const int = (n: number): number => Math.floor(random() * n);
      let seq = 0;
      const fresh = (): string => `b${client.id}-${seq++}`;
      while (!done()) {
        const ops: PlannedOp[] = [];
        const count = 1 + int(opsPerBatchMax);
        for (let i = 0; i < count; i++) {
          const key = registerKeys[int(registerKeys.length)]!;
          const r = random();
          if (r < 0.3) ops.push({ op: "get", key });
          else if (r < 0.5) ops.push({ op: "put", key, value: fresh() });
          else if (r < 0.57) ops.push({ op: "delete", key });
          else if (r < 0.75) {
            const known = client.known(key);
            ops.push(
              known === null
                ? { op: "get", key }
                : { op: "cas", key, etag: known.etag, value: fresh(), expected: known.value },
            );
          } else if (r < 0.83) ops.push({ op: "create", key, value: fresh() });
          else ops.push({ op: "incr", key: counterKeys[int(counterKeys.length)]!, by: 1 + int(5) });
        }
        const outcomes = await client.batch(ops);
        if (outcomes.every((o) => o.outcome === "failed")) await Bun.sleep(10);
      }
    }),
  );
}

/**
 * Every replica has keys on every one of its shards (so the keys really covered every shard). The
 * per-shard counts of /v1/status are refreshed once a second, so this polls until they show.
 */
async function keysOnEveryShardOf(urls: readonly string[], shards: number): Promise<string> {
  let seen = "";
  const ok = await eventually(
    async () => {
      const rows: number[][] = [];
      for (const url of urls) {
        const answer = await request(`${url}/v1/status`);
        if (answer.kind !== "response" || answer.status !== 200) return false;
        rows.push((JSON.parse(answer.body) as { shards: { keys: number }[] }).shards.map((shard) => shard.keys));
      }
      seen = JSON.stringify(rows);
      return rows.every((row) => row.length === shards && row.every((keys) => keys > 0));
    },
    50,
    100,
  );
  return ok ? "every shard holds keys" : `keys per shard per replica: ${seen}`;
}

describe("batches and single ops together are linearizable", () => {
  // JSON batches with W=2 and W=4; binary batch clients (two of three, beside a JSON one) with W=2.
  const runs: { shards: number; formats: BatchFormat[] }[] = [
    { shards: 2, formats: ["json", "json", "json"] },
    { shards: 4, formats: ["json", "json", "json"] },
    { shards: 2, formats: ["binary", "json", "binary"] },
  ];
  for (const { shards, formats } of runs) {
    const what = formats.every((f) => f === "json") ? "3 batch clients" : `batch clients ${formats.join(", ")}`;
    test(`W=${shards}: ${what} and 3 single-op clients on 3 replicas (seed ${seed})`, async () => {
      current = await startSteadyCluster(shards);
      const { cluster, log } = current;
      const urls = urlsOf(cluster);
      const registerKeys = keysOnEveryShard("reg-", shards, 2);
      const counterKeys = keysOnEveryShard("ctr-", shards, 1);
      const recorder = new Recorder();
      const singles = Array.from({ length: replicas }, (_, i) => new Client(i, i, (r) => urls[r]!, recorder));
      const batchers = Array.from(
        { length: replicas },
        (_, i) => new BatchClient(10 + i, i, urls, recorder, formats[i]),
      );
      const opsMax = 2400;
      const done = (): boolean => recorder.history.invokedCount >= opsMax;
      await Promise.all([
        runWorkload({ clients: singles, recorder, registerKeys, counterKeys, seed, opsMin: opsMax, opsMax }),
        runBatchWorkload({ clients: batchers, registerKeys, counterKeys, opsPerBatchMax: 8, done }),
      ]);
      const { converged, answers } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
      console.error(`e2e batch W=${shards}: ${recorder.history.invokedCount} ops; ${recorder.tally}`);

      expect(recorder.unexpected).toEqual([]);
      expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
      expect(await keysOnEveryShardOf(urls, shards)).toBe("every shard holds keys");
      // Batches carried every kind of op, and they succeeded often enough for the check to mean something.
      const t = recorder.tally;
      expect(t.get("batch:200")).toBeGreaterThan(30);
      if (formats.includes("binary")) expect(t.get("batch-format:binary:200")).toBeGreaterThan(10);
      expect(t.get("batch-get:200") + t.get("batch-get:404:not_found")).toBeGreaterThan(100);
      expect(t.get("batch-put:200")).toBeGreaterThan(50);
      expect(t.get("batch-delete:200")).toBeGreaterThan(10);
      expect(t.get("batch-cas:200")).toBeGreaterThan(0);
      expect(t.get("batch-cas:412:precondition_failed")).toBeGreaterThan(0);
      expect(t.get("batch-create:200")).toBeGreaterThan(0);
      expect(t.get("batch-incr:200")).toBeGreaterThan(20);
      // A healthy cluster answers every op (an incr may still give up after losing too many races).
      const notOk = [...t.counts].filter(([name]) => !/:(200|404|412)/.test(name) && !name.endsWith(":409:aborted"));
      if (notOk.length > 0) console.error(`cluster log:\n${log.join("\n")}`);
      expect(notOk).toEqual([]);
      const ops = recorder.ops();
      expectLinearizable(recorder.check(), log);

      // The check covers the batch ops: the same history plus one read, after everything, of a
      // value that a batch wrote and that was overwritten since (a lost write) is rejected.
      const batchIds = new Set(batchers.map((c) => c.id));
      const overwritten = ops.find(
        (op) =>
          batchIds.has(op.client) &&
          op.input.type === "write" &&
          op.input.value !== null &&
          op.output !== null &&
          !answers.get(op.key)![0]!.includes(JSON.stringify(op.input.value)),
      );
      expect(overwritten).toBeDefined();
      const end = performance.now();
      const staleValue = (overwritten!.input as { value: string }).value;
      const stale = {
        id: ops.length + 1_000_000,
        client: 999,
        key: overwritten!.key,
        call: end,
        ret: end + 1,
        input: { type: "read" as const },
        output: { type: "read" as const, value: staleValue },
      };
      expect(checkLinearizable([...ops, stale]).ok).toBe(false);
    }, 120_000);
  }
});

test("CAS and create races inside JSON and binary batches have at most one winner; incr inside batches sums (W=2)", async () => {
  current = await startSteadyCluster(2);
  const { cluster, log } = current;
  const urls = urlsOf(cluster);
  const recorder = new Recorder();
  const racersPerReplica = 2;
  const racers = Array.from(
    { length: replicas * racersPerReplica },
    // Half of them send binary batches: the races mix both formats.
    (_, i) => new BatchClient(i, i % replicas, urls, recorder, i % 2 === 0 ? "json" : "binary"),
  );
  const setter = new Client(50, 0, (r) => urls[r]!, recorder);
  const [casKey, createKey] = keysOnEveryShard("race-", 2, 1) as [string, string];
  const rounds = 8;
  const casPerBatch = 2;

  for (let round = 0; round < rounds; round++) {
    setter.replica = round % replicas;
    expect(await setter.put(casKey, `base-${round}`)).toBe("ok");
    expect(await setter.remove(createKey)).toBe("ok");
    const base = setter.known(casKey)!;
    // Every racer's batch holds two CAS from the same ETag and two creates of the same absent key,
    // mixed with reads: across all batches, at most one CAS and one create may win.
    const outcomes = await Promise.all(
      racers.map((c) => {
        const ops: PlannedOp[] = [{ op: "get", key: casKey }];
        for (let k = 0; k < casPerBatch; k++) {
          ops.push({ op: "cas", key: casKey, etag: base.etag, value: `r${round}-c${c.id}-${k}`, expected: base.value });
          ops.push({ op: "create", key: createKey, value: `k${round}-c${c.id}-${k}` });
        }
        return c.batch(ops);
      }),
    );
    for (const [kind, offset] of [
      ["cas", 1],
      ["create", 2],
    ] as const) {
      const mine = outcomes.flatMap((o) => Array.from({ length: casPerBatch }, (_, k) => o[offset + 2 * k]!));
      const wins = mine.filter((o) => o.status === 200).length;
      const unknown = mine.filter((o) => o.outcome === "unknown").length;
      const lost = mine.filter((o) => o.status === 412).length;
      const statuses = mine.map((o) => o.status).join(",");
      expect(wins, `${kind} round ${round}: ${statuses}`).toBeLessThanOrEqual(1);
      expect(wins + unknown, `${kind} round ${round}: ${statuses}`).toBeGreaterThanOrEqual(1);
      expect(wins + unknown + lost, `${kind} round ${round}: ${statuses}`).toBe(mine.length);
    }
  }

  // Incr: batches of several increments of one counter (some twice in one batch) from every replica.
  const counter = "race-sum";
  const batchesPerRacer = 12;
  let ackedSum = 0;
  const unknownBys: number[] = [];
  const returned: number[] = [];
  await Promise.all(
    racers.map(async (c) => {
      for (let i = 0; i < batchesPerRacer; i++) {
        const bys = [1 + ((c.id * 7 + i * 3) % 5), 1 + ((c.id + i) % 3), 2];
        const outcomes = await c.batch(bys.map((by) => ({ op: "incr", key: counter, by })));
        outcomes.forEach((o, k) => {
          if (o.outcome === "ok" && o.status === 200) {
            ackedSum += bys[k]!;
            returned.push(o.value as number);
          } else if (o.outcome === "unknown") unknownBys.push(bys[k]!);
        });
      }
    }),
  );
  const final = await expectIncrementsAccountedFor({
    urls,
    keys: [casKey, createKey, counter],
    counter,
    recorder,
    readUrl: urls[1]!,
    ackedSum,
    unknownBys,
    returned,
  });
  console.error(
    `e2e batch races: ${rounds} rounds; incr final=${final} acked=${ackedSum} unknown=${unknownBys.length}; ${recorder.tally}`,
  );

  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
}, 120_000);

test("binary values written by a batch read back byte for byte from every replica (W=4)", async () => {
  current = await startSteadyCluster(4);
  const urls = urlsOf(current.cluster);
  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const keys = keysOnEveryShard("bin-", 4, 1);
  const values = keys.map((_, i) => allBytes.map((b) => (b + i * 64) % 256));
  const put = await request(`${urls[0]}/v1/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ops: keys.map((key, i) => ({ op: "put", key, value: b64(values[i]!) })) }),
  });
  expect(put.kind === "response" && put.status).toBe(200);
  const putResults = (JSON.parse(put.kind === "response" ? put.body : "{}") as { results: BatchResult[] }).results;
  expect(putResults.map((r) => r.status)).toEqual(keys.map(() => 200));
  for (const url of urls) {
    // The single GET of every replica sends the raw bytes...
    for (const [i, key] of keys.entries()) {
      const response = await fetch(`${url}/v1/kv/${key}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("etag")).toBe(putResults[i]!.etag!);
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(values[i]!);
    }
    // ...and a batch get of every replica the same bytes in base64.
    const get = await request(`${url}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ops: keys.map((key) => ({ op: "get", key })) }),
    });
    const results = (JSON.parse(get.kind === "response" ? get.body : "{}") as { results: BatchResult[] }).results;
    expect(results.map((r) => r.value)).toEqual(values.map((value) => b64(value)));
  }
  // Error answers on a real node: the whole batch is refused and nothing is written.
  const refused = await request(`${urls[1]}/v1/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      ops: [
        { op: "delete", key: keys[0] },
        { op: "put", key: "", value: "" },
      ],
    }),
  });
  expect(refused.kind === "response" && refused.status).toBe(400);
  expect(errorCode(refused.kind === "response" ? refused.body : "")).toBe("invalid_input");
  const still = await fetch(`${urls[2]}/v1/kv/${keys[0]}`);
  expect(new Uint8Array(await still.arrayBuffer())).toEqual(values[0]!);
}, 60_000);

test("binary batches while a replica stops and rejoins (W=2): per-op 503s, unknown outcomes, a linearizable history", async () => {
  current = await startSteadyCluster(2);
  const { cluster, log } = current;
  const urls = urlsOf(cluster);
  const registerKeys = keysOnEveryShard("fo-", 2, 2);
  const counterKeys = keysOnEveryShard("fc-", 2, 1);
  const recorder = new Recorder();
  const t = recorder.tally;
  const batchers = Array.from(
    { length: 2 * replicas },
    (_, i) => new BatchClient(20 + i, i % replicas, urls, recorder, "binary"),
  );
  const victim = 2;
  /** Waits until `until()` or `ms` passed; the counts asserted below say whether it happened. */
  const waitFor = async (until: () => boolean, ms: number): Promise<void> => {
    const end = performance.now() + ms;
    while (!until() && performance.now() < end) await Bun.sleep(5);
  };
  let done = false;
  let keysLoaded = null as number | null;
  let okBeforeStop = 0;
  let okWhileDown = 0;
  const controller = (async () => {
    try {
      await waitFor(() => t.get("batch:200") >= 30, 20_000);
      okBeforeStop = t.sumMatching("batch-put:200");
      // Batches in flight on the victim when it stops: their updates may or may not have happened.
      expect(await cluster.stopReplica(victim)).toBe(true);
      // Its clients get 503 for every op (nothing started) until it rejoins; the survivors take
      // updates again once the membership has removed it (one lease).
      await waitFor(() => t.sumMatching("batch-put:503") > 0, 10_000);
      const putsAtStop = t.sumMatching("batch-put:200");
      await waitFor(() => t.sumMatching("batch-put:200") >= putsAtStop + 100, 20_000);
      okWhileDown = t.sumMatching("batch-put:200") - putsAtStop;
      keysLoaded = await cluster.startReplica(victim);
      const putsAtStart = t.sumMatching("batch-put:200");
      await waitFor(() => t.sumMatching("batch-put:200") >= putsAtStart + 50, 20_000);
    } finally {
      done = true;
    }
  })();
  await runBatchWorkload({
    clients: batchers,
    registerKeys,
    counterKeys,
    opsPerBatchMax: 8,
    done: () => done,
  });
  await controller;
  const { converged, answers } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
  console.error(
    `e2e binary batch failover: ${recorder.history.invokedCount} ops; keysLoaded=${keysLoaded}; ${recorder.tally}`,
  );

  expect(recorder.unexpected).toEqual([]);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
  expect(okBeforeStop).toBeGreaterThan(0);
  expect(okWhileDown).toBeGreaterThanOrEqual(100);
  expect(keysLoaded).toBe(registerKeys.length + counterKeys.length);
  // The stopped replica answered its binary batches with a 503 per op, as its single routes would.
  expect(t.sumMatching("batch-put:503:unavailable")).toBeGreaterThan(0);
  expect(t.sumMatching("batch-get:503:unavailable")).toBeGreaterThan(0);
  // Every answer is in the contract (recorder.unexpected is empty); outcome-unknown updates, if
  // any, are in the history as such, and the whole history is linearizable.
  expectLinearizable(recorder.check(), log);
}, 120_000);
