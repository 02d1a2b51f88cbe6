// Client tokens with roles (--auth-file): the file's format, and every route of the API tried with
// no token, a wrong token and each role, through the handler a shard worker serves (the guard, the
// fast path, then the app), on a real in-memory backend. A refused request must submit nothing.

import { describe, expect, test } from "bun:test";
import { createHttpHandler } from "../../src/http/app.ts";
import { parseAuthFile, describeTokens, authTokensMax, type TokenEntry } from "../../src/http/auth-file.ts";
import { AuthGuard } from "../../src/http/auth-guard.ts";
import { Access, requiredAccess, type AccessLevel } from "../../src/http/route-access.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

const tokens = {
  read: "read-token-5d1c0a9e7b3f",
  write: "write-token-8e2b4c6a1d0f",
  admin: "admin-token-3f7a9c1e5b2d",
} as const;
const wrongToken = "wrong-token-000000000000";

const authFileText = `# tokens of the test
${tokens.read} read alice

${tokens.write}\twrite deploy-bot
  ${tokens.admin}   admin ops@example   
`;

function entries(): TokenEntry[] {
  const parsed = parseAuthFile(authFileText);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.entries;
}

describe("auth file", () => {
  test("one token, role and name per line; comments and blank lines are skipped", () => {
    const parsed = parseAuthFile(authFileText);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.entries.map((e) => [e.role, e.name])).toEqual([
      ["read", "alice"],
      ["write", "deploy-bot"],
      ["admin", "ops@example"],
    ]);
    // Only digests are kept: no entry holds the token's text.
    for (const entry of parsed.entries) {
      expect(entry.digest.length).toBe(32);
      expect(JSON.stringify(entry)).not.toContain("token");
      expect(Buffer.from(entry.digest).toString("hex")).toBe(
        new Bun.CryptoHasher("sha256").update(Object.values(tokens)[parsed.entries.indexOf(entry)]!).digest("hex"),
      );
    }
    expect(describeTokens(parsed.entries)).toBe("3 token(s): 1 read, 1 write, 1 admin");
  });

  const bad: [string, string, string][] = [
    ["two fields", `${tokens.read} read\n`, "line 1: expected"],
    ["four fields", `${tokens.read} read alice extra\n`, "line 1: expected"],
    ["unknown role", `# c\n${tokens.read} root alice\n`, 'line 2: unknown role "root"'],
    ["short token", "short read alice\n", "line 1: the token must be 16..256 characters"],
    ["long token", `${"x".repeat(257)} read alice\n`, "line 1: the token must be 16..256"],
    ["non-ASCII token", `${"é".repeat(20)} read alice\n`, "printable ASCII"],
    ["bad name", `${tokens.read} read al/ice\n`, "line 1: the name must be"],
    ["duplicate token", `${tokens.read} read a\n${tokens.read} admin b\n`, "line 2: this token is already given"],
  ];
  for (const [label, text, message] of bad) {
    test(`refused as a whole: ${label}, and the message never quotes the token`, () => {
      const parsed = parseAuthFile(text);
      expect(parsed.ok).toBe(false);
      if (parsed.ok) return;
      expect(parsed.error).toContain(message);
      expect(parsed.error).not.toContain(tokens.read);
    });
  }

  test(`more than ${authTokensMax} tokens are refused`, () => {
    const lines = Array.from(
      { length: authTokensMax + 1 },
      (_, i) => `token-${String(i).padStart(12, "0")} read n${i}`,
    );
    const parsed = parseAuthFile(lines.join("\n"));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toBe(`more than ${authTokensMax} tokens`);
    expect(parseAuthFile(lines.slice(0, authTokensMax).join("\n")).ok).toBe(true);
  });
});

interface Route {
  label: string;
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
  needs: AccessLevel;
}

