// Every route of the HTTP shell against the in-memory backend, through app.request() (no socket).

import { describe, expect, test } from "bun:test";
import { OpKind } from "../../src/base/kinds.ts";
import { createApp } from "../../src/http/app.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

function setup(options?: ConstructorParameters<typeof MemoryBackend>[0]) {
  const backend = new MemoryBackend(options);
  return { backend, app: createApp(backend) };
}

async function errorOf(response: Response): Promise<{ code: string; message: string; field?: string; etag?: string }> {
  expect(response.headers.get("content-type")).toStartWith("application/json");
  const body = (await response.json()) as { error: { code: string; message: string; field?: string; etag?: string } };
  expect(typeof body.error.code).toBe("string");
  expect(typeof body.error.message).toBe("string");
  return body.error;
}

describe("GET /v1/kv/{key}", () => {
  test("returns the raw value and its timestamp as a quoted ETag", async () => {
    const { app } = setup({ nodeId: 3 });
    const bytes = new Uint8Array([0, 1, 2, 255, 10]);
    expect((await app.request("/v1/kv/bin", { method: "PUT", body: bytes })).status).toBe(200);
    const response = await app.request("/v1/kv/bin");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/octet-stream");
    expect(response.headers.get("etag")).toBe('"2.3"');
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(bytes);
  });

  test("404 not_found for a key never written, without an ETag", async () => {
    const { app } = setup();
    const response = await app.request("/v1/kv/missing");
    expect(response.status).toBe(404);
    expect(response.headers.get("etag")).toBeNull();
    expect((await errorOf(response)).code).toBe("not_found");
  });

  test("404 for a deleted key still carries the tombstone's ETag", async () => {
    const { app } = setup();
    await app.request("/v1/kv/k", { method: "PUT", body: "v" });
    await app.request("/v1/kv/k", { method: "DELETE" });
    const response = await app.request("/v1/kv/k");
    expect(response.status).toBe(404);
    expect(response.headers.get("etag")).toBe('"4.1"');
    expect((await errorOf(response)).code).toBe("not_found");
  });

  test("HEAD answers like GET without a body", async () => {
    const { app, backend } = setup();
    await app.request("/v1/kv/k", { method: "PUT", body: "value" });
    const response = await app.request("/v1/kv/k", { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(response.headers.get("etag")).toBe('"2.1"');
    expect(await response.text()).toBe("");
    expect(backend.lastSubmitted?.kind).toBe(OpKind.Read);
  });

  test("keys are percent-decoded once: %2F is a slash, %252F is a literal %2F", async () => {
    const { app, backend } = setup();
    await app.request("/v1/kv/a%2Fb", { method: "PUT", body: "1" });
    await app.request("/v1/kv/a%252Fb", { method: "PUT", body: "2" });
    await app.request("/v1/kv/%C3%A9t%C3%A9", { method: "PUT", body: "3" });
    expect(backend.peek("a/b")?.value).toEqual(new TextEncoder().encode("1"));
    expect(backend.peek("a%2Fb")?.value).toEqual(new TextEncoder().encode("2"));
    expect(backend.peek("été")?.value).toEqual(new TextEncoder().encode("3"));
    // A literal slash reaches the same key as %2F.
    expect(await (await app.request("/v1/kv/a/b")).text()).toBe("1");
  });
});

describe("PUT /v1/kv/{key}", () => {
  test("writes add 2 to the version and answer the new ETag in header and body", async () => {
    const { app, backend } = setup();
    const first = await app.request("/v1/kv/k", { method: "PUT", body: "a" });
    expect(first.status).toBe(200);
    expect(first.headers.get("etag")).toBe('"2.1"');
    expect(await first.json()).toEqual({ etag: '"2.1"' });
    const second = await app.request("/v1/kv/k", { method: "PUT", body: "b" });
    expect(second.headers.get("etag")).toBe('"4.1"');
    expect(backend.lastSubmitted?.kind).toBe(OpKind.Write);
  });

  test("an empty body stores an empty value, which is present", async () => {
    const { app } = setup();
    expect((await app.request("/v1/kv/k", { method: "PUT" })).status).toBe(200);
    const response = await app.request("/v1/kv/k");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });

  test("If-Match is a CAS: it succeeds on the current ETag (an RMW: +1) and fails with 412 and the current ETag", async () => {
    const { app, backend } = setup();
    await app.request("/v1/kv/k", { method: "PUT", body: "a" });
    const ok = await app.request("/v1/kv/k", { method: "PUT", body: "b", headers: { "if-match": '"2.1"' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("etag")).toBe('"3.1"');
    expect(backend.lastSubmitted).toMatchObject({ kind: OpKind.Cas, expectedVersion: 2, expectedWriter: 1 });
    const stale = await app.request("/v1/kv/k", { method: "PUT", body: "c", headers: { "if-match": '"2.1"' } });
    expect(stale.status).toBe(412);
    expect(stale.headers.get("etag")).toBe('"3.1"');
    const error = await errorOf(stale);
    expect(error.code).toBe("precondition_failed");
    expect(error.etag).toBe('"3.1"');
    expect(await (await app.request("/v1/kv/k")).text()).toBe("b");
  });

  test("If-None-Match: * creates only if absent", async () => {
    const { app, backend } = setup();
    const created = await app.request("/v1/kv/k", { method: "PUT", body: "a", headers: { "if-none-match": "*" } });
    expect(created.status).toBe(200);
    expect(created.headers.get("etag")).toBe('"1.1"');
    expect(backend.lastSubmitted?.kind).toBe(OpKind.Create);
    const again = await app.request("/v1/kv/k", { method: "PUT", body: "b", headers: { "if-none-match": "*" } });
    expect(again.status).toBe(412);
    expect((await errorOf(again)).code).toBe("precondition_failed");
    expect(await (await app.request("/v1/kv/k")).text()).toBe("a");
  });

  test("a value of exactly valueBytesMax is accepted, one more byte is 413 (declared or streamed)", async () => {
    const { app, backend } = setup({ valueBytesMax: 1000 });
    expect((await app.request("/v1/kv/k", { method: "PUT", body: new Uint8Array(1000) })).status).toBe(200);
    const submitted = backend.submitCount;
    const declared = await app.request("/v1/kv/k", { method: "PUT", body: new Uint8Array(1001) });
    expect(declared.status).toBe(413);
    expect(await errorOf(declared)).toMatchObject({ code: "too_large", field: "body" });
    const streamed = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 11; i += 1) controller.enqueue(new Uint8Array(100));
        controller.close();
      },
    });
    const chunked = await app.request("/v1/kv/k", { method: "PUT", body: streamed });
    expect(chunked.status).toBe(413);
    expect(backend.submitCount).toBe(submitted);
  });

  test("a body assembled from many chunks is stored intact", async () => {
    const { app, backend } = setup({ valueBytesMax: 4096 });
    const expected = new Uint8Array(3000).map((_, i) => i % 251);
    const streamed = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let offset = 0; offset < expected.length; offset += 7)
          controller.enqueue(expected.slice(offset, offset + 7));
        controller.close();
      },
    });
    expect((await app.request("/v1/kv/k", { method: "PUT", body: streamed })).status).toBe(200);
    expect(backend.peek("k")?.value).toEqual(expected);
  });
});

