import { describe, expect, test } from "bun:test";
import { isAscii, utf8Check, utf8Decode, utf8Encode, utf8Length, Utf8Kind } from "../../src/base/utf8.ts";
import { prng } from "../lib/prng.ts";

/** Random UTF-16 strings that hit every encoder branch, lone surrogates included. */
function randomString(rand: () => number, lengthMax: number): string {
  const n = Math.floor(rand() * lengthMax);
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.4) s += String.fromCharCode(Math.floor(rand() * 0x80));
    else if (r < 0.6) s += String.fromCharCode(0x80 + Math.floor(rand() * (0x800 - 0x80)));
    else if (r < 0.75) s += String.fromCharCode(0x800 + Math.floor(rand() * (0xd800 - 0x800)));
    else if (r < 0.85) s += String.fromCodePoint(0x10000 + Math.floor(rand() * 0x100000));
    else if (r < 0.9)
      s += String.fromCharCode(0xd800 + Math.floor(rand() * 0x800)); // lone surrogate
    else s += String.fromCharCode(0xe000 + Math.floor(rand() * 0x2000));
  }
  return s;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

describe("utf8", () => {
  test("encode and length agree with TextEncoder, decode round-trips", () => {
    const rand = prng(1);
    const buf = new Uint8Array(1024);
    for (let i = 0; i < 3000; i++) {
      const s = randomString(rand, 40);
      const expected = encoder.encode(s);
      expect(utf8Length(s)).toBe(expected.length);
      const end = utf8Encode(s, buf, 10, buf.length);
      expect(end - 10).toBe(expected.length);
      expect(buf.subarray(10, end)).toEqual(expected);
      const kind = utf8Check(buf, 10, end);
      expect(kind).not.toBe(Utf8Kind.Invalid);
      expect(kind === Utf8Kind.Ascii).toBe(isAscii(buf, 10, end));
      // Lone surrogates became U+FFFD, so compare with what TextDecoder makes of the same bytes.
      expect(utf8Decode(buf, 10, end, kind)).toBe(strictDecoder.decode(expected));
    }
  });

  test("encode refuses when the bound is too small and reports -1", () => {
    const buf = new Uint8Array(16);
    expect(utf8Encode("abc", buf, 0, 2)).toBe(-1);
    expect(utf8Encode("abc", buf, 0, 3)).toBe(3);
    expect(utf8Encode("é", buf, 0, 1)).toBe(-1);
    expect(utf8Encode("€", buf, 0, 2)).toBe(-1);
    expect(utf8Encode("🔑", buf, 0, 3)).toBe(-1);
    expect(utf8Encode("🔑", buf, 0, 4)).toBe(4);
  });

  test("check agrees with a strict TextDecoder on random bytes", () => {
    const rand = prng(2);
    const buf = new Uint8Array(12);
    let invalid = 0;
    for (let i = 0; i < 50000; i++) {
      const n = Math.floor(rand() * buf.length);
      // Bias towards bytes that form (or almost form) multi-byte sequences.
      for (let k = 0; k < n; k++) buf[k] = rand() < 0.3 ? Math.floor(rand() * 0x80) : 0x80 + Math.floor(rand() * 0x80);
      let strictOk = true;
      try {
        strictDecoder.decode(buf.subarray(0, n));
      } catch {
        strictOk = false;
      }
      const kind = utf8Check(buf, 0, n);
      expect(kind !== Utf8Kind.Invalid).toBe(strictOk);
      if (!strictOk) invalid++;
    }
    expect(invalid).toBeGreaterThan(1000);
  });

  test("check rejects overlongs, surrogates, out-of-range and truncated sequences", () => {
    const bad = [
      [0xc0, 0x80],
      [0xc1, 0xbf],
      [0xe0, 0x80, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf0, 0x80, 0x80, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf5, 0x80, 0x80, 0x80],
      [0xe2, 0x82],
      [0x80],
      [0xff],
    ];
    for (const b of bad) expect(utf8Check(new Uint8Array(b), 0, b.length)).toBe(Utf8Kind.Invalid);
    const good = [
      [0x7f],
      [0xc2, 0x80],
      [0xe0, 0xa0, 0x80],
      [0xed, 0x9f, 0xbf],
      [0xf0, 0x90, 0x80, 0x80],
      [0xf4, 0x8f, 0xbf, 0xbf],
    ];
    for (const b of good) expect(utf8Check(new Uint8Array(b), 0, b.length)).not.toBe(Utf8Kind.Invalid);
    // A sequence cut by the range end is invalid even if the buffer continues.
    expect(utf8Check(new Uint8Array([0x41, 0xe2, 0x82, 0xac]), 0, 3)).toBe(Utf8Kind.Invalid);
  });

  test("decode reads SharedArrayBuffer-backed bytes", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(32));
    const end = utf8Encode("ключ🔑", shared, 3, shared.length);
    expect(utf8Decode(shared, 3, end, Utf8Kind.Valid)).toBe("ключ🔑");
    const endAscii = utf8Encode("plain", shared, 0, shared.length);
    expect(utf8Decode(shared, 0, endAscii, Utf8Kind.Ascii)).toBe("plain");
  });
});
