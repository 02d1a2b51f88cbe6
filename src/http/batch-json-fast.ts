// The JSON batch's ops without valibot, for the ops that are trivially valid: the CPU profile of a
// shard worker answering batches of 64 put valibot's per-op pipeline at about a fifth of its time.
// An op is taken here only when it passes every rule of the op schema of routes-batch.ts as it is:
//   - a plain object with exactly its op's fields (counted: strictObject refuses any other);
//   - the key is 1..keyBytesMax printable ASCII characters (0x20-0x7E) and not "." or "..": then it
//     has no control character, is well-formed, and its UTF-8 length is its length;
//   - a value is padded standard base64 (the schema's own pattern) of at most valueBytesMax bytes
//     that decodes strictly;
//   - `by`, when present, is a safe integer.
// cas ops, and anything else (every invalid op among them), go to the valibot schema, which
// answers them as before: the same ops are accepted, with the same result, and every error message
// still comes from one place.

import { OpKind } from "../base/kinds.ts";
import type { OpRequest } from "../base/kv-backend.ts";

/** Standard base64 with padding (the op schema's pattern). */
export const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Bytes a well-formed base64 string decodes to. */
export function base64DecodedLength(text: string): number {
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

// Uint8Array.fromBase64 (TC39 "Uint8Array to/from base64", implemented by Bun).
interface Base64Codec {
  fromBase64(text: string, options: { lastChunkHandling: "strict" }): Uint8Array;
}
const base64Codec = Uint8Array as unknown as Base64Codec;

/** The bytes of strict canonical base64, or null when it is not (the schema says why). */
export function decodeBase64Strict(text: string): Uint8Array | null {
  try {
    return base64Codec.fromBase64(text, { lastChunkHandling: "strict" });
  } catch {
    return null;
  }
}

/** Parses the ops that need no more than the checks above; null: let the schema decide. */
export function createFastOpParser(keyBytesMax: number, valueBytesMax: number) {
  function plainKey(key: unknown): key is string {
    if (typeof key !== "string") return false;
    const length = key.length;
    if (length === 0 || length > keyBytesMax) return false;
    for (let i = 0; i < length; i++) {
      const c = key.charCodeAt(i);
      if (c < 0x20 || c > 0x7e) return false;
    }
    return !(key.charCodeAt(0) === 0x2e && (length === 1 || (length === 2 && key.charCodeAt(1) === 0x2e)));
  }

  function valueOf(value: unknown): Uint8Array | null {
    if (typeof value !== "string" || value.length % 4 !== 0) return null;
    if (base64DecodedLength(value) > valueBytesMax || !base64Pattern.test(value)) return null;
    return decodeBase64Strict(value);
  }

  /** Own enumerable fields of a JSON object (JSON.parse makes no other kind). */
  function fieldCount(o: object): number {
    let n = 0;
    for (const _ in o) n++;
    return n;
  }

  return function fastOp(input: unknown): OpRequest | null {
    if (typeof input !== "object" || input === null || Array.isArray(input)) return null;
    const o = input as Record<string, unknown>;
    const key = o.key;
    if (!plainKey(key)) return null;
    switch (o.op) {
      case "get":
        return fieldCount(o) === 2 ? { kind: OpKind.Read, key } : null;
      case "delete":
        return fieldCount(o) === 2 ? { kind: OpKind.Delete, key } : null;
      case "put":
      case "create": {
        if (fieldCount(o) !== 3) return null;
        const value = valueOf(o.value);
        if (value === null) return null;
        return { kind: o.op === "put" ? OpKind.Write : OpKind.Create, key, value };
      }
      case "incr": {
        const by = o.by;
        if (by === undefined) return "by" in o || fieldCount(o) !== 2 ? null : { kind: OpKind.Incr, key, by: 1 };
        if (typeof by !== "number" || !Number.isSafeInteger(by) || fieldCount(o) !== 3) return null;
        return { kind: OpKind.Incr, key, by };
      }
      default:
        return null;
    }
  };
}
