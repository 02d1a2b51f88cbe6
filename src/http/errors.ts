// The error shape of the HTTP API: every non-2xx answer is JSON `{ "error": { "code", "message" } }`
// (plus `field` for invalid input and `etag` for a failed precondition). Codes are stable: clients
// and the CLI switch on them, so never rename one; add a new one instead.

export const ErrorCode = {
  /** 400: a key, header, query parameter or number did not validate. Nothing was submitted. */
  invalidInput: "invalid_input",
  /** 401 with WWW-Authenticate: no token, or one the node does not know (--auth-file); on internal
   *  routes, no valid proof of the cluster key. Nothing was submitted. */
  unauthorized: "unauthorized",
  /** 403: the token's role is too weak for this route (auth-guard.ts). Nothing was submitted. */
  forbidden: "forbidden",
  /** 404: the key is absent (never written, or deleted). */
  notFound: "not_found",
  /** 404: no such route. Distinct from not_found so that a typo in a URL is not read as "absent". */
  unknownRoute: "unknown_route",
  /** 405: the route exists but not with this method (see the Allow header). */
  methodNotAllowed: "method_not_allowed",
  /** 409: incr on a value that is not a safe decimal integer, or whose result would not be. */
  notANumber: "not_a_number",
  /** 409: incr lost its read-modify-write race too often; nothing was written, retrying may work. */
  aborted: "aborted",
  /** 412: If-Match / If-None-Match did not hold; nothing was written. */
  preconditionFailed: "precondition_failed",
  /** 413: the key or the value (or a batch: its body or its number of ops) is larger than the node accepts. */
  tooLarge: "too_large",
  /** 415: POST /v1/batch with a body that is not declared as JSON (Content-Type). Nothing was submitted. */
  unsupportedMediaType: "unsupported_media_type",
  /** 429: a bounded queue is full; nothing was started. Retry after Retry-After seconds. */
  busy: "busy",
  /** 500: a bug. The message says what broke. */
  internal: "internal",
  /** 503: the node is not serving (no lease, not a member, shutting down); nothing was started. */
  unavailable: "unavailable",
  /** 502: the console's proxy could not get a member's status or metrics (src/console/member-proxy.ts). */
  memberUnreachable: "member_unreachable",
  /** 504 with X-Outcome: unknown: the update may or may not have taken effect. Never a failure. */
  outcomeUnknown: "outcome_unknown",
  /** 504: a read timed out; reads have no effect, so this is a plain failure. */
  timeout: "timeout",
  /** 507: the store is full (keysMax keys, or storeBytesMax bytes of keys and values): the update was not made. */
  storeFull: "store_full",
} as const;

export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Seconds a client should wait before retrying after 429 or 503 (a lease or queue recovers quickly). */
export const retryAfterSeconds = 1;

export interface ErrorBody {
  error: {
    code: ErrorCodeName;
    message: string;
    /** invalid_input / too_large: which part of the request ("key", "if-match", "by", "body"...). */
    field?: string;
    /** precondition_failed: the key's current ETag when the backend reported it. */
    etag?: string;
  };
}

export interface ErrorOptions {
  field?: string;
  etag?: string;
  /** Extra response headers (Retry-After, X-Outcome, Allow, ETag). */
  headers?: Record<string, string>;
}

/**
 * Build an error response. Errors are never cached (a later request may succeed), and the
 * Content-Type says JSON so that curl users and clients parse it the same way.
 */
export function errorResponse(status: number, code: ErrorCodeName, message: string, options?: ErrorOptions): Response {
  const body: ErrorBody = { error: { code, message } };
  if (options?.field !== undefined) body.error.field = options.field;
  if (options?.etag !== undefined) body.error.etag = options.etag;
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    ...options?.headers,
  };
  return new Response(JSON.stringify(body), { status, headers });
}

export function invalidInput(field: string, message: string): Response {
  return errorResponse(400, ErrorCode.invalidInput, message, { field });
}

export function tooLarge(field: string, message: string): Response {
  return errorResponse(413, ErrorCode.tooLarge, message, { field });
}

export function unknownRoute(method: string, path: string): Response {
  return errorResponse(404, ErrorCode.unknownRoute, `no route for ${method} ${path}`);
}

export function methodNotAllowed(method: string, allow: string): Response {
  return errorResponse(405, ErrorCode.methodNotAllowed, `method ${method} is not allowed here; allowed: ${allow}`, {
    headers: { allow },
  });
}
