// Hundreds of malformed requests: each must get a 4xx JSON error, and none may reach the backend.
// Random cases come from a seeded PRNG; the seed is in the test name, and SEED=n replays another.

import { expect, test } from "bun:test";
import { createApp, createHttpHandler } from "../../src/http/app.ts";
import { parseAuthFile } from "../../src/http/auth-file.ts";
import { AuthGuard } from "../../src/http/auth-guard.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";
import { prng } from "../lib/prng.ts";

const seed = Number(process.env.SEED ?? 20240611) >>> 0;

interface Case {
  label: string;
  path: string;
  init?: RequestInit;
  /** The exact status when the case determines it; otherwise any 4xx. */
  status?: number;
}

const keyBytesMax = 64;
const valueBytesMax = 256;

function buildCases(random: () => number): Case[] {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const hex = (byte: number) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  const cases: Case[] = [];

  // Keys that break a rule.
  // [key, status for GET/PUT/DELETE, status for incr]. The URL parser resolves "." and ".." away:
  // "/v1/kv/." is "/v1/kv/" (an empty key), "/v1/kv/.." is "/v1/" (no route), "/v1/kv/%2e/incr" is
  // "/v1/kv/incr" (a plain key URL, where POST is not allowed).
  const badKeys: Array<[string, number, number?]> = [
    ["", 400],
    [".", 400, 405],
    ["..", 404, 404],
    ["%2e", 400, 405],
    ["%", 400],
    ["%G1", 400],
    ["%1", 400],
    ["abc%", 400],
    ["%FF", 400],
    ["%C0%AF", 400], // overlong "/"
    ["%ED%A0%80", 400], // an encoded surrogate
    ["%E2%82", 400], // truncated sequence
    ["%C2%85", 400], // U+0085, a C1 control
    ["%7F", 400],
    ["a".repeat(keyBytesMax + 1), 413],
    ["%C3%A9".repeat(keyBytesMax / 2 + 1), 413], // é is 2 bytes
    ["%F0%9F%98%80".repeat(keyBytesMax / 4 + 1), 413], // an emoji is 4 bytes
  ];
  for (let byte = 0; byte < 0x20; byte += 1) badKeys.push([`k${hex(byte)}`, 400]);
  for (const [key, status, incrStatus] of badKeys) {
    const label = key.slice(0, 20);
    cases.push({ label: `GET key ${label}`, path: `/v1/kv/${key}`, status });
    cases.push({ label: `PUT key ${label}`, path: `/v1/kv/${key}`, init: { method: "PUT", body: "v" }, status });
    cases.push({ label: `DELETE key ${label}`, path: `/v1/kv/${key}`, init: { method: "DELETE" }, status });
    cases.push({
      label: `INCR key ${label}`,
      path: `/v1/kv/${key}/incr`,
      init: { method: "POST" },
      status: incrStatus ?? status,
    });
  }

  // Random bytes in the path, with at least one broken element so that no case is a valid key.
  const broken = ["%00", "%1F", "%7F", "%80", "%BF", "%C0", "%FF", "%", "%Z", "%4"];
  const plain = "abcXYZ019-_.~!$&'()*+,;=:@";
  for (let index = 0; index < 120; index += 1) {
    const parts: string[] = [];
    const length = 1 + int(24);
    for (let j = 0; j < length; j += 1) parts.push(random() < 0.6 ? hex(int(256)) : plain[int(plain.length)]!);
    parts.splice(int(parts.length + 1), 0, pick(broken));
    const method = pick(["GET", "PUT", "DELETE", "POST"]);
    const suffix = method === "POST" ? "/incr" : "";
    cases.push({
      label: `random path ${index}`,
      path: `/v1/kv/${parts.join("")}${suffix}`,
      init: method === "PUT" ? { method, body: "v" } : { method },
      status: 400,
    });
  }

  // Bodies too large: declared, streamed without a length, and with a Content-Length that lies.
  for (const size of [valueBytesMax + 1, valueBytesMax * 4, 1 << 20]) {
    cases.push({
      label: `body ${size}`,
      path: "/v1/kv/k",
      init: { method: "PUT", body: new Uint8Array(size) },
      status: 413,
    });
    cases.push({
      label: `streamed body ${size}`,
      path: "/v1/kv/k",
      init: {
        method: "PUT",
        body: new ReadableStream<Uint8Array>({
          start(controller) {
            for (let sent = 0; sent < size; sent += 100) controller.enqueue(new Uint8Array(Math.min(100, size - sent)));
            controller.close();
          },
        }),
      },
      status: 413,
    });
    cases.push({
      label: `lying content-length ${size}`,
      path: "/v1/kv/k",
      init: { method: "PUT", body: new Uint8Array(size), headers: { "content-length": "10" } },
      status: 413,
    });
  }
  cases.push({
    label: "content-length 2^60",
    path: "/v1/kv/k",
    init: { method: "PUT", body: "v", headers: { "content-length": "1152921504606846976" } },
    status: 413,
  });
  for (const length of ["abc", "-1", "1e3", "0x10", "1.5", " "]) {
    cases.push({
      label: `content-length ${length}`,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "content-length": length } },
      status: 400,
    });
  }

  // ETags that are not ours.
  const badEtags = [
    "",
    "*",
    "2.1",
    '"2.1',
    '2.1"',
    'W/"2.1"',
    '"2.1", "3.1"',
    '"0.1"',
    '"02.1"',
    '"2.01"',
    '"2.4294967296"',
    '"2.10000000000"',
    '"-2.1"',
    '"2"',
    '"2.1.1"',
    '"a.b"',
    '""',
    '" 2.1"',
    '"99999999999999999.1"',
    '"9007199254740993.1"',
  ];
  for (let index = 0; index < 40; index += 1) {
    let text = "";
    const length = 1 + int(12);
    for (let j = 0; j < length; j += 1) text += String.fromCharCode(0x21 + int(0x5e));
    // A random printable string is never a valid ETag unless it is one by chance: make sure it is not.
    if (!/^"[1-9][0-9]*\.[0-9]+"$/.test(text)) badEtags.push(text);
  }
  for (const etag of badEtags) {
    cases.push({
      label: `If-Match ${etag}`,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "if-match": etag } },
      status: 400,
    });
  }

  // Conditional headers where they mean nothing, or combined.
  for (const method of ["GET", "DELETE", "POST"]) {
    const path = method === "POST" ? "/v1/kv/k/incr" : "/v1/kv/k";
    for (const header of ["if-match", "if-none-match"]) {
      for (const value of ['"2.1"', "*"]) {
        cases.push({
          label: `${method} with ${header}: ${value}`,
          path,
          init: { method, headers: { [header]: value } },
          status: 400,
        });
      }
    }
  }
  cases.push({
    label: "If-Match and If-None-Match",
    path: "/v1/kv/k",
    init: { method: "PUT", body: "v", headers: { "if-match": '"2.1"', "if-none-match": "*" } },
    status: 400,
  });
  for (const value of ['"2.1"', "W/*", "**", "*, *", ""]) {
    cases.push({
      label: `If-None-Match ${value}`,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "if-none-match": value } },
      status: 400,
    });
  }

  // Numbers that are not safe integers.
  const badBys = [
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
    "%2B%2B1",
    "Infinity",
    "NaN",
    "1_000",
  ];
  for (const by of badBys) {
    cases.push({
      label: `by=${by}`,
      path: `/v1/kv/k/incr?by=${encodeURIComponent(by)}`,
      init: { method: "POST" },
      status: 400,
    });
  }
  cases.push({ label: "by twice", path: "/v1/kv/k/incr?by=1&by=2", init: { method: "POST" }, status: 400 });

  // Query parameters that would change the meaning if they were ignored.
  for (const query of ["cas=0", "cas=5", "recurse", "format=json", "by=1", "a=1&b=2", `x=${"y".repeat(2000)}`]) {
    cases.push({ label: `GET ?${query.slice(0, 20)}`, path: `/v1/kv/k?${query}`, status: 400 });
    cases.push({
      label: `PUT ?${query.slice(0, 20)}`,
      path: `/v1/kv/k?${query}`,
      init: { method: "PUT", body: "v" },
      status: 400,
    });
    cases.push({
      label: `DELETE ?${query.slice(0, 20)}`,
      path: `/v1/kv/k?${query}`,
      init: { method: "DELETE" },
      status: 400,
    });
  }
  cases.push({ label: "incr ?foo", path: "/v1/kv/k/incr?foo=1", init: { method: "POST" }, status: 400 });

  // Methods and routes that do not exist.
  for (const method of ["PATCH", "OPTIONS", "PROPFIND", "TRACE"]) {
    cases.push({ label: `${method} kv`, path: "/v1/kv/k", init: { method }, status: 405 });
  }
  cases.push({ label: "POST without /incr", path: "/v1/kv/k", init: { method: "POST" }, status: 405 });
  for (let index = 0; index < 30; index += 1) {
    let segment = "";
    for (let j = 0; j < 1 + int(10); j += 1) segment += hex(int(256));
    cases.push({
      label: `unknown route ${index}`,
      path: `/${pick(["v1", "v2", "api", "x"])}/${segment}`,
      init: { method: pick(["GET", "PUT", "DELETE", "POST"]) },
      status: 404,
    });
  }
  return cases;
}

