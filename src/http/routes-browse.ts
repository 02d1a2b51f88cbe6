// Prefix listings and watch streams (issue 12), served from any node (Hermes reads are local):
//
//   GET /v1/kv?prefix=P[&after=K][&limit=N][&values=1]   keys in byte order (JSON, see README)
//   GET /v1/watch?prefix=P | ?key=K [&from=now] [&cursor=C]  Server-Sent Events
//
// P, K and C are percent-encoded UTF-8 like keys. Every parameter is validated before the backend
// is asked anything; a bad one is a 400 (or 413 for an over-long prefix or key).

import type { Hono } from "hono";
import * as v from "valibot";
import { listLimitDefault, listLimitMax, type ListQuery, type WatchQuery } from "../base/browse.ts";
import type { KvBackend } from "../base/kv-backend.ts";
import { utf8Length } from "../base/utf8.ts";
import { ErrorCode, errorResponse, invalidInput, retryAfterSeconds, tooLarge } from "./errors.ts";
import type { HttpMetrics } from "./metrics.ts";
import { Route, counted } from "./metrics.ts";
import { etagOf } from "./outcomes.ts";
import { createKeySchema, parseConfig } from "./schemas.ts";
import { checkQuery, splitTarget } from "./target.ts";

export const listPath = "/v1/kv";
export const watchPath = "/v1/watch";
export const browseAllow = "GET, HEAD";

const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;
/** A cursor (Last-Event-ID) longer than this is refused: ours are short ("shard.sequence"). */
const cursorCharsMax = 64;

/** A prefix: any UTF-8 text a key could start with ("" included), or the error to send. */
function parsePrefix(text: string, keyBytesMax: number, field: string): string | Response {
  if (controlCharacter.test(text)) return invalidInput(field, `the ${field} contains a control character`);
  if (utf8Length(text) > keyBytesMax) return tooLarge(field, `the ${field} is longer than ${keyBytesMax} UTF-8 bytes`);
  return text;
}

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function refusal(refused: "unavailable" | "busy", message: string): Response {
  return refused === "busy"
    ? errorResponse(429, ErrorCode.busy, message, { headers: { "retry-after": String(retryAfterSeconds) } })
    : errorResponse(503, ErrorCode.unavailable, message, { headers: { "retry-after": String(retryAfterSeconds) } });
}

/**
 * The query's parameters, each decoded once as percent-encoded UTF-8 (as keys are: "+" is a plus,
 * not a space), or the name of the first one that is not valid UTF-8. URLSearchParams would turn
 * "+" into a space and invalid bytes into U+FFFD, silently listing another prefix.
 */
function strictParams(query: string): Map<string, string> | { invalid: string } {
  const params = new Map<string, string>();
  if (query === "") return params;
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    try {
      params.set(decodeURIComponent(name), eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1)));
    } catch {
      return { invalid: name };
    }
  }
  return params;
}

