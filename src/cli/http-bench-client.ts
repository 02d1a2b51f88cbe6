// The HTTP/1.1 client connections of `hermes-kv bench --endpoints`: one request at a time per
// connection (closed loop), kept alive between requests.
//
// Two kinds, chosen with --client:
// - raw (default): one TCP (or TLS) socket of our own through Bun.connect; the request is written
//   as one string and the answer parsed in place (status, Content-Length or chunked, ETag). Measured
//   on this 2-core machine against a trivial Bun.serve: as fast as wrk from one thread, where fetch
//   reached about half (its answers go through a separate HTTP thread and a Response per request).
// - fetch: Bun's fetch with keep-alive, for comparison; the pool decides the number of sockets.
//
// A connection never retries: the runner decides what a failure means and reconnects.

import type { Socket } from "bun";

/** TLS material for https:// endpoints (file contents, not paths). */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface Endpoint {
  /** "http://127.0.0.1:8080", no trailing slash. */
  origin: string;
  hostname: string;
  port: number;
  tls: boolean;
  /** The Host header. */
  host: string;
}

export function parseEndpoint(text: string): Endpoint | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `not a URL: ${JSON.stringify(text)}`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return `not an http:// or https:// URL: ${JSON.stringify(text)}`;
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    return `an endpoint is a scheme, host and port only (no path, query or credentials): ${JSON.stringify(text)}`;
  }
  const tls = url.protocol === "https:";
  const port = url.port === "" ? (tls ? 443 : 80) : Number(url.port);
  // URL keeps IPv6 literals bracketed; the socket wants the bare address.
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return { origin: url.origin, hostname, port, tls, host: url.host };
}

/**
 * One request. Its text must be ASCII (paths percent-encoded, etcd bodies base64, JSON \u-escaped):
 * the raw client takes the string's length as its byte length. A body in bytes (binary batches) is
 * sent as it is.
 */
export interface HttpRequest {
  method: string;
  /** Already percent-encoded path (and query). */
  path: string;
  body: string | Uint8Array | null;
  headers: readonly (readonly [string, string])[] | null;
}

/** An answer; the ETag and the body are cut out of the receive buffer only when asked for. */
export class HttpAnswer {
  #etag: string | null | undefined;

  /** `etag` is the header's value, or its [start, end) in `buf`, or null when there was none. */
  constructor(
    readonly status: number,
    etag: string | null | readonly [number, number],
    private readonly buf: Uint8Array,
    private readonly start: number,
    private readonly end: number,
  ) {
    if (etag === null || typeof etag === "string") this.#etag = etag;
    else {
      this.#etag = undefined;
      this.#etagAt = etag;
    }
  }

  #etagAt: readonly [number, number] | null = null;

  get etag(): string | null {
    if (this.#etag === undefined) {
      const [from, to] = this.#etagAt!;
      this.#etag = Buffer.from(this.buf.buffer, this.buf.byteOffset, this.buf.length).toString("latin1", from, to);
    }
    return this.#etag;
  }

  get body(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  text(): string {
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + this.start, this.end - this.start).toString("utf8");
  }
}

export class RequestTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = "RequestTimeout";
  }
}

export interface HttpConnection {
  request(req: HttpRequest): Promise<HttpAnswer>;
  /** Fails the request in flight (if any) with RequestTimeout when it started more than `timeoutMs` before `nowMs`. */
  checkTimeout(nowMs: number, timeoutMs: number): void;
  /** True once the connection cannot carry another request (closed by either side, or failed). */
  readonly closed: boolean;
  close(): void;
}

export interface ConnectionOptions {
  endpoint: Endpoint;
  tls: TlsFiles | null;
  /** Headers sent with every request (Authorization, Content-Type). */
  commonHeaders: readonly (readonly [string, string])[];
}

/** Largest response head accepted; answers of hermes-kv and etcd are far smaller. */
const headBytesMax = 64 * 1024;
/** Largest response body accepted (hermes-kv values are at most 32 KiB; batches more). */
const bodyBytesMax = 64 * 1024 * 1024;
const crlfcrlf = Buffer.from("\r\n\r\n");

function textOf(lines: readonly (readonly [string, string])[]): string {
  let text = "";
  for (const [name, value] of lines) text += `${name}: ${value}\r\n`;
  return text;
}

