// The binary form of POST /v1/batch (Content-Type: application/vnd.hermes-kv.batch): the same ops,
// results, statuses and limits as the JSON form (routes-batch.ts), framed as length-prefixed fields
// with raw value bytes. It exists for speed: a JSON batch costs a parse, a validation per op object
// and base64 both ways; this one is read in place from the request bytes and answered into one
// buffer sized before it is written. Request-level errors (400, 413, 415) are the JSON error bodies
// of every other route, so a client handles them one way.
//
// Every integer is little-endian. A request:
//
//   header   "HKB" 0x01 (magic and format version 1), u32 op count (at most batchOpsMax)
//   op       u8 op (0 get, 1 put, 2 cas, 3 create, 4 delete, 5 incr: batchOpNames' order)
//            u16 key length, key (UTF-8, the key rules of the JSON form)
//            cas:                 u64 etag version (1..2^53-1), u32 etag writer
//            put, cas, create:    u32 value length (at most valueBytesMax), value bytes
//            incr:                i64 by (a safe integer)
//
// nothing after the last op. A response (200, the same Content-Type):
//
//   header   "HKB" 0x01, u32 result count (= op count, in request order)
//   result   u16 status, u8 flags (1: etag, 2: Retry-After, 4: outcome unknown)
//            flag 1:              u64 etag version, u32 etag writer
//            200 get:             u32 value length, value bytes
//            200 incr:            i64 the new value
//            any other status:    u8 error code length, code (ASCII), u16 message length, message (UTF-8)
//
// The fields are the JSON result's (`etag`, `retryAfter`, `outcome`, `error.code`, `error.message`;
// a 412's `error.etag` is its etag): batch-binary-client.ts turns one into the other exactly.

import * as v from "valibot";
import { assert } from "../base/assert.ts";
import { writerIdMax } from "../base/ids.ts";
import { OpKind } from "../base/kinds.ts";
import type { OpRequest, OpResult } from "../base/kv-backend.ts";
import { invalidInput, retryAfterSeconds, tooLarge } from "./errors.ts";
import { batchOpNames } from "./metrics.ts";
import { failureOf, incrValueOf } from "./outcomes.ts";
import { createKeySchema, parseConfig } from "./schemas.ts";

/** The Content-Type of binary batches, both ways. */
export const batchBinaryType = "application/vnd.hermes-kv.batch";

/** "HKB" and the format version. */
export const batchBinaryMagic = Uint8Array.of(0x48, 0x4b, 0x42, 0x01);
export const batchBinaryHeaderBytes = 8;

/** Op codes on the wire: the index of the op's name in batchOpNames. */
export const BinaryOp = { get: 0, put: 1, cas: 2, create: 3, delete: 4, incr: 5 } as const;
const kindOfCode: readonly OpKind[] = [
  OpKind.Read,
  OpKind.Write,
  OpKind.Cas,
  OpKind.Create,
  OpKind.Delete,
  OpKind.Incr,
];

/** Result flags. */
export const BinaryFlag = { etag: 1, retryAfter: 2, outcomeUnknown: 4 } as const;

export const binaryKeyRulesText =
  "a key is UTF-8 text: non-empty, no control characters (U+0000-U+001F, U+007F-U+009F), not '.' or '..'";

const formatHint = `expected the binary batch format of the README (header "HKB" 0x01, u32 op count, then the ops)`;
const twoTo32 = 0x1_0000_0000;
// ignoreBOM: a key that starts with U+FEFF keeps it (the default would drop it silently).
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8 = new TextEncoder();

