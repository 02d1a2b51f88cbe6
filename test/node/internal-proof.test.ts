// The proof of the cluster key on internal routes (src/node/internal-proof.ts), checked by the real
// guard in front of a real Hono control app: a request passes only with a fresh, unused proof for
// its own method and path under the same key; everything else is a 401 before any handler runs.

import { describe, expect, test } from "bun:test";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../../src/base/cluster-key.ts";
import { requireInternalProof } from "../../src/cli/internal-proof-guard.ts";
import { createControlApp } from "../../src/http/app.ts";
import {
  internalProofHeader,
  internalProofNoncesMax,
  internalProofSkewMsMax,
  InternalProofSigner,
  InternalProofVerifier,
} from "../../src/node/internal-proof.ts";

const key = deriveClusterKey(generateClusterKey(), clusterKeyLabel.internalHttp);
const url = "http://127.0.0.1:9/v1/internal/snapshot/0?minEpoch=4";

function guarded(verifier: InternalProofVerifier) {
  const app = createControlApp();
  requireInternalProof(app, verifier);
  let handled = 0;
  app.get("/v1/internal/snapshot/:shard", (c) => {
    handled++;
    return c.text("records");
  });
  app.post("/v1/test/drop", (c) => {
    handled++;
    return c.json({ dropping: [] });
  });
  return { app, handled: () => handled };
}

describe("internal route proof", () => {
  test("a proof for this request under the same key passes; the handler runs once", async () => {
    const verifier = new InternalProofVerifier(key);
    const g = guarded(verifier);
    const signer = new InternalProofSigner(key);
    const response = await g.app.request(url, { headers: signer.headers("GET", url) });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("records");
    expect(g.handled()).toBe(1);
    expect(verifier.accepted).toBe(1);
  });

  test("missing, malformed, wrong key, other path or method, stale, future, replayed: 401, no handler ran", async () => {
    let now = 1_000_000_000_000;
    const verifier = new InternalProofVerifier(key, () => now);
    const g = guarded(verifier);
    const signer = new InternalProofSigner(key, () => now);
    const otherKey = new InternalProofSigner(
      deriveClusterKey(generateClusterKey(), clusterKeyLabel.internalHttp),
      () => now,
    );
    const cases: [string, Record<string, string>, string, string][] = [
      ["missing", {}, "GET", url],
      ["malformed", { [internalProofHeader]: "v1 12 ab cd" }, "GET", url],
      ["malformed", { [internalProofHeader]: "Bearer x" }, "GET", url],
      ["badMac", otherKey.headers("GET", url), "GET", url],
      ["badMac", signer.headers("GET", url.replace("snapshot/0", "snapshot/1")), "GET", url],
      ["badMac", signer.headers("GET", url.replace("minEpoch=4", "minEpoch=0")), "GET", url],
      ["badMac", signer.headers("GET", "http://127.0.0.1:9/v1/test/drop"), "POST", "http://127.0.0.1:9/v1/test/drop"],
    ];
    // Made more than the skew before the receiver's clock, and more than the skew after it.
    cases.push([
      "skew",
      new InternalProofSigner(key, () => now - internalProofSkewMsMax - 1).headers("GET", url),
      "GET",
      url,
    ]);
    cases.push([
      "skew",
      new InternalProofSigner(key, () => now + internalProofSkewMsMax + 1).headers("GET", url),
      "GET",
      url,
    ]);
    for (const [reason, headers, method, target] of cases) {
      const before = verifier.refused[reason as keyof typeof verifier.refused];
      const response = await g.app.request(target, { method, headers });
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe("HermesKV-Cluster-Proof");
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
      expect(verifier.refused[reason as keyof typeof verifier.refused]).toBe(before + 1);
    }
    expect(g.handled()).toBe(0);
    // A good proof, then the same proof again (a captured request replayed within the skew).
    const once = signer.headers("GET", url);
    expect((await g.app.request(url, { headers: once })).status).toBe(200);
    expect((await g.app.request(url, { headers: once })).status).toBe(401);
    expect(verifier.refused.replayed).toBe(1);
    expect(g.handled()).toBe(1);
    expect(verifier.metrics()).toContain('hermes_internal_proof_refused_total{reason="replayed"} 1');
  });

  test("remembered nonces are bounded: full of live ones, proofs wait; expired ones are forgotten", () => {
    let now = 5_000_000;
    const verifier = new InternalProofVerifier(key, () => now);
    const signer = new InternalProofSigner(key, () => now);
    for (let i = 0; i < internalProofNoncesMax; i++)
      expect(verifier.check("GET", url, signer.proof("GET", url))).toBeNull();
    expect(verifier.check("GET", url, signer.proof("GET", url))?.refusal).toBe("noncesFull");
    now += internalProofSkewMsMax + 1;
    expect(verifier.check("GET", url, signer.proof("GET", url))).toBeNull();
  });
});
