// Every OpStatus, for every kind of op, maps to the documented HTTP status, error code and headers.
// The memory backend is scripted to answer each status on demand.

import { describe, expect, test } from "bun:test";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import { createApp } from "../../src/http/app.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

interface OpCase {
  name: string;
  kind: OpKind;
  path: string;
  init: RequestInit;
}

const ops: OpCase[] = [
  { name: "read", kind: OpKind.Read, path: "/v1/kv/k", init: {} },
  { name: "write", kind: OpKind.Write, path: "/v1/kv/k", init: { method: "PUT", body: "v" } },
  {
    name: "cas",
    kind: OpKind.Cas,
    path: "/v1/kv/k",
    init: { method: "PUT", body: "v", headers: { "if-match": '"4.2"' } },
  },
  {
    name: "create",
    kind: OpKind.Create,
    path: "/v1/kv/k",
    init: { method: "PUT", body: "v", headers: { "if-none-match": "*" } },
  },
  { name: "delete", kind: OpKind.Delete, path: "/v1/kv/k", init: { method: "DELETE" } },
  { name: "incr", kind: OpKind.Incr, path: "/v1/kv/k/incr?by=3", init: { method: "POST" } },
];

interface Expected {
  status: number;
  code: string;
  retryAfter?: boolean;
  outcomeUnknown?: boolean;
}

/** The documented mapping; reads differ for Unknown and Timeout (a read has no effect to be unsure of). */
function expected(status: OpStatus, isRead: boolean): Expected {
  switch (status) {
    case OpStatus.PreconditionFailed:
      return { status: 412, code: "precondition_failed" };
    case OpStatus.NotANumber:
      return { status: 409, code: "not_a_number" };
    case OpStatus.Aborted:
      return { status: 409, code: "aborted", retryAfter: true };
    case OpStatus.Unknown:
      return isRead ? { status: 504, code: "timeout" } : { status: 504, code: "outcome_unknown", outcomeUnknown: true };
    case OpStatus.Timeout:
      // Never started: nothing written, so an update says so (503) rather than "unknown".
      return isRead ? { status: 504, code: "timeout" } : { status: 503, code: "timeout", retryAfter: true };
    case OpStatus.Unavailable:
      return { status: 503, code: "unavailable", retryAfter: true };
    case OpStatus.Busy:
      return { status: 429, code: "busy", retryAfter: true };
    case OpStatus.StoreFull:
      return { status: 507, code: "store_full" };
    default:
      throw new Error(`no expectation for ${status}`);
  }
}

const failures = [
  OpStatus.PreconditionFailed,
  OpStatus.NotANumber,
  OpStatus.Aborted,
  OpStatus.Unknown,
  OpStatus.Unavailable,
  OpStatus.Busy,
  OpStatus.StoreFull,
  OpStatus.Timeout,
];

describe("OpStatus to HTTP", () => {
  for (const op of ops) {
    for (const status of failures) {
      test(`${op.name}: OpStatus ${status}`, async () => {
        const backend = new MemoryBackend();
        const app = createApp(backend);
        backend.failNext(status, { version: 6, writer: 2 });
        const response = await app.request(op.path, op.init);
        const want = expected(status, op.kind === OpKind.Read);
        expect(backend.submitCount).toBe(1);
        expect(backend.lastSubmitted?.kind).toBe(op.kind);
        expect(response.status).toBe(want.status);
        expect(response.headers.get("content-type")).toStartWith("application/json");
        const body = (await response.json()) as { error: { code: string; message: string; etag?: string } };
        expect(body.error.code).toBe(want.code);
        expect(body.error.message.length).toBeGreaterThan(0);
        expect(response.headers.get("retry-after")).toBe(want.retryAfter === true ? "1" : null);
        expect(response.headers.get("x-outcome")).toBe(want.outcomeUnknown === true ? "unknown" : null);
        if (status === OpStatus.PreconditionFailed) {
          // The current ETag is known (version 6 from writer 2): header and body carry it.
          expect(response.headers.get("etag")).toBe('"6.2"');
          expect(body.error.etag).toBe('"6.2"');
        }
        // Nothing was applied: the scripted answer replaced the op.
        expect(backend.peek("k")).toBeUndefined();
      });
    }
  }
});

describe("contract violations by the backend are 500s, never silent successes", () => {
  test("an OpStatus the HTTP layer does not know", async () => {
    const backend = new MemoryBackend();
    const app = createApp(backend);
    backend.failNext(99 as OpStatus);
    const original = console.error;
    console.error = () => {};
    try {
      const response = await app.request("/v1/kv/k", { method: "PUT", body: "v" });
      expect(response.status).toBe(500);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("internal");
    } finally {
      console.error = original;
    }
  });

  test("an Ok update without a timestamp, and an Ok incr without a number", async () => {
    const backend = new MemoryBackend();
    const app = createApp(backend);
    backend.failNext(OpStatus.Ok, { version: 0, writer: 0 });
    backend.failNext(OpStatus.Ok, { version: 3, writer: 1 }, new TextEncoder().encode("12a"));
    const original = console.error;
    console.error = () => {};
    try {
      expect((await app.request("/v1/kv/k", { method: "DELETE" })).status).toBe(500);
      expect((await app.request("/v1/kv/k/incr", { method: "POST" })).status).toBe(500);
    } finally {
      console.error = original;
    }
  });
});

test("a precondition failure on a never-written key has no ETag to report", async () => {
  const backend = new MemoryBackend();
  const app = createApp(backend);
  const response = await app.request("/v1/kv/k", { method: "PUT", body: "v", headers: { "if-match": '"4.2"' } });
  expect(response.status).toBe(412);
  expect(response.headers.get("etag")).toBeNull();
  const body = (await response.json()) as { error: { code: string; etag?: string } };
  expect(body.error.code).toBe("precondition_failed");
  expect(body.error.etag).toBeUndefined();
});
