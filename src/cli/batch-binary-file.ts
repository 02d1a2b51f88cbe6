// `hermes-kv batch --binary`: the batch file stays the JSON request (the README's form), and the
// command sends it in the binary format (batch-binary.ts) and prints the binary answer as the JSON
// results, so that the output is the same in both formats. Only the shape is checked here (ops,
// fields, base64): the node checks everything else, with the same rules in both formats.

import { base64Pattern, decodeBase64Strict } from "../http/batch-json-fast.ts";
import type { BinaryBatchOp, BinaryBatchResult } from "../http/batch-binary-client.ts";
import { UsageError } from "./args.ts";

const shapes: Record<string, readonly string[]> = {
  get: ["op", "key"],
  delete: ["op", "key"],
  put: ["op", "key", "value"],
  create: ["op", "key", "value"],
  cas: ["op", "key", "etag", "value"],
  incr: ["op", "key", "by"],
};

/** The ops of a JSON batch request, for the binary format; a UsageError says what is wrong. */
export function binaryOpsOfJson(text: string, source: string): BinaryBatchOp[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`the batch on ${source} is not valid JSON: ${(error as Error).message}`);
  }
  const ops = (json as { ops?: unknown } | null)?.ops;
  if (typeof json !== "object" || json === null || Array.isArray(json) || !Array.isArray(ops))
    throw new UsageError(`the batch on ${source} is not {"ops":[...]}`);
  return ops.map((item: unknown, index): BinaryBatchOp => {
    const where = `ops[${index}]`;
    if (typeof item !== "object" || item === null || Array.isArray(item))
      throw new UsageError(`${where} is not a JSON object`);
    const o = item as Record<string, unknown>;
    const op = o.op;
    const fields = typeof op === "string" ? shapes[op] : undefined;
    if (fields === undefined) throw new UsageError(`${where}.op is not one of ${Object.keys(shapes).join(", ")}`);
    for (const name of Object.keys(o))
      if (!fields.includes(name)) throw new UsageError(`${where} has the unknown field "${name}"`);
    if (typeof o.key !== "string") throw new UsageError(`${where}.key is not a string`);
    const key = o.key;
    const value = (): Uint8Array => {
      const bytes = typeof o.value === "string" && base64Pattern.test(o.value) ? decodeBase64Strict(o.value) : null;
      if (bytes === null) throw new UsageError(`${where}.value is not base64 (standard alphabet, with = padding)`);
      return bytes;
    };
    switch (op) {
      case "get":
      case "delete":
        return { op, key };
      case "put":
      case "create":
        return { op, key, value: value() };
      case "cas":
        if (typeof o.etag !== "string") throw new UsageError(`${where}.etag is not a string such as "\\"3.1\\""`);
        return { op, key, etag: o.etag, value: value() };
      default: {
        const by = o.by ?? 1;
        if (typeof by !== "number" || !Number.isSafeInteger(by))
          throw new UsageError(`${where}.by is not an integer between -(2^53-1) and 2^53-1`);
        return { op: "incr", key, by };
      }
    }
  });
}

/** A binary result as the JSON form's result (a get's value in base64). */
export function jsonResultOf(result: BinaryBatchResult): Record<string, unknown> {
  // In the JSON form's field order: status, value, etag, retryAfter, outcome, error.
  const { status, value, ...rest } = result;
  if (value === undefined) return { status, ...rest };
  return { status, value: typeof value === "number" ? value : Buffer.from(value).toString("base64"), ...rest };
}