/** Send every case through `send`; the wrong answers, one line each. `want` overrides a case's status. */
async function wrongAnswers(
  cases: Case[],
  send: (path: string, init: RequestInit | undefined) => Promise<Response>,
  want: (item: Case) => number | undefined = (item) => item.status,
): Promise<string[]> {
  const wrong: string[] = [];
  for (const item of cases) {
    const response = await send(item.path, item.init);
    const contentType = response.headers.get("content-type") ?? "";
    let code: unknown;
    try {
      code = ((await response.json()) as { error?: { code?: unknown } }).error?.code;
    } catch {
      code = undefined;
    }
    const status = want(item);
    const statusOk =
      status === undefined ? response.status >= 400 && response.status < 500 : response.status === status;
    if (!statusOk || !contentType.startsWith("application/json") || typeof code !== "string") {
      wrong.push(
        `${item.label}: ${item.init?.method ?? "GET"} ${item.path.slice(0, 80)} -> ${response.status} ${String(code)} (want ${status ?? "4xx"})`,
      );
    }
  }
  return wrong;
}

test(`malformed requests get a 4xx JSON error and submit nothing (seed ${seed})`, async () => {
  const backend = new MemoryBackend({ keyBytesMax, valueBytesMax });
  const app = createApp(backend);
  const cases = buildCases(prng(seed));
  expect(cases.length).toBeGreaterThan(300);
  expect(await wrongAnswers(cases, async (path, init) => app.request(path, init))).toEqual([]);
  expect(backend.submitCount).toBe(0);
});

