// Split a request URL into its raw (still percent-encoded) path and query, and decode a key.
//
// The key is cut from the raw path, not from Hono's routing path: Hono decodes with decodeURI, which
// keeps %2F and %25 encoded, and decoding that again would turn "%252F" into "/". One decode of the
// raw bytes, with decodeURIComponent, is the only unambiguous reading.

export interface RawTarget {
  /** Path as sent, percent-encoding intact, e.g. "/v1/kv/a%2Fb". */
  path: string;
  /** Query without the "?", "" when absent. */
  query: string;
}

export function splitTarget(url: string): RawTarget {
  // Request.url is absolute ("http://host/..."): the path starts at the first "/" after "://".
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  if (pathStart < 0) return { path: "/", query: "" };
  const queryStart = url.indexOf("?", pathStart);
  if (queryStart < 0) return { path: url.slice(pathStart), query: "" };
  return { path: url.slice(pathStart, queryStart), query: url.slice(queryStart + 1) };
}

/** Percent-decode a raw key as UTF-8; null when an escape is malformed or the bytes are not UTF-8. */
export function decodeRawKey(raw: string): string | null {
  if (!raw.includes("%")) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

/** Query parameters of a request, with a duplicate or an unknown name reported by name. */
export type QueryCheck = { ok: true; params: URLSearchParams | null } | { ok: false; message: string };

/** Query strings longer than this are rejected before parsing. */
export const queryCharsMax = 1024;

export function checkQuery(query: string, allowed: readonly string[]): QueryCheck {
  if (query === "") return { ok: true, params: null };
  if (query.length > queryCharsMax)
    return { ok: false, message: `the query string is longer than ${queryCharsMax} characters` };
  const params = new URLSearchParams(query);
  const seen = new Set<string>();
  for (const name of params.keys()) {
    // Rejected rather than ignored: `PUT ?cas=0` (Consul's create-only) must not become a blind write.
    if (!allowed.includes(name)) {
      const expected = allowed.length === 0 ? "this route takes no query parameters" : `allowed: ${allowed.join(", ")}`;
      return { ok: false, message: `unknown query parameter ${JSON.stringify(name.slice(0, 64))}; ${expected}` };
    }
    if (seen.has(name)) return { ok: false, message: `query parameter ${name} given more than once` };
    seen.add(name);
  }
  return { ok: true, params };
}
