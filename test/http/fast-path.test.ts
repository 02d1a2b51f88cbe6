// The fast path (src/http/fast-path.ts) against the Hono app alone, over real sockets: two servers,
// each with its own in-memory backend, get the same seeded sequence of requests (valid and invalid
// keys, escapes, queries, conditional headers, bodies around the size limit, other methods) and
// must give the same answers (status, headers that matter, body) and count the same metrics. A
// third count shows that the trivially valid GETs and PUTs really bypassed the app.

import { afterAll, expect, test } from "bun:test";
import { createApp, createHttpHandler } from "../../src/http/app.ts";
import { HttpMetrics } from "../../src/http/metrics.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";
import { prng, testSeed } from "../lib/prng.ts";

const seed = testSeed(0xfa57_9a70);
const limits = { keyBytesMax: 12, valueBytesMax: 64 };

const plainBackend = new MemoryBackend(limits);
const plainMetrics = new HttpMetrics();
const plainApp = createApp(plainBackend, { metrics: plainMetrics });
const plain = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => plainApp.fetch(request) });

const fastBackend = new MemoryBackend(limits);
let fallbackCalls = 0;
const handler = createHttpHandler(fastBackend, new HttpMetrics(), (app) => (request, server) => {
  fallbackCalls++;
  return app.fetch(request, server);
});
const fast = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler.fetch });

afterAll(() => {
  plain.stop(true);
  fast.stop(true);
});

const keys = [
  "a",
  "k-1",
  "a/b",
  "a/b/c",
  ".",
  "..",
  "...",
  ".a",
  "a.",
  "~!$&'()*+,;=:@",
  "a%2Fb",
  "%41",
  "%",
  "%zz",
  "a%20b",
  "x?y=1",
  "x?",
  "é",
  "ключ",
  "12345678901",
  "123456789012",
  "1234567890123",
  "a/incr",
  "",
  "-_",
  "%2e",
  "%2E%2E",
];
const headerSets: Record<string, string>[] = [
  {},
  {},
  {},
  { "if-match": '"2.1"' },
  { "if-match": "2.1" },
  { "if-none-match": "*" },
  { "if-none-match": '"2.1"' },
  { "if-modified-since": "Tue, 01 Jan 2030 00:00:00 GMT" },
];
const bodySizes = [0, 1, 5, 63, 64, 65, 1000];
const methods = ["GET", "GET", "GET", "PUT", "PUT", "PUT", "HEAD", "DELETE", "POST", "PATCH"];

interface Seen {
  status: number;
  headers: string;
  body: string;
}

async function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array | null,
): Promise<Seen> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body });
  const shown = ["content-type", "etag", "cache-control", "retry-after", "x-outcome", "allow", "content-length"].map(
    (name) => `${name}=${response.headers.get(name)}`,
  );
  return { status: response.status, headers: shown.join(" "), body: await response.text() };
}

/** The request counters of /metrics (durations differ between the two servers, counts must not). */
function counts(metrics: HttpMetrics): string {
  return metrics
    .render()
    .split("\n")
    .filter(
      (line) =>
        line.startsWith("hermes_http_requests_total") || line.startsWith("hermes_http_request_duration_seconds_count"),
    )
    .join("\n");
}

test(`the fast path answers exactly as the app (seed ${seed})`, async () => {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const differences: string[] = [];
  let trivial = 0;
  for (let i = 0; i < 600; i++) {
    const method = pick(methods);
    const key = pick(keys);
    const path = `/v1/kv/${key.includes("%") || key.includes("?") ? key : encodeURI(key)}`;
    const headers = pick(headerSets);
    const size = pick(bodySizes);
    const body = method === "PUT" || method === "POST" ? new Uint8Array(size).fill(0x61 + (i % 26)) : null;
    const label = `${method} ${path} ${JSON.stringify(headers)} body ${body?.length ?? "none"}`;
    const before = fallbackCalls;
    const a = await send(plain.port!, method, path, headers, body);
    const b = await send(fast.port!, method, path, headers, body);
    if (JSON.stringify(a) !== JSON.stringify(b))
      differences.push(`${label}:\n  app  ${JSON.stringify(a)}\n  fast ${JSON.stringify(b)}`);
    if (fallbackCalls === before) trivial++;
  }
  expect(differences).toEqual([]);
  expect(counts(handler.metrics)).toBe(counts(plainMetrics));
  // Both paths were exercised.
  expect(trivial).toBeGreaterThan(40);
  expect(fallbackCalls).toBeGreaterThan(100);
});

test("trivially valid GET and PUT bypass the app; escapes, queries, conditionals and HEAD do not", async () => {
  const bypasses = async (
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body: string | null = null,
  ): Promise<boolean> => {
    const before = fallbackCalls;
    await fetch(`http://127.0.0.1:${fast.port}${path}`, { method, headers, body });
    return fallbackCalls === before;
  };
  expect(await bypasses("PUT", "/v1/kv/plain", {}, "v")).toBe(true);
  expect(await bypasses("GET", "/v1/kv/plain")).toBe(true);
  expect(await bypasses("GET", "/v1/kv/a/b")).toBe(true);
  expect(await bypasses("GET", "/v1/kv/a%2Fb")).toBe(false);
  expect(await bypasses("GET", "/v1/kv/plain?x=1")).toBe(false);
  expect(await bypasses("GET", "/v1/kv/plain", { "if-match": '"2.1"' })).toBe(false);
  expect(await bypasses("PUT", "/v1/kv/plain", { "if-none-match": "*" }, "v")).toBe(false);
  expect(await bypasses("HEAD", "/v1/kv/plain")).toBe(false);
  expect(await bypasses("GET", "/v1/status")).toBe(false);
});
