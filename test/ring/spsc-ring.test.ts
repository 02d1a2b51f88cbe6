import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../src/base/assert.ts";
import {
  createRing,
  ringCapacityBytesMin,
  ringControlBytes,
  ringRecordBytesMax,
  ringRecordFootprintBytes,
  RingReader,
  RingWriter,
} from "../../src/ring/spsc-ring.ts";
import { below, prng } from "../lib/prng.ts";

/** Writes a record whose content is a function of `seq` (first 4 bytes: seq). */
function pushSeq(w: RingWriter, seq: number, length: number): boolean {
  const at = w.reserve(length);
  if (at < 0) return false;
  for (let i = 0; i < length; i++) w.bytes[at + i] = (seq + i * 7) & 0xff;
  if (length >= 4) w.view.setUint32(at, seq, true);
  w.seal(length);
  return true;
}

/** Checks the record at `at` against `pushSeq(seq, length)`. */
function checkSeq(r: RingReader, at: number, seq: number, length: number): void {
  expect(r.recordBytes).toBe(length);
  if (length >= 4) expect(r.view.getUint32(at, true)).toBe(seq);
  for (let i = 4; i < length; i++) {
    if (r.bytes[at + i] !== ((seq + i * 7) & 0xff)) throw new Error(`record ${seq} byte ${i} differs`);
  }
}

/** Sets both positions of a fresh ring, to exercise the 32-bit counter wrap without 4 GiB of traffic. */
function startAt(sab: SharedArrayBuffer, position: number): void {
  const ctrl = new Int32Array(sab, 0, ringControlBytes >> 2);
  ctrl[0] = position | 0; // head
  ctrl[16] = position | 0; // tail
}

