// CRC32C against published vectors (RFC 3720 appendix B.4, and the "123456789" check value of the
// Castagnoli polynomial), and slicing-by-8 against the byte-at-a-time loop on random inputs, at
// every alignment and length from 0 to 100, and when continued across split points.

import { expect, test } from "bun:test";
import { crc32c, crc32cBytewise } from "../../src/storage/crc32c.ts";
import { prng, testSeed } from "../lib/prng.ts";

const bytesOf = (length: number, at: (i: number) => number): Uint8Array => Uint8Array.from({ length }, (_, i) => at(i));

test("RFC 3720 B.4 and check-value vectors", () => {
  expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
  expect(crc32c(bytesOf(32, () => 0))).toBe(0x8a9136aa);
  expect(crc32c(bytesOf(32, () => 0xff))).toBe(0x62a8ab43);
  expect(crc32c(bytesOf(32, (i) => i))).toBe(0x46dd794e);
  expect(crc32c(bytesOf(32, (i) => 31 - i))).toBe(0x113fdb5c);
  // The iSCSI SCSI Read (10) command PDU of B.4.
  const pdu =
    "01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018 28000000 00000000 02000000 00000000";
  expect(crc32c(Uint8Array.from(Buffer.from(pdu.replaceAll(" ", ""), "hex")))).toBe(0xd9963a56);
  expect(crc32c(new Uint8Array(0))).toBe(0);
});

test("slicing-by-8 equals the bytewise loop at every offset and length, and continues across splits", () => {
  const random = prng(testSeed(11));
  const bytes = bytesOf(200, () => Math.floor(random() * 256));
  for (let start = 0; start < 9; start++) {
    for (let length = 0; length <= 100; length++) {
      const end = start + length;
      const whole = crc32c(bytes, start, end);
      expect(whole).toBe(crc32cBytewise(bytes, start, end));
      const split = start + Math.floor(random() * (length + 1));
      expect(crc32c(bytes, split, end, crc32c(bytes, start, split))).toBe(whole);
    }
  }
});

test("a single flipped bit anywhere changes the CRC", () => {
  const bytes = bytesOf(64, (i) => (i * 37) & 0xff);
  const clean = crc32c(bytes);
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    bytes[bit >> 3]! ^= 1 << (bit & 7);
    expect(crc32c(bytes)).not.toBe(clean);
    bytes[bit >> 3]! ^= 1 << (bit & 7);
  }
  expect(crc32c(bytes)).toBe(clean);
});