/** Every route of the API a shard worker serves (the main thread's routes are in test/e2e/security.test.ts). */
const routes: Route[] = [
  { label: "GET key (fast path)", method: "GET", path: "/v1/kv/k1", needs: Access.read },
  { label: "GET key (app)", method: "GET", path: "/v1/kv/k%31", needs: Access.read },
  { label: "HEAD key", method: "HEAD", path: "/v1/kv/k1", needs: Access.read },
  { label: "GET status", method: "GET", path: "/v1/status", needs: Access.read },
  { label: "PUT key (fast path)", method: "PUT", path: "/v1/kv/k2", body: "v", needs: Access.write },
  {
    label: "PUT create",
    method: "PUT",
    path: "/v1/kv/k3",
    body: "v",
    headers: { "if-none-match": "*" },
    needs: Access.write,
  },
  { label: "DELETE key", method: "DELETE", path: "/v1/kv/k4", needs: Access.write },
  { label: "POST incr", method: "POST", path: "/v1/kv/k5/incr?by=2", needs: Access.write },
  {
    label: "POST batch",
    method: "POST",
    path: "/v1/batch",
    body: '{"ops":[{"op":"get","key":"k1"}]}',
    headers: { "content-type": "application/json" },
    needs: Access.write,
  },
  { label: "GET metrics", method: "GET", path: "/metrics", needs: Access.admin },
  { label: "GET metrics in disguise", method: "GET", path: "/m%65trics", needs: Access.admin },
  { label: "GET unknown route", method: "GET", path: "/v1/nothing", needs: Access.read },
  { label: "POST unknown route", method: "POST", path: "/v1/nothing", needs: Access.write },
  { label: "GET health", method: "GET", path: "/health", needs: Access.open },
];

const who: [string, string | null, AccessLevel | null][] = [
  ["no token", null, null],
  ["a wrong token", wrongToken, null],
  ["read", tokens.read, Access.read],
  ["write", tokens.write, Access.write],
  ["admin", tokens.admin, Access.admin],
];

function handler(metricsPublic = false) {
  const backend = new MemoryBackend();
  const guard = new AuthGuard({ tokens: entries(), metricsPublic });
  return { backend, guard, fetch: createHttpHandler(backend, undefined, undefined, guard).fetch };
}

function send(fetch: ReturnType<typeof handler>["fetch"], route: Route, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { ...route.headers };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return Promise.resolve(
    fetch(new Request(`http://127.0.0.1${route.path}`, { method: route.method, headers, body: route.body })),
  );
}

describe("every route with no token, a wrong token and each role", () => {
  for (const route of routes) {
    for (const [name, token, level] of who) {
      const expected = route.needs === Access.open ? "pass" : level === null ? 401 : level < route.needs ? 403 : "pass";
      test(`${route.label} with ${name}: ${expected}`, async () => {
        const { backend, fetch } = handler();
        const response = await send(fetch, route, token);
        if (expected === "pass") {
          expect([401, 403]).not.toContain(response.status);
          return;
        }
        expect(response.status).toBe(expected);
        expect(response.headers.get("content-type")).toStartWith("application/json");
        if (route.method !== "HEAD") {
          const body = (await response.json()) as { error: { code: string; message: string } };
          expect(body.error.code).toBe(expected === 401 ? "unauthorized" : "forbidden");
          expect(body.error.message).not.toContain(token ?? "\u0000");
        }
        if (expected === 401) expect(response.headers.get("www-authenticate")).toStartWith('Bearer realm="hermes-kv"');
        else expect(response.headers.get("www-authenticate")).toBeNull();
        // Refused before the fast path or the app: nothing reached the backend.
        expect(backend.submitCount).toBe(0);
      });
    }
  }

  test("an allowed write takes effect, and a refused one leaves the value as it was", async () => {
    const { backend, fetch } = handler();
    const put = (token: string | null, value: string) =>
      send(fetch, { label: "", method: "PUT", path: "/v1/kv/kept", body: value, needs: Access.write }, token);
    expect((await put(tokens.write, "first-value")).status).toBe(200);
    expect((await put(tokens.read, "refused-1")).status).toBe(403);
    expect((await put(null, "refused-2")).status).toBe(401);
    expect((await put(wrongToken, "refused-3")).status).toBe(401);
    const read = await send(fetch, { label: "", method: "GET", path: "/v1/kv/kept", needs: Access.read }, tokens.read);
    expect(await read.text()).toBe("first-value");
    expect(backend.submitCount).toBe(2);
  });

  test("malformed Authorization headers are 401", async () => {
    const { fetch } = handler();
    for (const header of ["", "Bearer", "Bearer ", `Basic ${tokens.admin}`, `Bearer  ${tokens.admin}`, tokens.admin]) {
      const response = await fetch(new Request("http://127.0.0.1/v1/status", { headers: { authorization: header } }));
      expect(response.status).toBe(401);
    }
    // The scheme is case-insensitive (RFC 7235).
    for (const scheme of ["bearer", "BEARER", "bEaReR"]) {
      const response = await fetch(
        new Request("http://127.0.0.1/v1/status", { headers: { authorization: `${scheme} ${tokens.read}` } }),
      );
      expect(response.status).toBe(200);
    }
  });

  test("--metrics-public opens GET /metrics only", async () => {
    const { fetch } = handler(true);
    expect(
      (
        await send(
          fetch,
          routes.find((r) => r.path === "/metrics")!,
          null,
        )
      ).status,
    ).toBe(200);
    expect(
      (
        await send(
          fetch,
          routes.find((r) => r.path === "/v1/status")!,
          null,
        )
      ).status,
    ).toBe(401);
  });

  test("a new table replaces the old one at once (SIGHUP)", async () => {
    const { guard, fetch } = handler();
    const status = routes.find((r) => r.path === "/v1/status")!;
    expect((await send(fetch, status, tokens.read)).status).toBe(200);
    const reloaded = parseAuthFile(`${wrongToken} read newcomer\n`);
    if (!reloaded.ok) throw new Error(reloaded.error);
    guard.setTokens(reloaded.entries);
    expect((await send(fetch, status, tokens.read)).status).toBe(401);
    expect((await send(fetch, status, wrongToken)).status).toBe(200);
  });
});

