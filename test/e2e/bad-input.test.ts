// Malformed input against a real replica of a 3-replica LocalCluster: hundreds of bad HTTP requests
// (through fetch, and raw bytes on the HTTP socket), then garbage on a replica's TCP transport port.
// After each batch the node must still be up (/health 200 on every replica), the data written
// before must be unchanged on every replica (same value, same ETag), and a new write must still
// replicate (so the transport was not wedged either).
//
// The HTTP cases that fetch can send are well-formed HTTP, so they reach the app: each must get a
// 4xx JSON error `{ error: { code, message } }` with the status the contract gives it. Requests that
// are not valid HTTP/1.1 (raw control bytes in the request line, a bad Content-Length, ...) are
// answered by Bun's own parser before the app sees them: those get a bare status line and a closed
// connection, which is all the node can do; they are checked to leave the node up.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { MsgKind } from "../../src/base/kinds.ts";
import { nodeDefaults } from "../../src/node/node.ts";
import type { LocalCluster } from "../../src/cli/local-cluster.ts";
import { tcpHelloBytes, tcpHelloMagic, tcpHelloVersion } from "../../src/transport/tcp.ts";
import { codecVersion, frameHeaderBytes, frameMagic, messageFixedBytes } from "../../src/wire/layout.ts";
import {
  errorCode,
  eventually,
  prng,
  request,
  startCluster,
  testSeed,
  type Answer,
  type TestCluster,
} from "./harness.ts";

const seed = testSeed(0xbad_1);
const replicas = 3;
const keyBytesMax = nodeDefaults.keyBytesMax;
const valueBytesMax = nodeDefaults.valueBytesMax;
/** LocalCluster serves with Bun's maxRequestBodySize at this: bodies above it never reach the app. */
const serverBodyBytesMax = valueBytesMax + 4096;

let tc: TestCluster;
let cluster: LocalCluster;
let urls: string[];
/** key -> "etag value" as written before the malformed input. */
const seeded = new Map<string, string>();

beforeAll(async () => {
  tc = await startCluster(replicas);
  cluster = tc.cluster;
  urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  const put = async (key: string, value: string) => {
    const answer = await request(`${urls[0]}/v1/kv/${key}`, { method: "PUT", body: value });
    expect(answer.kind === "response" && answer.status).toBe(200);
  };
  await put("data-a", "alpha");
  await put("data-b", "beta");
  await put("data-gone", "soon deleted");
  expect(await statusOf(request(`${urls[1]}/v1/kv/data-gone`, { method: "DELETE" }))).toBe(200);
  for (let i = 0; i < 5; i++)
    expect(await statusOf(request(`${urls[i % replicas]}/v1/kv/data-n/incr?by=7`, { method: "POST" }))).toBe(200);
  for (const key of ["data-a", "data-b", "data-gone", "data-n"]) {
    const answer = await request(`${urls[0]}/v1/kv/${key}`);
    if (answer.kind !== "response") throw new Error(`seeding ${key}: ${answer.kind}`);
    seeded.set(key, `${answer.status} ${answer.etag} ${answer.status === 200 ? answer.body : ""}`);
  }
  expect(seeded.get("data-n")).toEndWith(" 35");
  expect(seeded.get("data-gone")).toStartWith("404 ");
});

afterAll(async () => {
  await cluster?.close();
});

async function statusOf(answer: Promise<Answer>): Promise<number | string> {
  const a = await answer;
  return a.kind === "response" ? a.status : a.kind;
}

/** Every replica is up, holds exactly the seeded data, and a fresh write still replicates. */
async function expectNodeUpAndDataUnchanged(probe: string): Promise<void> {
  for (const url of urls) {
    expect(await statusOf(request(`${url}/health`))).toBe(200);
    for (const [key, expected] of seeded) {
      const answer = await request(`${url}/v1/kv/${key}`);
      expect(
        answer.kind === "response"
          ? `${answer.status} ${answer.etag} ${answer.status === 200 ? answer.body : ""}`
          : answer.kind,
        `${key} on ${url}`,
      ).toBe(expected);
    }
  }
  expect(await statusOf(request(`${urls[0]}/v1/kv/${probe}`, { method: "PUT", body: probe }))).toBe(200);
  for (const url of urls) {
    // Reads are local in Hermes; the write committed on all replicas before it was acknowledged.
    const answer = await request(`${url}/v1/kv/${probe}`);
    expect(answer.kind === "response" ? answer.body : answer.kind).toBe(probe);
  }
}

interface Case {
  label: string;
  path: string;
  init?: RequestInit;
  /** The status the contract gives this request. */
  status: number;
  code: string;
}

