// POST /v1/batch: many independent ops in one request, each answered on its own.
//
// Not a transaction. The ops are submitted together and complete independently, in any order;
// each may succeed or fail, exactly as if it had been sent alone to its single-op route (same
// status, error code and message: outcomes.ts's `failureOf` is the one table for both). Only the
// answers come back in request order. What a batch saves is round trips: one HTTP request, and all
// its ops go into the shard rings in the same turn, so the engine runs them in one round.
//
// The format is JSON with base64 values:
//
//   request   {"ops":[{"op":"get","key":"k"},
//                     {"op":"put","key":"k","value":"<base64>"},
//                     {"op":"cas","key":"k","etag":"\"2.0\"","value":"<base64>"},
//                     {"op":"create","key":"k","value":"<base64>"},
//                     {"op":"delete","key":"k"},
//                     {"op":"incr","key":"k","by":3}]}           (by: optional, default 1)
//   response  {"results":[{"status":200,"value":"<base64>","etag":"\"4.1\""},
//                         {"status":200,"etag":"\"6.1\""},
//                         {"status":412,"etag":"\"6.1\"","error":{"code":"precondition_failed","message":…,"etag":…}},
//                         …,
//                         {"status":200,"value":7,"etag":"\"9.1\""}]}
//
// Why this format: values are arbitrary bytes and JSON strings are Unicode text, so values need an
// encoding, and base64 (RFC 4648, standard alphabet, padded) is the one every language has built in
// and what etcd's JSON gateway uses for its byte fields. Its cost, 4/3 of the value size, is paid
// only by batches; the single routes keep raw bodies. Keys stay JSON strings: they are text by the
// key rules (UTF-8, no control characters), so no encoding is needed and they read as they are.
// JSON (rather than a binary framing) because a batch should be as easy to write with curl and jq
// as the single routes. For programs that send many batches there is also a binary form, chosen by
// its Content-Type (application/vnd.hermes-kv.batch, batch-binary.ts): the same ops, results and
// limits, read in place and answered into one buffer. Both go through this route.
//
// Each result has the status its op would have had on the single route, and carries what that
// route sends in headers as fields: `etag` (ETag), `retryAfter` (Retry-After, seconds) and
// `outcome: "unknown"` (X-Outcome); `error` is the single route's error body. The request itself
// is answered 200 once the batch is accepted, whatever its ops' statuses.
//
// The whole request is validated before any op is submitted: a malformed batch (400), one that is
// too large (413: body bytes, number of ops, a key or a value) or of neither type (415) writes nothing.
// Ops that are trivially valid skip the valibot schema (batch-json-fast.ts: a fifth of a shard
// worker's time went to it), and ops are gathered without a promise each (batch-submit.ts).

import type { Hono } from "hono";
import * as v from "valibot";
import { OpKind } from "../base/kinds.ts";
import type { KvBackend, OpRequest, OpResult } from "../base/kv-backend.ts";
import { bodyTooLarge, bodyUnreadable, readBodyBounded } from "./body.ts";
import { ErrorCode, errorResponse, invalidInput, retryAfterSeconds, tooLarge, unknownRoute } from "./errors.ts";
import { type HttpMetrics, Route, batchOpNames, counted } from "./metrics.ts";
import { failureOf, incrValueOf, okEtag } from "./outcomes.ts";
import { formatTs } from "../base/timestamp.ts";
import {
  type KeySchema,
  batchKeyRulesText,
  contentLengthSchema,
  createKeySchema,
  etagSchema,
  parseConfig,
} from "./schemas.ts";
import { checkQuery, splitTarget } from "./target.ts";
import { batchBinaryType, createBinaryBatchReader, writeBinaryResults } from "./batch-binary.ts";
import { base64DecodedLength, base64Pattern, createFastOpParser, decodeBase64Strict } from "./batch-json-fast.ts";
import { submitAll } from "./batch-submit.ts";

export const batchPath = "/v1/batch";
export const batchAllow = "POST";

/**
 * Most ops in one batch. A batch holds its ops' values until all are answered, and its ops share
 * the shard queues (16,384 ops in flight per shard) with every other client: 1,024 keeps one
 * batch from taking a large part of them, while already amortizing the request over many ops.
 * It also bounds the answer: at most batchOpsMax values read, each at most valueBytesMax (4/3 of
 * that in base64), about 44 MiB with the default 32 KiB values.
 */
