// A minimal etcd v3 client over etcd's JSON gateway (grpc-gateway), using nothing but fetch.
//
// Why not a client library: the npm clients (e.g. `etcd3`) sit on @grpc/grpc-js and protobufjs, a
// large dependency tree over node:http2 whose behaviour under Bun we would have to qualify, and
// which would be bundled into the single compiled binary. The gateway is part of every etcd >= 3.x
// server, needs no native code and no generated stubs, and the few calls the membership needs map
// 1:1 to JSON endpoints. Keys and values are base64 in JSON; int64 fields are decimal strings.
//
// Paths: etcd 3.4 serves the gateway at /v3/* (and still /v3beta/*); 3.5+ serves only /v3/*. So
// /v3 works from 3.4 on (checked against Debian's etcd-server 3.4.23).
//
// Security (etcd-auth.ts): https:// endpoints with fetch's `tls` option (a CA and a client
// certificate), and a user's token in the Authorization header, renewed once when etcd says it is stale.

import {
  currentPassword,
  describeTlsFailure,
  EtcdTokens,
  grpcCodeUnauthenticated,
  isAuthNotEnabledMessage,
  isStaleTokenMessage,
  type EtcdAuthCounters,
  type EtcdCredentials,
  type EtcdSecurity,
} from "./etcd-auth.ts";

/** gRPC status codes that etcd puts in gateway error bodies. */
export const grpcCodeNotFound = 5;
export const grpcCodePermissionDenied = 7;
export const grpcCodeOutOfRange = 11;
export const grpcCodeUnavailable = 14;

/** Longest watch-stream line we buffer before giving up on the stream (bounds memory per watch). */
export const watchLineCharsMax = 8 << 20;
/** Longest response body we accept from a unary call. */
export const responseCharsMax = 8 << 20;

export class EtcdError extends Error {
  constructor(
    message: string,
    /**
     * "network": no answer (refused, reset, timeout, simulated partition). "server": etcd answered with an error.
     * "access": etcd refused who we are (TLS handshake, certificate, user, password, permission):
     * retrying will not help until the configuration changes.
     */
    readonly kind: "network" | "server" | "access",
    readonly httpStatus = 0,
    readonly grpcCode = 0,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** Lease id as a decimal string (int64 does not fit a JS number); "0" when none. */
  lease: string;
}

export interface EtcdEvent {
  type: "put" | "delete";
  /** For deletes only key and modRevision (the revision of the delete) are meaningful. */
  kv: EtcdKv;
}

export interface EtcdWatchMessage {
  /** Store revision in the response header. */
  revision: number;
  created: boolean;
  canceled: boolean;
  /** > 0 when the requested start revision was compacted away; the watch is then canceled. */
  compactRevision: number;
  cancelReason: string;
  events: EtcdEvent[];
}

export interface RequestOptions {
  /** Aborts the request early (e.g. on close). */
  signal?: AbortSignal;
  /** Upper bound for the whole request; defaults to the client's requestTimeoutMs. */
  timeoutMs?: number;
}

export type RegisterResult =
  { created: true; revision: number; kvs: EtcdKv[] } | { created: false; revision: number; existing: EtcdKv | null };

/** One comparison of a transaction; `prefix` applies it to every key starting with `key` (etcd 3.3+). */
export interface TxnCompare {
  key: string;
  prefix?: boolean;
  target: "MOD" | "CREATE";
  result: "EQUAL" | "LESS" | "GREATER";
  revision: number;
}

/** A put of a transaction's success branch. */
export interface TxnPut {
  key: string;
  value: string;
  /** Lease id (decimal string); "0" or absent for none. */
  lease?: string;
}

export function encodeBase64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

export function decodeBase64(b64: string): string {
  return Buffer.from(b64, "base64").toString("utf8");
}

/** The range end that selects every key starting with `prefix` (prefix with its last byte + 1). */
export function prefixRangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, "utf8");
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i] += 1;
      return end.toString("latin1");
    }
  }
  throw new RangeError("prefixRangeEnd: prefix must contain a byte below 0xff");
}

function rangeEndBase64(prefix: string): string {
  // prefixRangeEnd returns latin1 so that a byte that is not valid UTF-8 on its own survives.
  return Buffer.from(prefixRangeEnd(prefix), "latin1").toString("base64");
}