function hex(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
}

/** Requests that are well-formed HTTP and break one rule of the API each. */
function appCases(random: () => number): Case[] {
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const cases: Case[] = [];
  const onKey = (label: string, key: string, status: number, code: string): void => {
    cases.push({ label: `GET ${label}`, path: `/v1/kv/${key}`, status, code });
    cases.push({ label: `PUT ${label}`, path: `/v1/kv/${key}`, init: { method: "PUT", body: "v" }, status, code });
    cases.push({ label: `DELETE ${label}`, path: `/v1/kv/${key}`, init: { method: "DELETE" }, status, code });
    cases.push({ label: `INCR ${label}`, path: `/v1/kv/${key}/incr`, init: { method: "POST" }, status, code });
  };

  // Keys: malformed escapes, invalid UTF-8, control characters (NUL included), empty, overlong.
  for (const key of [
    "%",
    "%G1",
    "%1",
    "abc%",
    "%FF",
    "%C0%AF",
    "%ED%A0%80",
    "%E2%82",
    "%F8%88%80%80%80",
    "a%00b",
    "%00",
    "%7F",
    "%C2%85",
    "%C2%9F",
  ]) {
    onKey(`key ${key}`, key, 400, "invalid_input");
  }
  for (let byte = 0; byte < 0x20; byte++) onKey(`key k${hex(byte)}`, `k${hex(byte)}`, 400, "invalid_input");
  cases.push({ label: "GET empty key", path: "/v1/kv/", status: 400, code: "invalid_input" });
  cases.push({
    label: "PUT empty key",
    path: "/v1/kv/",
    init: { method: "PUT", body: "v" },
    status: 400,
    code: "invalid_input",
  });
  onKey("key of keyBytesMax+1 ASCII bytes", "a".repeat(keyBytesMax + 1), 413, "too_large");
  onKey("key of 2-byte characters", "%C3%A9".repeat(keyBytesMax / 2 + 1), 413, "too_large");
  onKey("key of 4-byte characters", "%F0%9F%98%80".repeat(keyBytesMax / 4 + 1), 413, "too_large");
  onKey("key of 4000 bytes", "k".repeat(4000), 413, "too_large");

  // Random bytes in the path (percent-encoded, so that fetch sends them as they are), each with
  // at least one element that no key may contain.
  const broken = ["%00", "%01", "%1F", "%7F", "%80", "%BF", "%C0", "%FF", "%", "%Z", "%4"];
  const plain = "abcXYZ019-_~!$&'()*+,;=:@";
  for (let i = 0; i < 80; i++) {
    const parts: string[] = [];
    const length = 1 + int(20);
    for (let j = 0; j < length; j++) parts.push(random() < 0.6 ? hex(int(256)) : plain[int(plain.length)]!);
    parts.splice(int(parts.length + 1), 0, pick(broken));
    const method = pick(["GET", "PUT", "DELETE", "POST"] as const);
    cases.push({
      label: `random path ${i} ${method}`,
      path: `/v1/kv/${parts.join("")}${method === "POST" ? "/incr" : ""}`,
      init: method === "PUT" ? { method, body: "v" } : { method },
      status: 400,
      code: "invalid_input",
    });
  }

  // Bad If-Match headers, aimed at a key that exists: none may overwrite it.
  const badEtags = [
    "garbage",
    "*",
    "2.0",
    '"2.0',
    '2.0"',
    'W/"2.0"',
    '"2.0", "4.1"',
    '"0.0"',
    '"02.0"',
    '"2.00"',
    '"2.32"',
    '"-2.0"',
    '"2"',
    '"2.0.0"',
    '"a.b"',
    '""',
    '" 2.0"',
    '"99999999999999999.0"',
    '"9007199254740993.0"',
  ];
  for (let i = 0; i < 30; i++) {
    let text = "";
    for (let j = 0, n = 1 + int(12); j < n; j++) text += String.fromCharCode(0x21 + int(0x5e));
    if (!/^"[1-9][0-9]*\.[0-9]+"$/.test(text)) badEtags.push(text);
  }
  for (const etag of badEtags) {
    cases.push({
      label: `If-Match ${etag}`,
      path: "/v1/kv/data-a",
      init: { method: "PUT", body: "overwritten", headers: { "if-match": etag } },
      status: 400,
      code: "invalid_input",
    });
  }
  const a = '"2.0"';
  cases.push({
    label: "If-Match and If-None-Match",
    path: "/v1/kv/data-a",
    init: { method: "PUT", body: "overwritten", headers: { "if-match": a, "if-none-match": "*" } },
    status: 400,
    code: "invalid_input",
  });
  cases.push({
    label: "If-Match and If-None-Match on an absent key",
    path: "/v1/kv/data-gone",
    init: { method: "PUT", body: "overwritten", headers: { "if-match": a, "if-none-match": "*" } },
    status: 400,
    code: "invalid_input",
  });
  for (const value of [a, "W/*", "**", "*, *", ""]) {
    cases.push({
      label: `If-None-Match ${value}`,
      path: "/v1/kv/data-gone",
      init: { method: "PUT", body: "overwritten", headers: { "if-none-match": value } },
      status: 400,
      code: "invalid_input",
    });
  }
  for (const method of ["GET", "DELETE", "POST"] as const) {
    const path = method === "POST" ? "/v1/kv/data-n/incr" : "/v1/kv/data-b";
    for (const header of ["if-match", "if-none-match"]) {
      for (const value of [a, "*"])
        cases.push({
          label: `${method} with ${header}: ${value}`,
          path,
          init: { method, headers: { [header]: value } },
          status: 400,
          code: "invalid_input",
        });
    }
  }

  // Increments that are not safe integers, and queries that would change the meaning if ignored.
  for (const by of [
    "",
    "abc",
    "1.5",
    "1e3",
    "0x10",
    "+",
    "-",
    "--1",
    "9007199254740992",
    "-9007199254740992",
    "99999999999999999",
    " 1",
    "1 ",
    "Infinity",
    "NaN",
    "1_000",
    "%00",
  ]) {
    cases.push({
      label: `by=${by}`,
      path: `/v1/kv/data-n/incr?by=${encodeURIComponent(by)}`,
      init: { method: "POST" },
      status: 400,
      code: "invalid_input",
    });
  }
  cases.push({
    label: "by twice",
    path: "/v1/kv/data-n/incr?by=1&by=2",
    init: { method: "POST" },
    status: 400,
    code: "invalid_input",
  });
  cases.push({
    label: "incr with an unknown parameter",
    path: "/v1/kv/data-n/incr?by=1&x=2",
    init: { method: "POST" },
    status: 400,
    code: "invalid_input",
  });
  for (const query of ["cas=0", "recurse", "by=1", `x=${"y".repeat(2000)}`]) {
    cases.push({
      label: `GET ?${query.slice(0, 16)}`,
      path: `/v1/kv/data-a?${query}`,
      status: 400,
      code: "invalid_input",
    });
    cases.push({
      label: `PUT ?${query.slice(0, 16)}`,
      path: `/v1/kv/data-a?${query}`,
      init: { method: "PUT", body: "overwritten" },
      status: 400,
      code: "invalid_input",
    });
    cases.push({
      label: `DELETE ?${query.slice(0, 16)}`,
      path: `/v1/kv/data-b?${query}`,
      init: { method: "DELETE" },
      status: 400,
      code: "invalid_input",
    });
  }
  // POST is routed for /v1/kv/*, but only /{key}/incr takes it.
  cases.push({
    label: "POST without /incr",
    path: "/v1/kv/data-a",
    init: { method: "POST", body: "x" },
    status: 405,
    code: "method_not_allowed",
  });
  // Values over valueBytesMax that Bun's server limit lets through to the app.
  for (const size of [valueBytesMax + 1, serverBodyBytesMax - 1]) {
    cases.push({
      label: `value of ${size} bytes`,
      path: "/v1/kv/data-a",
      init: { method: "PUT", body: new Uint8Array(size) },
      status: 413,
      code: "too_large",
    });
  }
  cases.push({
    label: "chunked value over valueBytesMax",
    path: "/v1/kv/data-a",
    init: { method: "PUT", body: chunkedBody(valueBytesMax + 100) },
    status: 413,
    code: "too_large",
  });
  return cases;
}