export const batchOpsMax = 1024;

/**
 * Largest request body, checked from Content-Length and again while reading. 1 MiB (etcd's default
 * request cap is 1.5 MiB) holds 1,024 small ops, or about 23 values of the largest size (32 KiB,
 * 43,692 bytes in base64). The parsed body and the decoded values take a few times this while the
 * batch runs, so it bounds a batch's memory.
 */
export const batchBodyBytesMax = 1024 * 1024;

/** Each OpKind's index in batchOpNames (its name in a request), for the per-op metrics. */
const opIndexOfKind: Record<OpKind, number> = {
  [OpKind.Read]: 0,
  [OpKind.Write]: 1,
  [OpKind.Cas]: 2,
  [OpKind.Create]: 3,
  [OpKind.Delete]: 4,
  [OpKind.Incr]: 5,
};

const opsText = batchOpNames.join(", ");
const formatHint = `expected {"ops":[{"op":"get","key":"k"}, ...]} with op one of ${opsText}`;

// Standard base64 with padding (base64Pattern); whitespace and the URL-safe alphabet are refused, not guessed at.
const base64Text = "base64 (RFC 4648: standard alphabet A-Z a-z 0-9 + /, with = padding)";

// Uint8Array.toBase64 (TC39 "Uint8Array to/from base64", implemented by Bun).
function toBase64(bytes: Uint8Array): string {
  return (bytes as unknown as { toBase64(): string }).toBase64();
}

/** The message for a missing or an unknown field of an op (valibot reports both as the object's issue). */
function objectMessage(op: string, fields: readonly string[]) {
  return (issue: v.BaseIssue<unknown>): string => {
    const field = issue.path?.[issue.path.length - 1]?.key;
    if (typeof field === "string" && fields.includes(field)) return `the ${op} op needs the field "${field}"`;
    return `unknown field ${JSON.stringify(String(field).slice(0, 64))} in a ${op} op; it takes ${fields.map((f) => `"${f}"`).join(", ")}`;
  };
}

export function createOpSchema(keys: KeySchema, valueBytesMax: number) {
  const key = v.pipe(
    v.string("the key must be a JSON string"),
    // JSON can spell a lone surrogate ("\ud800"), which has no UTF-8 form: a URL could not name it.
    v.check(
      (text: string) => text.isWellFormed(),
      `the key is not valid Unicode (it has a lone surrogate); ${batchKeyRulesText}`,
    ),
    keys.schema,
  );
  const fitsValueBytes = (text: string): boolean => base64DecodedLength(text) <= valueBytesMax;
  const value = v.pipe(
    v.string(`the value must be a JSON string holding ${base64Text}`),
    v.regex(base64Pattern, `the value is not ${base64Text}`),
    v.check(
      fitsValueBytes,
      (issue) =>
        `the value is ${base64DecodedLength(issue.input as string)} bytes; the largest accepted is ${valueBytesMax}`,
    ),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const bytes = decodeBase64Strict(dataset.value);
      if (bytes !== null) return bytes;
      // Only non-zero padding bits get here ("QR=="): such text is not what any encoder writes.
      addIssue({
        message: `the value is not canonical ${base64Text}: its last character has bits set beyond the data`,
      });
      return NEVER;
    }),
  );
  const etag = v.pipe(v.string('the etag must be a JSON string such as "\\"3.1\\"" (quotes included)'), etagSchema);
  const by = v.optional(
    v.pipe(
      v.number("by must be a JSON number, a decimal integer"),
      v.integer((issue) => `by must be a decimal integer, got ${String(issue.input)}`),
      v.safeInteger("by must be between -(2^53-1) and 2^53-1"),
    ),
    1,
  );
  const opSchema = v.pipe(
    // valibot's objects accept arrays (they are objects in JS); JSON's are not.
    v.custom<unknown>((input) => !Array.isArray(input), `an op must be a JSON object; ${formatHint}`),
    v.variant(
      "op",
      [
        v.strictObject({ op: v.literal("get"), key }, objectMessage("get", ["op", "key"])),
        v.strictObject({ op: v.literal("put"), key, value }, objectMessage("put", ["op", "key", "value"])),
        v.strictObject(
          { op: v.literal("cas"), key, etag, value },
          objectMessage("cas", ["op", "key", "etag", "value"]),
        ),
        v.strictObject({ op: v.literal("create"), key, value }, objectMessage("create", ["op", "key", "value"])),
        v.strictObject({ op: v.literal("delete"), key }, objectMessage("delete", ["op", "key"])),
        v.strictObject({ op: v.literal("incr"), key, by }, objectMessage("incr", ["op", "key", "by"])),
      ],
      // Without a path the op itself is not an object; with one, `input` is the "op" field's value.
      (issue) => {
        if (issue.path === undefined) return `an op must be a JSON object; ${formatHint}`;
        if (issue.input === undefined) return `the op has no "op" field; ${formatHint}`;
        const shown =
          typeof issue.input === "string"
            ? JSON.stringify(issue.input.slice(0, 64))
            : `of type ${issue.input === null ? "null" : typeof issue.input}`;
        return `unknown op ${shown}; expected one of ${opsText}`;
      },
    ),
    v.transform((o): OpRequest => {
      switch (o.op) {
        case "get":
          return { kind: OpKind.Read, key: o.key };
        case "put":
          return { kind: OpKind.Write, key: o.key, value: o.value };
        case "cas":
          return {
            kind: OpKind.Cas,
            key: o.key,
            value: o.value,
            expectedVersion: o.etag.version,
            expectedWriter: o.etag.writer,
          };
        case "create":
          return { kind: OpKind.Create, key: o.key, value: o.value };
        case "delete":
          return { kind: OpKind.Delete, key: o.key };
        case "incr":
          return { kind: OpKind.Incr, key: o.key, by: o.by };
      }
    }),
  );
  return { opSchema, fitsValueBytes };
}

