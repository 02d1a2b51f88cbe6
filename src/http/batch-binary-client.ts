// The client side of the binary batch format (batch-binary.ts has the spec): encode ops into a
// request body, read a response's results. Used by `hermes-kv batch --binary`, the load tool and
// the tests; a client in another language needs only the spec.

import { assert } from "../base/assert.ts";
import { etagOf } from "./outcomes.ts";
import {
  BinaryFlag,
  BinaryOp,
  batchBinaryHeaderBytes,
  batchBinaryMagic,
  binaryRetryAfterSeconds,
  writeInt64,
} from "./batch-binary.ts";

export type BinaryOpName = keyof typeof BinaryOp;

/** One op as a client states it: the JSON form's fields, with raw bytes for values. */
export type BinaryBatchOp =
  | { op: "get" | "delete"; key: string }
  | { op: "put" | "create"; key: string; value: Uint8Array }
  | { op: "cas"; key: string; etag: string; value: Uint8Array }
  | { op: "incr"; key: string; by?: number };

/** One result, field for field the JSON form's, with the value of a get as raw bytes. */
export interface BinaryBatchResult {
  status: number;
  value?: Uint8Array | number;
  etag?: string;
  retryAfter?: number;
  outcome?: "unknown";
  error?: { code: string; message: string; etag?: string };
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
const twoTo32 = 0x1_0000_0000;
/** The ETag a client holds: `"version.writer"`, quotes included. */
const etagPattern = /^"([1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,9})"$/;

/** A client-side mistake in a batch about to be sent (nothing was sent). */
export class BinaryBatchError extends Error {
  override name = "BinaryBatchError";
}

/** The request body of `ops`. Keys longer than the u16 field, or bad ETags, throw BinaryBatchError. */
export function encodeBinaryBatch(ops: readonly BinaryBatchOp[]): Uint8Array {
  const keys = ops.map((op) => utf8.encode(op.key));
  let size = batchBinaryHeaderBytes;
  for (const [i, op] of ops.entries()) {
    if (keys[i]!.length > 0xffff) throw new BinaryBatchError(`ops[${i}].key: longer than 65535 bytes`);
    size += 3 + keys[i]!.length;
    if (op.op === "cas") size += 12;
    if (op.op === "put" || op.op === "create" || op.op === "cas") size += 4 + op.value.length;
    if (op.op === "incr") size += 8;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(batchBinaryMagic, 0);
  view.setUint32(4, ops.length, true);
  let at = batchBinaryHeaderBytes;
  for (const [i, op] of ops.entries()) {
    const code = BinaryOp[op.op];
    if (code === undefined) throw new BinaryBatchError(`ops[${i}].op: unknown op ${JSON.stringify(op.op)}`);
    const key = keys[i]!;
    out[at] = code;
    view.setUint16(at + 1, key.length, true);
    out.set(key, at + 3);
    at += 3 + key.length;
    if (op.op === "cas") {
      const match = etagPattern.exec(op.etag);
      if (match === null) throw new BinaryBatchError(`ops[${i}].etag: not an ETag such as "3.1" (quotes included)`);
      const version = Number(match[1]);
      view.setUint32(at, version % twoTo32, true);
      view.setUint32(at + 4, Math.floor(version / twoTo32), true);
      view.setUint32(at + 8, Number(match[2]), true);
      at += 12;
    }
    if (op.op === "put" || op.op === "create" || op.op === "cas") {
      view.setUint32(at, op.value.length, true);
      out.set(op.value, at + 4);
      at += 4 + op.value.length;
    }
    if (op.op === "incr") {
      const by = op.by ?? 1;
      if (!Number.isSafeInteger(by)) throw new BinaryBatchError(`ops[${i}].by: not a safe integer`);
      writeInt64(view, at, by);
      at += 8;
    }
  }
  assert(at === size, "the batch fills exactly the size computed for it");
  return out;
}

/**
 * Walks the results of a binary answer without building objects: `onResult(index, status, flags,
 * version, writer, valueAt, valueLength, at)` per result (version 0 without an etag; valueAt -1
 * without a value; `at` where the result's error or incr value starts). Returns the number of
 * results, or a message when the body is not a well-formed answer.
 */
export function scanBinaryResults(
  body: Uint8Array,
  onResult: (
    index: number,
    status: number,
    flags: number,
    version: number,
    writer: number,
    valueAt: number,
    valueLength: number,
    at: number,
  ) => void,
  /** The op code of each result's op (a get's 200 carries a value, an incr's 200 a number). */
  opCodes: ArrayLike<number>,
): number | string {
  const end = body.length;
  if (end < batchBinaryHeaderBytes) return "the answer is shorter than its header";
  for (let i = 0; i < batchBinaryMagic.length; i++)
    if (body[i] !== batchBinaryMagic[i]) return 'the answer does not start with "HKB" 0x01';
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = view.getUint32(4, true);
  if (count !== opCodes.length) return `the answer has ${count} results for ${opCodes.length} ops`;
  let at = batchBinaryHeaderBytes;
  for (let index = 0; index < count; index++) {
    if (at + 3 > end) return `the answer ends inside result ${index}`;
    const status = view.getUint16(at, true);
    const flags = body[at + 2]!;
    at += 3;
    let version = 0;
    let writer = 0;
    if ((flags & BinaryFlag.etag) !== 0) {
      if (at + 12 > end) return `the answer ends inside result ${index}'s etag`;
      version = view.getUint32(at + 4, true) * twoTo32 + view.getUint32(at, true);
      writer = view.getUint32(at + 8, true);
      at += 12;
    }
    let valueAt = -1;
    let valueLength = 0;
    const start = at;
    if (status === 200) {
      if (opCodes[index] === BinaryOp.get) {
        if (at + 4 > end) return `the answer ends inside result ${index}'s value`;
        valueLength = view.getUint32(at, true);
        valueAt = at + 4;
        at = valueAt + valueLength;
      } else if (opCodes[index] === BinaryOp.incr) at += 8;
    } else {
      if (at + 1 > end) return `the answer ends inside result ${index}'s error`;
      at += 1 + body[at]!;
      if (at + 2 > end) return `the answer ends inside result ${index}'s error`;
      at += 2 + view.getUint16(at, true);
    }
    if (at > end) return `the answer ends inside result ${index}`;
    onResult(index, status, flags, version, writer, valueAt, valueLength, start);
  }
  if (at !== end) return `the answer has ${end - at} bytes after its last result`;
  return count;
}

/** The results of a binary answer to `ops`, as objects (the JSON form's fields); a message when malformed. */
export function decodeBinaryResults(body: Uint8Array, ops: readonly BinaryBatchOp[]): BinaryBatchResult[] | string {
  const codes = ops.map((op) => BinaryOp[op.op]);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const results: BinaryBatchResult[] = [];
  const scanned = scanBinaryResults(
    body,
    (index, status, flags, version, writer, valueAt, valueLength, at) => {
      const result: BinaryBatchResult = { status };
      if (status === 200) {
        if (valueAt >= 0) result.value = body.slice(valueAt, valueAt + valueLength);
        else if (codes[index] === BinaryOp.incr)
          result.value = view.getInt32(at + 4, true) * twoTo32 + view.getUint32(at, true);
      }
      // The JSON form's field order: etag, retryAfter, outcome, error.
      if ((flags & BinaryFlag.etag) !== 0) result.etag = etagOf(version, writer);
      if ((flags & BinaryFlag.retryAfter) !== 0) result.retryAfter = binaryRetryAfterSeconds;
      if ((flags & BinaryFlag.outcomeUnknown) !== 0) result.outcome = "unknown";
      if (status !== 200) {
        const codeLength = body[at]!;
        const code = utf8Decoder.decode(body.subarray(at + 1, at + 1 + codeLength));
        const messageAt = at + 1 + codeLength;
        const message = utf8Decoder.decode(
          body.subarray(messageAt + 2, messageAt + 2 + view.getUint16(messageAt, true)),
        );
        result.error = { code, message };
        // A 412 carries its etag in the error too, as the JSON form's error.etag.
        if (status === 412 && result.etag !== undefined) result.error.etag = result.etag;
      }
      results.push(result);
    },
    codes,
  );
  return typeof scanned === "string" ? scanned : results;
}