function chunkedBody(bytes: number): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (let sent = 0; sent < bytes; sent += 1000) controller.enqueue(new Uint8Array(Math.min(1000, bytes - sent)));
      controller.close();
    },
  });
}

/** Runs cases against replica 0; returns one line per case that did not get its 4xx JSON answer. */
async function runCases(cases: Case[]): Promise<string[]> {
  const wrong: string[] = [];
  // A few at a time: enough to overlap, not so many that the loaded machine times them out.
  const concurrency = 8;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const answer = await request(`${urls[0]}${c.path}`, c.init);
        if (answer.kind !== "response") {
          wrong.push(`${c.label}: ${answer.kind}`);
          continue;
        }
        const code = errorCode(answer.body);
        const json = answer.contentType?.startsWith("application/json") === true;
        if (answer.status !== c.status || code !== c.code || !json) {
          wrong.push(
            `${c.label}: expected ${c.status} ${c.code}, got ${answer.status} ${answer.contentType} ${JSON.stringify(answer.body.slice(0, 80))}`,
          );
        }
      }
    }),
  );
  return wrong;
}

test(`hundreds of malformed requests each get their 4xx JSON error and change nothing (seed ${seed})`, async () => {
  const cases = appCases(prng(seed));
  expect(cases.length).toBeGreaterThan(300);
  const wrong = await runCases(cases);
  expect(wrong).toEqual([]);
  await expectNodeUpAndDataUnchanged("probe-after-app-cases");
}, 60_000);

