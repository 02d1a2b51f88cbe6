// The main thread's end of the HTTP control channel: a shard worker forwards a request under the
// node's control paths (state transfer, admin routes, test hooks) by postMessage; the handler the
// CLI gave answers it here, and the answer goes back as a head, body chunks and an end, so that a
// large body (a shard's snapshot) streams instead of being held whole. Control plane only.

import type { ToShard } from "../worker/messages.ts";
import type { ControlRequest } from "./shard-handle.ts";

export type ControlHandler = (request: Request) => Response | Promise<Response>;

export async function answerControlRequest(
  handler: ControlHandler,
  message: ControlRequest,
  post: (message: ToShard) => void,
): Promise<void> {
  const { requestId } = message;
  let response: Response;
  try {
    const hasBody = message.body !== null && message.method !== "GET" && message.method !== "HEAD";
    response = await handler(
      new Request(message.url, {
        method: message.method,
        headers: message.headers,
        body: hasBody ? message.body : null,
      }),
    );
  } catch (error) {
    // The handler is the CLI's Hono app, which answers its own errors; this is a bug.
    console.error(`hermes-kv node: ${message.method} ${message.url.slice(0, 200)} failed on the main thread:`, error);
    const text = error instanceof Error ? error.message : String(error);
    response = new Response(JSON.stringify({ error: { code: "internal", message: `internal error: ${text}` } }), {
      status: 500,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
    });
  }
  const headers: [string, string][] = [];
  response.headers.forEach((value, name) => headers.push([name, value]));
  post({ type: "control-head", requestId, status: response.status, headers });
  if (response.body === null) {
    post({ type: "control-end", requestId, error: null });
    return;
  }
  try {
    for await (const chunk of response.body) post({ type: "control-body", requestId, chunk: chunk as Uint8Array });
    post({ type: "control-end", requestId, error: null });
  } catch (error) {
    post({ type: "control-end", requestId, error: error instanceof Error ? error.message : String(error) });
  }
}
