// Operational routes: /v1/status (JSON), /health (200 while serving, 503 otherwise), /metrics
// (Prometheus text: the backend's series followed by the HTTP layer's own).

import type { Hono } from "hono";
import type { KvBackend } from "../base/kv-backend.ts";
import { ErrorCode, errorResponse, retryAfterSeconds } from "./errors.ts";
import type { HttpMetrics } from "./metrics.ts";
import { Route, counted } from "./metrics.ts";

const jsonHeaders = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } as const;
const prometheusHeaders = {
  "content-type": "text/plain; version=0.0.4; charset=utf-8",
  "cache-control": "no-store",
} as const;

export function registerOpsRoutes(app: Hono, backend: KvBackend, metrics: HttpMetrics): void {
  app.get(
    "/v1/status",
    counted(metrics, Route.status, () => new Response(JSON.stringify(backend.status()), { headers: jsonHeaders })),
  );

  // Readiness in etcd's sense: 503 tells a load balancer to route traffic away from this node.
  app.get(
    "/health",
    counted(metrics, Route.health, () => {
      if (backend.status().serving) return new Response('{"status":"ok"}', { headers: jsonHeaders });
      return errorResponse(
        503,
        ErrorCode.unavailable,
        "this node is not serving (no lease, not a member, or shutting down)",
        {
          headers: { "retry-after": String(retryAfterSeconds) },
        },
      );
    }),
  );

  app.get(
    "/metrics",
    counted(metrics, Route.metrics, () => {
      // The node's series may come from another thread (a shard worker asks the main thread).
      const render = (backendText: string): Response => {
        const separator = backendText === "" || backendText.endsWith("\n") ? "" : "\n";
        return new Response(backendText + separator + metrics.render(), { headers: prometheusHeaders });
      };
      const backendText = backend.metrics();
      return typeof backendText === "string" ? render(backendText) : backendText.then(render);
    }),
  );
}

/** Paths of the operational routes; other methods on them are answered 405 by the app. */
export const opsPaths: readonly string[] = ["/v1/status", "/health", "/metrics"];
export const opsAllow = "GET, HEAD";
