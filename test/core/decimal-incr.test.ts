// Incr's in-place decimal arithmetic (src/core/decimal-incr.ts) against the definition it replaced:
// decode the value, match it with a regular expression, add in doubles, encode the sum.

import { describe, expect, test } from "bun:test";
import { incrementInto, incrTextBytesMax } from "../../src/core/decimal-incr.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The reference: the value as a safe decimal integer plus `by`, as text; null if not a number. */
function reference(value: string | null, by: number): string | null {
  let current = 0;
  if (value !== null) {
    if (!/^-?(0|[1-9][0-9]{0,15})$/.test(value)) return null;
    current = Number(value);
  }
  const next = current + by;
  if (!Number.isSafeInteger(current) || !Number.isSafeInteger(by) || !Number.isSafeInteger(next)) return null;
  return String(next);
}

/** incrementInto on `value` placed at an odd offset of a larger buffer, with garbage around it. */
function incr(value: string | null, by: number): string | null {
  const out = new Uint8Array(incrTextBytesMax).fill(0x39);
  if (value === null) {
    const length = incrementInto(null, 0, 0, by, out);
    return length < 0 ? null : decoder.decode(out.subarray(0, length));
  }
  const bytes = encoder.encode(value);
  const framed = new Uint8Array(bytes.length + 6).fill(0x37);
  framed.set(bytes, 3);
  const length = incrementInto(framed, 3, bytes.length, by, out);
  return length < 0 ? null : decoder.decode(out.subarray(0, length));
}

describe("incrementInto", () => {
  test("adds to canonical safe decimal integers and refuses everything else", () => {
    expect(incr(null, 5)).toBe("5");
    expect(incr("-3", 1)).toBe("-2");
    expect(incr("0", 0)).toBe("0");
    expect(incr("-0", 0)).toBe("0");
    expect(incr("-0", -1)).toBe("-1");
    expect(incr("41", 1)).toBe("42");
    expect(incr("1", -1)).toBe("0");
    expect(incr(String(Number.MAX_SAFE_INTEGER - 1), 1)).toBe(String(Number.MAX_SAFE_INTEGER));
    expect(incr(String(-Number.MAX_SAFE_INTEGER + 1), -1)).toBe(String(-Number.MAX_SAFE_INTEGER));
    for (const bad of ["", "-", "1.5", "007", "00", "-01", "+1", " 1", "1 ", "1e3", "0x10", "١", "9999999999999999"])
      expect(incr(bad, 1)).toBeNull();
    expect(incr(String(Number.MAX_SAFE_INTEGER), 1)).toBeNull();
    expect(incr("9007199254740992", -1)).toBeNull(); // 2^53 itself is not safe
    expect(incr("12345678901234567", 0)).toBeNull(); // 17 digits
    expect(incr("1", 0.5)).toBeNull();
    expect(incr("1", Number.MAX_SAFE_INTEGER)).toBeNull();
  });

  test("agrees with the reference on random values and increments", () => {
    let seed = 12345;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const alphabet = "0123456789-.+ a";
    let numbers = 0;
    for (let i = 0; i < 20_000; i++) {
      let value: string;
      const shape = random();
      if (shape < 0.4) value = String(Math.floor((random() - 0.5) * 2 * 10 ** Math.floor(random() * 17)));
      else if (shape < 0.5) value = String(Number.MAX_SAFE_INTEGER - Math.floor(random() * 10));
      else {
        value = "";
        const length = Math.floor(random() * 18);
        for (let j = 0; j < length; j++)
          value += alphabet[Math.floor(random() * (random() < 0.8 ? 10 : alphabet.length))];
      }
      const by = random() < 0.9 ? Math.floor((random() - 0.5) * 200) : Math.floor((random() - 0.5) * 2 ** 54);
      const expected = reference(value, by);
      if (expected !== null) numbers++;
      expect(incr(value, by)).toBe(expected);
    }
    expect(numbers).toBeGreaterThan(5_000); // the generator reaches the accepting paths, not only refusals
  });
});
