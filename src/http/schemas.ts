// valibot schemas for everything a client sends: keys, ETags, If-None-Match, `by`, Content-Length.
// Each schema yields either the typed value or one issue whose message is fit to show a user.
//
// Key rules (also stated in the 400 message, see keyRulesText):
//   - the key is the request path after `/v1/kv/` (for incr: before the final `/incr`),
//     percent-decoded as UTF-8; a malformed escape or invalid UTF-8 is rejected;
//   - it is not empty and at most keyBytesMax UTF-8 bytes (over that: 413, not 400);
//   - it has no control characters (U+0000-U+001F, U+007F-U+009F): they break logs and terminals;
//   - it is not "." or "..": HTTP clients resolve those path segments away before sending, so such
//     a key could be written by one client and be unreachable for another.
//   `/` is an ordinary character, as in Consul (`a/b/c`); clients may also send it as %2F.

import * as v from "valibot";
import { writerIdMax } from "../base/ids.ts";

export const keyRulesText =
  "a key is the percent-encoded UTF-8 path after /v1/kv/: non-empty, no control characters (U+0000-U+001F, U+007F-U+009F), not '.' or '..'";

/** The same rules as they apply to a key inside POST /v1/batch, where it is a JSON string. */
export const batchKeyRulesText =
  "a key is a JSON string of UTF-8 text: non-empty, no control characters (U+0000-U+001F, U+007F-U+009F), not '.' or '..'";

/** Stop at the first failed check so that the message names the first rule broken. */
export const parseConfig = { abortPipeEarly: true } as const;

const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;

/** UTF-8 length of a JS string without encoding it (no allocation). A lone surrogate counts 3 (U+FFFD). */
export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let index = 0; index < text.length; index += 1) {
    const unit = text.charCodeAt(index);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && index + 1 < text.length) {
      const next = text.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        index += 1;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** `rulesText` ends the 400 messages: the single routes explain URL keys, batches JSON keys. */
export function createKeySchema(keyBytesMax: number, rulesText: string = keyRulesText) {
  // One UTF-16 unit is at most 3 UTF-8 bytes, so short keys skip the count.
  const fitsKeyBytes = (key: string): boolean => key.length * 3 <= keyBytesMax || utf8ByteLength(key) <= keyBytesMax;
  return {
    schema: v.pipe(
      v.string(),
      v.nonEmpty(`the key is empty; ${rulesText}`),
      v.check((key: string) => !controlCharacter.test(key), `the key contains a control character; ${rulesText}`),
      v.check((key: string) => key !== "." && key !== "..", `the key is '.' or '..'; ${rulesText}`),
      v.check(fitsKeyBytes, `the key is longer than ${keyBytesMax} UTF-8 bytes`),
    ),
    /** The requirement of the size check: an issue with it is answered 413, any other 400. */
    fitsKeyBytes,
  };
}

export type KeySchema = ReturnType<typeof createKeySchema>;

/** A Hermes timestamp as carried in an ETag: `"version.writer"`, strong, quoted, no leading zeros. */
export interface EtagTs {
  version: number;
  writer: number;
}

// Version 0 is "never written": no ETag we send has it (see etagMessage for why it is refused).
// The writer is a u32 writer id (incarnation and node id, src/base/ids.ts): up to 10 digits.
const etagPattern = /^"([1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,9})"$/;

/** Explain a bad ETag by the most likely mistake, so that the user knows what to send instead. */
function etagMessage(issue: { input: unknown }): string {
  const input = typeof issue.input === "string" ? issue.input : "";
  const shown = JSON.stringify(input.length > 64 ? `${input.slice(0, 64)}...` : input);
  const suffix = `; expected one strong ETag as sent by GET or PUT, e.g. "3.1" (quotes included), got ${shown}`;
  if (input.trim() === "*")
    return `If-Match: * is not supported (use If-None-Match: * to create only if absent)${suffix}`;
  if (input.startsWith("W/")) return `weak ETags cannot be used for a compare-and-set${suffix}`;
  if (input.includes(",")) return `only one ETag is accepted${suffix}`;
  if (/^"?0\.[0-9]+"?$/.test(input))
    return `version 0 means never written; to create a key only if absent use If-None-Match: *${suffix}`;
  if (/^[0-9]+\.[0-9]+$/.test(input)) return `the ETag must be quoted${suffix}`;
  return `malformed ETag${suffix}`;
}

export const etagSchema = v.pipe(
  v.string(),
  v.regex(etagPattern, etagMessage),
  v.transform((text: string): EtagTs => {
    const dot = text.indexOf(".");
    return { version: Number(text.slice(1, dot)), writer: Number(text.slice(dot + 1, -1)) };
  }),
  v.check((ts: EtagTs) => Number.isSafeInteger(ts.version), "the ETag version is larger than 2^53-1"),
  v.check(
    (ts: EtagTs) => ts.writer <= writerIdMax,
    `the ETag writer is larger than the largest writer id ${writerIdMax}`,
  ),
);

/** If-None-Match on PUT: only `*` ("create only if absent"); ETag lists would mean nothing for a write. */
export const ifNoneMatchSchema = v.literal("*", "If-None-Match supports only * (create only if absent)");

/** `?by=N` of incr: a decimal safe integer, optionally signed. */
export const bySchema = v.pipe(
  v.string(),
  v.regex(/^[+-]?[0-9]{1,16}$/, (issue) => `by must be a decimal integer, got ${issue.received}`),
  v.transform(Number),
  v.safeInteger("by must be between -(2^53-1) and 2^53-1"),
);

/** Content-Length as a client sent it (Bun's parser checks real requests; app.request() does not). */
export const contentLengthSchema = v.pipe(
  v.string(),
  // Any number of digits: an absurd length is "too large" (413), not "invalid" (400).
  v.regex(/^[0-9]+$/, "Content-Length must be a decimal byte count"),
  v.transform(Number),
);