describe("the route table", () => {
  const url = (path: string) => `https://node:8443${path}`;
  const cases: [string, string, AccessLevel][] = [
    ["GET", "/v1/admin/stop", Access.admin],
    ["POST", "/v1/admin/stop", Access.admin],
    ["POST", "/v1/test/drop", Access.admin],
    ["GET", "/v1/internal/snapshot/0?epochMin=3", Access.cluster],
    ["GET", "/v1/kv?prefix=a&limit=10", Access.read],
    ["GET", "/v1/watch?prefix=a", Access.read],
    ["GET", "/ui", Access.open],
    ["GET", "/ui/app.js", Access.open],
    ["GET", "/health?x=1", Access.open],
    ["POST", "/health", Access.open],
    ["GET", "/healthz", Access.read],
    ["GET", "/v1/statusx", Access.read],
    ["GET", "/v1/%61dmin/stop", Access.admin],
    ["POST", "/v1/kv/a/incr", Access.write],
    ["GET", "/v1/batch", Access.write],
  ];
  for (const [method, path, level] of cases) {
    test(`${method} ${path} needs ${level}`, () => {
      expect(requiredAccess(method, url(path), false)).toBe(level);
    });
  }
});

test(`a full table (${authTokensMax} tokens, spread over the guard's buckets) finds each token with its role`, async () => {
  const roles = ["read", "write", "admin"] as const;
  const lines = Array.from(
    { length: authTokensMax },
    (_, i) => `many-token-${String(i).padStart(8, "0")} ${roles[i % 3]} holder${i}`,
  );
  const parsed = parseAuthFile(lines.join("\n"));
  if (!parsed.ok) throw new Error(parsed.error);
  const guard = new AuthGuard({ tokens: parsed.entries, metricsPublic: false });
  expect(guard.tokenCount).toBe(authTokensMax);
  const put = (token: string) =>
    guard.check(
      new Request("http://127.0.0.1/v1/kv/k", { method: "PUT", headers: { authorization: `Bearer ${token}` } }),
    )?.status ?? 200;
  for (let i = 0; i < authTokensMax; i++)
    expect(put(`many-token-${String(i).padStart(8, "0")}`)).toBe(i % 3 === 0 ? 403 : 200);
  expect(put("many-token-99999999")).toBe(401);
});
