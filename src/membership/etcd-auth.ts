// How the etcd client proves who it is: TLS material for fetch (server verification and a client
// certificate) and, when etcd has authentication enabled, a user's token from /v3/auth/authenticate.
//
// Tokens. etcd hands out a token per authentication and forgets it after --auth-token-ttl of
// disuse (simple tokens) or at its expiry (JWT); a request with a forgotten token gets
// "etcdserver: invalid auth token" (gRPC Unauthenticated; in a watch, a canceled watch with that
// reason). The client then authenticates again and retries the request once: never more, so a
// user whose password changed (the new authentication fails) or a token etcd keeps refusing ends
// in an error, not a loop. Concurrent requests that find the same stale token share one
// authentication (EtcdTokens.refresh).
//
// Why the password is held in memory: etcd needs it for every re-authentication, and the node must
// survive token expiry without an operator. When it came from a file, the file is read again before
// each authentication, so that a password rotated in etcd and in the file is picked up without a restart.

/** PEM contents (not paths) for fetch's `tls` option. */
export interface EtcdTls {
  /** CA bundle that signs etcd's server certificate (default: the system's CAs). */
  ca?: string;
  /** Client certificate and its key, for etcd's --client-cert-auth. Both or neither. */
  cert?: string;
  key?: string;
}

export interface EtcdCredentials {
  user: string;
  password: string;
  /**
   * Reads the password again (from its file) before each authentication; `password` is used when
   * it throws or gives "" (a file briefly missing while it is replaced).
   */
  reread?: () => string;
}

/** The password to authenticate with now. */
export function currentPassword(credentials: EtcdCredentials): string {
  if (credentials.reread === undefined) return credentials.password;
  try {
    const password = credentials.reread();
    if (password !== "") return password;
  } catch {
    // fall back to the one read at start
  }
  return credentials.password;
}

/** Everything the client needs to reach a secured etcd; both parts optional. */
export interface EtcdSecurity {
  tls?: EtcdTls;
  credentials?: EtcdCredentials;
}

/** gRPC status code etcd gives an unknown or expired token. */
export const grpcCodeUnauthenticated = 16;

/**
 * etcd's answers that a fresh token fixes: an expired or unknown token; an auth store that moved on
 * since the token was issued (a role or user changed); no token at all where one is needed (auth
 * was enabled after this client looked).
 */
const staleTokenPatterns = [
  /invalid auth token/,
  /revision of auth store is old/,
  /auth revision is old/,
  /user name is empty/,
];

/** True when etcd's error message (or watch cancel reason) says the token must be renewed. */
export function isStaleTokenMessage(message: string): boolean {
  return staleTokenPatterns.some((p) => p.test(message));
}

/** etcd's answer to /v3/auth/authenticate when authentication is off: the client then sends no token. */
export function isAuthNotEnabledMessage(message: string): boolean {
  return /authentication is not enabled/.test(message);
}

/** Counters for /metrics and tests (monotonic). */
export interface EtcdAuthCounters {
  /** Successful /v3/auth/authenticate calls. */
  authentications: number;
  /** Requests etcd refused for a stale token and that were retried once with a fresh one. */
  tokenRefreshes: number;
}

/**
 * The current token of one client, and the single authentication in flight. `authenticate` does
 * the round trip and returns the token ("" when etcd has authentication off).
 */
export class EtcdTokens {
  private current: string | null = null;
  private pending: Promise<string> | null = null;
  readonly counters: EtcdAuthCounters = { authentications: 0, tokenRefreshes: 0 };

  constructor(private readonly authenticate: () => Promise<string>) {}

  /** The token to send, authenticating first when there is none yet. */
  token(): Promise<string> {
    if (this.current !== null) return Promise.resolve(this.current);
    return this.renew();
  }

  /** A token other than `stale`: a new authentication, unless another request already renewed it. */
  refresh(stale: string): Promise<string> {
    this.counters.tokenRefreshes++;
    if (this.current !== null && this.current !== stale) return Promise.resolve(this.current);
    this.current = null;
    return this.renew();
  }

  private renew(): Promise<string> {
    if (this.pending === null) {
      this.pending = this.authenticate().then(
        (token) => {
          this.counters.authentications++;
          this.current = token;
          this.pending = null;
          return token;
        },
        (err: unknown) => {
          this.pending = null;
          throw err;
        },
      );
    }
    return this.pending;
  }
}

/**
 * A one-line explanation of a TLS failure talking to etcd, or null when `err` is not one. Bun's
 * fetch reports a handshake etcd aborted (no client certificate, or one from a CA etcd does not
 * trust) only as EPROTO "The TLS handshake failed", and an unverifiable server certificate by an
 * OpenSSL-style code.
 */
export function describeTlsFailure(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  if (code === "EPROTO")
    return "etcd refused the TLS handshake: it wants a client certificate signed by a CA it trusts (--etcd-cert/--etcd-key), or it does not speak TLS on this port";
  if (
    /CERT|VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/.test(code) ||
    code === "ERR_TLS_CERT_ALTNAME_INVALID" ||
    code === "HOSTNAME_MISMATCH"
  )
    return `cannot verify etcd's server certificate (${code}): give the CA that signed it with --etcd-cacert, and check the certificate names the host in the URL`;
  return null;
}
