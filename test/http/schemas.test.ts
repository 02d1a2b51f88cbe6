// The validation rules on their own, and the positive side of the key rules: every valid key,
// percent-encoded as the CLI does, reaches the backend unchanged.

import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createApp } from "../../src/http/app.ts";
import { bySchema, createKeySchema, etagSchema, parseConfig, utf8ByteLength } from "../../src/http/schemas.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random UTF-16 strings, lone surrogates included (they are what a naive byte count gets wrong). */
function randomString(random: () => number, length: number): string {
  let text = "";
  for (let index = 0; index < length; index += 1) {
    const kind = random();
    if (kind < 0.4) text += String.fromCharCode(0x20 + Math.floor(random() * 0x5f));
    else if (kind < 0.6) text += String.fromCharCode(0xa0 + Math.floor(random() * 0x700));
    else if (kind < 0.75) text += String.fromCharCode(0x800 + Math.floor(random() * 0xd000));
    else if (kind < 0.9) text += String.fromCodePoint(0x10000 + Math.floor(random() * 0xfffff));
    else text += String.fromCharCode(0xd800 + Math.floor(random() * 0x800));
  }
  return text;
}

test("utf8ByteLength agrees with TextEncoder on random strings", () => {
  const random = prng(7);
  const encoder = new TextEncoder();
  for (let index = 0; index < 2000; index += 1) {
    const text = randomString(random, Math.floor(random() * 20));
    expect(utf8ByteLength(text)).toBe(encoder.encode(text).length);
  }
});

describe("etagSchema", () => {
  test("accepts our ETags and returns the timestamp", () => {
    expect(v.parse(etagSchema, '"2.1"')).toEqual({ version: 2, writer: 1 });
    expect(v.parse(etagSchema, '"1.0"')).toEqual({ version: 1, writer: 0 });
    expect(v.parse(etagSchema, '"9007199254740991.31"')).toEqual({ version: 9007199254740991, writer: 31 });
    // A writer id of a restarted process (incarnation 1 of node 1), and the largest u32 writer id.
    expect(v.parse(etagSchema, '"3.33"')).toEqual({ version: 3, writer: 33 });
    expect(v.parse(etagSchema, '"3.4294967295"')).toEqual({ version: 3, writer: 4294967295 });
  });

  test("explains the usual mistakes", () => {
    const message = (text: string) => {
      const result = v.safeParse(etagSchema, text, parseConfig);
      expect(result.success).toBe(false);
      return result.issues![0].message;
    };
    expect(message("2.1")).toContain("must be quoted");
    expect(message('W/"2.1"')).toContain("weak");
    expect(message("*")).toContain("If-None-Match: *");
    expect(message('"0.0"')).toContain("If-None-Match: *");
    expect(message('"1.1", "2.1"')).toContain("only one");
    expect(message('"1.4294967296"')).toContain("largest writer id");
    expect(message('"1.01"')).toContain("malformed");
    expect(message('"9007199254740992.1"')).toContain("2^53");
  });
});

test("bySchema takes signed decimal safe integers only", () => {
  expect(v.parse(bySchema, "-42")).toBe(-42);
  expect(v.parse(bySchema, "+7")).toBe(7);
  expect(v.parse(bySchema, "9007199254740991")).toBe(9007199254740991);
  for (const bad of ["", "1.0", "1e2", "9007199254740992", "0x1", " 1"])
    expect(v.safeParse(bySchema, bad).success).toBe(false);
});

test("the key size check is the one answered 413", () => {
  const keys = createKeySchema(8);
  const result = v.safeParse(keys.schema, "ééééé", parseConfig);
  expect(result.success).toBe(false);
  expect(result.issues![0].requirement).toBe(keys.fitsKeyBytes);
  expect(v.safeParse(keys.schema, "éééé", parseConfig).success).toBe(true);
});

test("random valid keys, percent-encoded, reach the backend unchanged", async () => {
  const random = prng(11);
  const backend = new MemoryBackend({ keyBytesMax: 256 });
  const app = createApp(backend);
  let checked = 0;
  for (let index = 0; index < 300; index += 1) {
    // Well-formed UTF-16 only: encodeURIComponent refuses lone surrogates.
    const key = randomString(random, 1 + Math.floor(random() * 30)).replace(/[\ud800-\udfff]/g, "x");
    if (key === "." || key === ".." || utf8ByteLength(key) > 256) continue;
    const response = await app.request(`/v1/kv/${encodeURIComponent(key)}`, { method: "PUT", body: key });
    expect(response.status).toBe(200);
    expect(backend.lastSubmitted?.key).toBe(key);
    checked += 1;
  }
  expect(checked).toBeGreaterThan(250);
});
