// The text of a watch stream (GET /v1/watch): Server-Sent Events as the WHATWG HTML standard
// defines them. Each event is formatted once, as bytes, and the same bytes go to every watcher it
// matches. Values are base64 (JSON strings cannot carry bytes), as in the list and batch routes.

import { formatTs } from "../base/timestamp.ts";

const encoder = new TextEncoder();

/** Sent first on every stream: makes the server send its head at once, and asks clients to reconnect after 1 s. */
export const sseOpening: Uint8Array = encoder.encode("retry: 1000\n\n");
/** The heartbeat: a comment line, which clients ignore, that keeps proxies and idle timers from closing the stream. */
export const ssePing: Uint8Array = encoder.encode(": ping\n\n");
export const sseSynced: Uint8Array = encoder.encode("event: synced\ndata: {}\n\n");

/**
 * `event: put` (a value) or `event: delete` (value null: a tombstone). `cursor` is the event's
 * position for Last-Event-ID; the key is JSON-escaped (it has no newline: keys have no control
 * characters).
 */
export function sseChange(
  key: string,
  version: number,
  writer: number,
  value: Uint8Array | null,
  cursor: string,
): Uint8Array {
  const etag = JSON.stringify(`"${formatTs(version, writer)}"`);
  const data =
    value === null
      ? `{"key":${JSON.stringify(key)},"etag":${etag}}`
      : `{"key":${JSON.stringify(key)},"etag":${etag},"value":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64")}"}`;
  return encoder.encode(`event: ${value === null ? "delete" : "put"}\nid: ${cursor}\ndata: ${data}\n\n`);
}

/** `event: overflow` or `event: unavailable` with a reason; the stream closes after it. */
export function sseFinal(event: "overflow" | "unavailable", reason: string): Uint8Array {
  return encoder.encode(`event: ${event}\ndata: ${JSON.stringify({ reason })}\n\n`);
}
