// Map a backend OpResult to an HTTP response. Every OpStatus is mapped explicitly; a status the
// switch does not know is a broken contract and throws (answered 500 by the app's error handler).
//
// Reads and updates differ in one way: an update that timed out or whose node went away may have
// taken effect, so it is never reported as failed (504 outcome_unknown, X-Outcome: unknown), while a
// read has no effect, so its timeout is a plain failure (504 timeout).

import { OpKind, OpStatus } from "../base/kinds.ts";
import { formatTs } from "../base/timestamp.ts";
import type { OpResult } from "../node/backend.ts";
import { ErrorCode, errorResponse, retryAfterSeconds } from "./errors.ts";
import { AssertionError } from "../base/assert.ts";

/** The HTTP form of a timestamp: a quoted strong ETag. */
export function etagOf(version: number, writer: number): string {
  return `"${formatTs(version, writer)}"`;
}

/** Version 0 means "never written": there is no timestamp worth showing. */
function knownEtag(result: OpResult): string | undefined {
  return result.version > 0 ? etagOf(result.version, result.writer) : undefined;
}

// Responses say "cache-control: no-store": a linearizable read must not be served from a cache,
// where a value is stale by definition.
const jsonHeaders = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } as const;

export function readResponse(result: OpResult): Response {
  if (result.status === OpStatus.Ok) {
    const etag = knownEtag(result);
    if (result.value === null) {
      // Absent. A tombstone still has a timestamp: send it, a client may CAS on it.
      return errorResponse(404, ErrorCode.notFound, "key not found", etag === undefined ? undefined : { headers: { etag } });
    }
    if (etag === undefined) throw new AssertionError("a present value has version 0");
    // An object literal rather than a spread of a shared one: measurably cheaper per response.
    return new Response(result.value, {
      status: 200,
      headers: { "content-type": "application/octet-stream", "cache-control": "no-store", etag },
    });
  }
  return failure(OpKind.Read, result);
}

/** Write, Cas, Create, Delete: 200 with the new ETag in the header and in `{ "etag" }`. */
export function updateResponse(kind: OpKind, result: OpResult): Response {
  if (result.status !== OpStatus.Ok) return failure(kind, result);
  const etag = knownEtag(result);
  if (etag === undefined) throw new AssertionError("a completed update has version 0");
  return new Response(`{"etag":${JSON.stringify(etag)}}`, { status: 200, headers: { ...jsonHeaders, etag } });
}

/** Incr: 200 with `{ "value": N, "etag" }`; the backend gives the new value as decimal ASCII. */
export function incrResponse(result: OpResult): Response {
  if (result.status !== OpStatus.Ok) return failure(OpKind.Incr, result);
  const etag = knownEtag(result);
  if (etag === undefined) throw new AssertionError("a completed incr has version 0");
  if (result.value === null) throw new AssertionError("a completed incr has no value");
  const value = parseDecimal(result.value);
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

const retryHeaders = { "retry-after": String(retryAfterSeconds) } as const;
const unknownHeaders = { "x-outcome": "unknown" } as const;

function failure(kind: OpKind, result: OpResult): Response {
  const isRead = kind === OpKind.Read;
  const status = result.status;
  switch (status) {
    case OpStatus.Ok:
      throw new AssertionError("failure() called with OpStatus.Ok");
    case OpStatus.PreconditionFailed: {
      const etag = knownEtag(result);
      const message =
        kind === OpKind.Create
          ? "precondition failed: the key exists (If-None-Match: *)"
          : etag === undefined
            ? "precondition failed: the key has never been written (If-Match)"
            : `precondition failed: the key's current ETag is ${etag} (If-Match)`;
      return errorResponse(412, ErrorCode.preconditionFailed, message, etag === undefined ? undefined : { etag, headers: { etag } });
    }
    case OpStatus.NotANumber:
      return errorResponse(
        409,
        ErrorCode.notANumber,
        "the value is not a decimal safe integer, or the result would not be one; nothing was written",
      );
    case OpStatus.Aborted:
      return errorResponse(409, ErrorCode.aborted, "the increment lost too many concurrent races; nothing was written, retry", {
        headers: retryHeaders,
      });
    case OpStatus.Unknown:
      if (isRead) return errorResponse(504, ErrorCode.timeout, "the read did not complete in time");
      return errorResponse(504, ErrorCode.outcomeUnknown, "the update may or may not have taken effect", {
        headers: unknownHeaders,
      });
    case OpStatus.Unavailable:
      return errorResponse(503, ErrorCode.unavailable, "this node is not serving (no lease, not a member, or shutting down); nothing was started", {
        headers: retryHeaders,
      });
    case OpStatus.Busy:
      return errorResponse(429, ErrorCode.busy, "the node's queue is full; nothing was started", { headers: retryHeaders });
    case OpStatus.StoreFull:
      return errorResponse(507, ErrorCode.storeFull, "the store holds its maximum number of keys; nothing was written");
    case OpStatus.Timeout:
      if (isRead) return errorResponse(504, ErrorCode.timeout, "the read did not complete in time");
      // The replica answers Timeout only for an op that never started (the key never became
      // Valid, or no lease, within the op timeout): nothing was written, so it is not "unknown".
      return errorResponse(503, ErrorCode.timeout, "the update could not start in time and was not applied", { headers: retryHeaders });
    default: {
      const never: never = status;
      throw new AssertionError(`unknown OpStatus ${String(never)}`);
    }
  }
}
