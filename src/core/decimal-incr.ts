// Incr's arithmetic on a value's bytes, read in place and written into a caller's buffer, so that an
// increment allocates nothing (no string, no regular expression, no encoded copy). A value is a
// number when it is a decimal integer in canonical form: an optional '-', then '0' or a digit 1-9
// followed by at most 15 digits, and both it and the sum are safe integers (|n| <= 2^53 - 1).

/** Bytes of the longest sum: '-' and the 16 digits of a safe integer. */
export const incrTextBytesMax = 17;
/** Digits of the longest number accepted (safe integers have at most 16). */
const digitsMax = 16;
const minus = 0x2d;
const zero = 0x30;
const nine = 0x39;

/**
 * Write `value + by` in decimal into `out` (at least incrTextBytesMax bytes) and return its length,
 * where `value` is `bytes[at..at+length)` (null: an absent value, counted as 0). -1 when the value is
 * not a canonical decimal integer, or it, `by` or the sum is not a safe integer.
 */
export function incrementInto(
  bytes: Uint8Array | null,
  at: number,
  length: number,
  by: number,
  out: Uint8Array,
): number {
  let current = 0;
  if (bytes !== null) {
    const negative = length > 0 && bytes[at] === minus;
    const first = negative ? at + 1 : at;
    const digits = at + length - first;
    if (digits < 1 || digits > digitsMax) return -1;
    // No leading zero, except the number 0 itself ("-0" is accepted, as 0).
    if (bytes[first] === zero && digits > 1) return -1;
    for (let i = first; i < first + digits; i++) {
      const d = bytes[i]! - zero;
      if (d < 0 || d > nine - zero) return -1;
      // Exact below 2^53; above, the rounded result stays >= 2^53 and fails the safe check.
      current = current * 10 + d;
    }
    if (negative) current = -current;
  }
  const next = current + by;
  if (!Number.isSafeInteger(current) || !Number.isSafeInteger(by) || !Number.isSafeInteger(next)) return -1;
  return writeDecimal(next, out);
}

/** `n` (a safe integer) in decimal into `out`; returns the length. -0 is written as 0. */
function writeDecimal(n: number, out: Uint8Array): number {
  let magnitude = n < 0 ? -n : n;
  let length = 0;
  if (n < 0) out[length++] = minus;
  // Digits from the last: count them first, so that they can be written in place.
  let digits = 1;
  for (let rest = Math.floor(magnitude / 10); rest > 0; rest = Math.floor(rest / 10)) digits++;
  for (let i = length + digits - 1; i >= length; i--) {
    const quotient = Math.floor(magnitude / 10);
    out[i] = zero + (magnitude - quotient * 10);
    magnitude = quotient;
  }
  return length + digits;
}