describe("DELETE /v1/kv/{key}", () => {
  test("writes a tombstone (+2) whether or not the key exists", async () => {
    const { app, backend } = setup();
    const absent = await app.request("/v1/kv/k", { method: "DELETE" });
    expect(absent.status).toBe(200);
    expect(absent.headers.get("etag")).toBe('"2.1"');
    expect(await absent.json()).toEqual({ etag: '"2.1"' });
    expect(backend.lastSubmitted?.kind).toBe(OpKind.Delete);
    await app.request("/v1/kv/k", { method: "PUT", body: "v" });
    expect((await app.request("/v1/kv/k", { method: "DELETE" })).headers.get("etag")).toBe('"6.1"');
    expect((await app.request("/v1/kv/k")).status).toBe(404);
  });
});

describe("POST /v1/kv/{key}/incr", () => {
  test("adds by (default 1) and answers the new value and ETag", async () => {
    const { app, backend } = setup();
    const first = await app.request("/v1/kv/n/incr", { method: "POST" });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ value: 1, etag: '"1.1"' });
    expect(backend.lastSubmitted).toMatchObject({ kind: OpKind.Incr, key: "n", by: 1 });
    const second = await app.request("/v1/kv/n/incr?by=-10", { method: "POST" });
    expect(await second.json()).toEqual({ value: -9, etag: '"2.1"' });
    expect(await (await app.request("/v1/kv/n")).text()).toBe("-9");
  });

  test("the key is everything before the last /incr, slashes included", async () => {
    const { app, backend } = setup();
    await app.request("/v1/kv/a/incr/incr?by=%2B2", { method: "POST" });
    expect(backend.lastSubmitted).toMatchObject({ kind: OpKind.Incr, key: "a/incr", by: 2 });
  });

  test("409 not_a_number for a non-integer value, nothing written", async () => {
    const { app, backend } = setup();
    await app.request("/v1/kv/n", { method: "PUT", body: "abc" });
    const response = await app.request("/v1/kv/n/incr", { method: "POST" });
    expect(response.status).toBe(409);
    expect((await errorOf(response)).code).toBe("not_a_number");
    expect(backend.peek("n")?.version).toBe(2);
  });

  test("POST on a key without /incr is 405 with Allow", async () => {
    const { app, backend } = setup();
    const response = await app.request("/v1/kv/n", { method: "POST" });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toContain("PUT");
    expect((await errorOf(response)).code).toBe("method_not_allowed");
    expect(backend.submitCount).toBe(0);
  });
});

