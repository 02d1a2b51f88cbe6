// The worker's end of the HTTP control channel: requests under the main thread's paths (state
// transfer to a joining node, a local cluster's admin routes, test hooks) and the node's own metrics
// are asked of the main thread by postMessage, which answers with a head, body chunks and an end.
// Control plane only: client ops never take this way.

import { bodyTooLarge, bodyUnreadable, readBodyBounded } from "../http/body.ts";
import { ErrorCode, errorResponse, invalidInput, retryAfterSeconds, tooLarge } from "../http/errors.ts";
import type { FromShard, HeaderList, ToShard } from "./messages.ts";

/** Body of a request forwarded to the main thread (JSON of a test hook, nothing for the others). */
export const controlBodyBytesMax = 1 << 20;
/** Control requests waiting for the main thread at once; more are answered 429. */
export const controlRequestsMax = 256;

interface Pending {
  resolve: (response: Response) => void;
  controller: ReadableStreamDefaultController<Uint8Array> | null;
}

export class ControlClient {
  readonly #post: (message: FromShard) => void;
  readonly #requests = new Map<number, Pending>();
  readonly #metrics = new Map<number, (text: string) => void>();
  #nextId = 1;

  constructor(post: (message: FromShard) => void) {
    this.#post = post;
  }

  /** Have the main thread answer `request`; the body is streamed back as it comes. */
  async forward(request: Request): Promise<Response> {
    if (this.#requests.size >= controlRequestsMax) {
      return errorResponse(
        429,
        ErrorCode.busy,
        "too many requests wait for the node's main thread; nothing was started",
        { headers: { "retry-after": String(retryAfterSeconds) } },
      );
    }
    let body: Uint8Array | null = null;
    if (request.body !== null) {
      const read = await readBodyBounded(request.body, controlBodyBytesMax, 0);
      if (read === bodyTooLarge)
        return tooLarge("body", `the request body is larger than ${controlBodyBytesMax} bytes`);
      if (read === bodyUnreadable) return invalidInput("body", "the request body could not be read");
      body = read;
    }
    const requestId = this.#nextId++;
    const headers: HeaderList = [];
    request.headers.forEach((value, name) => headers.push([name, value]));
    return new Promise<Response>((resolve) => {
      this.#requests.set(requestId, { resolve, controller: null });
      this.#post({ type: "control-request", requestId, method: request.method, url: request.url, headers, body });
    });
  }

  /** The node's Prometheus series, rendered by the main thread. */
  nodeMetrics(): Promise<string> {
    const requestId = this.#nextId++;
    return new Promise<string>((resolve) => {
      this.#metrics.set(requestId, resolve);
      this.#post({ type: "node-metrics-request", requestId });
    });
  }

  /** Handles the main thread's answers; false for any other message. */
  onMessage(message: ToShard): boolean {
    switch (message.type) {
      case "control-head": {
        const pending = this.#requests.get(message.requestId);
        if (pending === undefined) return true;
        const stream = new ReadableStream<Uint8Array>({
          start: (controller) => {
            pending.controller = controller;
          },
        });
        pending.resolve(new Response(stream, { status: message.status, headers: message.headers }));
        return true;
      }
      case "control-body":
        this.#requests.get(message.requestId)?.controller?.enqueue(message.chunk);
        return true;
      case "control-end": {
        const pending = this.#requests.get(message.requestId);
        this.#requests.delete(message.requestId);
        if (message.error === null) pending?.controller?.close();
        else pending?.controller?.error(new Error(message.error));
        return true;
      }
      case "node-metrics":
        this.#metrics.get(message.requestId)?.(message.text);
        this.#metrics.delete(message.requestId);
        return true;
      default:
        return false;
    }
  }
}
