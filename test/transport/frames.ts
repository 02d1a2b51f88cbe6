// Checked test frames for the transport suite: every frame names its sender, receiver and sequence
// number, has deterministic filler derived from them, and ends with a CRC-32 of everything before it,
// so a receiver can tell a frame that is intact, misrouted, truncated or spliced.
//
// Layout (little-endian): u32 magic | u16 from | u16 to | u32 seq | u32 length | filler | u32 crc32

import type { NodeId } from "../../src/base/ids.ts";

export const testFrameMagic = 0x54534654; // "TFST"
export const testFrameBytesMin = 20;

function fill(from: NodeId, to: NodeId, seq: number, i: number): number {
  // Varies with every field and position, so a frame of one flow cannot pass as another's.
  let x = (Math.imul(seq + 1, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b) ^ (from << 24) ^ (to << 16)) >>> 0;
  x ^= x >>> 15;
  return x & 0xff;
}

export function makeFrame(from: NodeId, to: NodeId, seq: number, length: number): Uint8Array {
  if (!(Number.isInteger(length) && length >= testFrameBytesMin)) throw new RangeError(`test frame length ${length}`);
  const f = new Uint8Array(length);
  const v = new DataView(f.buffer);
  v.setUint32(0, testFrameMagic, true);
  v.setUint16(4, from, true);
  v.setUint16(6, to, true);
  v.setUint32(8, seq, true);
  v.setUint32(12, length, true);
  for (let i = 16; i < length - 4; i++) f[i] = fill(from, to, seq, i);
  v.setUint32(length - 4, Bun.hash.crc32(f.subarray(0, length - 4)), true);
  return f;
}

export interface FrameHeader {
  from: NodeId;
  to: NodeId;
  seq: number;
  length: number;
}

/** The header of an intact frame; throws with the reason otherwise. */
export function checkFrame(f: Uint8Array): FrameHeader {
  if (f.length < testFrameBytesMin) throw new Error(`frame of ${f.length} bytes is shorter than a header`);
  const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (v.getUint32(0, true) !== testFrameMagic) throw new Error("bad magic");
  const length = v.getUint32(12, true);
  if (length !== f.length) throw new Error(`length field ${length} but ${f.length} bytes arrived`);
  const crc = Bun.hash.crc32(f.subarray(0, length - 4));
  if (crc !== v.getUint32(length - 4, true)) throw new Error("bad checksum");
  const h = { from: v.getUint16(4, true), to: v.getUint16(6, true), seq: v.getUint32(8, true), length };
  for (let i = 16; i < length - 4; i++) {
    if (f[i] !== fill(h.from, h.to, h.seq, i)) throw new Error(`bad filler at ${i}`); // crc collision guard
  }
  return h;
}