// Fails today: LocalCluster.#serve (src/cli/local-cluster.ts, `admin.route("/", app)`) mounts the
// app's routes on a second Hono app, and Hono's route() does not carry the sub-app's notFound
// handler, so every request that matches no route gets Hono's default plain-text "404 Not Found"
// instead of the app's JSON 405 (with Allow) or 404 unknown_route. src/cli/node-command.ts does
// the same (`app.route("/", createApp(backend))`).
test("wrong methods and unknown routes get a JSON 405 or 404", async () => {
  const cases: Case[] = [];
  for (const method of ["PATCH", "OPTIONS", "PROPFIND"]) {
    cases.push({
      label: `${method} /v1/kv/data-a`,
      path: "/v1/kv/data-a",
      init: { method },
      status: 405,
      code: "method_not_allowed",
    });
  }
  for (const path of ["/v1/status", "/health", "/metrics"]) {
    for (const method of ["PUT", "POST", "DELETE"])
      cases.push({ label: `${method} ${path}`, path, init: { method }, status: 405, code: "method_not_allowed" });
  }
  // GET /v1/kv is the listing (issue 12); its other methods are 405.
  for (const method of ["PUT", "POST", "DELETE", "PATCH"])
    cases.push({
      label: `${method} /v1/kv`,
      path: "/v1/kv",
      init: { method },
      status: 405,
      code: "method_not_allowed",
    });
  for (const path of ["/", "/v1", "/v1/kvs", "/v2/kv/data-a", "/v1/kvx/data-a", "/api/%FF%00"]) {
    cases.push({ label: `GET ${path}`, path, status: 404, code: "unknown_route" });
  }
  const wrong = await runCases(cases);
  expect(wrong).toEqual([]);
  await expectNodeUpAndDataUnchanged("probe-after-routes");
}, 60_000);

// Fails today: LocalCluster.#serve passes `maxRequestBodySize: valueBytesMax + 4096` to Bun.serve
// (src/cli/local-cluster.ts, in #serve; src/cli/node-command.ts does the same), so Bun itself
// answers a bare 413 with an empty body, before the app, to any body above that size. The app
// already answers a JSON 413 from Content-Length without reading the body, and caps a chunked body
// as it streams (readBodyBounded), so the server-level limit only hides the JSON answer.
test("values of any size over the limit get a JSON 413", async () => {
  const cases: Case[] = [];
  for (const size of [serverBodyBytesMax + 1, 100_000, 1 << 20, 4 << 20]) {
    cases.push({
      label: `value of ${size} bytes`,
      path: "/v1/kv/data-a",
      init: { method: "PUT", body: new Uint8Array(size) },
      status: 413,
      code: "too_large",
    });
  }
  cases.push({
    label: "chunked value of 1 MiB",
    path: "/v1/kv/data-b",
    init: { method: "PUT", body: chunkedBody(1 << 20) },
    status: 413,
    code: "too_large",
  });
  const wrong = await runCases(cases);
  expect(wrong).toEqual([]);
  await expectNodeUpAndDataUnchanged("probe-after-bodies");
}, 60_000);

/** Sends bytes on a new TCP connection; collects what comes back until the peer closes or `waitMs`. */
async function rawExchange(
  host: string,
  port: number,
  bytes: Uint8Array,
  waitMs = 2000,
): Promise<{ reply: string; peerClosed: boolean }> {
  return await new Promise((resolve, reject) => {
    let reply = "";
    let settled = false;
    const settle = (peerClosed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ reply, peerClosed });
    };
    const timer = setTimeout(() => {
      settle(false);
      socketRef?.end();
    }, waitMs);
    let socketRef: { end(): void } | null = null;
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open(socket) {
          socketRef = socket;
          socket.write(bytes);
        },
        data(_socket, chunk) {
          if (reply.length < 4096) reply += chunk.toString("latin1");
        },
        close() {
          settle(true);
        },
        error() {
          // close follows
        },
      },
    }).catch(reject);
  });
}

function bytesOf(...parts: (string | number[] | Uint8Array)[]): Uint8Array {
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))));
}