/** Reads a binary batch request; one per route (it holds the node's key and value limits). */
export function createBinaryBatchReader(keyBytesMax: number, valueBytesMax: number, opsMax: number) {
  const keys = createKeySchema(keyBytesMax, binaryKeyRulesText);

  /** The key of bytes [at, at+length) that is not plain printable ASCII: the full rules, or the error. */
  function slowKey(body: Uint8Array, at: number, length: number, field: string): string | Response {
    let key: string;
    try {
      key = utf8Strict.decode(body.subarray(at, at + length));
    } catch {
      return invalidInput(field, `${field}: the key is not valid UTF-8; ${binaryKeyRulesText}`);
    }
    const parsed = v.safeParse(keys.schema, key, parseConfig);
    if (parsed.success) return key;
    return invalidInput(field, `${field}: ${parsed.issues[0].message}`);
  }

  /** The ops of a binary batch, every one checked, or the 400/413 answer for the first fault. */
  return function readBinaryBatch(body: Uint8Array): OpRequest[] | Response {
    const end = body.length;
    if (end < batchBinaryHeaderBytes)
      return invalidInput("body", `the body is ${end} bytes, shorter than the header; ${formatHint}`);
    for (let i = 0; i < batchBinaryMagic.length; i++) {
      if (body[i] !== batchBinaryMagic[i])
        return invalidInput("body", `the body does not start with "HKB" 0x01; ${formatHint}`);
    }
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    // A Buffer view for toString("latin1"): measured the cheapest string of a short ASCII key.
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const count = view.getUint32(4, true);
    if (count > opsMax) return tooLarge("ops", `the batch has ${count} ops; the most accepted is ${opsMax}`);
    const ops = new Array<OpRequest>(count);
    let at = batchBinaryHeaderBytes;
    for (let index = 0; index < count; index++) {
      if (at + 3 > end)
        return invalidInput(`ops[${index}]`, `ops[${index}]: the body ends inside the op; ${formatHint}`);
      const code = body[at]!;
      const kind = kindOfCode[code];
      if (kind === undefined) {
        return invalidInput(
          `ops[${index}].op`,
          `ops[${index}].op: unknown op code ${code}; expected 0-5 (${batchOpNames.join(", ")})`,
        );
      }
      const keyLength = body[at + 1]! | (body[at + 2]! << 8);
      at += 3;
      const keyField = `ops[${index}].key`;
      if (keyLength === 0) return invalidInput(keyField, `${keyField}: the key is empty; ${binaryKeyRulesText}`);
      if (keyLength > keyBytesMax)
        return tooLarge(keyField, `${keyField}: the key is longer than ${keyBytesMax} UTF-8 bytes`);
      if (at + keyLength > end)
        return invalidInput(keyField, `${keyField}: the body ends inside the key; ${formatHint}`);
      let plain = true;
      for (let i = at; i < at + keyLength; i++) {
        const b = body[i]!;
        if (b < 0x20 || b > 0x7e) {
          plain = false;
          break;
        }
      }
      // Printable ASCII passes every key rule but "." and "..": take it as it is (latin1 = ASCII here).
      const dots = (keyLength === 1 || keyLength === 2) && body[at] === 0x2e && body[at + keyLength - 1] === 0x2e;
      let key: string | Response;
      if (plain && !dots) key = bytes.toString("latin1", at, at + keyLength);
      else key = slowKey(body, at, keyLength, keyField);
      if (typeof key !== "string") return key;
      // The key's bytes as read: the backend looks the key up by them (the body outlives the batch's ops).
      const keyAt = at;
      at += keyLength;
      let expectedVersion = 0;
      let expectedWriter = 0;
      if (kind === OpKind.Cas) {
        const field = `ops[${index}].etag`;
        if (at + 12 > end) return invalidInput(field, `${field}: the body ends inside the etag; ${formatHint}`);
        const high = view.getUint32(at + 4, true);
        expectedVersion = high * twoTo32 + view.getUint32(at, true);
        expectedWriter = view.getUint32(at + 8, true);
        at += 12;
        if (expectedVersion === 0) {
          return invalidInput(
            field,
            `${field}: version 0 means never written; to create a key only if absent use a create op`,
          );
        }
        if (!Number.isSafeInteger(expectedVersion))
          return invalidInput(field, `${field}: the ETag version is larger than 2^53-1`);
        if (expectedWriter > writerIdMax)
          return invalidInput(field, `${field}: the ETag writer is larger than the largest writer id ${writerIdMax}`);
      }
      if (kind === OpKind.Write || kind === OpKind.Cas || kind === OpKind.Create) {
        const field = `ops[${index}].value`;
        if (at + 4 > end)
          return invalidInput(field, `${field}: the body ends inside the value's length; ${formatHint}`);
        const valueLength = view.getUint32(at, true);
        at += 4;
        if (valueLength > valueBytesMax)
          return tooLarge(
            field,
            `${field}: the value is ${valueLength} bytes; the largest accepted is ${valueBytesMax}`,
          );
        if (at + valueLength > end)
          return invalidInput(field, `${field}: the body ends inside the value; ${formatHint}`);
        // A view of the request body, which nothing else holds: no copy.
        const value = body.subarray(at, at + valueLength);
        at += valueLength;
        ops[index] =
          kind === OpKind.Cas
            ? { kind, key, keyBytes: body, keyAt, keyLength, value, expectedVersion, expectedWriter }
            : { kind, key, keyBytes: body, keyAt, keyLength, value };
        continue;
      }
      if (kind === OpKind.Incr) {
        const field = `ops[${index}].by`;
        if (at + 8 > end) return invalidInput(field, `${field}: the body ends inside by; ${formatHint}`);
        const by = view.getInt32(at + 4, true) * twoTo32 + view.getUint32(at, true);
        at += 8;
        if (!Number.isSafeInteger(by)) return invalidInput(field, `${field}: by must be between -(2^53-1) and 2^53-1`);
        ops[index] = { kind, key, keyBytes: body, keyAt, keyLength, by };
        continue;
      }
      ops[index] = { kind, key, keyBytes: body, keyAt, keyLength };
    }
    if (at !== end) {
      return invalidInput("body", `the body has ${end - at} bytes after the last of its ${count} ops; ${formatHint}`);
    }
    return ops;
  };
}

