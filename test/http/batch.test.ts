// POST /v1/batch against the in-memory backend, through app.request() (no socket): every op kind,
// every status mapping (each result equal to what the op's single route answers), the order of
// results, binary values, concurrency of submission, and a table of bad batches that must each be
// refused (400/413/415) with nothing submitted to the backend.

import { describe, expect, test } from "bun:test";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import { createApp } from "../../src/http/app.ts";
import { batchBodyBytesMax, batchOpsMax } from "../../src/http/routes-batch.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult } from "../../src/base/kv-backend.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";
import { type App, b64, type Json, scripted, setup } from "./batch-fixtures.ts";

const encoder = new TextEncoder();

interface ErrorBody {
  code: string;
  message: string;
  field?: string;
  etag?: string;
}

interface Result {
  status: number;
  value?: string | number;
  etag?: string;
  retryAfter?: number;
  outcome?: string;
  error?: ErrorBody;
}

const unb64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "base64"));

function post(
  app: App,
  body: string | Uint8Array | ReadableStream<Uint8Array>,
  headers: Record<string, string> = { "content-type": "application/json" },
) {
  return app.request("/v1/batch", { method: "POST", body, headers });
}

async function batch(app: App, ops: Json[]): Promise<Result[]> {
  const response = await post(app, JSON.stringify({ ops }));
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
  expect(response.headers.get("cache-control")).toBe("no-store");
  const body = (await response.json()) as { results: Result[] };
  expect(body.results.length).toBe(ops.length);
  return body.results;
}