test(`malformed HTTP on the raw socket is refused and the node stays up (seed ${seed})`, async () => {
  const { hostname, port } = new URL(urls[0]!);
  const random = prng(seed ^ 0x7777);
  const int = (n: number): number => Math.floor(random() * n);
  const end = "Host: x\r\nConnection: close\r\n\r\n";
  const cases: { label: string; bytes: Uint8Array }[] = [
    { label: "control byte in the path", bytes: bytesOf("GET /v1/kv/a\x01b HTTP/1.1\r\n", end) },
    { label: "NUL in the path", bytes: bytesOf("GET /v1/kv/a", [0], "b HTTP/1.1\r\n", end) },
    { label: "space in the path", bytes: bytesOf("GET /v1/kv/a b HTTP/1.1\r\n", end) },
    {
      label: "PUT with NUL in the path",
      bytes: bytesOf("PUT /v1/kv/data-a", [0], " HTTP/1.1\r\nContent-Length: 1\r\n", end, "x"),
    },
    {
      label: "bad Content-Length",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nContent-Length: abc\r\n", end, "abc"),
    },
    {
      label: "negative Content-Length",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nContent-Length: -1\r\n", end, "abc"),
    },
    {
      label: "two Content-Lengths",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n", end, "ab"),
    },
    {
      label: "Content-Length and chunked",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n", end, "abc"),
    },
    {
      label: "broken chunked body",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", end, "zz\r\nabc\r\n0\r\n\r\n"),
    },
    {
      label: "huge Content-Length",
      bytes: bytesOf("PUT /v1/kv/data-a HTTP/1.1\r\nContent-Length: 99999999999\r\n", end, "abc"),
    },
    { label: "relative request target", bytes: bytesOf("GET v1/kv/data-a HTTP/1.1\r\n", end) },
    { label: "asterisk request target", bytes: bytesOf("GET * HTTP/1.1\r\n", end) },
    { label: "HTTP/9.9", bytes: bytesOf("GET /v1/kv/data-a HTTP/9.9\r\n", end) },
    { label: "no version", bytes: bytesOf("GET /v1/kv/data-a\r\n", end) },
    { label: "header without a colon", bytes: bytesOf("GET /v1/kv/data-a HTTP/1.1\r\nBroken header\r\n", end) },
    {
      label: "header of 100 kB",
      bytes: bytesOf(`GET /v1/kv/data-a HTTP/1.1\r\nX-Big: ${"b".repeat(100_000)}\r\n`, end),
    },
    { label: "request line of 100 kB", bytes: bytesOf(`GET /v1/kv/${"k".repeat(100_000)} HTTP/1.1\r\n`, end) },
    { label: "bare LF line ends", bytes: bytesOf("GET /v1/kv/data-a HTTP/1.1\nHost: x\nConnection: close\n\n") },
    { label: "only garbage", bytes: bytesOf([0, 1, 2, 3, 0xff, 0xfe], "\r\n\r\n") },
  ];
  for (let i = 0; i < 30; i++) {
    const junk = new Uint8Array(1 + int(300));
    for (let j = 0; j < junk.length; j++) junk[j] = int(256);
    cases.push({ label: `random bytes ${i}`, bytes: i % 2 === 0 ? junk : bytesOf(junk, "\r\n\r\n") });
  }
  // Raw non-ASCII bytes in a GET path: Bun percent-encodes them (invalid UTF-8 becomes U+FFFD)
  // and the app answers; a GET of a key that does not exist is a JSON 404.
  for (let i = 0; i < 20; i++) {
    const raw = Array.from({ length: 1 + int(8) }, () => 0x80 + int(128));
    cases.push({ label: `GET with raw bytes ${i}`, bytes: bytesOf("GET /v1/kv/raw-", raw, " HTTP/1.1\r\n", end) });
  }

  const seen: string[] = [];
  const wrong: string[] = [];
  for (const c of cases) {
    const { reply, peerClosed } = await rawExchange(hostname, Number(port), c.bytes);
    const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
    const bodyAt = reply.indexOf("\r\n\r\n");
    const body = bodyAt < 0 ? "" : reply.slice(bodyAt + 4);
    const json = errorCode(body) !== null;
    seen.push(
      `${c.label}: ${status ?? "no answer"}${json ? ` ${errorCode(body)}` : ""}${peerClosed ? "" : " (left open)"}`,
    );
    // Refused by the parser (a bare 4xx, or Bun's 505 for bytes it cannot parse as a version),
    // by the app (a 4xx JSON error), or the connection closed without an answer. Never a 2xx.
    const refused =
      status === undefined ? peerClosed : (status.startsWith("4") && (json || body === "")) || status === "505";
    if (!refused) wrong.push(`${c.label}: ${JSON.stringify(reply.slice(0, 200))}`);
  }
  console.error(`e2e raw HTTP answers:\n  ${seen.join("\n  ")}`);
  expect(wrong).toEqual([]);
  await expectNodeUpAndDataUnchanged("probe-after-raw-http");
}, 60_000);

