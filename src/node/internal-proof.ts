// Proof of the cluster key on the internal HTTP routes (state transfer GET /v1/internal/snapshot/...,
// and the test hooks): only a holder of the key may download a shard or poke a node.
//
// Each request carries the header `X-Hermes-Cluster-Proof: v1 <unix ms> <nonce> <mac>`, where mac is
// HMAC-SHA-256 (hex) under the key derived for this use (clusterKeyLabel.internalHttp) of
// "<METHOD>\n<path and query>\n<unix ms>\n<nonce>". The node accepts it when the time is within
// internalProofSkewMsMax of its own clock and the nonce was not seen in that window.
//
// Why this and not a bearer secret derived from the key: these routes run over the node's HTTP port,
// which may be plain HTTP. A bearer secret sent in clear is, once sniffed, the key to every snapshot
// for ever. A MAC over method, path, time and nonce reveals nothing of the key, is bound to its one
// request (another path or method does not verify), expires after the skew, and cannot be replayed
// within it (the nonce). It costs one HMAC per request on a control route. (TLS, the sec-http part of
// issue 9, adds confidentiality of the snapshot body itself; this proof is what authenticates.)
// The header is not `Authorization`, which carries client tokens (roles) on the same port.
//
// Clocks: nodes need clocks within internalProofSkewMsMax (NTP gives milliseconds); a node whose clock
// is further off cannot load state, and says why in the refusal.

import { createHmac, timingSafeEqual } from "node:crypto";
import { clusterKeyBytes } from "../base/cluster-key.ts";

export const internalProofHeader = "x-hermes-cluster-proof";
/** The WWW-Authenticate scheme a refusal names. */
export const internalProofScheme = "HermesKV-Cluster-Proof";
/** Largest difference between the proof's time and the receiver's clock. */
export const internalProofSkewMsMax = 30_000;
/** Nonces remembered at once (each for up to 2 x skew); when full of live ones, proofs are refused until some expire. */
export const internalProofNoncesMax = 16_384;
const nonceBytes = 16;
const proofVersion = "v1";
const macHexChars = 64;

/** The string that is MACed: method, target (path and query), time, nonce. */
function macInput(method: string, target: string, unixMs: number, nonce: string): string {
  return `${method.toUpperCase()}\n${target}\n${unixMs}\n${nonce}`;
}

/** Path and query of a URL, as both ends see it. */
export function proofTarget(url: string): string {
  const u = new URL(url);
  return u.pathname + u.search;
}

/** Signs internal requests (the joining node's side). */
export class InternalProofSigner {
  readonly #key: Uint8Array;
  readonly #clock: () => number;

  /** `key`: deriveClusterKey(clusterKey, clusterKeyLabel.internalHttp). */
  constructor(key: Uint8Array, clock: () => number = Date.now) {
    if (key.length !== clusterKeyBytes) throw new Error("an internal proof key is clusterKeyBytes long");
    this.#key = key.slice();
    this.#clock = clock;
  }

  /** The header value for `method` on `url`. */
  proof(method: string, url: string): string {
    const unixMs = Math.floor(this.#clock());
    const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(nonceBytes))).toString("hex");
    const mac = createHmac("sha256", this.#key)
      .update(macInput(method, proofTarget(url), unixMs, nonce))
      .digest("hex");
    return `${proofVersion} ${unixMs} ${nonce} ${mac}`;
  }

  /** Headers to add to a request for `method` on `url`. */
  headers(method: string, url: string): Record<string, string> {
    return { [internalProofHeader]: this.proof(method, url) };
  }
}

/** Why a proof was refused (the counters' names). */
export type ProofRefusal = "missing" | "malformed" | "skew" | "badMac" | "replayed" | "noncesFull";

export class InternalProofVerifier {
  readonly #key: Uint8Array;
  readonly #clock: () => number;
  /** Nonce -> the time after which it can no longer verify (proof time + skew). Insertion order ~ time order. */
  readonly #nonces = new Map<string, number>();
  readonly refused: Record<ProofRefusal, number> = {
    missing: 0,
    malformed: 0,
    skew: 0,
    badMac: 0,
    replayed: 0,
    noncesFull: 0,
  };
  accepted = 0;

  constructor(key: Uint8Array, clock: () => number = Date.now) {
    if (key.length !== clusterKeyBytes) throw new Error("an internal proof key is clusterKeyBytes long");
    this.#key = key.slice();
    this.#clock = clock;
  }

  /** null when `header` proves the key for this request; else why not (counted). */
  check(
    method: string,
    url: string,
    header: string | undefined | null,
  ): { refusal: ProofRefusal; message: string } | null {
    const refuse = (refusal: ProofRefusal, message: string) => {
      this.refused[refusal]++;
      return { refusal, message };
    };
    if (header === undefined || header === null || header === "")
      return refuse("missing", `this route needs proof of the cluster key (${internalProofHeader})`);
    const parts = header.split(" ");
    if (parts.length !== 4 || parts[0] !== proofVersion) return refuse("malformed", `malformed ${internalProofHeader}`);
    const [, timeText, nonce, mac] = parts as [string, string, string, string];
    if (!/^[0-9]{1,16}$/.test(timeText) || !/^[0-9a-f]+$/.test(nonce) || nonce.length !== 2 * nonceBytes)
      return refuse("malformed", `malformed ${internalProofHeader}`);
    if (!/^[0-9a-f]+$/.test(mac) || mac.length !== macHexChars)
      return refuse("malformed", `malformed ${internalProofHeader}`);
    const unixMs = Number(timeText);
    const now = this.#clock();
    if (Math.abs(now - unixMs) > internalProofSkewMsMax)
      return refuse(
        "skew",
        `the proof's time is ${Math.round((unixMs - now) / 1000)} s off this node's clock (max ${internalProofSkewMsMax / 1000} s)`,
      );
    const expected = createHmac("sha256", this.#key)
      .update(macInput(method, proofTarget(url), unixMs, nonce))
      .digest();
    if (!timingSafeEqual(expected, Buffer.from(mac, "hex")))
      return refuse("badMac", "the proof does not verify: another cluster key?");
    this.#forgetExpired(now);
    if (this.#nonces.has(nonce)) return refuse("replayed", "the proof was used before");
    if (this.#nonces.size >= internalProofNoncesMax)
      return refuse("noncesFull", "too many internal requests; retry later");
    this.#nonces.set(nonce, unixMs + internalProofSkewMsMax);
    this.accepted++;
    return null;
  }

  #forgetExpired(now: number): void {
    // Proof times arrive roughly in order; an entry out of order only waits for those before it.
    for (const [nonce, expiresMs] of this.#nonces) {
      if (expiresMs >= now) break;
      this.#nonces.delete(nonce);
    }
  }

  /** Prometheus text of the counters. */
  metrics(): string {
    const lines = [
      "# HELP hermes_internal_proof_refused_total Internal HTTP requests refused for want of proof of the cluster key, by reason.",
      "# TYPE hermes_internal_proof_refused_total counter",
    ];
    for (const [reason, count] of Object.entries(this.refused))
      lines.push(`hermes_internal_proof_refused_total{reason="${reason}"} ${count}`);
    lines.push(
      "# HELP hermes_internal_proof_accepted_total Internal HTTP requests that proved the cluster key.",
      "# TYPE hermes_internal_proof_accepted_total counter",
      `hermes_internal_proof_accepted_total ${this.accepted}`,
    );
    return lines.join("\n") + "\n";
  }
}
