// The console's routes on a control app, against real member servers on 127.0.0.1: the page and
// its assets with their security headers, the view, and the member proxy's limits (only members of
// the view, only two fixed paths, no query passed on, only the Authorization header passed on,
// answers bounded in size, an unreachable member answered 502 in the API's error shape).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { memberProxyBodyBytesMax, type ConsoleMember } from "../../src/console/member-proxy.ts";
import { consolePublicPaths, registerConsoleRoutes } from "../../src/console/routes.ts";
import { createControlApp } from "../../src/http/app.ts";

type Server = ReturnType<typeof Bun.serve>;
let member: Server | null = null;
let huge: Server | null = null;
/** A port nothing listens on: bound once, then released. */
let closedPort = 0;
const seen: { path: string; query: string; authorization: string | null; cookie: string | null }[] = [];

beforeAll(() => {
  member = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      seen.push({
        path: url.pathname,
        query: url.search,
        authorization: request.headers.get("authorization"),
        cookie: request.headers.get("cookie"),
      });
      if (url.pathname === "/v1/status") return Response.json({ nodeId: 1, serving: true });
      if (url.pathname === "/metrics")
        return new Response('hermes_keys{shard="0"} 3\n', {
          headers: { "content-type": "text/plain", "set-cookie": "x=1" },
        });
      return new Response("no", { status: 404 });
    },
  });
  huge = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response("x".repeat(memberProxyBodyBytesMax + 1), { headers: { "content-type": "text/plain" } }),
  });
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  closedPort = probe.port;
  probe.stop(true);
});

afterAll(() => {
  member?.stop(true);
  huge?.stop(true);
});

function app() {
  const members: ConsoleMember[] = [
    { id: 0, http: `127.0.0.1:${closedPort}` },
    { id: 1, http: `127.0.0.1:${member!.port}` },
    { id: 2, http: `127.0.0.1:${huge!.port}` },
  ];
  const control = createControlApp();
  registerConsoleRoutes(control, { self: 1, view: () => ({ epoch: 7, members }) });
  return control;
}

async function errorOf(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, code: body.error.code, message: body.error.message };
}

test("the page, its script and its style sheet, with a strict content security policy", async () => {
  for (const path of ["/ui", "/ui/"]) {
    const page = await app().request(path);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self';");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    // No inline script: the policy would block it.
    expect(html.match(/<script/g)).toEqual(["<script"]);
    expect(html).toContain('<script src="/ui/console.js" defer></script>');
  }
  const script = await app().request("/ui/console.js");
  expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
  const css = await app().request("/ui/console.css");
  expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
});

// What a browser loads by navigating, without a token: every public path is a static part of the page.
test("the public paths are the page and its assets, all answered without a token", async () => {
  for (const path of consolePublicPaths) {
    const answer = await app().request(path);
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toMatch(/^text\/(html|javascript|css); charset=utf-8$/);
  }
  expect(consolePublicPaths).not.toContain("/ui/members");
});

// The script is valid JavaScript (compiled, not run): a syntax error would only show in a browser.
test("the script parses as JavaScript", async () => {
  const text = await (await app().request("/ui/console.js")).text();
  expect(text.length).toBeGreaterThan(1000);
  expect(() => new Function(text)).not.toThrow();
});

test("/ui/members is this node's view with the members' HTTP addresses", async () => {
  const view = (await (await app().request("/ui/members")).json()) as {
    self: number;
    epoch: number;
    members: unknown[];
  };
  expect(view).toEqual({
    self: 1,
    epoch: 7,
    members: [
      { id: 0, http: `127.0.0.1:${closedPort}` },
      { id: 1, http: `127.0.0.1:${member!.port}` },
      { id: 2, http: `127.0.0.1:${huge!.port}` },
    ],
  });
});

test("the proxy reads a member's status and metrics, passing on only the Authorization header", async () => {
  seen.length = 0;
  const headers = { authorization: "Bearer t0k3n", cookie: "session=secret" };
  const status = await app().request("/ui/member/1/status?x=1", { headers });
  expect(status.status).toBe(200);
  expect(await status.json()).toEqual({ nodeId: 1, serving: true });
  const metrics = await app().request("/ui/member/1/metrics", { headers });
  expect(await metrics.text()).toBe('hermes_keys{shard="0"} 3\n');
  expect(metrics.headers.get("content-type")).toBe("text/plain");
  expect(metrics.headers.get("set-cookie")).toBe(null);
  expect(seen).toEqual([
    { path: "/v1/status", query: "", authorization: "Bearer t0k3n", cookie: null },
    { path: "/metrics", query: "", authorization: "Bearer t0k3n", cookie: null },
  ]);
});

test("the proxy refuses what is not a member's status or metrics, and bounds what it passes on", async () => {
  seen.length = 0;
  expect(await errorOf(await app().request("/ui/member/x/status"))).toMatchObject({
    status: 400,
    code: "invalid_input",
  });
  expect(await errorOf(await app().request("/ui/member/9/status"))).toEqual({
    status: 404,
    code: "not_found",
    message: "node 9 is not a member in this node's view",
  });
  for (const path of ["/ui/member/1/internal", "/ui/member/1/..%2Fv1%2Fkv%2Fk", "/ui/member/1/v1/kv/k"]) {
    expect((await app().request(path)).status).toBe(404);
  }
  expect((await app().request("/ui/member/1/status", { method: "POST" })).status).toBe(404);
  expect(seen).toEqual([]); // none of these reached the member
  const tooLarge = await errorOf(await app().request("/ui/member/2/metrics"));
  expect(tooLarge).toEqual({
    status: 502,
    code: "member_unreachable",
    message: `member 2 answered more than ${memberProxyBodyBytesMax} bytes`,
  });
  const unreachable = await errorOf(await app().request("/ui/member/0/status"));
  expect(unreachable.status).toBe(502);
  expect(unreachable.code).toBe("member_unreachable");
  expect(unreachable.message).toStartWith(`member 0 at 127.0.0.1:${closedPort} did not answer:`);
});
