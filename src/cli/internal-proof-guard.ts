// The guard in front of a node's internal routes: a request without a valid proof of the cluster key
// (src/node/internal-proof.ts) is answered 401 before any handler runs, so it reads and writes nothing.

import type { Hono } from "hono";
import { ErrorCode, errorResponse } from "../http/errors.ts";
import { internalProofHeader, internalProofScheme, type InternalProofVerifier } from "../node/internal-proof.ts";

export function requireInternalProof(app: Hono, verifier: InternalProofVerifier): void {
  app.use("*", async (c, next) => {
    const refused = verifier.check(c.req.method, c.req.url, c.req.header(internalProofHeader));
    if (refused !== null)
      return errorResponse(401, ErrorCode.unauthorized, refused.message, {
        headers: { "www-authenticate": internalProofScheme },
      });
    await next();
  });
}