interface Pending {
  resolve: (answer: HttpAnswer) => void;
  reject: (error: Error) => void;
  startedMs: number;
}

/** A keep-alive HTTP/1.1 connection over our own socket (see the file comment). */
export class RawConnection implements HttpConnection {
  #socket: Socket<undefined> | null = null;
  #pending: Pending | null = null;
  #in: Buffer | null = null;
  #out: Buffer | null = null;
  #closed = false;
  readonly #fixedHeaders: string;

  private constructor(options: ConnectionOptions) {
    this.#fixedHeaders = `Host: ${options.endpoint.host}\r\n${textOf(options.commonHeaders)}`;
  }

  static async open(options: ConnectionOptions): Promise<RawConnection> {
    const connection = new RawConnection(options);
    const e = options.endpoint;
    const tls = e.tls ? (options.tls === null ? true : { ...options.tls, serverName: e.hostname }) : undefined;
    connection.#socket = await Bun.connect({
      hostname: e.hostname,
      port: e.port,
      tls,
      socket: {
        data: (_socket, chunk) => connection.#onData(chunk),
        drain: (socket) => connection.#onDrain(socket),
        close: () => connection.#fail(new Error("connection closed by the server")),
        error: (_socket, error) => connection.#fail(error),
        end: () => connection.#fail(new Error("connection closed by the server")),
        handshake: (_socket, success, authorizationError) => {
          if (!success || authorizationError !== null) {
            connection.#fail(
              new Error(`TLS handshake with ${e.host} failed: ${authorizationError?.message ?? "not authorized"}`),
            );
          }
        },
      },
    });
    connection.#socket.setNoDelay(true);
    return connection;
  }

  get closed(): boolean {
    return this.#closed;
  }

  request(req: HttpRequest): Promise<HttpAnswer> {
    if (this.#pending !== null) throw new Error("one request at a time on a connection");
    const socket = this.#socket;
    if (socket === null || this.#closed) return Promise.reject(new Error("connection closed"));
    let text = `${req.method} ${req.path} HTTP/1.1\r\n${this.#fixedHeaders}`;
    if (req.headers !== null) text += textOf(req.headers);
    const body = req.body;
    let bytes: Uint8Array | null = null;
    if (typeof body === "string") text += `Content-Length: ${body.length}\r\n\r\n${body}`;
    else if (body !== null) {
      // Head and body in one buffer, so that they go out in one write (and one segment).
      text += `Content-Length: ${body.length}\r\n\r\n`;
      const out = Buffer.allocUnsafe(text.length + body.length);
      out.write(text, 0, "latin1");
      out.set(body, text.length);
      bytes = out;
    } else text += req.method === "GET" ? "\r\n" : "Content-Length: 0\r\n\r\n";
    const promise = new Promise<HttpAnswer>((resolve, reject) => {
      this.#pending = { resolve, reject, startedMs: performance.now() };
    });
    if (bytes !== null) {
      const written = socket.write(bytes);
      if (written < bytes.length)
        this.#out = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).subarray(Math.max(0, written));
      return promise;
    }
    const written = socket.write(text);
    if (written < text.length) this.#out = Buffer.from(text, "latin1").subarray(Math.max(0, written));
    return promise;
  }

  checkTimeout(nowMs: number, timeoutMs: number): void {
    const pending = this.#pending;
    if (pending !== null && nowMs - pending.startedMs > timeoutMs) this.#fail(new RequestTimeout(timeoutMs));
  }

  close(): void {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = null;
    socket?.terminate();
    this.#fail(new Error("connection closed"));
  }

  #onDrain(socket: Socket<undefined>): void {
    const out = this.#out;
    if (out === null) return;
    const written = socket.write(out);
    this.#out = written < out.length ? out.subarray(Math.max(0, written)) : null;
  }

  #fail(error: Error): void {
    this.#closed = true;
    const pending = this.#pending;
    this.#pending = null;
    this.#in = null;
    this.#out = null;
    if (this.#socket !== null) {
      const socket = this.#socket;
      this.#socket = null;
      socket.terminate();
    }
    pending?.reject(error);
  }

  #onData(chunk: Buffer): void {
    this.#in = this.#in === null ? chunk : Buffer.concat([this.#in, chunk]);
    if (this.#pending === null) {
      this.#fail(new Error("the server sent bytes with no request outstanding"));
      return;
    }
    const parsed = parseResponse(this.#in);
    if (parsed === null) return; // incomplete
    if (typeof parsed === "string") {
      this.#fail(new Error(parsed));
      return;
    }
    const pending = this.#pending;
    this.#pending = null;
    this.#in = parsed.rest;
    pending.resolve(parsed.answer);
    if (parsed.close) this.close();
  }
}