describe("every op kind", () => {
  test("put, get, cas, create, delete and incr do what their single routes do", async () => {
    const { app, backend } = setup({ nodeId: 3 });
    const [put, get, casOk, casStale, createTaken, createNew, incrNew, incrAgain, del, getDeleted, getNever] =
      await batch(app, [
        { op: "put", key: "k", value: b64("hello") },
        { op: "get", key: "k" },
        { op: "cas", key: "k", etag: '"2.3"', value: b64("bye") },
        { op: "cas", key: "k", etag: '"2.3"', value: b64("late") },
        { op: "create", key: "k", value: b64("x") },
        { op: "create", key: "fresh", value: b64("first") },
        { op: "incr", key: "n", by: 5 },
        { op: "incr", key: "n" },
        { op: "delete", key: "k" },
        { op: "get", key: "k" },
        { op: "get", key: "never" },
      ]);
    expect(put).toEqual({ status: 200, etag: '"2.3"' });
    expect(get).toEqual({ status: 200, value: b64("hello"), etag: '"2.3"' });
    expect(casOk).toEqual({ status: 200, etag: '"3.3"' });
    expect(casStale).toEqual({
      status: 412,
      etag: '"3.3"',
      error: {
        code: "precondition_failed",
        message: 'precondition failed: the key\'s current ETag is "3.3" (If-Match)',
        etag: '"3.3"',
      },
    });
    expect(createTaken?.status).toBe(412);
    expect(createTaken?.error?.message).toBe("precondition failed: the key exists (If-None-Match: *)");
    expect(createNew).toEqual({ status: 200, etag: '"1.3"' });
    expect(incrNew).toEqual({ status: 200, value: 5, etag: '"1.3"' });
    expect(incrAgain).toEqual({ status: 200, value: 6, etag: '"2.3"' });
    expect(del).toEqual({ status: 200, etag: '"5.3"' });
    // A tombstone keeps its timestamp, as the single route's ETag header does.
    expect(getDeleted).toEqual({ status: 404, etag: '"5.3"', error: { code: "not_found", message: "key not found" } });
    expect(getNever).toEqual({ status: 404, error: { code: "not_found", message: "key not found" } });
    expect(backend.submitCount).toBe(11);
    expect(backend.peek("fresh")?.value).toEqual(encoder.encode("first"));
    // What a batch wrote, the single routes read.
    const single = await app.request("/v1/kv/n");
    expect(await single.text()).toBe("6");
    expect(single.headers.get("etag")).toBe('"2.3"');
  });

  test("incr: by defaults to 1, may be negative, and reaches the safe-integer range", async () => {
    const { app } = setup();
    const results = await batch(app, [
      { op: "incr", key: "c" },
      { op: "incr", key: "c", by: -10 },
      { op: "incr", key: "d", by: Number.MAX_SAFE_INTEGER },
      { op: "incr", key: "d", by: 1 },
      { op: "incr", key: "e", by: 0 },
    ]);
    expect(results.map((r) => r.value ?? r.error?.code)).toEqual([1, -9, Number.MAX_SAFE_INTEGER, "not_a_number", 0]);
    expect(results[3]?.status).toBe(409);
  });

  test("an empty batch is answered with no results and submits nothing", async () => {
    const { app, backend } = setup();
    expect(await batch(app, [])).toEqual([]);
    expect(backend.submitCount).toBe(0);
  });

  test("the same key may appear many times: each op stands alone", async () => {
    const { app } = setup();
    const results = await batch(
      app,
      Array.from({ length: 10 }, () => ({ op: "incr", key: "same" })),
    );
    expect(results.map((r) => r.value)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("a Content-Type with parameters, or none at all, is JSON", async () => {
    const { app } = setup();
    const body = JSON.stringify({ ops: [{ op: "get", key: "k" }] });
    expect((await post(app, body, { "content-type": "Application/JSON; charset=utf-8" })).status).toBe(200);
    expect((await post(app, encoder.encode(body), {})).status).toBe(200);
  });
});

describe("binary values", () => {
  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

  test("all 256 byte values round-trip through a batch, and through the single routes", async () => {
    const { app, backend } = setup();
    const reversed = allBytes.slice().reverse();
    const [put, create, cas] = await batch(app, [
      { op: "put", key: "bin", value: b64(allBytes) },
      { op: "create", key: "bin2", value: b64(reversed) },
      { op: "cas", key: "bin3", etag: '"1.1"', value: b64(allBytes) },
    ]);
    expect(put?.status).toBe(200);
    expect(create?.status).toBe(200);
    expect(cas?.status).toBe(412);
    expect(backend.peek("bin")?.value).toEqual(allBytes);
    expect(backend.peek("bin2")?.value).toEqual(reversed);
    const [get, get2] = await batch(app, [
      { op: "get", key: "bin" },
      { op: "get", key: "bin2" },
    ]);
    expect(unb64(get!.value as string)).toEqual(allBytes);
    expect(unb64(get2!.value as string)).toEqual(reversed);
    // The single GET sends the raw bytes the batch wrote; a single PUT's raw bytes come back in base64.
    expect(new Uint8Array(await (await app.request("/v1/kv/bin")).arrayBuffer())).toEqual(allBytes);
    await app.request("/v1/kv/raw", { method: "PUT", body: reversed });
    const [raw] = await batch(app, [{ op: "get", key: "raw" }]);
    expect(raw?.value).toBe(b64(reversed));
  });

  test("every length mod 3 (padding 0, 1 and 2) and the empty value", async () => {
    const { app, backend } = setup();
    const values = [0, 1, 2, 3, 4, 5, 255].map((n) => allBytes.slice(0, n));
    const results = await batch(
      app,
      values.map((value, i) => ({ op: "put", key: `v${i}`, value: b64(value) })),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    values.forEach((value, i) => expect(backend.peek(`v${i}`)?.value).toEqual(value));
    const reads = await batch(
      app,
      values.map((_, i) => ({ op: "get", key: `v${i}` })),
    );
    expect(reads.map((r) => r.value)).toEqual(values.map((value) => b64(value)));
  });

  test("a value of exactly valueBytesMax is accepted; one byte more is 413 and nothing is written", async () => {
    const { app, backend } = setup({ valueBytesMax: 300 });
    const [ok] = await batch(app, [{ op: "put", key: "big", value: b64(new Uint8Array(300).fill(7)) }]);
    expect(ok?.status).toBe(200);
    const response = await post(
      app,
      JSON.stringify({ ops: [{ op: "put", key: "big2", value: b64(new Uint8Array(301)) }] }),
    );
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: ErrorBody }).error).toEqual({
      code: "too_large",
      message: "ops[0].value: the value is 301 bytes; the largest accepted is 300",
      field: "ops[0].value",
    });
    expect(backend.submitCount).toBe(1);
  });

  test("keys are JSON text: any Unicode, '/' and '%' are ordinary characters", async () => {
    const { app, backend } = setup();
    const keys = ["a/b", "a%2Fb", "été", "😀", "with space", "?#&="];
    const results = await batch(
      app,
      keys.map((key, i) => ({ op: "put", key, value: b64(String(i)) })),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    keys.forEach((key, i) => expect(backend.peek(key)?.value).toEqual(encoder.encode(String(i))));
    // The same keys through the single route, percent-encoded.
    for (const [i, key] of keys.entries())
      expect(await (await app.request(`/v1/kv/${encodeURIComponent(key)}`)).text()).toBe(String(i));
  });
});

// ---------------------------------------------------------------------------------------------
// Status mapping: each result must be what the op's single route answers for the same backend
// result: status, error body, and the headers as fields (ETag -> etag, Retry-After -> retryAfter,
// X-Outcome -> outcome).

interface OpForm {
  name: string;
  kind: OpKind;
  batch: Json;
  single: { path: string; init: RequestInit };
}

const forms: OpForm[] = [
  { name: "get", kind: OpKind.Read, batch: { op: "get", key: "k" }, single: { path: "/v1/kv/k", init: {} } },
  {
    name: "put",
    kind: OpKind.Write,
    batch: { op: "put", key: "k", value: b64("v") },
    single: { path: "/v1/kv/k", init: { method: "PUT", body: "v" } },
  },
  {
    name: "cas",
    kind: OpKind.Cas,
    batch: { op: "cas", key: "k", etag: '"4.2"', value: b64("v") },
    single: { path: "/v1/kv/k", init: { method: "PUT", body: "v", headers: { "if-match": '"4.2"' } } },
  },
  {
    name: "create",
    kind: OpKind.Create,
    batch: { op: "create", key: "k", value: b64("v") },
    single: { path: "/v1/kv/k", init: { method: "PUT", body: "v", headers: { "if-none-match": "*" } } },
  },
  {
    name: "delete",
    kind: OpKind.Delete,
    batch: { op: "delete", key: "k" },
    single: { path: "/v1/kv/k", init: { method: "DELETE" } },
  },
  {
    name: "incr",
    kind: OpKind.Incr,
    batch: { op: "incr", key: "k", by: 3 },
    single: { path: "/v1/kv/k/incr?by=3", init: { method: "POST" } },
  },
];

/** The single route's answer in the shape of a batch result. */
async function asResult(response: Response): Promise<Result> {
  const result: Result = { status: response.status };
  const etag = response.headers.get("etag");
  if (response.status === 200) {
    if (response.headers.get("content-type") === "application/octet-stream") {
      result.value = b64(new Uint8Array(await response.arrayBuffer()));
    } else {
      const body = (await response.json()) as { value?: number };
      if (body.value !== undefined) result.value = body.value;
    }
    result.etag = etag!;
    return result;
  }
  if (etag !== null) result.etag = etag;
  const retryAfter = response.headers.get("retry-after");
  if (retryAfter !== null) result.retryAfter = Number(retryAfter);
  const outcome = response.headers.get("x-outcome");
  if (outcome !== null) result.outcome = outcome;
  result.error = ((await response.json()) as { error: ErrorBody }).error;
  return result;
}

/** The HTTP status the contract gives (README), independently of the single routes. */
function contractStatus(status: OpStatus, kind: OpKind): number {
  const isRead = kind === OpKind.Read;
  switch (status) {
    case OpStatus.PreconditionFailed:
      return 412;
    case OpStatus.NotANumber:
    case OpStatus.Aborted:
      return 409;
    case OpStatus.Unknown:
      return 504;
    case OpStatus.Unavailable:
      return 503;
    case OpStatus.Busy:
      return 429;
    case OpStatus.StoreFull:
      return 507;
    case OpStatus.Timeout:
      return isRead ? 504 : 503;
    default:
      return isRead ? 404 : 200;
  }
}

describe("every status maps as on the single routes", () => {
  for (const script of scripted) {
    test(script.label, async () => {
      const { app, backend } = setup();
      // "Ok, absent" is an answer only a read can get (an Ok incr without a value is a broken backend).
      const cases = script.status === OpStatus.Ok ? forms.filter((form) => form.kind === OpKind.Read) : forms;
      // The scripted results are consumed in submission order, which is request order.
      for (const _ of cases) backend.failNext(script.status, script.ts, script.value ?? null);
      const results = await batch(
        app,
        cases.map((form) => form.batch),
      );
      for (const [i, form] of cases.entries()) {
        backend.failNext(script.status, script.ts, script.value ?? null);
        const single = await app.request(form.single.path, form.single.init);
        const want = await asResult(single);
        expect({ op: form.name, ...results[i] }).toEqual({ op: form.name, ...want });
        expect(results[i]!.status).toBe(contractStatus(script.status, form.kind));
      }
      // Unknown outcome: only for updates, flagged as on the single route (X-Outcome: unknown).
      if (script.status === OpStatus.Unknown) {
        expect(results.map((r) => r.outcome ?? null)).toEqual([
          null,
          "unknown",
          "unknown",
          "unknown",
          "unknown",
          "unknown",
        ]);
        expect(results.map((r) => r.error?.code)).toEqual(["timeout", ...Array(5).fill("outcome_unknown")]);
      }
      expect(backend.peek("k")).toBeUndefined();
    });
  }

  test("a batch whose ops fail and succeed mixes statuses, in request order", async () => {
    const app2 = setup();
    app2.backend.failNext(OpStatus.Busy);
    app2.backend.failNext(OpStatus.Unknown);
    const results = await batch(app2.app, [
      { op: "put", key: "a", value: b64("x") },
      { op: "put", key: "b", value: b64("y") },
      { op: "put", key: "c", value: b64("z") },
      { op: "get", key: "c" },
      { op: "get", key: "a" },
    ]);
    expect(results.map((r) => r.status)).toEqual([429, 504, 200, 200, 404]);
    expect(results[0]).toMatchObject({ retryAfter: 1, error: { code: "busy" } });
    expect(results[1]).toMatchObject({ outcome: "unknown", error: { code: "outcome_unknown" } });
    expect(results[3]?.value).toBe(b64("z"));
  });

  test("a backend result that breaks the contract is a 500, as on the single routes", async () => {
    const { app, backend } = setup();
    backend.failNext(OpStatus.Ok, { version: 0, writer: 0 });
    const original = console.error;
    console.error = () => {};
    try {
      const response = await post(app, JSON.stringify({ ops: [{ op: "delete", key: "k" }] }));
      expect(response.status).toBe(500);
      expect(((await response.json()) as { error: ErrorBody }).error.code).toBe("internal");
    } finally {
      console.error = original;
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Submission: all ops reach the backend before any is answered, and answers that come back in
// another order are still returned in request order.

/** Holds every submitted op until release(), then answers them from the memory backend in reverse. */
class HoldingBackend implements KvBackend {
  readonly inner = new MemoryBackend();
  readonly keyBytesMax = this.inner.keyBytesMax;
  readonly valueBytesMax = this.inner.valueBytesMax;
  readonly held: { request: OpRequest; resolve: (result: OpResult) => void }[] = [];
  answered = 0;
  submit(request: OpRequest): Promise<OpResult> {
    return new Promise((resolve) => this.held.push({ request, resolve }));
  }
  async release(): Promise<void> {
    for (const { request, resolve } of this.held.reverse()) {
      resolve(await this.inner.submit(request));
      this.answered += 1;
    }
  }
  status(): NodeStatus {
    return this.inner.status();
  }
  metrics(): string {
    return this.inner.metrics();
  }
}

describe("submission", () => {
  test("every op is submitted before any is answered; answers completing in reverse come back in order", async () => {
    const backend = new HoldingBackend();
    const app = createApp(backend);
    const ops = Array.from({ length: 50 }, (_, i) => ({ op: "incr", key: "n", by: i + 1 }));
    const pending = post(app, JSON.stringify({ ops }));
    // A route that awaited each op before submitting the next would have submitted one by now.
    for (let i = 0; i < 20 && backend.held.length < ops.length; i++) await Bun.sleep(1);
    expect(backend.held.length).toBe(ops.length);
    expect(backend.answered).toBe(0);
    await backend.release();
    const response = await pending;
    expect(response.status).toBe(200);
    const { results } = (await response.json()) as { results: Result[] };
    // The last op ran first (reverse order): op i saw the sum of by over ops i..49.
    const expected = ops.map((_, i) => ops.slice(i).reduce((sum, op) => sum + op.by, 0));
    expect(results.map((r) => r.value)).toEqual(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Bad batches: each is refused as a whole and submits nothing.

interface BadCase {
  label: string;
  body: string | Uint8Array | (() => ReadableStream<Uint8Array>);
  headers?: Record<string, string>;
  path?: string;
  status: number;
  code: string;
  field?: string;
  /** A part of the message. */
  message?: string;
}

const keyBytesMax = 64;
const valueBytesMax = 256;
const ok = (ops: Json[]): string => JSON.stringify({ ops });
const goodOps = (n: number): Json[] =>
  Array.from({ length: n }, (_, i) => ({ op: "put", key: `k${i}`, value: b64(`v${i}`) }));
const withOp = (n: number, at: number, bad: Json): string => {
  const ops = goodOps(n);
  ops[at] = bad;
  return ok(ops);
};

function streamOf(chunks: number, chunkBytes: number): () => ReadableStream<Uint8Array> {
  return () => {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === chunks) return controller.close();
        controller.enqueue(new Uint8Array(chunkBytes).fill(0x20));
        sent += 1;
      },
    });
  };
}

const bad: BadCase[] = [
  // The body as a whole.
  {
    label: "malformed JSON",
    body: '{"ops":[{"op":"get","key":"k"}',
    status: 400,
    code: "invalid_input",
    field: "body",
    message: "not valid JSON",
  },
  { label: "trailing garbage", body: '{"ops":[]} x', status: 400, code: "invalid_input", field: "body" },
  { label: "empty body", body: "", status: 400, code: "invalid_input", field: "body" },
  {
    label: "not UTF-8",
    body: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]),
    status: 400,
    code: "invalid_input",
    field: "body",
    message: "UTF-8",
  },
  { label: "a JSON string", body: '"ops"', status: 400, code: "invalid_input", field: "body" },
  {
    label: "a JSON array",
    body: "[]",
    status: 400,
    code: "invalid_input",
    field: "body",
    message: "must be a JSON object",
  },
  { label: "null", body: "null", status: 400, code: "invalid_input", field: "body" },
  { label: "no ops field", body: "{}", status: 400, code: "invalid_input", field: "ops", message: 'no "ops" field' },
  {
    label: "ops is an object",
    body: '{"ops":{}}',
    status: 400,
    code: "invalid_input",
    field: "ops",
    message: "must be a JSON array",
  },
  {
    label: "unknown top-level field",
    body: '{"ops":[],"atomic":true}',
    status: 400,
    code: "invalid_input",
    field: "ops",
    message: '"atomic"',
  },
  {
    label: "deeply nested JSON",
    body: `{"ops":[${"[".repeat(50_000)}${"]".repeat(50_000)}]}`,
    status: 400,
    code: "invalid_input",
    field: "ops[0]",
    message: "must be a JSON object",
  },
  // An op's shape.
  {
    label: "unknown op",
    body: ok([{ op: "scan", key: "k" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].op",
    message: 'unknown op "scan"',
  },
  {
    label: "op name in another case",
    body: ok([{ op: "GET", key: "k" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].op",
  },
  { label: "op is a number", body: ok([{ op: 1, key: "k" }]), status: 400, code: "invalid_input", field: "ops[0].op" },
  {
    label: "no op field",
    body: ok([{ key: "k" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].op",
    message: 'no "op" field',
  },
  {
    label: "op is not an object",
    body: '{"ops":["get k"]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0]",
    message: "must be a JSON object",
  },
  { label: "op is null", body: '{"ops":[null]}', status: 400, code: "invalid_input", field: "ops[0]" },
  {
    label: "op is an array",
    body: '{"ops":[["get","k"]]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0]",
    message: "must be a JSON object",
  },
  {
    label: "missing key",
    body: ok([{ op: "get" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: 'needs the field "key"',
  },
  {
    label: "missing value",
    body: ok([{ op: "put", key: "k" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "missing etag",
    body: ok([{ op: "cas", key: "k", value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "value on a get",
    body: ok([{ op: "get", key: "k", value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
    message: "unknown field",
  },
  {
    label: "etag on a put (a blind write must not pass for a cas)",
    body: ok([{ op: "put", key: "k", etag: '"2.1"', value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "by on a delete",
    body: ok([{ op: "delete", key: "k", by: 1 }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  // Keys: the rules of the single routes.
  {
    label: "key is a number",
    body: ok([{ op: "get", key: 5 }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "JSON string",
  },
  {
    label: "empty key",
    body: ok([{ op: "get", key: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "the key is empty",
  },
  {
    label: "key '.'",
    body: ok([{ op: "put", key: ".", value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "'.' or '..'",
  },
  {
    label: "key '..'",
    body: ok([{ op: "delete", key: ".." }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
  },
  {
    label: "key with NUL",
    body: ok([{ op: "get", key: "a\u0000b" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "control character",
  },
  {
    label: "key with newline",
    body: ok([{ op: "get", key: "a\nb" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
  },
  {
    label: "key with DEL",
    body: ok([{ op: "get", key: "a\u007f" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
  },
  {
    label: "key with a C1 control",
    body: ok([{ op: "get", key: "a\u0085" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
  },
  {
    label: "key with a lone surrogate",
    body: '{"ops":[{"op":"get","key":"a\\ud800"}]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "lone surrogate",
  },
  {
    label: "key too long",
    body: ok([{ op: "get", key: "a".repeat(keyBytesMax + 1) }]),
    status: 413,
    code: "too_large",
    field: "ops[0].key",
  },
  {
    label: "key too long in UTF-8 bytes",
    body: ok([{ op: "get", key: "é".repeat(keyBytesMax / 2 + 1) }]),
    status: 413,
    code: "too_large",
    field: "ops[0].key",
  },
  // Values: base64 only.
  {
    label: "bad base64 character",
    body: ok([{ op: "put", key: "k", value: "aGk*" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
    message: "not base64",
  },
  {
    label: "base64 without padding",
    body: ok([{ op: "put", key: "k", value: "aGk" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "base64 with whitespace",
    body: ok([{ op: "put", key: "k", value: "aG k=" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "base64url alphabet",
    body: ok([{ op: "put", key: "k", value: "-_8=" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "non-canonical base64",
    body: ok([{ op: "put", key: "k", value: "QR==" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
    message: "canonical",
  },
  {
    label: "value is raw text, not base64",
    body: ok([{ op: "put", key: "k", value: "hello world" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "value is a number",
    body: ok([{ op: "create", key: "k", value: 5 }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "value null (a delete is an op of its own)",
    body: ok([{ op: "put", key: "k", value: null }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "value too large",
    body: ok([{ op: "put", key: "k", value: b64(new Uint8Array(valueBytesMax + 1)) }]),
    status: 413,
    code: "too_large",
    field: "ops[0].value",
  },
  // ETags: the rules of If-Match.
  {
    label: "etag unquoted",
    body: ok([{ op: "cas", key: "k", etag: "2.1", value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
    message: "must be quoted",
  },
  {
    label: "etag weak",
    body: ok([{ op: "cas", key: "k", etag: 'W/"2.1"', value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
    message: "weak",
  },
  {
    label: "etag version 0",
    body: ok([{ op: "cas", key: "k", etag: '"0.1"', value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
    message: "never written",
  },
  {
    label: "etag *",
    body: ok([{ op: "cas", key: "k", etag: "*", value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "etag list",
    body: ok([{ op: "cas", key: "k", etag: '"2.1", "3.1"', value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "etag writer too large",
    body: ok([{ op: "cas", key: "k", etag: '"2.4294967296"', value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "etag is a number",
    body: ok([{ op: "cas", key: "k", etag: 2.1, value: "" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  // by: a safe integer.
  {
    label: "by fractional",
    body: ok([{ op: "incr", key: "k", by: 1.5 }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
    message: "decimal integer",
  },
  {
    label: "by a string",
    body: ok([{ op: "incr", key: "k", by: "3" }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  {
    label: "by beyond 2^53-1",
    body: '{"ops":[{"op":"incr","key":"k","by":9007199254740992}]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
    message: "2^53-1",
  },
  {
    label: "by below -(2^53-1)",
    body: '{"ops":[{"op":"incr","key":"k","by":-9007199254740992}]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  {
    label: "by 1e400 (Infinity)",
    body: '{"ops":[{"op":"incr","key":"k","by":1e400}]}',
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  {
    label: "by null",
    body: ok([{ op: "incr", key: "k", by: null }]),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  // A bad op deep in a batch: the good ops before it must not run either.
  {
    label: "bad key in op #500 of 600",
    body: withOp(600, 499, { op: "put", key: "bad\u0001", value: "" }),
    status: 400,
    code: "invalid_input",
    field: "ops[499].key",
  },
  {
    label: "unknown op at the end of 1024",
    body: withOp(1024, 1023, { op: "zap", key: "k" }),
    status: 400,
    code: "invalid_input",
    field: "ops[1023].op",
  },
  {
    label: "oversize value in op #300 of 400",
    body: withOp(400, 299, { op: "put", key: "k", value: b64(new Uint8Array(valueBytesMax + 1)) }),
    status: 413,
    code: "too_large",
    field: "ops[299].value",
  },
  // Size limits.
  {
    label: "too many ops",
    body: ok(goodOps(batchOpsMax + 1)),
    status: 413,
    code: "too_large",
    field: "ops",
    message: `the most accepted is ${batchOpsMax}`,
  },
  {
    label: "too many ops, one of them bad",
    body: withOp(batchOpsMax + 1, 0, { op: "zap" }),
    status: 413,
    code: "too_large",
    field: "ops",
  },
  {
    label: "too many bytes (Content-Length)",
    body: `${ok(goodOps(1))}${" ".repeat(batchBodyBytesMax)}`,
    status: 413,
    code: "too_large",
    field: "body",
  },
  {
    label: "too many bytes (chunked, no Content-Length)",
    body: streamOf(batchBodyBytesMax / 4096 + 1, 4096),
    status: 413,
    code: "too_large",
    field: "body",
  },
  {
    label: "absurd Content-Length",
    body: "{}",
    headers: { "content-type": "application/json", "content-length": "99999999999999999999" },
    status: 413,
    code: "too_large",
    field: "body",
  },
  {
    label: "malformed Content-Length",
    body: "{}",
    headers: { "content-type": "application/json", "content-length": "12abc" },
    status: 400,
    code: "invalid_input",
    field: "content-length",
  },
  // The request around the body.
  {
    label: "form Content-Type (curl -d without -H)",
    body: ok(goodOps(1)),
    headers: { "content-type": "application/x-www-form-urlencoded" },
    status: 415,
    code: "unsupported_media_type",
    field: "content-type",
  },
  {
    label: "octet-stream Content-Type",
    body: ok(goodOps(1)),
    headers: { "content-type": "application/octet-stream" },
    status: 415,
    code: "unsupported_media_type",
  },
  {
    label: "query parameter",
    path: "/v1/batch?atomic=1",
    body: ok(goodOps(1)),
    status: 400,
    code: "invalid_input",
    field: "query",
  },
  {
    label: "If-Match header",
    body: ok(goodOps(1)),
    headers: { "content-type": "application/json", "if-match": '"2.1"' },
    status: 400,
    code: "invalid_input",
    field: "if-match",
  },
  {
    label: "If-None-Match header",
    body: ok(goodOps(1)),
    headers: { "content-type": "application/json", "if-none-match": "*" },
    status: 400,
    code: "invalid_input",
    field: "if-none-match",
  },
];

describe("bad batches are refused whole, and nothing is submitted", () => {
  for (const c of bad) {
    test(`${c.label}: ${c.status}`, async () => {
      const { app, backend } = setup({ keyBytesMax, valueBytesMax });
      const body = typeof c.body === "function" ? c.body() : c.body;
      const response = await app.request(c.path ?? "/v1/batch", {
        method: "POST",
        body,
        headers: c.headers ?? { "content-type": "application/json" },
      });
      expect(response.status).toBe(c.status);
      expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
      const { error } = (await response.json()) as { error: ErrorBody };
      expect(error.code).toBe(c.code);
      if (c.field !== undefined) expect(error.field).toBe(c.field);
      if (c.message !== undefined) expect(error.message).toContain(c.message);
      // The message names the op: "ops[499].key: the key contains a control character; ...".
      if (error.field?.startsWith("ops[")) expect(error.message).toStartWith(`${error.field}: `);
      expect(backend.submitCount).toBe(0);
      expect(backend.status().shards[0]!.keys).toBe(0);
    });
  }

  test("limits are inclusive: exactly batchOpsMax ops and exactly batchBodyBytesMax bytes are accepted", async () => {
    const { app, backend } = setup();
    const ops = Array.from({ length: batchOpsMax }, (_, i) => ({ op: "get", key: `k${i}` }));
    const json = JSON.stringify({ ops });
    const padded = json + " ".repeat(batchBodyBytesMax - json.length);
    expect(padded.length).toBe(batchBodyBytesMax);
    const response = await post(app, padded);
    expect(response.status).toBe(200);
    expect(((await response.json()) as { results: Result[] }).results.length).toBe(batchOpsMax);
    expect(backend.submitCount).toBe(batchOpsMax);
    const over = await post(app, `${padded} `);
    expect(over.status).toBe(413);
    expect(backend.submitCount).toBe(batchOpsMax);
  });

  test("a key of exactly keyBytesMax UTF-8 bytes is accepted", async () => {
    const { app } = setup({ keyBytesMax });
    const results = await batch(app, [{ op: "put", key: "é".repeat(keyBytesMax / 2), value: "" }]);
    expect(results[0]?.status).toBe(200);
  });
});

describe("routing and metrics", () => {
  test("other methods are 405 with Allow: POST; a trailing slash or an escaped path is no route", async () => {
    const { app, backend } = setup();
    for (const method of ["GET", "HEAD", "PUT", "DELETE", "PATCH"]) {
      const response = await app.request("/v1/batch", { method });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("POST");
    }
    expect((await post(app, ok([]))).status).toBe(200);
    for (const path of ["/v1/batch/", "/v1/batches", "/v1/b%61tch"]) {
      const response = await app.request(path, {
        method: "POST",
        body: ok([]),
        headers: { "content-type": "application/json" },
      });
      expect(response.status).toBe(404);
      expect(((await response.json()) as { error: ErrorBody }).error.code).toBe("unknown_route");
    }
    expect(backend.submitCount).toBe(0);
  });

  test("/metrics counts batch requests by status, and their ops by op and status", async () => {
    const { app } = setup();
    await batch(app, [
      { op: "put", key: "k", value: b64("v") },
      { op: "get", key: "k" },
      { op: "get", key: "absent" },
      { op: "incr", key: "k" },
    ]);
    await post(app, "{");
    const text = await (await app.request("/metrics")).text();
    expect(text).toContain('hermes_http_requests_total{route="batch",code="200"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="batch",code="400"} 1\n');
    expect(text).toContain('hermes_http_request_duration_seconds_count{route="batch"} 2\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="put",code="200"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="get",code="200"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="get",code="404"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="incr",code="409"} 1\n');
    expect(text).toContain("# TYPE hermes_http_batch_ops_total counter\n");
  });
});
