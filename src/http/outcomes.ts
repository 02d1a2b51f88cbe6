// Map a backend OpResult to its HTTP answer. Every OpStatus is mapped explicitly; a status the
// switch does not know is a broken contract and throws (answered 500 by the app's error handler).
//
// Reads and updates differ in one way: an update that timed out or whose node went away may have
// taken effect, so it is never reported as failed (504 outcome_unknown, X-Outcome: unknown), while a
// read has no effect, so its timeout is a plain failure (504 timeout).
//
// The table lives in one function, `failureOf`, which says what an op's answer is without framing
// it. The single-op routes frame it as a whole response (`failureResponse`: status, error body,
// headers); POST /v1/batch frames it as one item of its results (routes-batch.ts), with the headers
// as fields. Both therefore answer every op with the same status, code and message.

import { OpKind, OpStatus } from "../base/kinds.ts";
import { formatTs } from "../base/timestamp.ts";
import type { OpResult } from "../base/kv-backend.ts";
import { ErrorCode, type ErrorCodeName, type ErrorOptions, errorResponse, retryAfterSeconds } from "./errors.ts";
import { AssertionError } from "../base/assert.ts";

/** The HTTP form of a timestamp: a quoted strong ETag. */
export function etagOf(version: number, writer: number): string {
  return `"${formatTs(version, writer)}"`;
}

/**
 * Response headers by timestamp, built once per distinct timestamp: building a Response's headers
 * from an object literal was the largest cost of a GET in a shard worker's profile, and Bun copies
 * the Headers it is given, so one object serves every response with that ETag. Most keys share a
 * few timestamps (every key written once has version 2), so a small cache hits often; it is cleared
 * when full (a named limit), never grown.
 */
class HeadersByTs {
  readonly #byTs = new Map<number, Headers>();
  readonly #base: Record<string, string>;

  constructor(base: Record<string, string>) {
    this.#base = base;
  }