describe("spsc ring", () => {
  test("createRing validates the capacity", () => {
    expect(() => createRing(1000)).toThrow(AssertionError);
    expect(() => createRing(512)).toThrow(AssertionError);
    expect(() => new RingWriter(new SharedArrayBuffer(ringControlBytes + 1024))).toThrow(AssertionError);
    const sab = createRing(ringCapacityBytesMin);
    expect(new RingWriter(sab).recordBytesMax).toBe(ringRecordBytesMax(ringCapacityBytesMin));
    expect(new RingReader(sab).capacityBytes).toBe(ringCapacityBytesMin);
  });

  test("records are invisible until commit, then read in order with one release", () => {
    const sab = createRing(4096);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    for (let seq = 0; seq < 20; seq++) expect(pushSeq(w, seq, seq * 3)).toBe(true);
    expect(r.next()).toBe(-1);
    expect(r.hasRecords()).toBe(false);
    expect(w.pendingBytes).toBeGreaterThan(0);
    w.commit();
    expect(w.pendingBytes).toBe(0);
    for (let seq = 0; seq < 20; seq++) {
      const at = r.next();
      expect(at).toBeGreaterThanOrEqual(0);
      checkSeq(r, at, seq, seq * 3);
    }
    expect(r.next()).toBe(-1);
    // Nothing is handed back to the writer before release.
    const freeBefore = w.freeBytes();
    r.release();
    expect(w.freeBytes()).toBe(4096);
    expect(freeBefore).toBeLessThan(4096);
  });

  test("drain visits every record and releases once", () => {
    const sab = createRing(4096);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    for (let seq = 0; seq < 50; seq++) pushSeq(w, seq, 8);
    w.commit();
    const seen: number[] = [];
    expect(
      r.drain((bytes, at, length) => {
        expect(length).toBe(8);
        seen.push(new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true));
      }, 30),
    ).toBe(30);
    expect(
      r.drain((bytes, at) => seen.push(new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true)), 1000),
    ).toBe(20);
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(w.freeBytes()).toBe(4096);
  });

  for (const [name, start] of [
    ["from 0", 0],
    ["across the int32 sign boundary", 0x7fff_ff00],
    ["across 2^32", -0x100],
  ] as const) {
    test(`wraparound with random record sizes and batches (${name})`, () => {
      const rand = prng(11);
      const capacityBytes = 1024;
      const sab = createRing(capacityBytes);
      startAt(sab, start);
      const w = new RingWriter(sab);
      const r = new RingReader(sab);
      const recordBytesMax = w.recordBytesMax;
      const inFlight: number[] = []; // lengths of records pushed and not yet read, in order
      let nextSeq = 0;
      let readSeq = 0;
      let refusals = 0;
      for (let round = 0; round < 5000; round++) {
        const batch = 1 + below(rand, 6);
        for (let k = 0; k < batch; k++) {
          // Mostly small records, sometimes up to the maximum, so pads happen at many offsets.
          const length = rand() < 0.1 ? below(rand, recordBytesMax + 1) : below(rand, 64);
          if (!pushSeq(w, nextSeq, length)) {
            refusals++;
            break;
          }
          inFlight.push(length);
          nextSeq++;
        }
        w.commit();
        const take = below(rand, 8);
        for (let k = 0; k < take; k++) {
          const at = r.next();
          if (at < 0) break;
          checkSeq(r, at, readSeq, inFlight.shift()!);
          readSeq++;
        }
        if (rand() < 0.7) r.release();
      }
      let at: number;
      while ((at = r.next()) >= 0) {
        checkSeq(r, at, readSeq, inFlight.shift()!);
        readSeq++;
      }
      r.release();
      expect(readSeq).toBe(nextSeq);
      expect(inFlight.length).toBe(0);
      expect(nextSeq).toBeGreaterThan(5000);
      expect(refusals).toBeGreaterThan(0);
      expect(w.freeBytes()).toBe(capacityBytes);
    });
  }

  test("a full ring refuses records and accepts again after release", () => {
    const capacityBytes = 1024;
    const sab = createRing(capacityBytes);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const footprintBytes = ringRecordFootprintBytes(12);
    let pushed = 0;
    while (pushSeq(w, pushed, 12)) pushed++;
    expect(pushed).toBe(capacityBytes / footprintBytes);
    expect(w.reserve(0)).toBe(-1);
    w.commit();
    expect(pushSeq(w, 999, 12)).toBe(false);
    // Reading without releasing frees nothing.
    expect(r.next()).toBeGreaterThanOrEqual(0);
    expect(pushSeq(w, 999, 12)).toBe(false);
    r.release();
    expect(pushSeq(w, pushed, 12)).toBe(true);
    expect(pushSeq(w, pushed + 1, 12)).toBe(false);
    w.commit();
    // The refused record never became visible: the reader sees 1..pushed exactly.
    for (let seq = 1; seq <= pushed; seq++) {
      const at = r.next();
      checkSeq(r, at, seq, 12);
    }
    expect(r.next()).toBe(-1);
  });

  test("records of recordBytesMax fit, alternating with small ones (padding at the end)", () => {
    const capacityBytes = 2048;
    const sab = createRing(capacityBytes);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const big = w.recordBytesMax;
    expect(big).toBe(capacityBytes / 2 - 4);
    let seq = 0;
    for (let round = 0; round < 200; round++) {
      // A small record shifts the offset, so the big one must pad to the start of the ring.
      const lengths = [round % 40, big];
      for (let k = 0; k < lengths.length; k++) expect(pushSeq(w, seq + k, lengths[k])).toBe(true);
      w.commit();
      for (const length of lengths) {
        const at = r.next();
        expect(at).toBeGreaterThanOrEqual(0);
        checkSeq(r, at, seq, length);
        seq++;
      }
      expect(r.next()).toBe(-1);
      r.release();
    }
    // Two big records fill the ring exactly when it starts aligned.
    const sab2 = createRing(capacityBytes);
    const w2 = new RingWriter(sab2);
    expect(pushSeq(w2, 0, big)).toBe(true);
    expect(pushSeq(w2, 1, big)).toBe(true);
    expect(w2.reserve(0)).toBe(-1);
  });

  test("a record larger than recordBytesMax is an assertion", () => {
    const w = new RingWriter(createRing(1024));
    expect(() => w.reserve(w.recordBytesMax + 1)).toThrow(AssertionError);
    expect(() => w.push(new Uint8Array(w.recordBytesMax + 1))).toThrow(AssertionError);
  });

  test("reserve/seal with a shorter length, cancel, and misuse assertions", () => {
    const sab = createRing(1024);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const at = w.reserve(100);
    expect(() => w.reserve(1)).toThrow(AssertionError);
    expect(() => w.commit()).toThrow(AssertionError);
    w.bytes.set([1, 2, 3], at);
    expect(() => w.seal(101)).toThrow(AssertionError);
    w.seal(3);
    expect(() => w.seal(3)).toThrow(AssertionError);
    w.reserve(50);
    w.cancel();
    expect(w.push(new Uint8Array([9]))).toBe(true);
    w.commit();
    const a = r.next();
    expect(r.recordBytes).toBe(3);
    expect(Array.from(r.bytes.subarray(a, a + 3))).toEqual([1, 2, 3]);
    const b = r.next();
    expect(r.recordBytes).toBe(1);
    expect(r.bytes[b]).toBe(9);
    expect(r.next()).toBe(-1);
  });

  test("wait: ready when records are there, timed-out when none arrive", async () => {
    const sab = createRing(1024);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    expect(r.wait(1)).toBe("timed-out");
    expect(await r.waitAsync(1)).toBe("timed-out");
    expect(w.readerSleeping).toBe(false);
    w.push(new Uint8Array(4));
    // Not committed yet: the reader still sleeps.
    expect(r.wait(1)).toBe("timed-out");
    expect(w.commit()).toBe(false); // nobody sleeping: no notify
    expect(w.notifyCount).toBe(0);
    expect(r.wait(1000)).toBe("ready");
    expect(await r.waitAsync(1000)).toBe("ready");
    expect(r.waitCount).toBe(3);
  });

  test("waitAsync sets the sleep flag and a commit notifies only then", async () => {
    const sab = createRing(1024);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const waiting = r.waitAsync(60_000);
    expect(w.readerSleeping).toBe(true);
    expect(() => r.waitAsync(1)).toThrow(AssertionError);
    w.push(new Uint8Array([42]));
    expect(w.commit()).toBe(true);
    expect(w.notifyCount).toBe(1);
    expect(await waiting).toBe("ok");
    expect(w.readerSleeping).toBe(false);
    const at = r.next();
    expect(r.bytes[at]).toBe(42);
    // Awake reader: the next commit does not notify.
    w.push(new Uint8Array([43]));
    expect(w.commit()).toBe(false);
    expect(w.notifyCount).toBe(1);
  });

  test("a reader built on a ring in use resumes from the released head", () => {
    const sab = createRing(1024);
    const w = new RingWriter(sab);
    const r1 = new RingReader(sab);
    for (let seq = 0; seq < 5; seq++) pushSeq(w, seq, 8);
    w.commit();
    r1.next();
    r1.next();
    r1.release();
    const r2 = new RingReader(sab);
    const at = r2.next();
    checkSeq(r2, at, 2, 8);
    const w2 = new RingWriter(sab);
    pushSeq(w2, 5, 8);
    w2.commit();
    let count = 0;
    while (r2.next() >= 0) count++;
    expect(count).toBe(3);
  });
});