describe("operational routes", () => {
  test("/v1/status is the backend's status as JSON", async () => {
    const { app, backend } = setup({ nodeId: 7 });
    const response = await app.request("/v1/status");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(JSON.parse(JSON.stringify(backend.status())));
  });

  test("/health is 200 while serving, 503 with Retry-After otherwise", async () => {
    const { app, backend } = setup();
    const healthy = await app.request("/health");
    expect(healthy.status).toBe(200);
    expect(await healthy.json()).toEqual({ status: "ok" });
    backend.serving = false;
    const down = await app.request("/health");
    expect(down.status).toBe(503);
    expect(down.headers.get("retry-after")).toBe("1");
    expect((await errorOf(down)).code).toBe("unavailable");
  });

  test("/metrics has the backend's series and the HTTP counters by route and status", async () => {
    const { app } = setup();
    await app.request("/v1/kv/k", { method: "PUT", body: "v" });
    await app.request("/v1/kv/k");
    await app.request("/v1/kv/missing");
    await app.request("/v1/kv/%00");
    await app.request("/nope");
    const response = await app.request("/metrics");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const text = await response.text();
    expect(text).toContain("hermes_memory_keys 1\n");
    expect(text).toContain('hermes_http_requests_total{route="kv_put",code="200"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="kv_get",code="200"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="kv_get",code="404"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="kv_get",code="400"} 1\n');
    expect(text).toContain('hermes_http_requests_total{route="other",code="404"} 1\n');
    expect(text).toContain('hermes_http_request_duration_seconds_count{route="kv_get"} 3\n');
    expect(text).toContain("# TYPE hermes_http_request_duration_seconds histogram\n");
    // Every sample line is `name{labels} number` or `name number`.
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
    }
  });
});

describe("unknown routes and wrong methods", () => {
  test("unknown routes are 404 unknown_route JSON", async () => {
    const { app } = setup();
    for (const path of ["/", "/v1", "/v1/kvx", "/v2/kv/a", "/v1/k%76/a", "/v1/statusx"]) {
      const response = await app.request(path);
      expect(response.status).toBe(404);
      expect((await errorOf(response)).code).toBe("unknown_route");
    }
  });

  test("wrong methods are 405 method_not_allowed JSON with Allow", async () => {
    const { app, backend } = setup();
    const cases: Array<[string, string]> = [
      ["PATCH", "/v1/kv/a"],
      ["OPTIONS", "/v1/kv/a"],
      ["POST", "/v1/status"],
      ["DELETE", "/health"],
      ["PUT", "/metrics"],
    ];
    for (const [method, path] of cases) {
      const response = await app.request(path, { method });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).not.toBeNull();
      expect((await errorOf(response)).code).toBe("method_not_allowed");
    }
    expect(backend.submitCount).toBe(0);
  });

  test("a handler that throws is a 500 internal JSON error", async () => {
    const backend = new MemoryBackend();
    backend.metrics = () => {
      throw new Error("broken backend");
    };
    const app = createApp(backend);
    const original = console.error;
    console.error = () => {};
    try {
      const response = await app.request("/metrics");
      expect(response.status).toBe(500);
      expect(await errorOf(response)).toMatchObject({ code: "internal", message: "internal error: broken backend" });
    } finally {
      console.error = original;
    }
  });
});

test("createApp refuses a backend with nonsensical limits", () => {
  expect(() => createApp(new MemoryBackend({ keyBytesMax: 0 }))).toThrow(/keyBytesMax/);
  expect(() => createApp(new MemoryBackend({ valueBytesMax: 1.5 }))).toThrow(/valueBytesMax/);
});