// ---- the transport port ----------------------------------------------------------------------

function hello(from: number, to: number, magic = tcpHelloMagic, version = tcpHelloVersion): Buffer {
  const b = Buffer.alloc(tcpHelloBytes);
  b.writeUInt32LE(magic, 0);
  b.writeUInt16LE(version, 4);
  b.writeUInt16LE(from, 6);
  b.writeUInt16LE(to, 8);
  return b;
}

/** A TCP frame record: u32 length, then the bytes. */
function record(payload: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(payload.length, 0);
  return Buffer.concat([h, payload]);
}

interface FrameFields {
  magic?: number;
  version?: number;
  sender?: number;
  shard?: number;
  clusterId?: number;
  epoch?: number;
}

/** A protocol frame (layout.ts) with one message per entry of `messages`, fields overridable. */
function frame(f: FrameFields, messages: Buffer[], trailing = 0): Buffer {
  const body = Buffer.concat([...messages, Buffer.alloc(trailing)]);
  const h = Buffer.alloc(frameHeaderBytes);
  h.writeUInt32LE(f.magic ?? frameMagic, 0);
  h[4] = f.version ?? codecVersion;
  h[5] = f.sender ?? 1;
  h[6] = f.shard ?? 0;
  h.writeUInt32LE(f.clusterId ?? nodeDefaults.clusterId, 8);
  h.writeUInt32LE(f.epoch ?? 0, 12);
  h.writeUInt16LE(messages.length, 16);
  h.writeUInt32LE(frameHeaderBytes + body.length - trailing, 20);
  return Buffer.concat([h, body]);
}

function message(kind: number, key: Uint8Array, epoch: number, version: number, keyBytesField = key.length): Buffer {
  const m = Buffer.alloc(messageFixedBytes);
  m[0] = kind;
  m[1] = 1; // writer
  m.writeUInt32LE(epoch, 4);
  m.writeUInt32LE(version, 8);
  m.writeUInt16LE(keyBytesField, 20);
  return Buffer.concat([m, key]);
}

/** The sum of a metric's samples (all shards), or 0 when absent. */
function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

async function metricsText(url: string): Promise<string> {
  const answer = await request(`${url}/metrics`);
  return answer.kind === "response" && answer.status === 200 ? answer.body : "";
}