export function registerBrowseRoutes(app: Hono, backend: KvBackend, metrics: HttpMetrics): void {
  const keyBytesMax = backend.keyBytesMax;
  const keys = createKeySchema(keyBytesMax);

  async function list(request: Request): Promise<Response> {
    const { query: rawQuery } = splitTarget(request.url);
    const checked = checkQuery(rawQuery, ["prefix", "after", "limit", "values"]);
    if (!checked.ok) return invalidInput("query", checked.message);
    const params = strictParams(rawQuery);
    if (params instanceof Map === false)
      return invalidInput(params.invalid, `${params.invalid} is not valid percent-encoded UTF-8`);
    const prefix = parsePrefix(params.get("prefix") ?? "", keyBytesMax, "prefix");
    if (prefix instanceof Response) return prefix;
    let after: string | null = null;
    const afterText = params.get("after") ?? null;
    if (afterText !== null) {
      const parsed = v.safeParse(keys.schema, afterText, parseConfig);
      if (!parsed.success)
        return parsed.issues[0].requirement === keys.fitsKeyBytes
          ? tooLarge("after", parsed.issues[0].message)
          : invalidInput("after", parsed.issues[0].message);
      after = parsed.output;
    }
    let limit = listLimitDefault;
    const limitText = params.get("limit") ?? null;
    if (limitText !== null) {
      if (!/^[1-9][0-9]{0,5}$/.test(limitText) || Number(limitText) > listLimitMax)
        return invalidInput("limit", `limit must be an integer from 1 to ${listLimitMax} (listLimitMax)`);
      limit = Number(limitText);
    }
    const valuesText = params.get("values") ?? null;
    if (valuesText !== null && valuesText !== "1" && valuesText !== "0")
      return invalidInput("values", "values must be 1 (with values) or 0");
    if (backend.browse === undefined) return refusal("unavailable", "this node does not serve listings");
    const query: ListQuery = { prefix, after, limit, values: valuesText === "1" };
    const page = await backend.browse.list(query);
    if ("refused" in page) return refusal(page.refused, page.message);
    const keysOut: { key: string; etag: string; value?: string }[] = [];
    for (const entry of page.entries) {
      const item: { key: string; etag: string; value?: string } = {
        key: entry.key,
        etag: etagOf(entry.version, entry.writer),
      };
      if (query.values && entry.value !== null)
        item.value = Buffer.from(entry.value.buffer, entry.value.byteOffset, entry.value.byteLength).toString("base64");
      keysOut.push(item);
    }
    const body: { keys: typeof keysOut; more: boolean; next?: string; pending?: string[] } = {
      keys: keysOut,
      more: page.more,
    };
    if (page.more) body.next = page.next!;
    if (page.pending.length > 0) body.pending = page.pending;
    return json(body);
  }

  function watch(request: Request): Response {
    const { query: rawQuery } = splitTarget(request.url);
    const checked = checkQuery(rawQuery, ["prefix", "key", "from", "cursor"]);
    if (!checked.ok) return invalidInput("query", checked.message);
    const params = strictParams(rawQuery);
    if (params instanceof Map === false)
      return invalidInput(params.invalid, `${params.invalid} is not valid percent-encoded UTF-8`);
    const prefixText = params.get("prefix") ?? null;
    const keyText = params.get("key") ?? null;
    if (prefixText !== null && keyText !== null) return invalidInput("query", "give prefix or key, not both");
    let prefix: string;
    if (keyText !== null) {
      const parsed = v.safeParse(keys.schema, keyText, parseConfig);
      if (!parsed.success)
        return parsed.issues[0].requirement === keys.fitsKeyBytes
          ? tooLarge("key", parsed.issues[0].message)
          : invalidInput("key", parsed.issues[0].message);
      prefix = parsed.output;
    } else {
      const parsed = parsePrefix(prefixText ?? "", keyBytesMax, "prefix");
      if (parsed instanceof Response) return parsed;
      prefix = parsed;
    }
    const from = params.get("from") ?? null;
    if (from !== null && from !== "now")
      return invalidInput("from", "from must be 'now' (or absent: start with the current keys)");
    const cursor = params.get("cursor") ?? request.headers.get("last-event-id");
    if (cursor !== null && (cursor.length > cursorCharsMax || controlCharacter.test(cursor)))
      return invalidInput("cursor", `a cursor is an event id this node sent (at most ${cursorCharsMax} characters)`);
    if (backend.browse === undefined) return refusal("unavailable", "this node does not serve watch streams");
    const query: WatchQuery = { prefix, exact: keyText !== null, initial: from === null || cursor !== null, cursor };
    const stream = backend.browse.watch(query);
    if ("refused" in stream) return refusal(stream.refused, stream.message);
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  app.get(listPath, counted(metrics, Route.kvList, list));
  app.get(watchPath, counted(metrics, Route.watch, watch));
}
