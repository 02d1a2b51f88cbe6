// The auth file (--auth-file): which bearer tokens a node accepts, and with which role.
//
// Format, one token per line:   TOKEN ROLE NAME      e.g.  3f9c…e1 write deploy-bot
//   - TOKEN: 16..256 printable ASCII characters without spaces (what clients send after "Bearer ").
//   - ROLE:  read, write or admin (see route-access.ts).
//   - NAME:  who holds it, 1..64 of A-Z a-z 0-9 . _ @ -; for people, not for the check.
// Blank lines and lines whose first non-blank character is "#" are ignored. Fields are separated by
// spaces or tabs. A token may appear once; a file with any bad line is refused as a whole.
//
// Only SHA-256 digests of the tokens leave this module: the node keeps and compares digests, so a
// heap dump or a log line never holds a usable token, and comparing digests of equal length in
// constant time (auth-guard.ts) reveals nothing about a token's characters.

import { roleNames, type RoleName } from "./route-access.ts";

/** Limits of an auth file, named. */
export const authFileBytesMax = 1024 * 1024;
export const authTokensMax = 1024;
/** Short tokens could be guessed; 16 characters of a random alphabet are far beyond that. */
export const authTokenCharsMin = 16;
export const authTokenCharsMax = 256;
export const authNameCharsMax = 64;
export const tokenDigestBytes = 32;

export interface TokenEntry {
  /** SHA-256 of the token's ASCII bytes. */
  digest: Uint8Array;
  role: RoleName;
  name: string;
}

export type AuthFileParse = { ok: true; entries: TokenEntry[] } | { ok: false; error: string };

const tokenPattern = /^[\x21-\x7e]+$/;
const namePattern = /^[A-Za-z0-9._@-]+$/;

/** SHA-256 of a token, as the guard computes it for a request's token. */
export function tokenDigest(token: string, into: Uint8Array = new Uint8Array(tokenDigestBytes)): Uint8Array {
  Bun.SHA256.hash(token, into);
  return into;
}

/** Parse an auth file's text. Errors name the line (1-based) but never quote a token. */
export function parseAuthFile(text: string): AuthFileParse {
  if (text.length > authFileBytesMax) return { ok: false, error: `the file is larger than ${authFileBytesMax} bytes` };
  const entries: TokenEntry[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `line ${index + 1}`;
    const fields = line.split(/[ \t]+/);
    if (fields.length !== 3)
      return { ok: false, error: `${where}: expected "TOKEN ROLE NAME", got ${fields.length} field(s)` };
    const [token, role, name] = fields as [string, string, string];
    if (!tokenPattern.test(token))
      return { ok: false, error: `${where}: the token must be printable ASCII without spaces` };
    if (token.length < authTokenCharsMin || token.length > authTokenCharsMax)
      return {
        ok: false,
        error: `${where}: the token must be ${authTokenCharsMin}..${authTokenCharsMax} characters, it has ${token.length}`,
      };
    if (!(roleNames as readonly string[]).includes(role))
      return {
        ok: false,
        error: `${where}: unknown role ${JSON.stringify(role.slice(0, 32))}; roles: ${roleNames.join(", ")}`,
      };
    if (name.length > authNameCharsMax || !namePattern.test(name))
      return { ok: false, error: `${where}: the name must be 1..${authNameCharsMax} of A-Z a-z 0-9 . _ @ -` };
    if (entries.length === authTokensMax) return { ok: false, error: `more than ${authTokensMax} tokens` };
    const digest = tokenDigest(token);
    const hex = Buffer.from(digest).toString("hex");
    if (seen.has(hex)) return { ok: false, error: `${where}: this token is already given on an earlier line` };
    seen.add(hex);
    entries.push({ digest, role: role as RoleName, name });
  }
  return { ok: true, entries };
}

/** One line for logs: how many tokens per role, never the tokens. */
export function describeTokens(entries: readonly TokenEntry[]): string {
  const counts = roleNames.map((role) => `${entries.filter((e) => e.role === role).length} ${role}`);
  return `${entries.length} token(s): ${counts.join(", ")}`;
}