test(`garbage on a replica's transport port is dropped and counted; the node keeps serving (seed ${seed})`, async () => {
  const target = 0;
  const node = cluster.nodes()[target]!;
  const address = node.shards[0]!.address;
  const host = address.slice(0, address.lastIndexOf(":"));
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const status = await request(`${urls[target]}/v1/status`);
  const epoch = status.kind === "response" ? (JSON.parse(status.body) as { epoch: number }).epoch : 0;
  expect(epoch).toBeGreaterThan(0);
  const names = [
    "hermes_transport_protocol_errors_total",
    "hermes_transport_oversize_drops_total",
    "hermes_transport_unknown_sender_drops_total",
    "hermes_transport_frames_dropped_total",
    "hermes_wire_frames_dropped_total",
    "hermes_wire_dropped_bad_magic_total",
    "hermes_wire_dropped_bad_version_total",
    "hermes_wire_dropped_foreign_cluster_total",
    "hermes_wire_dropped_wrong_shard_total",
    "hermes_wire_dropped_bad_sender_total",
    "hermes_wire_dropped_bad_header_total",
    "hermes_wire_dropped_bad_message_total",
    "hermes_wire_dropped_key_too_long_total",
    "hermes_wire_dropped_bad_utf8_total",
    "hermes_wire_dropped_truncated_total",
    "hermes_wire_dropped_trailing_total",
    "hermes_wire_frames_accepted_total",
  ] as const;
  const before = await metricsText(urls[target]!);
  for (const name of names) expect(before, `metric ${name}`).toContain(`${name}{`);

  const key = new TextEncoder().encode("no-such-key");
  const peer = 1;
  // Each entry: bytes for one connection, and the counter deltas it must cause (at least).
  const sends: { label: string; bytes: Uint8Array; counts: Partial<Record<(typeof names)[number], number>> }[] = [];
  for (let i = 0; i < 5; i++) {
    const junk = crypto.getRandomValues(new Uint8Array(64 + i * 100));
    junk[0] = 0; // never the hello magic
    sends.push({
      label: `garbage before the hello ${i}`,
      bytes: junk,
      counts: { hermes_transport_protocol_errors_total: 1 },
    });
  }
  sends.push({
    label: "hello addressed to another node",
    bytes: hello(peer, 2),
    counts: { hermes_transport_protocol_errors_total: 1 },
  });
  sends.push({
    label: "hello with a bad version",
    bytes: hello(peer, target, tcpHelloMagic, 99),
    counts: { hermes_transport_protocol_errors_total: 1 },
  });
  sends.push({
    label: "hello from the node itself",
    bytes: hello(target, target),
    counts: { hermes_transport_protocol_errors_total: 1 },
  });
  sends.push({ label: "truncated hello", bytes: hello(peer, target).subarray(0, 7), counts: {} });
  sends.push({
    label: "zero-length frame",
    bytes: Buffer.concat([hello(peer, target), Buffer.alloc(4)]),
    counts: { hermes_transport_protocol_errors_total: 1 },
  });
  sends.push({
    label: "frame longer than frameBytesMax",
    bytes: Buffer.concat([
      hello(peer, target),
      Buffer.from([0, 0, 0, 0x10]),
      crypto.getRandomValues(new Uint8Array(2000)),
    ]),
    counts: { hermes_transport_oversize_drops_total: 1, hermes_transport_frames_dropped_total: 1 },
  });
  sends.push({
    label: "frame from a node that is not a member",
    bytes: Buffer.concat([hello(9, target), record(frame({ sender: 9 }, []))]),
    counts: { hermes_transport_unknown_sender_drops_total: 1, hermes_transport_frames_dropped_total: 1 },
  });
  sends.push({
    label: "frame cut short by the close",
    bytes: Buffer.concat([hello(peer, target), Buffer.from([100, 0, 0, 0]), Buffer.alloc(10)]),
    counts: {},
  });
  const asPeer = (frames: Buffer[]): Buffer => Buffer.concat([hello(peer, target), ...frames.map(record)]);
  const junkFrame = crypto.getRandomValues(new Uint8Array(100));
  junkFrame[0] = 0;
  const wireCases: [string, Buffer, (typeof names)[number]][] = [
    ["random frame", Buffer.from(junkFrame), "hermes_wire_dropped_bad_magic_total"],
    ["frame shorter than a header", Buffer.alloc(10, 7), "hermes_wire_dropped_truncated_total"],
    ["bad codec version", frame({ version: 77 }, []), "hermes_wire_dropped_bad_version_total"],
    ["another cluster", frame({ clusterId: 12345 }, []), "hermes_wire_dropped_foreign_cluster_total"],
    ["another shard", frame({ shard: 3 }, []), "hermes_wire_dropped_wrong_shard_total"],
    ["sender is not the hello's", frame({ sender: 2 }, []), "hermes_wire_dropped_bad_sender_total"],
    ["trailing bytes", frame({}, [], 5), "hermes_wire_dropped_trailing_total"],
    ["unknown message kind", frame({ epoch }, [message(99, key, epoch, 1)]), "hermes_wire_dropped_bad_message_total"],
    [
      "key longer than keyBytesMax",
      frame({ epoch }, [message(MsgKind.Ack, new Uint8Array(keyBytesMax + 1).fill(0x61), epoch, 1)]),
      "hermes_wire_dropped_key_too_long_total",
    ],
    [
      "key that is not UTF-8",
      frame({ epoch }, [message(MsgKind.Ack, new Uint8Array([0xff, 0xfe]), epoch, 1)]),
      "hermes_wire_dropped_bad_utf8_total",
    ],
    [
      "message running past the end",
      frame({ epoch }, [message(MsgKind.Ack, key, epoch, 1, 500)]),
      "hermes_wire_dropped_truncated_total",
    ],
  ];
  for (const [label, bytes, name] of wireCases)
    sends.push({ label, bytes: asPeer([bytes]), counts: { [name]: 1, hermes_wire_frames_dropped_total: 1 } });
  // Well-formed frames with messages no replica expects (ACK, VAL, Reject of a key nobody writes):
  // accepted by the codec and ignored by the replica, which must not trip an assertion.
  sends.push({
    label: "stray ACK, VAL and Reject",
    bytes: asPeer([
      frame({ epoch }, [
        message(MsgKind.Ack, key, epoch, 3),
        message(MsgKind.Val, key, epoch, 3),
        message(MsgKind.Reject, key, epoch, 3),
      ]),
    ]),
    counts: { hermes_wire_frames_accepted_total: 1 },
  });
  // Random bytes, with and without a valid hello first, cut at random points.
  const random = prng(seed ^ 0x3131);
  for (let i = 0; i < 30; i++) {
    const junk = new Uint8Array(1 + Math.floor(random() * 3000));
    for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(random() * 256);
    sends.push({
      label: `random bytes ${i}`,
      bytes: i % 2 === 0 ? junk : Buffer.concat([hello(peer, target), junk]),
      counts: {},
    });
  }

  const expected = new Map<string, number>();
  const closedByNode: string[] = [];
  for (const s of sends) {
    const { peerClosed } = await rawExchange(host, port, s.bytes, 60);
    if (peerClosed) closedByNode.push(s.label);
    for (const [name, count] of Object.entries(s.counts)) expected.set(name, (expected.get(name) ?? 0) + count);
  }
  console.error(
    `e2e transport garbage: ${sends.length} connections; closed by the node: ${closedByNode.length} (${closedByNode.filter((l) => !l.startsWith("random")).join("; ")})`,
  );

  // Metrics are refreshed from the workers every second: poll until every counter has moved.
  let after = "";
  const counted = await eventually(
    async () => {
      after = await metricsText(urls[target]!);
      return [...expected].every(([name, count]) => metric(after, name) - metric(before, name) >= count);
    },
    60,
    100,
  );
  const deltas = names.map((name) => `${name.replace(/^hermes_/, "")}=+${metric(after, name) - metric(before, name)}`);
  console.error(`e2e transport counters: ${deltas.join(" ")}`);
  expect(counted, `expected at least ${JSON.stringify([...expected])}; got ${deltas.join(" ")}`).toBe(true);
  // The node refused the bad hellos by closing the connection.
  for (const label of [
    "hello addressed to another node",
    "hello with a bad version",
    "hello from the node itself",
    "zero-length frame",
  ]) {
    expect(closedByNode).toContain(label);
  }
  expect(metric(after, "hermes_serving")).toBe(1);
  await expectNodeUpAndDataUnchanged("probe-after-transport-garbage");
}, 60_000);

