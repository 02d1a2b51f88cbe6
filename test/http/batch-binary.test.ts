// POST /v1/batch in the binary format (application/vnd.hermes-kv.batch) against the in-memory
// backend, through app.request() (no socket): every op kind and every status answered exactly as
// the JSON form answers the same ops (compared result for result), raw values of every byte,
// results in request order whether ops answer at once or later, a table of bad binary batches that
// must each be refused (400/413) with nothing submitted, the limits, the metrics, and the JSON
// form's fast parser accepting nothing its schema would not, with the same result.

import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult } from "../../src/base/kv-backend.ts";
import { createApp } from "../../src/http/app.ts";
import { batchBinaryType } from "../../src/http/batch-binary.ts";
import { type BinaryBatchOp, decodeBinaryResults, encodeBinaryBatch } from "../../src/http/batch-binary-client.ts";
import { createFastOpParser } from "../../src/http/batch-json-fast.ts";
import { batchBodyBytesMax, batchOpsMax, createOpSchema } from "../../src/http/routes-batch.ts";
import { batchKeyRulesText, createKeySchema, parseConfig } from "../../src/http/schemas.ts";
import { jsonResultOf } from "../../src/cli/batch-binary-file.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";
import { type App, b64, type Json, scripted, setup } from "./batch-fixtures.ts";

const encoder = new TextEncoder();

function postBinary(app: App, body: Uint8Array, contentType = batchBinaryType) {
  return app.request("/v1/batch", { method: "POST", body, headers: { "content-type": contentType } });
}

/** The binary answer to `ops`, each result in the JSON form's shape (value in base64). */
async function binaryBatch(app: App, ops: BinaryBatchOp[]): Promise<Json[]> {
  const response = await postBinary(app, encodeBinaryBatch(ops));
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe(batchBinaryType);
  expect(response.headers.get("cache-control")).toBe("no-store");
  const results = decodeBinaryResults(new Uint8Array(await response.arrayBuffer()), ops);
  if (typeof results === "string") throw new Error(results);
  return results.map(jsonResultOf);
}