// The same suite with an auth file (--auth-file), through the handler a shard worker serves (the
// guard, the fast path, the app): with an admin token every case gets the same answer as without
// auth; with no token or a wrong one, every case is 401 before any validation. Nothing is submitted.
const adminToken = "bad-input-admin-token-6c1e";
const authEntries = (() => {
  const parsed = parseAuthFile(`${adminToken} admin tester\n`);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.entries;
})();

for (const [who, token, want] of [
  ["an admin token", adminToken, (item: Case) => item.status],
  ["no token", null, () => 401],
  ["a wrong token", "bad-input-wrong-token-0000", () => 401],
] as const) {
  test(`with an auth file and ${who}, malformed requests get their 4xx JSON error and submit nothing (seed ${seed})`, async () => {
    const backend = new MemoryBackend({ keyBytesMax, valueBytesMax });
    const guard = new AuthGuard({ tokens: authEntries, metricsPublic: false });
    const { fetch } = createHttpHandler(backend, undefined, undefined, guard);
    const cases = buildCases(prng(seed));
    const send = async (path: string, init: RequestInit | undefined): Promise<Response> => {
      const headers = new Headers(init?.headers);
      if (token !== null) headers.set("authorization", `Bearer ${token}`);
      return fetch(new Request(`http://127.0.0.1${path}`, { ...init, headers }));
    };
    expect(await wrongAnswers(cases, send, want)).toEqual([]);
    expect(backend.submitCount).toBe(0);
  });
}