// Fails today: a connection that never completes its 12-byte hello holds one of the
// tcpInboundConnectionsMax (64) inbound slots of src/transport/tcp.ts for as long as the sender
// keeps it open: there is no hello deadline (InLink has no timer; TCP keepalive only detects dead
// peers). With the slots taken by such connections, onInOpen terminates every new connection,
// including a restarted peer's: its link to this node never comes up. Hermes still commits
// through replays by the third replica, but every write then waits out mltMs.
test("connections that never finish their hello cannot lock a restarted peer out", async () => {
  const target = 0;
  const peer = 1;
  const address = cluster.nodes()[target]!.shards[0]!.address;
  const host = address.slice(0, address.lastIndexOf(":"));
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const held: { end(): void }[] = [];
  /** Opens a connection that sends a truncated hello and stays open; false once the node refuses. */
  const holdOne = async (): Promise<boolean> => {
    try {
      let closed = false;
      const socket = await Bun.connect({
        hostname: host,
        port,
        socket: {
          open(s) {
            s.write(hello(peer, target).subarray(0, 7));
          },
          data() {},
          close() {
            closed = true;
          },
          error() {},
        },
      });
      await Bun.sleep(20);
      if (closed) return false;
      held.push(socket);
      return true;
    } catch {
      return false;
    }
  };
  // Bounded: more attempts than there are slots.
  const heldMax = 80;
  try {
    let refusals = 0;
    while (held.length < heldMax && refusals < 3) if (!(await holdOne())) refusals++;
    expect(await cluster.stopReplica(peer)).toBe(true);
    // The stopped peer's connection freed a slot: take it too.
    refusals = 0;
    while (held.length < heldMax && refusals < 3) if (!(await holdOne())) refusals++;
    expect(await cluster.startReplica(peer)).not.toBeNull();
    // The restarted peer dials every member; its link to the target must come up (metrics lag 1 s).
    const connected = await eventually(
      async () => metric(await metricsText(urls[peer]!), "hermes_transport_connections_up_total") === replicas - 1,
      100,
      100,
    );
    console.error(
      `e2e hello slots: held ${held.length} half-open connections; restarted peer connected to all: ${connected}`,
    );
    expect(connected).toBe(true);
  } finally {
    for (const socket of held) socket.end();
  }
  // The restarted peer loaded the seeded data, and everything works once the connections are gone.
  await eventually(
    async () => metric(await metricsText(urls[peer]!), "hermes_transport_connections_up_total") === replicas - 1,
    100,
    100,
  );
  await expectNodeUpAndDataUnchanged("probe-after-half-open-hellos");
}, 60_000);
