// The HTTP shell of a node: a Hono app that validates requests, submits ops to a KvBackend and maps
// outcomes to status codes. No protocol logic and no server here: each shard worker serves
// `createHttpHandler(...).fetch` (the fast path of fast-path.ts in front of the app) with
// Bun.serve, and tests call `app.request()`.

import { Hono } from "hono";
import { AssertionError } from "../base/assert.ts";
import type { KvBackend } from "../base/kv-backend.ts";
import { ErrorCode, errorResponse, methodNotAllowed, unknownRoute } from "./errors.ts";
import { createFastFetch, type FetchHandler } from "./fast-path.ts";
import { HttpMetrics, Route } from "./metrics.ts";
import { batchAllow, batchPath, registerBatchRoutes } from "./routes-batch.ts";
import { browseAllow, listPath, registerBrowseRoutes, watchPath } from "./routes-browse.ts";
import { kvAllow, registerKvRoutes } from "./routes-kv.ts";
import { opsAllow, opsPaths, registerOpsRoutes } from "./routes-ops.ts";
import { splitTarget } from "./target.ts";

export interface AppOptions {
  /** The metrics to count in (default: new ones); /metrics renders them. */
  metrics?: HttpMetrics;
}

export function createApp(backend: KvBackend, options: AppOptions = {}): Hono {
  for (const [name, limit] of [
    ["keyBytesMax", backend.keyBytesMax],
    ["valueBytesMax", backend.valueBytesMax],
  ] as const) {
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new AssertionError(`backend.${name} must be a positive integer, got ${limit}`);
  }
  const app = new Hono();
  const metrics = options.metrics ?? new HttpMetrics();
  // Before the kv routes: Hono's "/v1/kv/*" also matches "/v1/kv", and the first handler answers.
  registerBrowseRoutes(app, backend, metrics);
  registerKvRoutes(app, backend, metrics);
  registerOpsRoutes(app, backend, metrics);
  registerBatchRoutes(app, backend, metrics);

  // No handler matched: either the path exists with other methods (405) or it does not (404).
  app.notFound((c) => {
    const path = splitTarget(c.req.url).path;
    const allow = path.startsWith("/v1/kv/")
      ? kvAllow
      : opsPaths.includes(path)
        ? opsAllow
        : path === batchPath
          ? batchAllow
          : path === listPath || path === watchPath
            ? browseAllow
            : null;
    const response =
      allow === null ? unknownRoute(c.req.method, path.slice(0, 200)) : methodNotAllowed(c.req.method, allow);
    metrics.begin();
    metrics.end(Route.other, response.status, 0);
    return response;
  });

  // Reached only through a bug (a handler threw): say so loudly, answer 500, keep serving others.
  app.onError((error, c) => {
    console.error(`hermes-kv http: ${c.req.method} ${splitTarget(c.req.url).path.slice(0, 200)} failed:`, error);
    return errorResponse(500, ErrorCode.internal, `internal error: ${error.message}`);
  });
  return app;
}

export interface HttpHandler {
  app: Hono;
  metrics: HttpMetrics;
  /** For Bun.serve: the fast path for the hot routes, then `fallback` (default: the app). */
  fetch: FetchHandler;
}

/**
 * What a server serves: the app and the fast path in front of it, counting in the same metrics.
 * `fallback` takes whatever the fast path does not (by default the app; a shard worker first
 * forwards the main thread's routes, see src/worker/http-server.ts).
 */
export function createHttpHandler(
  backend: KvBackend,
  metrics = new HttpMetrics(),
  fallback?: (app: Hono) => FetchHandler,
): HttpHandler {
  const app = createApp(backend, { metrics });
  const rest: FetchHandler = fallback === undefined ? (request, server) => app.fetch(request, server) : fallback(app);
  return { app, metrics, fetch: createFastFetch(backend, metrics, rest) };
}

/**
 * An app for routes outside the API (a local cluster's admin routes, a node's internal and test
 * routes), with the API's conventions: JSON 404 for unknown routes, JSON 500 for a handler that throws.
 */
export function createControlApp(): Hono {
  const app = new Hono();
  app.notFound((c) => unknownRoute(c.req.method, splitTarget(c.req.url).path.slice(0, 200)));
  app.onError((error, c) => {
    console.error(`hermes-kv http: ${c.req.method} ${splitTarget(c.req.url).path.slice(0, 200)} failed:`, error);
    return errorResponse(500, ErrorCode.internal, `internal error: ${error.message}`);
  });
  return app;
}
