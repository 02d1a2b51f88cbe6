// The two hot routes without Hono's dispatch and without valibot: `GET /v1/kv/{key}` and a blind
// `PUT /v1/kv/{key}`, taken only when the request is trivially valid:
//   - the key is 1..keyBytesMax printable ASCII characters (0x21-0x7E) with no '%' (nothing to
//     decode) and no '?' (no query), and is not "." or "..": then it passes every key rule of
//     schemas.ts as it is, and its UTF-8 length is its length;
//   - no If-Match / If-None-Match (a GET must reject them, a PUT with them is a CAS or a create);
//   - PUT: a Content-Length of plain digits, at most valueBytesMax (Bun's parser then delivers
//     exactly that many bytes).
// Everything else (HEAD, other routes, escapes, queries, conditionals, chunked or oversized bodies,
// any invalid input) goes to the Hono app, which answers it as before. For every request taken
// here, the answer is the one the app's handlers would give (test/http/fast-path.test.ts checks
// both on the same requests), and it is counted in the same metrics.
//
// A local read of a Valid key completes while it is submitted: the backend then returns the result
// itself, and the Response goes back to Bun without a promise (measured: returning a promise from
// fetch costs about a third of a trivial server's rate).

import { OpKind } from "../base/kinds.ts";
import type { KvBackend, OpResult } from "../base/kv-backend.ts";
import { ErrorCode, errorResponse, invalidInput, tooLarge } from "./errors.ts";
import { type HttpMetrics, Route, type RouteId } from "./metrics.ts";
import { readResponse, updateResponse } from "./outcomes.ts";

/** What Bun.serve calls; `server` is passed through to the fallback untouched. */
export type FetchHandler = (request: Request, server?: unknown) => Response | Promise<Response>;

const kvPrefix = "/v1/kv/";
const charPercent = 0x25;
const charQuestion = 0x3f;
const charDot = 0x2e;
const printableMin = 0x21;
const printableMax = 0x7e;
/** Content-Length digits the fast path parses itself; longer ones are surely too large (the app says so). */
const contentLengthDigitsMax = 15;

/**
 * The fetch handler of a node's HTTP port: the fast path for the hot routes, `fallback` (the app)
 * for everything else. `metrics` must be the app's own, so that both paths count in one place.
 */
export function createFastFetch(backend: KvBackend, metrics: HttpMetrics, fallback: FetchHandler): FetchHandler {
  const keyBytesMax = backend.keyBytesMax;
  const valueBytesMax = backend.valueBytesMax;

  /** The key of a trivially valid /v1/kv/{key} target, or null (let the app decide). */
  function trivialKey(url: string): string | null {
    const pathStart = url.indexOf("/", url.indexOf("://") + 3);
    if (pathStart < 0 || !url.startsWith(kvPrefix, pathStart)) return null;
    const keyStart = pathStart + kvPrefix.length;
    const keyLength = url.length - keyStart;
    if (keyLength === 0 || keyLength > keyBytesMax) return null;
    for (let i = keyStart; i < url.length; i++) {
      const c = url.charCodeAt(i);
      if (c < printableMin || c > printableMax || c === charPercent || c === charQuestion) return null;
    }
    if (
      url.charCodeAt(keyStart) === charDot &&
      (keyLength === 1 || (keyLength === 2 && url.charCodeAt(keyStart + 1) === charDot))
    )
      return null;
    return url.slice(keyStart);
  }

  function finish(route: RouteId, startMs: number, response: Response): Response {
    metrics.end(route, response.status, performance.now() - startMs);
    return response;
  }

  /** As the app's onError: a handler that throws is a bug; say so loudly, answer 500. */
  function failed(route: RouteId, startMs: number, request: Request, error: unknown): Response {
    metrics.end(route, 500, performance.now() - startMs);
    const message = error instanceof Error ? error.message : String(error);
    console.error(`hermes-kv http: ${request.method} ${request.url.slice(0, 200)} failed:`, error);
    return errorResponse(500, ErrorCode.internal, `internal error: ${message}`);
  }

  function get(request: Request, key: string): Response | Promise<Response> {
    const startMs = performance.now();
    metrics.begin();
    try {
      const result = backend.submit({ kind: OpKind.Read, key });
      if (!(result instanceof Promise)) return finish(Route.kvGet, startMs, readResponse(result));
      return result.then(
        (r) => finish(Route.kvGet, startMs, readResponse(r)),
        (error: unknown) => failed(Route.kvGet, startMs, request, error),
      );
    } catch (error) {
      return failed(Route.kvGet, startMs, request, error);
    }
  }

  async function put(request: Request, key: string): Promise<Response> {
    const startMs = performance.now();
    metrics.begin();
    try {
      let value: Uint8Array;
      try {
        value = await request.bytes();
      } catch {
        return finish(Route.kvPut, startMs, invalidInput("body", "the request body could not be read"));
      }
      // Bun delivers exactly Content-Length bytes; a Request built in-process (app.request) may
      // carry more than its header says, and the app counts what arrives, so this does too.
      if (value.length > valueBytesMax)
        return finish(Route.kvPut, startMs, tooLarge("body", `the value is larger than ${valueBytesMax} bytes`));
      const result: OpResult = await backend.submit({ kind: OpKind.Write, key, value });
      return finish(Route.kvPut, startMs, updateResponse(OpKind.Write, result));
    } catch (error) {
      return failed(Route.kvPut, startMs, request, error);
    }
  }

  /** Content-Length as plain decimal digits, or -1 (absent, malformed, or more digits than we parse). */
  function plainLength(text: string | null): number {
    if (text === null || text.length === 0 || text.length > contentLengthDigitsMax) return -1;
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      const digit = text.charCodeAt(i) - 0x30;
      if (digit < 0 || digit > 9) return -1;
      n = n * 10 + digit;
    }
    return n;
  }

  return (request, server) => {
    const method = request.method;
    if (method === "GET" || method === "PUT") {
      const key = trivialKey(request.url);
      if (key !== null) {
        const headers = request.headers;
        if (headers.get("if-match") === null && headers.get("if-none-match") === null) {
          if (method === "GET") return get(request, key);
          const contentLength = plainLength(headers.get("content-length"));
          if (contentLength >= 0 && contentLength <= valueBytesMax) return put(request, key);
        }
      }
    }
    return fallback(request, server);
  };
}
