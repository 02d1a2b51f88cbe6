// /v1/kv routes: validate the request completely, then submit exactly one op to the backend.
// Any rejection (400, 404, 405, 413) happens before submit, so a rejected request writes nothing.
//
//   GET    /v1/kv/{key}           read                    (HEAD too: Hono answers it with GET)
//   PUT    /v1/kv/{key}           write; If-Match: "v.w" -> CAS; If-None-Match: * -> create
//   DELETE /v1/kv/{key}           delete (a tombstone write)
//   POST   /v1/kv/{key}/incr?by=N increment (N defaults to 1)
//
// If-Match / If-None-Match are accepted only where they mean something (PUT). Elsewhere they are
// rejected rather than ignored: silently turning a conditional delete into a blind one loses data.

import type { Hono } from "hono";
import * as v from "valibot";
import { OpKind } from "../base/kinds.ts";
import type { KvBackend, OpRequest } from "../base/kv-backend.ts";
import { bodyTooLarge, bodyUnreadable, readBodyBounded } from "./body.ts";
import { invalidInput, methodNotAllowed, tooLarge, unknownRoute } from "./errors.ts";
import type { HttpMetrics } from "./metrics.ts";
import { Route, counted } from "./metrics.ts";
import { incrResponse, readResponse, updateResponse } from "./outcomes.ts";
import {
  type KeySchema,
  bySchema,
  contentLengthSchema,
  createKeySchema,
  etagSchema,
  ifNoneMatchSchema,
  parseConfig,
} from "./schemas.ts";
import { checkQuery, decodeRawKey, splitTarget } from "./target.ts";
import { browseAllow, listPath } from "./routes-browse.ts";

const kvPrefix = "/v1/kv/";
const incrSuffix = "/incr";
/** Methods of /v1/kv/{key} (POST only as /{key}/incr). */
export const kvAllow = "GET, HEAD, PUT, DELETE, POST";

/** A validated key, or the error response to send instead. */
function parseKey(keys: KeySchema, rawKey: string): string | Response {
  const key = decodeRawKey(rawKey);
  if (key === null) return invalidInput("key", "the key is not valid percent-encoded UTF-8");
  const parsed = v.safeParse(keys.schema, key, parseConfig);
  if (parsed.success) return parsed.output;
  const issue = parsed.issues[0];
  if (issue.requirement === keys.fitsKeyBytes) return tooLarge("key", issue.message);
  return invalidInput("key", issue.message);
}

/**
 * Reject If-Match / If-None-Match on a method where they would be ignored. The date-based
 * preconditions (If-Modified-Since, If-Unmodified-Since) and If-Range are ignored everywhere, as
 * RFC 9110 (13.1.3, 13.1.4, 13.1.5) requires of a resource that has no modification date and no
 * range support.
 */
function rejectConditionals(request: Request, method: string): Response | null {
  const headers = request.headers;
  if (headers.has("if-match"))
    return invalidInput(
      "if-match",
      `If-Match is not supported on ${method}; a conditional write is a PUT with If-Match`,
    );
  if (headers.has("if-none-match")) {
    return invalidInput(
      "if-none-match",
      `If-None-Match is not supported on ${method}; a create-only write is a PUT with If-None-Match: *`,
    );
  }
  return null;
}