interface Parsed {
  answer: HttpAnswer;
  /** Bytes after the response (none in a closed loop). */
  rest: Buffer | null;
  close: boolean;
}

const lower = (b: number): number => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b);

/** Whether buf[start, end) is `name` (lowercase ASCII), ignoring case. */
function nameIs(buf: Buffer, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (lower(buf[start + i]!) !== name.charCodeAt(i)) return false;
  return true;
}

/** [start, end) of a header value without its surrounding spaces. */
function trimmed(buf: Buffer, start: number, end: number): [number, number] {
  while (start < end && (buf[start] === 0x20 || buf[start] === 0x09)) start++;
  while (end > start && (buf[end - 1] === 0x20 || buf[end - 1] === 0x09)) end--;
  return [start, end];
}

function trimmedValue(buf: Buffer, start: number, end: number): string {
  const [from, to] = trimmed(buf, start, end);
  return buf.toString("latin1", from, to);
}

/**
 * One HTTP/1.1 response from the start of `buf`: null if incomplete, a message if malformed.
 * The head is scanned as bytes: only the lines that may be Content-Length, Connection, ETag or
 * Transfer-Encoding are looked at (by their first letter), so an answer costs no string of its head.
 * Exported for the tests.
 */
export function parseResponse(buf: Buffer): Parsed | string | null {
  const headEnd = buf.indexOf(crlfcrlf);
  if (headEnd < 0) return buf.length > headBytesMax ? `response head longer than ${headBytesMax} bytes` : null;
  // "HTTP/1.x SSS"
  if (headEnd < 12 || buf[0] !== 0x48 || buf[4] !== 0x2f || buf[5] !== 0x31 || buf[8] !== 0x20) {
    return `not an HTTP/1.x response: ${JSON.stringify(buf.toString("latin1", 0, Math.min(40, headEnd)))}`;
  }
  const d0 = buf[9]! - 0x30;
  const d1 = buf[10]! - 0x30;
  const d2 = buf[11]! - 0x30;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9)
    return `bad status line: ${JSON.stringify(buf.toString("latin1", 0, Math.min(40, headEnd)))}`;
  const status = d0 * 100 + d1 * 10 + d2;
  let etag: [number, number] | null = null;
  let close = false;
  let chunked = false;
  let length = -1;
  // Header lines: each starts after a CRLF and ends at the next CR (headEnd is the last line's end).
  // A byte loop: a native indexOf per line cost more than the scan itself.
  let lineEnd = 12;
  while (lineEnd < headEnd && buf[lineEnd] !== 0x0d) lineEnd++;
  while (lineEnd < headEnd) {
    const lineStart = lineEnd + 2;
    lineEnd = lineStart;
    let colon = -1;
    for (; lineEnd < headEnd; lineEnd++) {
      const b = buf[lineEnd]!;
      if (b === 0x0d) break;
      if (b === 0x3a && colon < 0) colon = lineEnd;
    }
    const first = lower(buf[lineStart]!);
    if (first !== 0x63 && first !== 0x65 && first !== 0x74) continue; // c, e, t
    if (colon < 0) continue;
    if (nameIs(buf, lineStart, colon, "content-length")) {
      const text = trimmedValue(buf, colon + 1, lineEnd);
      if (!/^[0-9]{1,12}$/.test(text)) return `bad Content-Length: ${JSON.stringify(text)}`;
      length = Number(text);
      if (length > bodyBytesMax) return `body of ${length} bytes is larger than ${bodyBytesMax}`;
    } else if (nameIs(buf, lineStart, colon, "etag")) {
      etag = trimmed(buf, colon + 1, lineEnd);
    } else if (nameIs(buf, lineStart, colon, "connection")) {
      close = trimmedValue(buf, colon + 1, lineEnd).toLowerCase() === "close";
    } else if (nameIs(buf, lineStart, colon, "transfer-encoding")) {
      chunked = trimmedValue(buf, colon + 1, lineEnd)
        .toLowerCase()
        .includes("chunked");
    }
  }
  const bodyStart = headEnd + 4;
  if (chunked) return parseChunked(buf, bodyStart, status, etag, close);
  if (length < 0) {
    if (!(status < 200 || status === 204 || status === 304)) {
      return "response with neither Content-Length nor chunked encoding (read-until-close is not supported)";
    }
    length = 0;
  }
  const end = bodyStart + length;
  if (buf.length < end) return null;
  return {
    answer: new HttpAnswer(status, etag, buf, bodyStart, end),
    rest: end === buf.length ? null : buf.subarray(end),
    close,
  };
}

