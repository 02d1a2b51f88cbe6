// The HTTP shell of a node: a Hono app that validates requests, submits ops to a KvBackend and maps
// outcomes to status codes. No protocol logic and no server here: the node runtime serves
// `app.fetch` with Bun.serve, and tests call `app.request()`.

import { Hono } from "hono";
import { AssertionError } from "../base/assert.ts";
import type { KvBackend } from "../base/kv-backend.ts";
import { ErrorCode, errorResponse, methodNotAllowed, unknownRoute } from "./errors.ts";
import { HttpMetrics, Route } from "./metrics.ts";
import { batchAllow, batchPath, registerBatchRoutes } from "./routes-batch.ts";
import { kvAllow, registerKvRoutes } from "./routes-kv.ts";
import { opsAllow, opsPaths, registerOpsRoutes } from "./routes-ops.ts";
import { splitTarget } from "./target.ts";

export function createApp(backend: KvBackend): Hono {
  for (const [name, limit] of [
    ["keyBytesMax", backend.keyBytesMax],
    ["valueBytesMax", backend.valueBytesMax],
  ] as const) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new AssertionError(`backend.${name} must be a positive integer, got ${limit}`);
  }
  const app = new Hono();
  const metrics = new HttpMetrics();
  registerKvRoutes(app, backend, metrics);
  registerOpsRoutes(app, backend, metrics);
  registerBatchRoutes(app, backend, metrics);

  // No handler matched: either the path exists with other methods (405) or it does not (404).
  app.notFound((c) => {
    const path = splitTarget(c.req.url).path;
    const allow = path.startsWith("/v1/kv/") ? kvAllow : opsPaths.includes(path) ? opsAllow : path === batchPath ? batchAllow : null;
    const response = allow === null ? unknownRoute(c.req.method, path.slice(0, 200)) : methodNotAllowed(c.req.method, allow);
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
