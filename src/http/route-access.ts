// Which credential each HTTP route needs: the one table the auth guard reads (auth-guard.ts).
//
// Roles are ordered: `read` may GET keys and the node's status; `write` adds every update (PUT,
// DELETE, incr, batches); `admin` adds the admin routes and /metrics. /health stays open so that a
// load balancer can probe it without a credential. The internal routes (state transfer between
// nodes) take no client token: a joining node has none; they are guarded by the cluster key
// (--cluster-key-file), which proves that the caller is a member, not a client.
//
// To add a route, add a row: rules are tried in order and the first whose path matches decides. A
// row gives the access for reads (GET, HEAD) and for every other method separately, so a new
// read-only route (a listing, a watch) is one row with `read` for reads.

/** What a request must carry. Ordered: a credential of a role satisfies every role below it. */
export const Access = {
  /** No credential at all (health checks, the UI's page, whose API calls carry the token). */
  open: 0,
  read: 1,
  write: 2,
  admin: 3,
  /** Node-to-node routes: no client token; proof of the cluster key instead (see the file comment). */
  cluster: 4,
} as const;
export type AccessLevel = (typeof Access)[keyof typeof Access];

/** The roles an auth file may give a token (the access levels a token can hold). */
export const roleNames = ["read", "write", "admin"] as const;
export type RoleName = (typeof roleNames)[number];
export const roleAccess: Readonly<Record<RoleName, AccessLevel>> = {
  read: Access.read,
  write: Access.write,
  admin: Access.admin,
};

export interface RouteRule {
  /** The path, or its start when `prefix` is set (then it ends with "/"). */
  path: string;
  prefix: boolean;
  /** Access for GET and HEAD. */
  reads: AccessLevel;
  /** Access for every other method. */
  updates: AccessLevel;
}

/** /metrics: admin, unless --metrics-public (then open, for a Prometheus without a token). */
export const metricsPath = "/metrics";

/** First match wins; the fallback below covers everything else (unknown routes included). */
export const routeRules: readonly RouteRule[] = [
  // The hot routes first: most requests are decided by the first comparison.
  { path: "/v1/kv/", prefix: true, reads: Access.read, updates: Access.write },
  { path: "/health", prefix: false, reads: Access.open, updates: Access.open },
  { path: "/ui", prefix: false, reads: Access.open, updates: Access.admin },
  // The console's data (the member list, its proxy to members' status and metrics) needs a token,
  // which the page sends; only its static parts (a navigation carries no token) are open.
  { path: "/ui/members", prefix: false, reads: Access.read, updates: Access.admin },
  { path: "/ui/member/", prefix: true, reads: Access.read, updates: Access.admin },
  { path: "/ui/", prefix: true, reads: Access.open, updates: Access.admin },
  { path: metricsPath, prefix: false, reads: Access.admin, updates: Access.admin },
  { path: "/v1/status", prefix: false, reads: Access.read, updates: Access.read },
  { path: "/v1/kv", prefix: false, reads: Access.read, updates: Access.write },
  { path: "/v1/watch", prefix: false, reads: Access.read, updates: Access.read },
  { path: "/v1/batch", prefix: false, reads: Access.write, updates: Access.write },
  { path: "/v1/admin/", prefix: true, reads: Access.admin, updates: Access.admin },
  { path: "/v1/test/", prefix: true, reads: Access.admin, updates: Access.admin },
  { path: "/v1/internal/", prefix: true, reads: Access.cluster, updates: Access.cluster },
];

/**
 * Anything no rule names (a typo, a route added without a row): a credential is still needed, so
 * that an unknown path tells a caller without one nothing, and an unlisted update needs `write`.
 */
const fallbackRule: RouteRule = { path: "", prefix: true, reads: Access.read, updates: Access.write };
/**
 * An unlisted path with a percent escape: the router decodes it ("/m%65trics" is "/metrics"), so
 * it may name any route in disguise; only the strongest role may use it.
 */
const escapedFallbackRule: RouteRule = { path: "", prefix: true, reads: Access.admin, updates: Access.admin };

const charQuestion = 0x3f;
const charPercent = 0x25;

/**
 * The access `method` on the path of `url` (an absolute request URL) needs. Reads the URL in place:
 * no path string is cut out of it, so checking a request allocates nothing here.
 */
export function requiredAccess(method: string, url: string, metricsPublic: boolean): AccessLevel {
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  const rule = pathStart < 0 ? fallbackRule : ruleAt(url, pathStart);
  const isRead = method === "GET" || method === "HEAD";
  if (metricsPublic && isRead && rule.path === metricsPath) return Access.open;
  return isRead ? rule.reads : rule.updates;
}

function ruleAt(url: string, pathStart: number): RouteRule {
  for (const rule of routeRules) {
    if (!url.startsWith(rule.path, pathStart)) continue;
    if (rule.prefix) return rule;
    const end = pathStart + rule.path.length;
    if (end === url.length || url.charCodeAt(end) === charQuestion) return rule;
  }
  for (let i = pathStart; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === charQuestion) break;
    if (c === charPercent) return escapedFallbackRule;
  }
  return fallbackRule;
}
