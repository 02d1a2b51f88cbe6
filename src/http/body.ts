// Read a request body with a hard byte limit, without ever holding more than the limit.
//
// Content-Length is checked by the caller before this runs; this also counts the bytes actually
// received, because a chunked body has no length and a Request built in-process (app.request())
// may carry a Content-Length that does not match its body.

/** The body exceeded the limit; the stream was cancelled. */
export const bodyTooLarge = Symbol("bodyTooLarge");
/** The body stream failed (the client went away mid-body): answered 400, nothing submitted. */
export const bodyUnreadable = Symbol("bodyUnreadable");

const emptyBody = new Uint8Array(0);

export async function readBodyBounded(
  body: ReadableStream<Uint8Array> | null,
  bytesMax: number,
  bytesExpected: number,
): Promise<Uint8Array | typeof bodyTooLarge | typeof bodyUnreadable> {
  if (body === null) return emptyBody;
  const reader = body.getReader();
  // The common case is one chunk: keep it as is, copy nothing.
  let single: Uint8Array | null = null;
  let buffer: Uint8Array | null = null;
  let length = 0;
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch {
        return bodyUnreadable;
      }
      const { done, value } = chunk;
      if (done) break;
      if (value.byteLength === 0) continue;
      if (length + value.byteLength > bytesMax) {
        await reader.cancel();
        return bodyTooLarge;
      }
      if (single === null && buffer === null) {
        single = value;
        length = value.byteLength;
        continue;
      }
      if (buffer === null) {
        buffer = new Uint8Array(Math.min(bytesMax, Math.max(bytesExpected, 2 * (length + value.byteLength))));
        buffer.set(single!, 0);
        single = null;
      } else if (length + value.byteLength > buffer.byteLength) {
        const grown: Uint8Array = new Uint8Array(
          Math.min(bytesMax, Math.max(2 * buffer.byteLength, length + value.byteLength)),
        );
        grown.set(buffer.subarray(0, length), 0);
        buffer = grown;
      }
      buffer.set(value, length);
      length += value.byteLength;
    }
  } finally {
    reader.releaseLock();
  }
  if (single !== null) return single;
  return buffer === null ? emptyBody : buffer.subarray(0, length);
}