  get(version: number, writer: number): Headers {
    // version * 2^32 + writer (a u32 writer id) is exact below 2^21 versions; above, no cache.
    if (version >= tsCacheVersionLimit) return new Headers({ ...this.#base, etag: etagOf(version, writer) });
    const ts = version * 0x1_0000_0000 + writer;
    let headers = this.#byTs.get(ts);
    if (headers === undefined) {
      if (this.#byTs.size >= headersByTsMax) this.#byTs.clear();
      headers = new Headers({ ...this.#base, etag: etagOf(version, writer) });
      this.#byTs.set(ts, headers);
    }
    return headers;
  }
}

/** Distinct timestamps whose response headers are kept (per kind of response). */
const headersByTsMax = 4096;
const tsCacheVersionLimit = 2 ** 21;

/** Version 0 means "never written": there is no timestamp worth showing. */
function knownEtag(result: OpResult): string | undefined {
  return result.version > 0 ? etagOf(result.version, result.writer) : undefined;
}

/** The ETag of a completed op; `what` names the op for the assertion ("a completed update"). */
export function okEtag(result: OpResult, what: string): string {
  if (result.version <= 0) throw new AssertionError(`${what} has version 0`);
  return etagOf(result.version, result.writer);
}

/** The new value of a completed incr (the backend gives it as decimal ASCII). */
export function incrValueOf(result: OpResult): number {
  if (result.value === null) throw new AssertionError("a completed incr has no value");
  return parseDecimal(result.value);
}

/**
 * Why an op did not succeed, in HTTP terms but not yet framed. The single routes send `etag`,
 * `retryAfter` and `outcomeUnknown` as the ETag, Retry-After and X-Outcome headers; a batch item
 * carries them as fields.
 */
export interface Failure {
  readonly status: number;
  readonly code: ErrorCodeName;
  readonly message: string;
  /** The key's current ETag when the backend reported one (404 of a tombstone, 412). */
  readonly etag: string | undefined;
  /** The ETag is also in the error body as `error.etag` (412 only). */
  readonly etagInBody: boolean;
  /** Retry-After: retryAfterSeconds. */
  readonly retryAfter: boolean;
  /** X-Outcome: unknown: the update may or may not have taken effect. */
  readonly outcomeUnknown: boolean;
}

function fixed(
  status: number,
  code: ErrorCodeName,
  message: string,
  retryAfter = false,
  outcomeUnknown = false,
): Failure {
  return Object.freeze({ status, code, message, etag: undefined, etagInBody: false, retryAfter, outcomeUnknown });
}

// The failures that depend on nothing but the status are built once.
const notANumber = fixed(
  409,
  ErrorCode.notANumber,
  "the value is not a decimal safe integer, or the result would not be one; nothing was written",
);
const aborted = fixed(
  409,
  ErrorCode.aborted,
  "the increment lost too many concurrent races; nothing was written, retry",
  true,
);
const readTimeout = fixed(504, ErrorCode.timeout, "the read did not complete in time");
const updateUnknown = fixed(504, ErrorCode.outcomeUnknown, "the update may or may not have taken effect", false, true);
const unavailable = fixed(
  503,
  ErrorCode.unavailable,
  "this node is not serving (no lease, not a member, shutting down, or for updates its disk failed: see /v1/status); nothing was started",
  true,
);
const busy = fixed(429, ErrorCode.busy, "the node's queue is full; nothing was started", true);
const storeFull = fixed(
  507,
  ErrorCode.storeFull,
  "the store is full (its maximum number of keys, or of bytes for keys and values); nothing was written",
);
// The replica answers Timeout only for an op that never started (the key never became Valid, or
// no lease, within the op timeout): nothing was written, so it is not "unknown".
const updateNotStarted = fixed(503, ErrorCode.timeout, "the update could not start in time and was not applied", true);
const notFound = fixed(404, ErrorCode.notFound, "key not found");

/**
 * The failure an op's result means, or null when the op succeeded (for a read: Ok with a present
 * value). This is the one table of the mapping; both the single routes and batches use it.
 */
export function failureOf(kind: OpKind, result: OpResult): Failure | null {
  const isRead = kind === OpKind.Read;
  const status = result.status;
  switch (status) {
    case OpStatus.Ok: {
      if (!isRead || result.value !== null) return null;
      // Absent. A tombstone still has a timestamp: send it, a client may CAS on it.
      const etag = knownEtag(result);
      return etag === undefined ? notFound : { ...notFound, etag };
    }
    case OpStatus.PreconditionFailed: {
      const etag = knownEtag(result);
      const message =
        kind === OpKind.Create
          ? "precondition failed: the key exists (If-None-Match: *)"
          : etag === undefined
            ? "precondition failed: the key has never been written (If-Match)"
            : `precondition failed: the key's current ETag is ${etag} (If-Match)`;
      return {
        status: 412,
        code: ErrorCode.preconditionFailed,
        message,
        etag,
        etagInBody: etag !== undefined,
        retryAfter: false,
        outcomeUnknown: false,
      };
    }
    case OpStatus.NotANumber:
      return notANumber;
    case OpStatus.Aborted:
      return aborted;
    case OpStatus.Unknown:
      return isRead ? readTimeout : updateUnknown;
    case OpStatus.Unavailable:
      return unavailable;
    case OpStatus.Busy:
      return busy;
    case OpStatus.StoreFull:
      return storeFull;
    case OpStatus.Timeout:
      return isRead ? readTimeout : updateNotStarted;
    default: {
      const never: never = status;
      throw new AssertionError(`unknown OpStatus ${String(never)}`);
    }
  }
}

const retryAfterText = String(retryAfterSeconds);

/** A failure as a whole HTTP response: the JSON error body and its headers. */
export function failureResponse(failure: Failure): Response {
  let headers: Record<string, string> | undefined;
  if (failure.etag !== undefined) headers = { etag: failure.etag };
  if (failure.retryAfter) (headers ??= {})["retry-after"] = retryAfterText;
  if (failure.outcomeUnknown) (headers ??= {})["x-outcome"] = "unknown";
  if (headers === undefined) return errorResponse(failure.status, failure.code, failure.message);
  const options: ErrorOptions = { headers };
  if (failure.etagInBody) options.etag = failure.etag;
  return errorResponse(failure.status, failure.code, failure.message, options);
}

// Responses say "cache-control: no-store": a linearizable read must not be served from a cache,
// where a value is stale by definition.
const jsonHeaders = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } as const;

const readOkHeaders = new HeadersByTs({ "content-type": "application/octet-stream", "cache-control": "no-store" });
const updateOkHeaders = new HeadersByTs(jsonHeaders);

export function readResponse(result: OpResult): Response {
  const failure = failureOf(OpKind.Read, result);
  if (failure !== null) return failureResponse(failure);
  if (result.version <= 0) throw new AssertionError("a present value has version 0");
  return new Response(result.value, { status: 200, headers: readOkHeaders.get(result.version, result.writer) });
}

/** Write, Cas, Create, Delete: 200 with the new ETag in the header and in `{ "etag" }`. */
export function updateResponse(kind: OpKind, result: OpResult): Response {
  const failure = failureOf(kind, result);
  if (failure !== null) return failureResponse(failure);
  if (result.version <= 0) throw new AssertionError("a completed update has version 0");
  // The ETag is `"v.w"` (digits, a dot, digits): as a JSON string its quotes are escaped.
  return new Response(`{"etag":"\\"${formatTs(result.version, result.writer)}\\""}`, {
    status: 200,
    headers: updateOkHeaders.get(result.version, result.writer),
  });
}

/** Incr: 200 with `{ "value": N, "etag" }`; the backend gives the new value as decimal ASCII. */
export function incrResponse(result: OpResult): Response {
  const failure = failureOf(OpKind.Incr, result);
  if (failure !== null) return failureResponse(failure);
  const etag = okEtag(result, "a completed incr");
  const value = incrValueOf(result);
  return new Response(`{"value":${value},"etag":${JSON.stringify(etag)}}`, {
    status: 200,
    headers: { ...jsonHeaders, etag },
  });
}

/** Parse the ASCII decimal integer the backend returns for incr, without a TextDecoder. */
function parseDecimal(bytes: Uint8Array): number {
  let index = 0;
  const negative = bytes[0] === 0x2d;
  if (negative) index = 1;
  if (index >= bytes.length) throw new AssertionError("incr value is not a decimal integer");
  let value = 0;
  for (; index < bytes.length; index += 1) {
    const digit = bytes[index]! - 0x30;
    if (digit < 0 || digit > 9) throw new AssertionError("incr value is not a decimal integer");
    value = value * 10 + digit;
  }
  if (!Number.isSafeInteger(value)) throw new AssertionError("incr value is not a safe integer");
  return negative ? -value : value;
}