export function registerKvRoutes(app: Hono, backend: KvBackend, metrics: HttpMetrics): void {
  const keys = createKeySchema(backend.keyBytesMax);
  const valueBytesMax = backend.valueBytesMax;

  /** Common prefix of every kv handler: the raw key (still encoded) and the query, or an error. */
  function target(request: Request): { rawKey: string; query: string } | Response {
    const { path, query } = splitTarget(request.url);
    // Hono's "/v1/kv/*" also matches "/v1/kv", the listing (routes-browse.ts), which is GET only.
    if (path === listPath) return methodNotAllowed(request.method, browseAllow);
    // Hono routed on a decoded path; a prefix spelled with escapes ("/v1/k%76/") is not ours.
    if (!path.startsWith(kvPrefix)) return unknownRoute(request.method, path.slice(0, 200));
    return { rawKey: path.slice(kvPrefix.length), query };
  }

  /** GET and DELETE take a key and nothing else: no query parameters, no conditional headers. */
  function plainKey(request: Request, method: "GET" | "DELETE"): string | Response {
    const t = target(request);
    if (t instanceof Response) return t;
    const key = parseKey(keys, t.rawKey);
    if (key instanceof Response) return key;
    const query = checkQuery(t.query, []);
    if (!query.ok) return invalidInput("query", query.message);
    return rejectConditionals(request, method) ?? key;
  }

  async function get(request: Request): Promise<Response> {
    const key = plainKey(request, "GET");
    if (key instanceof Response) return key;
    return readResponse(await backend.submit({ kind: OpKind.Read, key }));
  }

  async function put(request: Request): Promise<Response> {
    const t = target(request);
    if (t instanceof Response) return t;
    const key = parseKey(keys, t.rawKey);
    if (key instanceof Response) return key;
    const query = checkQuery(t.query, []);
    if (!query.ok) return invalidInput("query", query.message);
    const headers = request.headers;
    const ifMatch = headers.get("if-match");
    const ifNoneMatch = headers.get("if-none-match");
    if (ifMatch !== null && ifNoneMatch !== null) {
      return invalidInput("if-match", "If-Match and If-None-Match cannot be combined: send one");
    }
    const op: OpRequest = { kind: OpKind.Write, key };
    if (ifMatch !== null) {
      const etag = v.safeParse(etagSchema, ifMatch, parseConfig);
      if (!etag.success) return invalidInput("if-match", etag.issues[0].message);
      op.kind = OpKind.Cas;
      op.expectedVersion = etag.output.version;
      op.expectedWriter = etag.output.writer;
    } else if (ifNoneMatch !== null) {
      const star = v.safeParse(ifNoneMatchSchema, ifNoneMatch.trim(), parseConfig);
      if (!star.success) return invalidInput("if-none-match", star.issues[0].message);
      op.kind = OpKind.Create;
    }
    let bytesExpected = 0;
    const contentLength = headers.get("content-length");
    if (contentLength !== null) {
      const length = v.safeParse(contentLengthSchema, contentLength, parseConfig);
      if (!length.success) return invalidInput("content-length", length.issues[0].message);
      if (length.output > valueBytesMax) {
        return tooLarge("body", `the value is ${length.output} bytes; the largest accepted is ${valueBytesMax}`);
      }
      bytesExpected = length.output;
    }
    const value = await readBodyBounded(request.body, valueBytesMax, bytesExpected);
    if (value === bodyTooLarge) return tooLarge("body", `the value is larger than ${valueBytesMax} bytes`);
    if (value === bodyUnreadable) return invalidInput("body", "the request body could not be read");
    op.value = value;
    return updateResponse(op.kind, await backend.submit(op));
  }

  async function remove(request: Request): Promise<Response> {
    const key = plainKey(request, "DELETE");
    if (key instanceof Response) return key;
    return updateResponse(OpKind.Delete, await backend.submit({ kind: OpKind.Delete, key }));
  }

  async function incr(request: Request): Promise<Response> {
    const t = target(request);
    if (t instanceof Response) return t;
    // POST exists only as /{key}/incr; on a plain key URL the other methods apply.
    if (!t.rawKey.endsWith(incrSuffix)) return methodNotAllowed("POST", "GET, HEAD, PUT, DELETE");
    const key = parseKey(keys, t.rawKey.slice(0, -incrSuffix.length));
    if (key instanceof Response) return key;
    const query = checkQuery(t.query, ["by"]);
    if (!query.ok) return invalidInput("query", query.message);
    let by = 1;
    const byText = query.params?.get("by") ?? null;
    if (byText !== null) {
      const parsed = v.safeParse(bySchema, byText, parseConfig);
      if (!parsed.success) return invalidInput("by", parsed.issues[0].message);
      by = parsed.output;
    }
    const conditional = rejectConditionals(request, "POST");
    if (conditional !== null) return conditional;
    return incrResponse(await backend.submit({ kind: OpKind.Incr, key, by }));
  }

  app.get("/v1/kv/*", counted(metrics, Route.kvGet, get));
  app.put("/v1/kv/*", counted(metrics, Route.kvPut, put));
  app.delete("/v1/kv/*", counted(metrics, Route.kvDelete, remove));
  app.post("/v1/kv/*", counted(metrics, Route.kvIncr, incr));
  // Other methods reach the app's notFound handler, which answers 405 with kvAllow. A catch-all
  // route here would match every request too and push Hono off its one-handler fast path.
}