function normalizeEndpoint(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RangeError(`etcd endpoint must be http(s)://host:port, got ${endpoint}`);
  }
  return url.origin;
}

type Json = Record<string, unknown>;

function asObject(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new EtcdError(`etcd: ${what} is not an object`, "server");
  }
  return value as Json;
}

/** int64 fields arrive as decimal strings and are omitted when zero. */
function int64(obj: Json, field: string): number {
  const raw = obj[field];
  if (raw === undefined) return 0;
  const n = typeof raw === "string" ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw new EtcdError(`etcd: field ${field} is not a safe integer: ${String(raw)}`, "server");
  }
  return n;
}

function id64(obj: Json, field: string): string {
  const raw = obj[field];
  if (raw === undefined) return "0";
  if (typeof raw === "string" && /^-?[0-9]+$/.test(raw)) return raw;
  if (typeof raw === "number" && Number.isSafeInteger(raw)) return String(raw);
  throw new EtcdError(`etcd: field ${field} is not an int64: ${String(raw)}`, "server");
}

function headerRevision(obj: Json): number {
  return obj.header === undefined ? 0 : int64(asObject(obj.header, "header"), "revision");
}

function parseKv(value: unknown): EtcdKv {
  const kv = asObject(value, "kv");
  return {
    key: typeof kv.key === "string" ? decodeBase64(kv.key) : "",
    value: typeof kv.value === "string" ? decodeBase64(kv.value) : "",
    createRevision: int64(kv, "create_revision"),
    modRevision: int64(kv, "mod_revision"),
    lease: id64(kv, "lease"),
  };
}

function parseKvs(obj: Json): EtcdKv[] {
  const kvs = obj.kvs;
  if (kvs === undefined) return [];
  if (!Array.isArray(kvs)) throw new EtcdError("etcd: kvs is not an array", "server");
  return kvs.map(parseKv);
}

