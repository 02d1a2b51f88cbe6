// The web console's routes, answered by a node's main thread (the shard workers forward /ui to it:
// the console is control plane, a page and a few polls a second, never the data path):
//   GET /ui, /ui/              the page
//   GET /ui/console.js|css     its script and style sheet
//   GET /ui/members            this node's membership view: {self, epoch, members: [{id, http}]}
//   GET /ui/member/{id}/status|metrics   that member's /v1/status or /metrics (member-proxy.ts)
// The page itself uses the API directly for keys (list, read, write, watch).

import type { Hono } from "hono";
import { ErrorCode, errorResponse, invalidInput } from "../http/errors.ts";
import type { PeerHttp } from "../base/peer-http.ts";
import { fetchFromMember, memberPaths, type ConsoleMember, type MemberPathName } from "./member-proxy.ts";
import { consoleCss, consoleHtml } from "./page.ts";
import { consoleScript } from "./script.ts";

/** Every path under it belongs to the console: the prefix a node forwards to its main thread. */
export const consolePathPrefix = "/ui";

/**
 * The console's static parts: no data, and a browser cannot send a token when it navigates, so
 * bearer-token checks must let these through. /ui/members and /ui/member/* carry cluster facts:
 * they take the read role like /v1/status (the page sends its token with them).
 */
export const consolePublicPaths: readonly string[] = ["/ui", "/ui/", "/ui/console.js", "/ui/console.css"];

export interface ConsoleSource {
  /** This node's id. */
  self: number;
  /** This node's current membership view (the one its /v1/status reports). */
  view(): { epoch: number; members: readonly ConsoleMember[] };
  /** How to reach the members' HTTP ports (default plain http). */
  memberHttp?: PeerHttp;
}

// The page loads nothing from elsewhere and runs no inline script: a strict policy costs nothing.
const pageHeaders = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
} as const;
const assetHeaders = (type: string) =>
  ({
    "content-type": `${type}; charset=utf-8`,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
  }) as const;

const idPattern = /^(0|[1-9][0-9]{0,9})$/;

export function registerConsoleRoutes(app: Hono, source: ConsoleSource): void {
  const page = () => new Response(consoleHtml, { headers: pageHeaders });
  app.get("/ui", page);
  app.get("/ui/", page);
  app.get("/ui/console.js", () => new Response(consoleScript, { headers: assetHeaders("text/javascript") }));
  app.get("/ui/console.css", () => new Response(consoleCss, { headers: assetHeaders("text/css") }));

  app.get("/ui/members", (c) => {
    const view = source.view();
    return c.json(
      { self: source.self, epoch: view.epoch, members: view.members.map((m) => ({ id: m.id, http: m.http })) },
      200,
      { "cache-control": "no-store" },
    );
  });

  app.get("/ui/member/:id/:name", (c) => {
    const idText = c.req.param("id");
    const name = c.req.param("name");
    if (!idPattern.test(idText)) return invalidInput("id", "a member id is a decimal integer");
    if (!Object.hasOwn(memberPaths, name)) {
      return errorResponse(
        404,
        ErrorCode.unknownRoute,
        `the console reads ${Object.keys(memberPaths).join(" or ")} of a member`,
      );
    }
    const id = Number(idText);
    const member = source.view().members.find((m) => m.id === id);
    if (member === undefined) {
      return errorResponse(404, ErrorCode.notFound, `node ${id} is not a member in this node's view`);
    }
    return fetchFromMember(member, name as MemberPathName, c.req.header("authorization"), source.memberHttp);
  });
}