/** The body before its ops are looked at: an object with an array `ops` of at most batchOpsMax. */
const envelopeSchema = v.pipe(
  v.custom<unknown>((input) => !Array.isArray(input), `the body must be a JSON object; ${formatHint}`),
  v.strictObject(
    {
      ops: v.pipe(
        v.array(v.unknown(), `"ops" must be a JSON array; ${formatHint}`),
        v.maxLength(
          batchOpsMax,
          (issue) => `the batch has ${(issue.input as unknown[]).length} ops; the most accepted is ${batchOpsMax}`,
        ),
      ),
    },
    (issue) =>
      issue.path === undefined
        ? `the body must be a JSON object; ${formatHint}`
        : issue.input === undefined
          ? `the body has no "ops" field; ${formatHint}`
          : `unknown field ${JSON.stringify(String(issue.path[issue.path.length - 1]?.key).slice(0, 64))} in the body; ${formatHint}`,
  ),
);

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
// Headers objects, not literals: Bun copies a Headers it is given more cheaply than it reads an
// object's keys (outcomes.ts measured the same for GET).
const jsonHeaders = new Headers({ "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });

const binaryHeaders = new Headers({ "content-type": batchBinaryType, "cache-control": "no-store" });

/** The two forms of a batch (the request's Content-Type); the answer is in the same form. */
const BatchFormat = { json: 0, binary: 1 } as const;
type BatchFormat = (typeof BatchFormat)[keyof typeof BatchFormat];

/** The batch format a Content-Type names (any parameters, any case), or null for neither. */
function formatOf(contentType: string): BatchFormat | null {
  const semicolon = contentType.indexOf(";");
  const type = (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return type === "application/json" ? BatchFormat.json : type === batchBinaryType ? BatchFormat.binary : null;
}

/** `ops[3].key` from an issue's path inside op 3. */
function fieldOf(index: number, issue: v.BaseIssue<unknown>): string {
  let field = `ops[${index}]`;
  for (const item of issue.path ?? []) {
    if (typeof item.key === "string") field += `.${item.key}`;
    else if (typeof item.key === "number") field += `[${item.key}]`;
  }
  return field;
}

/** The ETag of a completed op as a JSON string: `"v.w"` is digits and a dot, so only its quotes need escapes. */
function etagJson(result: OpResult, what: string): string {
  if (result.version <= 0) okEtag(result, what); // throws: a completed op has a timestamp
  return `"\\"${formatTs(result.version, result.writer)}\\""`;
}

/** One result of the response, as JSON text. */
function resultJson(op: OpRequest, result: OpResult): { json: string; status: number } {
  const failure = failureOf(op.kind, result);
  if (failure === null) {
    switch (op.kind) {
      case OpKind.Read:
        // failureOf answered 404 for an absent key, so the value is here.
        return {
          json: `{"status":200,"value":"${toBase64(result.value!)}","etag":${etagJson(result, "a present value")}}`,
          status: 200,
        };
      case OpKind.Incr:
        return {
          json: `{"status":200,"value":${incrValueOf(result)},"etag":${etagJson(result, "a completed incr")}}`,
          status: 200,
        };
      default:
        return { json: `{"status":200,"etag":${etagJson(result, "a completed update")}}`, status: 200 };
    }
  }
  let json = `{"status":${failure.status}`;
  if (failure.etag !== undefined) json += `,"etag":${JSON.stringify(failure.etag)}`;
  if (failure.retryAfter) json += `,"retryAfter":${retryAfterJson}`;
  if (failure.outcomeUnknown) json += ',"outcome":"unknown"';
  json += `,"error":{"code":"${failure.code}","message":${JSON.stringify(failure.message)}`;
  if (failure.etagInBody && failure.etag !== undefined) json += `,"etag":${JSON.stringify(failure.etag)}`;
  return { json: `${json}}}`, status: failure.status };
}

const retryAfterJson = String(retryAfterSeconds);

/** The body before its ops are looked at, without valibot: an object with only an array `ops` of at most batchOpsMax. */
function plainEnvelopeOps(json: unknown): unknown[] | null {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return null;
  let fields = 0;
  for (const _ in json) fields++;
  const ops = (json as { ops?: unknown }).ops;
  return fields === 1 && Array.isArray(ops) && ops.length <= batchOpsMax ? ops : null;
}

export function registerBatchRoutes(app: Hono, backend: KvBackend, metrics: HttpMetrics): void {
  const keys = createKeySchema(backend.keyBytesMax, batchKeyRulesText);
  const { opSchema, fitsValueBytes } = createOpSchema(keys, backend.valueBytesMax);
  const fastOp = createFastOpParser(backend.keyBytesMax, backend.valueBytesMax);
  const readBinaryBatch = createBinaryBatchReader(backend.keyBytesMax, backend.valueBytesMax, batchOpsMax);

  /** Validate every op; the requests to submit, or the 400/413 answer for the first bad op. */
  function parseOps(ops: readonly unknown[]): OpRequest[] | Response {
    const requests = new Array<OpRequest>(ops.length);
    for (let index = 0; index < ops.length; index += 1) {
      const fast = fastOp(ops[index]);
      if (fast !== null) {
        requests[index] = fast;
        continue;
      }
      const parsed = v.safeParse(opSchema, ops[index], parseConfig);
      if (!parsed.success) {
        const issue = parsed.issues[0];
        const field = fieldOf(index, issue);
        const message = `${field}: ${issue.message}`;
        if (issue.requirement === keys.fitsKeyBytes || issue.requirement === fitsValueBytes)
          return tooLarge(field, message);
        return invalidInput(field, message);
      }
      requests[index] = parsed.output;
    }
    return requests;
  }

  /** The ops of a JSON body, or the error answer. */
  function readJsonBatch(body: Uint8Array): OpRequest[] | Response {
    let text: string;
    try {
      text = utf8Strict.decode(body);
    } catch {
      return invalidInput("body", "the body is not valid UTF-8");
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      // SyntaxError, or a RangeError for nesting too deep to parse.
      return invalidInput("body", `the body is not valid JSON (${(error as Error).message}); ${formatHint}`);
    }
    const plain = plainEnvelopeOps(json);
    if (plain !== null) return parseOps(plain);
    const envelope = v.safeParse(envelopeSchema, json, parseConfig);
    if (!envelope.success) {
      const issue = envelope.issues[0];
      if (issue.type === "max_length") return tooLarge("ops", issue.message);
      return invalidInput(issue.path === undefined ? "body" : "ops", issue.message);
    }
    return parseOps(envelope.output.ops);
  }

  /** The body within batchBodyBytesMax, or the error answer. */
  async function readBody(request: Request, bytesExpected: number | null): Promise<Uint8Array | Response> {
    let body: Uint8Array | typeof bodyTooLarge | typeof bodyUnreadable;
    if (bytesExpected !== null) {
      // With a Content-Length within the limit, Bun's parser delivers exactly that many bytes: read
      // them at once (a stream reader cost more than the rest of a small batch's parse). A Request
      // built in-process may carry more than it says, so the count is checked again below.
      try {
        body = await request.bytes();
      } catch {
        body = bodyUnreadable;
      }
      if (body !== bodyUnreadable && body.length > batchBodyBytesMax) body = bodyTooLarge;
    } else body = await readBodyBounded(request.body, batchBodyBytesMax, 0);
    if (body === bodyTooLarge) return tooLarge("body", `the batch is larger than ${batchBodyBytesMax} bytes`);
    if (body === bodyUnreadable) return invalidInput("body", "the request body could not be read");
    return body;
  }

  /** Everything up to the submit: the ops of a valid batch and its format, or the error answer. */
  async function readBatch(request: Request): Promise<{ ops: OpRequest[]; format: BatchFormat } | Response> {
    const { path, query } = splitTarget(request.url);
    // Hono routed on a decoded path; a path spelled with escapes ("/v1/b%61tch") is not ours.
    if (path !== batchPath) return unknownRoute(request.method, path.slice(0, 200));
    const checked = checkQuery(query, []);
    if (!checked.ok) return invalidInput("query", checked.message);
    const headers = request.headers;
    // As on the single routes other than PUT: a condition that would be ignored is refused. A
    // batch has per-op conditions (cas, create) instead.
    if (headers.has("if-match"))
      return invalidInput("if-match", "If-Match is not supported on POST /v1/batch; use a cas op with an etag");
    if (headers.has("if-none-match"))
      return invalidInput("if-none-match", "If-None-Match is not supported on POST /v1/batch; use a create op");
    const contentType = headers.get("content-type");
    // No Content-Type at all is JSON (curl --data-binary with no -H).
    const format = contentType === null ? BatchFormat.json : formatOf(contentType);
    if (format === null) {
      return errorResponse(
        415,
        ErrorCode.unsupportedMediaType,
        `POST /v1/batch takes Content-Type: application/json or ${batchBinaryType}, got ${JSON.stringify(contentType!.slice(0, 100))}`,
        { field: "content-type" },
      );
    }
    let bytesExpected: number | null = null;
    const contentLength = headers.get("content-length");
    if (contentLength !== null) {
      const length = v.safeParse(contentLengthSchema, contentLength, parseConfig);
      if (!length.success) return invalidInput("content-length", length.issues[0].message);
      if (length.output > batchBodyBytesMax) {
        return tooLarge("body", `the batch is ${length.output} bytes; the largest accepted is ${batchBodyBytesMax}`);
      }
      bytesExpected = length.output;
    }
    const body = await readBody(request, bytesExpected);
    if (body instanceof Response) return body;
    const ops = format === BatchFormat.json ? readJsonBatch(body) : readBinaryBatch(body);
    return ops instanceof Response ? ops : { ops, format };
  }

  const countOp = (kind: OpKind, status: number): void => metrics.batchOp(opIndexOfKind[kind], status);

  function answer(ops: OpRequest[], format: BatchFormat, results: OpResult[]): Response {
    if (format === BatchFormat.binary) {
      return new Response(writeBinaryResults(ops, results, countOp), { status: 200, headers: binaryHeaders });
    }
    const parts = new Array<string>(ops.length);
    for (let index = 0; index < ops.length; index += 1) {
      const op = ops[index]!;
      const { json, status } = resultJson(op, results[index]!);
      countOp(op.kind, status);
      parts[index] = json;
    }
    return new Response(`{"results":[${parts.join(",")}]}`, { status: 200, headers: jsonHeaders });
  }

  async function batch(request: Request): Promise<Response> {
    const read = await readBatch(request);
    if (read instanceof Response) return read;
    const { ops, format } = read;
    const results = submitAll(backend, ops);
    return answer(ops, format, results instanceof Promise ? await results : results);
  }

  app.post(batchPath, counted(metrics, Route.batch, batch));
}
