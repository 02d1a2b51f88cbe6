// A shard worker's HTTP server: the node's HTTP API on the node's port, which every shard worker
// binds (SO_REUSEPORT: the kernel spreads connections over them). Requests under the main thread's
// control paths are forwarded to it; everything else is answered here (fast path, then the app).

import { createHttpHandler } from "../http/app.ts";
import { AuthGuard } from "../http/auth-guard.ts";
import type { HttpMetrics } from "../http/metrics.ts";
import { splitTarget } from "../http/target.ts";
import type { ControlClient } from "./control-client.ts";
import type { HttpStart, HttpTls } from "./messages.ts";
import type { WorkerBackend } from "./worker-backend.ts";

export type HttpServer = ReturnType<typeof Bun.serve>;

export function serveHttp(
  start: HttpStart,
  backend: WorkerBackend,
  control: ControlClient,
  metrics: HttpMetrics,
  guard: AuthGuard | null = null,
): HttpServer {
  const prefixes = start.controlPathPrefixes;
  const forward = (request: Request, path: string): Promise<Response> => {
    if (request.method === "POST" && start.stopPaths.includes(path)) backend.stopServing();
    return control.forward(request);
  };
  const { fetch } = createHttpHandler(
    backend,
    metrics,
    (app) => (request, server) => {
      if (prefixes.length > 0) {
        const path = splitTarget(request.url).path;
        if (prefixes.some((prefix) => path.startsWith(prefix))) return forward(request, path);
      }
      return app.fetch(request, server);
    },
    guard,
  );
  return Bun.serve({
    hostname: start.host,
    port: start.port,
    reusePort: true,
    fetch,
    maxRequestBodySize: start.bodyBytesMax,
    ...(start.tls == null ? {} : { tls: serveTls(start.tls) }),
  });
}

/** Bun.serve's TLS options: with a CA, a client without a certificate signed by it is refused in the handshake. */
export function serveTls(tls: HttpTls): Bun.TLSOptions {
  if (tls.ca === null) return { cert: tls.cert, key: tls.key };
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true };
}

/** The guard of a server with an auth file, or null. */
export function authGuardOf(start: HttpStart): AuthGuard | null {
  return start.auth == null ? null : new AuthGuard(start.auth);
}