/** Error codes and messages as bytes, made once per distinct text (there are a few dozen). */
const textBytes = new Map<string, Uint8Array>();
/** Distinct texts kept; a 412's message names an ETag, so the set is cleared when full, never grown. */
const textBytesMax = 1024;

function bytesOf(text: string): Uint8Array {
  let bytes = textBytes.get(text);
  if (bytes === undefined) {
    if (textBytes.size >= textBytesMax) textBytes.clear();
    bytes = utf8.encode(text);
    textBytes.set(text, bytes);
  }
  return bytes;
}

/**
 * The binary answer to `ops` with their `results`: sized first, then written into one buffer.
 * `onResult` is told each op's HTTP status (the per-op metrics).
 */
export function writeBinaryResults(
  ops: readonly OpRequest[],
  results: readonly OpResult[],
  onResult: (kind: OpKind, status: number) => void,
): Uint8Array {
  const count = ops.length;
  assert(results.length === count, "one result per op");
  // Pass 1: the size, and each failure (null for a success) kept for pass 2.
  let size = batchBinaryHeaderBytes;
  for (let i = 0; i < count; i++) {
    const op = ops[i]!;
    const result = results[i]!;
    const failure = failureOf(op.kind, result);
    size += 3;
    if (failure === null) {
      // A broken backend contract: the app's error handler answers 500, as on the single routes.
      assert(result.version > 0, "a successful op has version 0");
      size += 12;
      if (op.kind === OpKind.Read) size += 4 + result.value!.length;
      else if (op.kind === OpKind.Incr) size += 8;
      onResult(op.kind, 200);
      continue;
    }
    if (failure.etag !== undefined) size += 12;
    size += 1 + bytesOf(failure.code).length + 2 + bytesOf(failure.message).length;
    onResult(op.kind, failure.status);
  }
  // The ArrayBuffer first: `.buffer` of a new small Uint8Array makes the engine move its bytes out
  // of line (1 % of a shard worker's time on binary batches, in writeBinaryResults' `get buffer`).
  const buffer = new ArrayBuffer(size);
  const out = new Uint8Array(buffer);
  const view = new DataView(buffer);
  out.set(batchBinaryMagic, 0);
  view.setUint32(4, count, true);
  let at = batchBinaryHeaderBytes;
  for (let i = 0; i < count; i++) {
    const op = ops[i]!;
    const result = results[i]!;
    const failure = failureOf(op.kind, result);
    if (failure === null) {
      view.setUint16(at, 200, true);
      out[at + 2] = BinaryFlag.etag;
      at = writeTs(view, at + 3, result.version, result.writer);
      if (op.kind === OpKind.Read) {
        const value = result.value!;
        view.setUint32(at, value.length, true);
        out.set(value, at + 4);
        at += 4 + value.length;
      } else if (op.kind === OpKind.Incr) {
        writeInt64(view, at, incrValueOf(result));
        at += 8;
      }
      continue;
    }
    view.setUint16(at, failure.status, true);
    const flags =
      (failure.etag !== undefined ? BinaryFlag.etag : 0) |
      (failure.retryAfter ? BinaryFlag.retryAfter : 0) |
      (failure.outcomeUnknown ? BinaryFlag.outcomeUnknown : 0);
    out[at + 2] = flags;
    at += 3;
    // failureOf only sets an etag from the result's own timestamp.
    if (failure.etag !== undefined) at = writeTs(view, at, result.version, result.writer);
    const code = bytesOf(failure.code);
    out[at] = code.length;
    out.set(code, at + 1);
    at += 1 + code.length;
    const message = bytesOf(failure.message);
    view.setUint16(at, message.length, true);
    out.set(message, at + 2);
    at += 2 + message.length;
  }
  assert(at === size, "the answer fills exactly the size computed for it");
  return out;
}

function writeTs(view: DataView, at: number, version: number, writer: number): number {
  view.setUint32(at, version % twoTo32, true);
  view.setUint32(at + 4, Math.floor(version / twoTo32), true);
  view.setUint32(at + 8, writer, true);
  return at + 12;
}

/** A safe integer as i64 little-endian. */
export function writeInt64(view: DataView, at: number, value: number): void {
  const high = Math.floor(value / twoTo32);
  view.setUint32(at, value - high * twoTo32, true);
  view.setInt32(at + 4, high, true);
}

/** Retry-After of a result with the flag, as the JSON form's `retryAfter`. */
export const binaryRetryAfterSeconds = retryAfterSeconds;