function parseChunked(
  buf: Buffer,
  start: number,
  status: number,
  etag: [number, number] | null,
  close: boolean,
): Parsed | string | null {
  const parts: Buffer[] = [];
  let at = start;
  let total = 0;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", at, "latin1");
    if (lineEnd < 0) return null;
    const sizeText = buf.toString("latin1", at, lineEnd).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return `bad chunk size: ${JSON.stringify(sizeText)}`;
    const size = parseInt(sizeText, 16);
    total += size;
    if (total > bodyBytesMax) return `chunked body larger than ${bodyBytesMax} bytes`;
    const dataStart = lineEnd + 2;
    if (size === 0) {
      // Trailers (none expected) end with an empty line.
      const end = buf.indexOf(crlfcrlf, lineEnd);
      if (end < 0) return null;
      const body = Buffer.concat(parts);
      const etagText = etag === null ? null : buf.toString("latin1", etag[0], etag[1]);
      return {
        answer: new HttpAnswer(status, etagText, body, 0, body.length),
        rest: end + 4 === buf.length ? null : buf.subarray(end + 4),
        close,
      };
    }
    if (buf.length < dataStart + size + 2) return null;
    parts.push(buf.subarray(dataStart, dataStart + size));
    at = dataStart + size + 2;
  }
}

/** Bun's fetch with keep-alive, one request at a time (see the file comment). */
export class FetchConnection implements HttpConnection {
  readonly #origin: string;
  readonly #headers: Record<string, string>;
  readonly #tls: TlsFiles | undefined;
  #controller: AbortController | null = null;
  #startedMs = 0;
  /** The pool behind fetch reconnects by itself. */
  readonly closed = false;

  constructor(options: ConnectionOptions) {
    this.#origin = options.endpoint.origin;
    this.#headers = Object.fromEntries(options.commonHeaders);
    this.#tls = options.tls ?? undefined;
  }

  async request(req: HttpRequest): Promise<HttpAnswer> {
    const controller = new AbortController();
    this.#controller = controller;
    this.#startedMs = performance.now();
    try {
      const headers = req.headers === null ? this.#headers : { ...this.#headers, ...Object.fromEntries(req.headers) };
      const response = await fetch(`${this.#origin}${req.path}`, {
        method: req.method,
        headers,
        body: req.body,
        keepalive: true,
        signal: controller.signal,
        tls: this.#tls,
      } as RequestInit);
      const body = new Uint8Array(await response.arrayBuffer());
      return new HttpAnswer(response.status, response.headers.get("etag"), body, 0, body.length);
    } catch (error) {
      if (controller.signal.aborted && controller.signal.reason instanceof RequestTimeout)
        throw controller.signal.reason;
      throw error;
    } finally {
      this.#controller = null;
    }
  }

  checkTimeout(nowMs: number, timeoutMs: number): void {
    if (this.#controller !== null && nowMs - this.#startedMs > timeoutMs)
      this.#controller.abort(new RequestTimeout(timeoutMs));
  }

  close(): void {
    this.#controller?.abort(new Error("connection closed"));
  }
}

export type ClientKind = "raw" | "fetch";

export async function openConnection(kind: ClientKind, options: ConnectionOptions): Promise<HttpConnection> {
  return kind === "raw" ? RawConnection.open(options) : new FetchConnection(options);
}
