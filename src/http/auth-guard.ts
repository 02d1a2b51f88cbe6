// Bearer-token check in front of a node's HTTP API (--auth-file). Every request goes through
// `check` before the fast path or the app sees it, so a refused request reads no body and submits
// nothing: 401 (no token, or one not in the table; with WWW-Authenticate as RFC 6750 says) or 403
// (a known token whose role is too weak for the route, route-access.ts).
//
// The table can be swapped while serving (SIGHUP reloads the file): connections stay open and the
// next request is checked against the new table.
//
// The request's token is hashed with SHA-256 into a buffer kept for the purpose, and the digest is
// compared with crypto.timingSafeEqual, without stopping at a match, with every digest of the table
// that starts with the same byte (the table is split in 256 buckets by that byte, so that a table
// of authTokensMax tokens costs a few comparisons, not a thousand: ~50 ns each, measured). The time
// taken can tell an attacker at most the first byte of the SHA-256 of the token they sent, which
// says nothing about any stored token without inverting SHA-256; it never depends on how many
// characters of a real token a guess got right.

import { timingSafeEqual } from "node:crypto";
import { ErrorCode, errorResponse } from "./errors.ts";
import { tokenDigest, tokenDigestBytes, type TokenEntry } from "./auth-file.ts";
import { Access, requiredAccess, roleAccess, type AccessLevel } from "./route-access.ts";
import type { FetchHandler } from "./fast-path.ts";

export interface AuthConfig {
  tokens: TokenEntry[];
  /** /metrics without a token (for a Prometheus that has none). */
  metricsPublic: boolean;
}

const bearerPrefix = "Bearer ";
const realm = 'Bearer realm="hermes-kv"';
const accessNames = ["open", "read", "write", "admin", "cluster"] as const;

const bucketCount = 256;

export class AuthGuard {
  /** The table's entries by the first byte of their digest. */
  #buckets: TokenEntry[][] = [];
  #tokenCount = 0;
  readonly #metricsPublic: boolean;
  readonly #digest = new Uint8Array(tokenDigestBytes);

  constructor(config: AuthConfig) {
    this.#metricsPublic = config.metricsPublic;
    this.setTokens(config.tokens);
  }

  /** Replace the table (SIGHUP); requests from now on are checked against `tokens`. */
  setTokens(tokens: readonly TokenEntry[]): void {
    const buckets: TokenEntry[][] = Array.from({ length: bucketCount }, () => []);
    for (const entry of tokens) buckets[entry.digest[0]!]!.push(entry);
    this.#buckets = buckets;
    this.#tokenCount = tokens.length;
  }

  get tokenCount(): number {
    return this.#tokenCount;
  }

  /** null: let the request through; otherwise the refusal to send. */
  check(request: Request): Response | null {
    const needed = requiredAccess(request.method, request.url, this.#metricsPublic);
    if (needed === Access.open || needed === Access.cluster) return null;
    const header = request.headers.get("authorization");
    if (header === null || !isBearer(header))
      return errorResponse(401, ErrorCode.unauthorized, "this route needs a token: Authorization: Bearer <token>", {
        headers: { "www-authenticate": realm },
      });
    const entry = this.#find(header);
    if (entry === null)
      return errorResponse(401, ErrorCode.unauthorized, "the token is not valid", {
        headers: { "www-authenticate": `${realm}, error="invalid_token"` },
      });
    if (roleAccess[entry.role] < needed)
      return errorResponse(
        403,
        ErrorCode.forbidden,
        `the token "${entry.name}" has role ${entry.role}; ${request.method} here needs ${accessNames[needed]}`,
      );
    return null;
  }

  /** The entry whose digest is the header's token's, compared with every entry of its bucket in constant time. */
  #find(header: string): TokenEntry | null {
    tokenDigest(header.slice(bearerPrefix.length), this.#digest);
    const tokens = this.#buckets[this.#digest[0]!]!;
    let found: TokenEntry | null = null;
    for (let i = 0; i < tokens.length; i++) {
      if (timingSafeEqual(tokens[i]!.digest, this.#digest)) found = tokens[i]!;
    }
    return found;
  }
}

/** "Bearer " followed by something; the scheme's case does not matter (RFC 7235: schemes are case-insensitive). */
function isBearer(header: string): boolean {
  if (header.length <= bearerPrefix.length) return false;
  for (let i = 0; i < bearerPrefix.length; i++) {
    // ASCII letters: setting bit 0x20 lowercases them; the space stays a space.
    if ((header.charCodeAt(i) | 0x20) !== (bearerPrefix.charCodeAt(i) | 0x20)) return false;
  }
  return true;
}

/** `inner` behind the guard: what a node serves when it has an auth file. */
export function guardedFetch(guard: AuthGuard, inner: FetchHandler): FetchHandler {
  return (request, server) => guard.check(request) ?? inner(request, server);
}

/** Access levels by name, for messages and tests. */
export function accessName(level: AccessLevel): string {
  return accessNames[level];
}