function parseWatchMessage(line: string): EtcdWatchMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new EtcdError(`etcd watch: malformed line ${line.slice(0, 200)}`, "server");
  }
  const envelope = asObject(parsed, "watch message");
  if (envelope.error !== undefined) {
    const err = asObject(envelope.error, "watch error");
    throw new EtcdError(
      `etcd watch: ${String(err.message ?? "error")}`,
      "server",
      typeof err.http_code === "number" ? err.http_code : 0,
      typeof err.grpc_code === "number" ? err.grpc_code : 0,
    );
  }
  const result = asObject(envelope.result, "watch result");
  const rawEvents = result.events;
  const events: EtcdEvent[] = [];
  if (rawEvents !== undefined) {
    if (!Array.isArray(rawEvents)) throw new EtcdError("etcd watch: events is not an array", "server");
    for (const raw of rawEvents) {
      const ev = asObject(raw, "event");
      // The enum's zero value (PUT) is omitted by the gateway.
      const type = ev.type === undefined || ev.type === "PUT" ? "put" : ev.type === "DELETE" ? "delete" : null;
      if (type === null) throw new EtcdError(`etcd watch: unknown event type ${String(ev.type)}`, "server");
      events.push({ type, kv: parseKv(ev.kv) });
    }
  }
  return {
    revision: headerRevision(result),
    created: result.created === true,
    canceled: result.canceled === true,
    compactRevision: int64(result, "compact_revision"),
    cancelReason: typeof result.cancel_reason === "string" ? result.cancel_reason : "",
    events,
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Forwards an abort of `parent` to `child`; returns the function that undoes the link. */
function linkAbort(parent: AbortSignal | undefined, child: AbortController): () => void {
  if (parent === undefined) return () => {};
  if (parent.aborted) {
    child.abort();
    return () => {};
  }
  const onAbort = (): void => child.abort();
  parent.addEventListener("abort", onAbort, { once: true });
  return () => parent.removeEventListener("abort", onAbort);
}

export interface EtcdClientOptions {
  /** Default bound for one unary request. */
  requestTimeoutMs: number;
  /** TLS material and a user; none by default (plain http:// endpoints, etcd without authentication). */
  security?: EtcdSecurity;
}

/** The refusal of a request that says who we are is wrong, in one line; null when it is some other error. */
function accessProblem(status: number, code: number, message: string, hasUser: boolean): string | null {
  if (code === grpcCodePermissionDenied)
    return `${message} (the etcd user's role must grant read-write on the cluster's prefix)`;
  if (/CommonName of client/.test(message))
    return `${message} (with --client-cert-auth and authentication both on, etcd's JSON gateway needs a client certificate without a Common Name)`;
  if (!hasUser && (code === grpcCodeUnauthenticated || isStaleTokenMessage(message)))
    return `${message} (etcd has authentication enabled: give --etcd-user and a password)`;
  if (status === 401 && !hasUser) return message;
  return null;
}

/**
 * Unary calls and the watch stream against a list of endpoints. On a network failure (or an etcd
 * "unavailable") the client moves to the next endpoint for the following call; it never retries by
 * itself, because the callers' retry policies depend on lease deadlines.
 */
export class EtcdClient {
  private readonly endpoints: string[];
  private current = 0;
  private readonly requestTimeoutMs: number;
  private readonly tls: EtcdSecurity["tls"];
  /** Null when no user is configured: no Authorization header. */
  private readonly tokens: EtcdTokens | null;
  /**
   * Test hook: while true every call fails as if etcd were unreachable from this client
   * (a network partition between this node and etcd).
   */
  partitioned = false;

  constructor(endpoints: readonly string[], options: EtcdClientOptions) {
    if (endpoints.length === 0) throw new RangeError("etcd: at least one endpoint is required");
    if (!(options.requestTimeoutMs > 0)) throw new RangeError("etcd: requestTimeoutMs must be > 0");
    this.endpoints = endpoints.map(normalizeEndpoint);
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.tls = options.security?.tls;
    const credentials = options.security?.credentials;
    this.tokens = credentials === undefined ? null : new EtcdTokens(() => this.authenticate(credentials));
  }

  /** Authentications and token refreshes so far (zeros without a user). */
  authCounters(): Readonly<EtcdAuthCounters> {
    return this.tokens === null ? { authentications: 0, tokenRefreshes: 0 } : { ...this.tokens.counters };
  }

  /** A fresh token for `credentials`, or "" when etcd has authentication off (then no header is sent). */
  private async authenticate(credentials: EtcdCredentials): Promise<string> {
    let res: Json;
    try {
      res = await this.send(
        "/v3/auth/authenticate",
        { name: credentials.user, password: currentPassword(credentials) },
        {},
        "",
      );
    } catch (err) {
      // Only etcd's answer about the user is about the user: TLS refusals and outages stay as they are.
      if (!(err instanceof EtcdError) || err.kind !== "server" || err.grpcCode === grpcCodeUnavailable) throw err;
      if (isAuthNotEnabledMessage(err.message)) return "";
      throw new EtcdError(
        `etcd refused user ${JSON.stringify(credentials.user)}: ${err.message.replace(/^etcd \S+: /, "")}`,
        "access",
        err.httpStatus,
        err.grpcCode,
      );
    }
    if (typeof res.token !== "string" || res.token === "")
      throw new EtcdError("etcd /v3/auth/authenticate: answer without a token", "server");
    return res.token;
  }

  /** A unary call with the current token; once more with a fresh token when etcd says it is stale. */
  private async call(path: string, body: Json, options: RequestOptions = {}): Promise<Json> {
    if (this.partitioned) throw new EtcdError(`etcd ${path}: simulated partition`, "network");
    if (this.tokens === null) return this.send(path, body, options, "");
    const token = await this.tokens.token();
    try {
      return await this.send(path, body, options, token);
    } catch (err) {
      if (!(err instanceof EtcdError) || err.kind !== "server" || !isStaleTokenMessage(err.message)) throw err;
      return this.send(path, body, options, await this.tokens.refresh(token));
    }
  }

  private fetchInit(body: Json, token: string, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { "content-type": "application/json" };
    // etcd reads the token from the "authorization" metadata the gateway makes of this header (no "Bearer").
    if (token !== "") headers.authorization = token;
    const init: RequestInit = { method: "POST", headers, body: JSON.stringify(body), signal };
    if (this.tls !== undefined) (init as RequestInit & { tls: EtcdSecurity["tls"] }).tls = this.tls;
    return init;
  }

  /** Why a request got no answer, in one line: a TLS problem explained, else the error's message. */
  private networkError(endpoint: string, path: string, err: unknown, why: string): EtcdError {
    const tls = describeTlsFailure(err);
    if (tls !== null) return new EtcdError(`etcd ${endpoint}${path}: ${tls}`, "access");
    return new EtcdError(`etcd ${endpoint}${path}: ${why}`, "network");
  }

  endpoint(): string {
    return this.endpoints[this.current];
  }

  private rotate(failed: string): void {
    // Only rotate away from the endpoint that failed: concurrent calls must not skip a good one.
    if (this.endpoints[this.current] === failed) this.current = (this.current + 1) % this.endpoints.length;
  }

  private async send(path: string, body: Json, options: RequestOptions, token: string): Promise<Json> {
    if (this.partitioned) throw new EtcdError(`etcd ${path}: simulated partition`, "network");
    const timeoutMs = Math.max(1, options.timeoutMs ?? this.requestTimeoutMs);
    const endpoint = this.endpoints[this.current];
    const controller = new AbortController();
    const unlink = linkAbort(options.signal, controller);
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let text: string;
    try {
      const response = await fetch(endpoint + path, this.fetchInit(body, token, controller.signal));
      status = response.status;
      text = await response.text();
    } catch (err) {
      this.rotate(endpoint);
      const why =
        controller.signal.aborted && options.signal?.aborted !== true
          ? `timed out after ${timeoutMs} ms`
          : errorMessage(err);
      throw this.networkError(endpoint, path, err, why);
    } finally {
      clearTimeout(timer);
      unlink();
    }
    if (text.length > responseCharsMax) throw new EtcdError(`etcd ${path}: response too large`, "server", status);
    let parsed: Json;
    try {
      parsed = asObject(JSON.parse(text), "response");
    } catch (err) {
      if (status >= 500) this.rotate(endpoint);
      const message = text.slice(0, 200).trim();
      const access = accessProblem(status, 0, message, this.tokens !== null);
      throw new EtcdError(
        `etcd ${endpoint}${path}: HTTP ${status}: ${access ?? message}`,
        access !== null ? "access" : status >= 500 ? "network" : "server",
        status,
      );
    }
    if (status !== 200) {
      const code = typeof parsed.code === "number" ? parsed.code : 0;
      if (status >= 500 || code === grpcCodeUnavailable) this.rotate(endpoint);
      const message = typeof parsed.message === "string" ? parsed.message : text.slice(0, 200);
      const access = accessProblem(status, code, message, this.tokens !== null);
      throw new EtcdError(
        `etcd ${endpoint}${path}: ${access ?? message}`,
        access !== null ? "access" : "server",
        status,
        code,
      );
    }
    return parsed;
  }

  /** Grants a lease; etcd may grant a longer TTL than asked (its minimum), so use the returned one. */
  async leaseGrant(ttlS: number, options?: RequestOptions): Promise<{ id: string; ttlS: number }> {
    if (!Number.isSafeInteger(ttlS) || ttlS < 1)
      throw new RangeError(`leaseGrant: ttlS must be a positive integer, got ${ttlS}`);
    const res = await this.call("/v3/lease/grant", { TTL: String(ttlS) }, options);
    if (typeof res.error === "string" && res.error !== "")
      throw new EtcdError(`etcd lease grant: ${res.error}`, "server");
    const id = id64(res, "ID");
    const granted = int64(res, "TTL");
    if (id === "0" || granted < 1) throw new EtcdError(`etcd lease grant: bad answer ${JSON.stringify(res)}`, "server");
    return { id, ttlS: granted };
  }

  /** One keepalive round trip. Returns the TTL etcd now grants, in seconds; 0 when the lease no longer exists. */
  async leaseKeepAlive(id: string, options?: RequestOptions): Promise<number> {
    // The gateway maps the bidirectional stream to one request message -> one response line.
    const res = await this.call("/v3/lease/keepalive", { ID: id }, options);
    const result = asObject(res.result, "keepalive result");
    return Math.max(0, int64(result, "TTL"));
  }

  /** Revokes a lease (deleting its keys). Returns false when etcd no longer knows the lease. */
  async leaseRevoke(id: string, options?: RequestOptions): Promise<boolean> {
    try {
      await this.call("/v3/lease/revoke", { ID: id }, options);
      return true;
    } catch (err) {
      if (err instanceof EtcdError && err.grpcCode === grpcCodeNotFound) return false;
      throw err;
    }
  }

  async put(key: string, value: string, lease = "0", options?: RequestOptions): Promise<number> {
    const res = await this.call("/v3/kv/put", { key: encodeBase64(key), value: encodeBase64(value), lease }, options);
    return headerRevision(res);
  }

  /** Reads `key`, or every key with prefix `key` when `prefix` is set; at `revision` when > 0. */
  async range(
    key: string,
    opts: { prefix?: boolean; revision?: number } & RequestOptions = {},
  ): Promise<{ revision: number; kvs: EtcdKv[] }> {
    const body: Json = { key: encodeBase64(key) };
    if (opts.prefix === true) body.range_end = rangeEndBase64(key);
    if (opts.revision !== undefined && opts.revision > 0) body.revision = String(opts.revision);
    const res = await this.call("/v3/kv/range", body, opts);
    return { revision: headerRevision(res), kvs: parseKvs(res) };
  }

  async deleteRange(
    key: string,
    opts: { prefix?: boolean } & RequestOptions = {},
  ): Promise<{ revision: number; deleted: number }> {
    const body: Json = { key: encodeBase64(key) };
    if (opts.prefix === true) body.range_end = rangeEndBase64(key);
    const res = await this.call("/v3/kv/deleterange", body, opts);
    return { revision: headerRevision(res), deleted: int64(res, "deleted") };
  }

  /**
   * A lease's remaining and granted TTL in seconds (etcd truncates the remaining one), or null when
   * etcd no longer has the lease.
   */
  async leaseTimeToLive(id: string, options?: RequestOptions): Promise<{ ttlS: number; grantedTtlS: number } | null> {
    const res = await this.call("/v3/lease/timetolive", { ID: id }, options);
    const ttlS = int64(res, "TTL");
    if (ttlS < 0) return null;
    return { ttlS, grantedTtlS: int64(res, "grantedTTL") };
  }

  /** If every comparison holds, do the puts, atomically. Returns whether it did, and the revision. */
  async txn(
    compare: readonly TxnCompare[],
    puts: readonly TxnPut[],
    options?: RequestOptions,
  ): Promise<{ succeeded: boolean; revision: number }> {
    const res = await this.call(
      "/v3/kv/txn",
      {
        compare: compare.map((c) => {
          const field = c.target === "MOD" ? "mod_revision" : "create_revision";
          const one: Json = {
            key: encodeBase64(c.key),
            target: c.target,
            result: c.result,
            [field]: String(c.revision),
          };
          if (c.prefix === true) one.range_end = rangeEndBase64(c.key);
          return one;
        }),
        success: puts.map((p) => ({
          request_put: { key: encodeBase64(p.key), value: encodeBase64(p.value), lease: p.lease ?? "0" },
        })),
        failure: [],
      },
      options,
    );
    return { succeeded: res.succeeded === true, revision: headerRevision(res) };
  }

  /**
   * In one transaction: if `key` does not exist, put it attached to `lease` and read every key under
   * `rangePrefix` (so the caller learns the exact set at the revision of its own put); otherwise
   * read the existing key.
   */
  async registerWithLease(
    key: string,
    value: string,
    lease: string,
    rangePrefix: string,
    options?: RequestOptions,
  ): Promise<RegisterResult> {
    const k = encodeBase64(key);
    const res = await this.call(
      "/v3/kv/txn",
      {
        compare: [{ key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }],
        success: [
          { request_put: { key: k, value: encodeBase64(value), lease } },
          { request_range: { key: encodeBase64(rangePrefix), range_end: rangeEndBase64(rangePrefix) } },
        ],
        failure: [{ request_range: { key: k } }],
      },
      options,
    );
    const revision = headerRevision(res);
    const responses = Array.isArray(res.responses) ? res.responses : [];
    const rangeOf = (i: number): Json => {
      const r = asObject(responses[i], "txn response");
      return asObject(r.response_range, "txn response_range");
    };
    if (res.succeeded === true) {
      if (responses.length !== 2) throw new EtcdError("etcd txn: expected 2 responses", "server");
      return { created: true, revision, kvs: parseKvs(rangeOf(1)) };
    }
    if (responses.length !== 1) throw new EtcdError("etcd txn: expected 1 response", "server");
    const kvs = parseKvs(rangeOf(0));
    return { created: false, revision, existing: kvs.length > 0 ? kvs[0] : null };
  }

  /**
   * Watches every key under `prefix` from `startRevision`. Yields one message per gateway line; ends
   * when the server closes the stream; throws EtcdError on network failures. Abort `signal` to stop.
   * etcd checks the token when the watch is created: a watch canceled for a stale token is opened
   * once more with a fresh one, and that cancel message is not yielded.
   */
  async *watch(prefix: string, startRevision: number, signal: AbortSignal): AsyncGenerator<EtcdWatchMessage> {
    let token = this.tokens === null ? "" : await this.tokens.token();
    for (let attempt = 0; ; attempt++) {
      const retryWithFreshToken = this.tokens !== null && attempt === 0;
      let stale = false;
      for await (const message of this.watchOnce(prefix, startRevision, signal, token, retryWithFreshToken)) {
        if (message === staleToken) {
          stale = true;
          break;
        }
        yield message;
      }
      if (!stale) return;
      token = await this.tokens!.refresh(token);
    }
  }

  /** One watch stream; yields `staleToken` (and ends) when etcd refuses the token and `mayRetry`. */
  private async *watchOnce(
    prefix: string,
    startRevision: number,
    signal: AbortSignal,
    token: string,
    mayRetry: boolean,
  ): AsyncGenerator<EtcdWatchMessage | typeof staleToken> {
    if (this.partitioned) throw new EtcdError("etcd watch: simulated partition", "network");
    const endpoint = this.endpoints[this.current];
    const body = {
      create_request: {
        key: encodeBase64(prefix),
        range_end: rangeEndBase64(prefix),
        start_revision: String(startRevision),
      },
    };
    let response: Response;
    try {
      response = await fetch(endpoint + "/v3/watch", this.fetchInit(body, token, signal));
    } catch (err) {
      if (!signal.aborted) this.rotate(endpoint);
      throw this.networkError(endpoint, "/v3/watch", err, errorMessage(err));
    }
    if (response.status !== 200 || response.body === null) {
      const text = await response.text().catch(() => "");
      if (response.status >= 500) this.rotate(endpoint);
      if (mayRetry && isStaleTokenMessage(text)) {
        yield staleToken;
        return;
      }
      const access = accessProblem(response.status, 0, text.slice(0, 200).trim(), this.tokens !== null);
      throw new EtcdError(
        `etcd ${endpoint}/v3/watch: HTTP ${response.status}: ${access ?? text.slice(0, 200)}`,
        access !== null ? "access" : "server",
        response.status,
      );
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (!signal.aborted) this.rotate(endpoint);
          throw new EtcdError(`etcd ${endpoint}/v3/watch: ${errorMessage(err)}`, "network");
        }
        if (chunk.done) return;
        buffered += decoder.decode(chunk.value, { stream: true });
        let newline = buffered.indexOf("\n");
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line !== "") {
            const message = parseWatchMessage(line);
            if (message.canceled && isStaleTokenMessage(message.cancelReason)) {
              if (mayRetry) {
                yield staleToken;
                return;
              }
            }
            if (message.canceled && /permission denied/.test(message.cancelReason)) {
              throw new EtcdError(
                `etcd ${endpoint}/v3/watch: ${message.cancelReason} (the etcd user's role must grant read-write on the cluster's prefix)`,
                "access",
              );
            }
            yield message;
          }
          newline = buffered.indexOf("\n");
        }
        if (buffered.length > watchLineCharsMax)
          throw new EtcdError("etcd watch: line longer than watchLineCharsMax", "server");
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
}

/** What watchOnce yields when etcd canceled the watch for a stale token. */
const staleToken = Symbol("staleToken");