/** The JSON answer to the same ops. */
async function jsonBatch(app: App, ops: BinaryBatchOp[]): Promise<Json[]> {
  const wire = ops.map((op) => ("value" in op ? { ...op, value: b64(op.value) } : op));
  const response = await app.request("/v1/batch", {
    method: "POST",
    body: JSON.stringify({ ops: wire }),
    headers: { "content-type": "application/json" },
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { results: Json[] }).results;
}

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

const sequence: BinaryBatchOp[] = [
  { op: "put", key: "k", value: encoder.encode("hello") },
  { op: "get", key: "k" },
  { op: "cas", key: "k", etag: '"2.3"', value: encoder.encode("bye") },
  { op: "cas", key: "k", etag: '"2.3"', value: encoder.encode("late") },
  { op: "create", key: "k", value: encoder.encode("x") },
  { op: "create", key: "fresh", value: encoder.encode("first") },
  { op: "incr", key: "n", by: 5 },
  { op: "incr", key: "n" },
  { op: "incr", key: "n", by: -(2 ** 40) },
  { op: "put", key: "bytes", value: allBytes },
  { op: "get", key: "bytes" },
  { op: "put", key: "empty", value: new Uint8Array(0) },
  { op: "get", key: "empty" },
  { op: "put", key: "κλειδί/ü%20", value: encoder.encode("unicode") },
  { op: "get", key: "κλειδί/ü%20" },
  { op: "delete", key: "k" },
  { op: "get", key: "k" },
  { op: "get", key: "never" },
  { op: "incr", key: "bytes" },
];

describe("the same answers as the JSON form", () => {
  test("every op kind, values of every byte, the empty value, Unicode keys", async () => {
    const json = setup({ nodeId: 3 });
    const binary = setup({ nodeId: 3 });
    const want = await jsonBatch(json.app, sequence);
    const got = await binaryBatch(binary.app, sequence);
    expect(got).toEqual(want);
    // Spot checks that the comparison is about something.
    expect(got[1]).toEqual({ status: 200, value: b64("hello"), etag: '"2.3"' });
    expect(got[3]).toMatchObject({ status: 412, error: { code: "precondition_failed", etag: '"3.3"' } });
    expect(got[8]).toEqual({ status: 200, value: 6 - 2 ** 40, etag: '"3.3"' });
    expect(got[10]).toEqual({ status: 200, value: b64(allBytes), etag: '"2.3"' });
    expect(got[12]).toEqual({ status: 200, value: "", etag: '"2.3"' });
    expect(got[16]).toEqual({ status: 404, etag: '"5.3"', error: { code: "not_found", message: "key not found" } });
    expect(got[18]).toMatchObject({ status: 409, error: { code: "not_a_number" } });
    expect(binary.backend.submitCount).toBe(sequence.length);
    for (const key of ["k", "fresh", "n", "bytes", "empty", "κλειδί/ü%20"])
      expect(binary.backend.peek(key)).toEqual(json.backend.peek(key)!);
    // What a binary batch wrote, the single routes read byte for byte.
    const single = await binary.app.request("/v1/kv/bytes");
    expect(new Uint8Array(await single.arrayBuffer())).toEqual(allBytes);
  });

  test("a key that starts with U+FEFF (a UTF-8 byte order mark) keeps it", async () => {
    const { app, backend } = setup();
    const key = "\ufeffbom";
    expect((await binaryBatch(app, [{ op: "put", key, value: encoder.encode("x") }]))[0]?.status).toBe(200);
    expect(backend.peek(key)?.value).toEqual(encoder.encode("x"));
    expect(backend.peek("bom")).toBeUndefined();
  });

  test("an empty batch is answered with no results and submits nothing", async () => {
    const { app, backend } = setup();
    expect(await binaryBatch(app, [])).toEqual([]);
    expect(backend.submitCount).toBe(0);
  });

  test("a Content-Type with parameters, in any case, is the binary format", async () => {
    const { app } = setup();
    const ops: BinaryBatchOp[] = [{ op: "get", key: "a" }];
    const response = await postBinary(app, encodeBinaryBatch(ops), "Application/VND.hermes-kv.batch; v=1");
    expect(response.status).toBe(200);
    const results = decodeBinaryResults(new Uint8Array(await response.arrayBuffer()), ops);
    expect(results).toEqual([{ status: 404, error: { code: "not_found", message: "key not found" } }]);
  });
});

const forms: BinaryBatchOp[] = [
  { op: "get", key: "k" },
  { op: "put", key: "k", value: encoder.encode("v") },
  { op: "cas", key: "k", etag: '"4.2"', value: encoder.encode("v") },
  { op: "create", key: "k", value: encoder.encode("v") },
  { op: "delete", key: "k" },
  { op: "incr", key: "k", by: 3 },
];

describe("every status maps as in the JSON form", () => {
  for (const script of scripted) {
    test(script.label, async () => {
      const isOk = script.status === OpStatus.Ok;
      // An Ok read carries a value unless absent; an Ok incr carries its new value as decimal ASCII.
      const cases = isOk && script.value === null ? forms.filter((f) => f.op === "get") : forms;
      const valueOf = (op: BinaryBatchOp): Uint8Array | null =>
        !isOk || script.value === null ? null : op.op === "incr" ? encoder.encode("-12") : encoder.encode("val");
      const json = setup();
      const binary = setup();
      for (const op of cases) {
        json.backend.failNext(script.status, script.ts, valueOf(op));
        binary.backend.failNext(script.status, script.ts, valueOf(op));
      }
      const want = await jsonBatch(json.app, cases);
      const got = await binaryBatch(binary.app, cases);
      expect(got).toEqual(want);
      expect(binary.backend.peek("k")).toBeUndefined();
      if (script.status === OpStatus.Unknown) {
        // Unknown outcome: only for updates, flagged as in JSON (outcome: "unknown").
        expect(got.map((r) => r.outcome ?? null)).toEqual([null, ...Array(5).fill("unknown")]);
        expect(got.map((r) => (r.error as { code: string }).code)).toEqual([
          "timeout",
          ...Array(5).fill("outcome_unknown"),
        ]);
        expect(got.map((r) => r.status)).toEqual(Array(6).fill(504));
      }
      if (script.status === OpStatus.Busy) expect(got.every((r) => r.retryAfter === 1 && r.status === 429)).toBe(true);
      if (isOk && script.value !== null)
        expect(got.map((r) => r.etag)).toEqual(Array(6).fill(`"${2 ** 53 - 1}.${0xffff_ffff}"`));
    });
  }
});

test("a backend result that breaks the contract is a 500, as in the JSON form", async () => {
  const { app, backend } = setup();
  backend.failNext(OpStatus.Ok, { version: 0, writer: 0 });
  const original = console.error;
  console.error = () => {};
  try {
    const response = await postBinary(app, encodeBinaryBatch([{ op: "delete", key: "k" }]));
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("internal");
  } finally {
    console.error = original;
  }
});

/** Answers reads at once and updates later, from a memory backend, the way a shard worker does. */
class MixedBackend implements KvBackend {
  readonly inner = new MemoryBackend();
  readonly keyBytesMax = this.inner.keyBytesMax;
  readonly valueBytesMax = this.inner.valueBytesMax;
  readonly #atOnce = new Map<string, OpResult>();
  submit(request: OpRequest): OpResult | Promise<OpResult> {
    const known = request.kind === OpKind.Read ? this.#atOnce.get(request.key) : undefined;
    if (known !== undefined) return known;
    return new Promise((resolve) => setTimeout(() => resolve(this.inner.submit(request)), 5));
  }
  answerAtOnce(key: string, value: string): void {
    this.#atOnce.set(key, { status: OpStatus.Ok, value: encoder.encode(value), version: 4, writer: 1 });
  }
  status(): NodeStatus {
    return this.inner.status();
  }
  metrics(): string {
    return this.inner.metrics();
  }
}

describe("submission", () => {
  test("results keep request order whether ops answer during submit or later, in both formats", async () => {
    for (const format of ["json", "binary"] as const) {
      const backend = new MixedBackend();
      backend.answerAtOnce("hot", "h");
      const app = createApp(backend);
      const ops: BinaryBatchOp[] = [
        { op: "get", key: "hot" },
        { op: "incr", key: "n", by: 2 },
        { op: "get", key: "hot" },
        { op: "get", key: "cold" },
        { op: "incr", key: "n", by: 3 },
      ];
      const results = format === "json" ? await jsonBatch(app, ops) : await binaryBatch(app, ops);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 404, 200]);
      expect(results.map((r) => r.value ?? null)).toEqual([b64("h"), 2, b64("h"), null, 5]);
    }
  });

  test("a batch whose every op answers during submit", async () => {
    const backend = new MixedBackend();
    backend.answerAtOnce("a", "1");
    backend.answerAtOnce("b", "22");
    const app = createApp(backend);
    const ops: BinaryBatchOp[] = [
      { op: "get", key: "b" },
      { op: "get", key: "a" },
    ];
    expect((await binaryBatch(app, ops)).map((r) => r.value)).toEqual([b64("22"), b64("1")]);
    expect(backend.inner.submitCount).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Bad binary batches: each is refused as a whole (JSON error body) and submits nothing.

const keyBytesMax = 64;
const valueBytesMax = 256;

/** Bytes of a batch built field by field, to write malformed ones. */
class Raw {
  readonly parts: number[] = [];
  header(count: number): this {
    return this.bytes([0x48, 0x4b, 0x42, 0x01]).u32(count);
  }
  bytes(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.parts.push(bytes[i]!);
    return this;
  }
  u8(n: number): this {
    return this.bytes([n]);
  }
  u16(n: number): this {
    return this.bytes([n & 0xff, n >>> 8]);
  }
  u32(n: number): this {
    return this.bytes([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]);
  }
  key(key: string | Uint8Array): this {
    const bytes = typeof key === "string" ? encoder.encode(key) : key;
    return this.u16(bytes.length).bytes(bytes);
  }
  op(code: number, key: string | Uint8Array): this {
    return this.u8(code).key(key);
  }
  get(key: string): this {
    return this.op(0, key);
  }
  build(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

const goodGets = (raw: Raw, n: number): Raw => {
  for (let i = 0; i < n; i++) raw.get(`k${i}`);
  return raw;
};

interface BadCase {
  label: string;
  body: Uint8Array;
  status: number;
  code: string;
  field: string;
  message?: string;
}

const bad: BadCase[] = [
  { label: "empty body", body: new Uint8Array(0), status: 400, code: "invalid_input", field: "body" },
  {
    label: "JSON sent as binary",
    body: encoder.encode('{"ops":[]}'),
    status: 400,
    code: "invalid_input",
    field: "body",
  },
  {
    label: "another format version",
    body: Uint8Array.of(0x48, 0x4b, 0x42, 0x02, 0, 0, 0, 0),
    status: 400,
    code: "invalid_input",
    field: "body",
  },
  {
    label: "more ops than batchOpsMax",
    body: goodGets(new Raw().header(batchOpsMax + 1), batchOpsMax + 1).build(),
    status: 413,
    code: "too_large",
    field: "ops",
    message: `the most accepted is ${batchOpsMax}`,
  },
  {
    label: "a count of 2^32-1 with no ops",
    body: new Raw().header(0xffff_ffff).build(),
    status: 413,
    code: "too_large",
    field: "ops",
  },
  {
    label: "fewer ops than counted",
    body: goodGets(new Raw().header(3), 2).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[2]",
    message: "ends inside the op",
  },
  {
    label: "bytes after the last op",
    body: goodGets(new Raw().header(2), 3).build(),
    status: 400,
    code: "invalid_input",
    field: "body",
    message: "after the last of its 2 ops",
  },
  {
    label: "unknown op code",
    body: goodGets(new Raw().header(2), 1).op(6, "k").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[1].op",
    message: "unknown op code 6",
  },
  {
    label: "empty key",
    body: new Raw().header(1).op(4, "").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "the key is empty",
  },
  {
    label: "key longer than keyBytesMax",
    body: new Raw()
      .header(1)
      .get("k".repeat(keyBytesMax + 1))
      .build(),
    status: 413,
    code: "too_large",
    field: "ops[0].key",
  },
  {
    label: "key of keyBytesMax+1 UTF-8 bytes",
    body: new Raw()
      .header(1)
      .get(`${"é".repeat(keyBytesMax / 2)}x`)
      .build(),
    status: 413,
    code: "too_large",
    field: "ops[0].key",
  },
  {
    label: "key cut short by the body's end",
    body: new Raw().header(1).u8(0).u16(10).bytes(encoder.encode("abc")).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "ends inside the key",
  },
  {
    label: "key not UTF-8",
    body: new Raw()
      .header(1)
      .op(0, Uint8Array.of(0x61, 0xff, 0x62))
      .build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "not valid UTF-8",
  },
  {
    label: "key with a control character",
    body: new Raw().header(1).get("a\nb").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "control character",
  },
  {
    label: "key with a C1 control character",
    body: new Raw().header(1).get("a\u0085b").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "control character",
  },
  {
    label: "key '.'",
    body: new Raw().header(1).get(".").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
  },
  {
    label: "key '..'",
    body: new Raw().header(1).get("..").build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].key",
    message: "'.' or '..'",
  },
  {
    label: "bad key in op #500 of 600",
    body: goodGets(new Raw().header(600), 499).get("x\u0000").get("y").bytes(goodGets(new Raw(), 99).build()).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[499].key",
  },
  {
    label: "value larger than valueBytesMax",
    body: new Raw()
      .header(2)
      .op(1, "a")
      .u32(1)
      .u8(7)
      .op(1, "b")
      .u32(valueBytesMax + 1)
      .bytes(new Uint8Array(valueBytesMax + 1))
      .build(),
    status: 413,
    code: "too_large",
    field: "ops[1].value",
    message: `the largest accepted is ${valueBytesMax}`,
  },
  {
    label: "value cut short",
    body: new Raw().header(1).op(1, "a").u32(5).bytes([1, 2]).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "value length cut short",
    body: new Raw().header(1).op(3, "a").bytes([1, 0]).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].value",
  },
  {
    label: "cas on version 0",
    body: new Raw().header(1).op(2, "a").u32(0).u32(0).u32(1).u32(1).u8(9).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
    message: "version 0 means never written",
  },
  {
    label: "cas on a version above 2^53-1",
    body: new Raw().header(1).op(2, "a").u32(0).u32(0x20_0000).u32(1).u32(1).u8(9).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
    message: "larger than 2^53-1",
  },
  {
    label: "cas etag cut short",
    body: new Raw().header(1).op(2, "a").u32(3).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].etag",
  },
  {
    label: "incr by 2^53",
    body: new Raw().header(1).op(5, "n").u32(0).u32(0x20_0000).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
    message: "between -(2^53-1) and 2^53-1",
  },
  {
    label: "incr by -2^53",
    body: new Raw().header(1).op(5, "n").u32(0).u32(0xffe0_0000).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  {
    label: "incr by cut short",
    body: new Raw().header(1).op(5, "n").u32(1).build(),
    status: 400,
    code: "invalid_input",
    field: "ops[0].by",
  },
  {
    label: "body larger than batchBodyBytesMax",
    body: new Raw()
      .header(5)
      .bytes(new Raw().op(1, "a").u32(valueBytesMax).bytes(new Uint8Array(valueBytesMax)).build())
      .bytes(new Uint8Array(batchBodyBytesMax))
      .build(),
    status: 413,
    code: "too_large",
    field: "body",
  },
];

describe("bad binary batches are refused whole, and nothing is submitted", () => {
  for (const c of bad) {
    test(`${c.label}: ${c.status}`, async () => {
      const { app, backend } = setup({ keyBytesMax, valueBytesMax });
      const response = await postBinary(app, c.body);
      expect(response.status).toBe(c.status);
      expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
      const { error } = (await response.json()) as { error: { code: string; field?: string; message: string } };
      expect(error.code).toBe(c.code);
      expect(error.field).toBe(c.field);
      if (c.message !== undefined) expect(error.message).toContain(c.message);
      if (c.field.startsWith("ops[")) expect(error.message).toStartWith(`${c.field}: `);
      expect(backend.submitCount).toBe(0);
      expect(backend.status().shards[0]!.keys).toBe(0);
    });
  }

  test("the client encoder refuses what it cannot express, before sending", () => {
    expect(() => encodeBinaryBatch([{ op: "cas", key: "k", etag: "3.1", value: new Uint8Array(1) }])).toThrow(/ETag/);
    expect(() => encodeBinaryBatch([{ op: "incr", key: "k", by: 2 ** 53 }])).toThrow(/safe integer/);
    expect(() => encodeBinaryBatch([{ op: "get", key: "k".repeat(65536) }])).toThrow(/65535/);
  });
});

describe("limits", () => {
  test("limits are inclusive: batchOpsMax ops, keyBytesMax key bytes, valueBytesMax value bytes", async () => {
    const { app, backend } = setup({ keyBytesMax, valueBytesMax });
    const ops: BinaryBatchOp[] = Array.from({ length: batchOpsMax }, (_, i) => ({ op: "get", key: `k${i}` }));
    ops[0] = { op: "put", key: "é".repeat(keyBytesMax / 2), value: new Uint8Array(valueBytesMax).fill(7) };
    ops[1] = { op: "put", key: "k".repeat(keyBytesMax), value: new Uint8Array(valueBytesMax) };
    const results = await binaryBatch(app, ops);
    expect(results.length).toBe(batchOpsMax);
    expect(results.slice(0, 2).map((r) => r.status)).toEqual([200, 200]);
    expect(backend.submitCount).toBe(batchOpsMax);
    expect(backend.peek("é".repeat(keyBytesMax / 2))?.value).toEqual(new Uint8Array(valueBytesMax).fill(7));
  });

  test("a binary body of exactly batchBodyBytesMax bytes is read; one more byte is 413", async () => {
    const { app, backend } = setup();
    // One put whose value fills the body to the limit (the backend takes values that large).
    const overhead = encodeBinaryBatch([{ op: "put", key: "big", value: new Uint8Array(0) }]).length;
    const setupBig = setup({ valueBytesMax: batchBodyBytesMax });
    const exact = encodeBinaryBatch([{ op: "put", key: "big", value: new Uint8Array(batchBodyBytesMax - overhead) }]);
    expect(exact.length).toBe(batchBodyBytesMax);
    expect((await postBinary(setupBig.app, exact)).status).toBe(200);
    const over = encodeBinaryBatch([
      { op: "put", key: "big", value: new Uint8Array(batchBodyBytesMax - overhead + 1) },
    ]);
    expect((await postBinary(app, over)).status).toBe(413);
    expect(backend.submitCount).toBe(0);
  });
});

describe("metrics", () => {
  test("/metrics counts binary batches and their ops by op and status", async () => {
    const { app } = setup();
    await binaryBatch(app, [
      { op: "put", key: "k", value: encoder.encode("v") },
      { op: "get", key: "k" },
      { op: "get", key: "absent" },
      { op: "incr", key: "k" },
    ]);
    await postBinary(app, Uint8Array.of(1, 2, 3));
    const text = await (await app.request("/metrics")).text();
    expect(text).toContain('hermes_http_requests_total{route="batch",code="200"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="batch",code="400"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="put",code="200"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="get",code="200"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="get",code="404"} 1\n');
    expect(text).toContain('hermes_http_batch_ops_total{op="incr",code="409"} 1\n');
  });
});

// ---------------------------------------------------------------------------------------------
// The JSON form's fast parser: whatever it takes, the schema takes too, with the same result.

describe("the JSON fast parser agrees with the op schema", () => {
  const keySchema = createKeySchema(keyBytesMax, batchKeyRulesText);
  const { opSchema } = createOpSchema(keySchema, valueBytesMax);
  const fastOp = createFastOpParser(keyBytesMax, valueBytesMax);
  const keys: unknown[] = [
    "k",
    "a b",
    "~!@#$%^&*()",
    ".",
    "..",
    "...",
    ".a",
    "",
    "k".repeat(keyBytesMax),
    "k".repeat(keyBytesMax + 1),
    "é",
    "a\u007fb",
    "a\tb",
    5,
    null,
    "\ud800",
  ];
  const values: unknown[] = [
    "",
    "aGVsbG8=",
    "QQ==",
    "QR==",
    "QUI=",
    "QUJD",
    "QUJ",
    "a GVs",
    "aGVsbG8",
    "-_-_",
    b64(new Uint8Array(valueBytesMax)),
    b64(new Uint8Array(valueBytesMax + 1)),
    7,
    null,
    undefined,
  ];
  const bys: unknown[] = [undefined, 1, -1, 0, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 1.5, "1", null, Infinity];
  const inputs: unknown[] = [
    null,
    5,
    "get",
    [],
    [{ op: "get", key: "k" }],
    {},
    { op: "get" },
    { op: "nope", key: "k" },
  ];
  for (const key of keys) {
    inputs.push({ op: "get", key }, { op: "delete", key }, { op: "get", key, extra: 1 }, { key, op: "get" });
    for (const value of values) {
      inputs.push({ op: "put", key, value }, { op: "create", key, value }, { op: "put", key });
      inputs.push({ op: "cas", key, etag: '"3.1"', value });
    }
    for (const by of bys) inputs.push(by === undefined ? { op: "incr", key } : { op: "incr", key, by });
  }
  inputs.push(JSON.parse('{"op":"get","key":"k","__proto__":{"x":1}}'));

  test(`${inputs.length} inputs: fast result is null or the schema's output`, () => {
    let taken = 0;
    for (const input of inputs) {
      const fast = fastOp(input);
      if (fast === null) continue;
      taken += 1;
      const parsed = v.safeParse(opSchema, input, parseConfig);
      expect({ input, success: parsed.success }).toEqual({ input, success: true });
      expect(fast).toEqual(parsed.output as OpRequest);
    }
    // The fast path takes the common ops (else this test would prove nothing).
    expect(taken).toBeGreaterThan(100);
  });
});
