// Fragmentation and reassembly of frames larger than an RDMA datagram (src/transport/reassembly.ts),
// without a device: pieces in order, missing, repeated, out of order, dropped or malformed.

import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../src/base/assert.ts";
import { Reassembly, pieceCount, pieceOf, type ReassemblyCounts } from "../../src/transport/reassembly.ts";
import { below, prng, testSeed } from "../lib/prng.ts";

const pieceBytesMax = 10;
const frameBytesMax = 100;

interface Piece {
  /** The sequence number of the datagram carrying it. */
  seq: number;
  index: number;
  count: number;
  frameBytes: number;
  bytes: Uint8Array;
}

/** A frame whose bytes name it: frame `id`, byte i = (id * 31 + i) & 0xff. */
function frameOf(id: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (id * 31 + i) & 0xff);
}

/** Datagram numbering of one sender: every piece takes the next u32, lost or not. */
let nextSeq = 0;

function piecesOf(frame: Uint8Array): Piece[] {
  const count = pieceCount(frame.length, pieceBytesMax);
  return Array.from({ length: count }, (_, index) => ({
    seq: (nextSeq = (nextSeq + 1) >>> 0),
    index,
    count,
    frameBytes: frame.length,
    bytes: pieceOf(frame, index, pieceBytesMax),
  }));
}

function zeroCounts(): ReassemblyCounts {
  return { fragmentLosses: 0, framesDropped: 0, malformedDrops: 0, framesReassembled: 0 };
}

/** Feeds pieces to a fresh Reassembly; returns copies of the frames it completed and its counts. */
function feed(pieces: readonly Piece[], dropped: (i: number) => boolean = () => false, bytesMax = frameBytesMax) {
  const counts = zeroCounts();
  const r = new Reassembly(bytesMax, counts);
  const frames: Uint8Array[] = [];
  pieces.forEach((p, i) => {
    const whole = r.accept(p.seq, p.index, p.count, p.frameBytes, p.bytes, dropped(i));
    if (whole !== null) frames.push(whole.slice());
  });
  return { frames, counts, reassembly: r };
}

describe("fragmentation", () => {
  test("piece counts and bounds, including exact multiples and one-byte tails", () => {
    expect(pieceCount(1, 10)).toBe(1);
    expect(pieceCount(10, 10)).toBe(1);
    expect(pieceCount(11, 10)).toBe(2);
    expect(pieceCount(100, 10)).toBe(10);
    const frame = frameOf(1, 21);
    expect([...pieceOf(frame, 0, 10)]).toEqual([...frame.subarray(0, 10)]);
    expect([...pieceOf(frame, 2, 10)]).toEqual([frame[20]]);
    expect(() => pieceOf(frame, 3, 10)).toThrow(AssertionError);
    expect(() => pieceOf(frame, -1, 10)).toThrow(AssertionError);
    expect(() => pieceCount(0, 10)).toThrow(AssertionError);
    expect(() => pieceCount(10, 0)).toThrow(AssertionError);
    // The count is a u16 on the wire.
    expect(pieceCount(0xffff, 1)).toBe(0xffff);
    expect(() => pieceCount(0x10000, 1)).toThrow(AssertionError);
  });
});

describe("Reassembly", () => {
  test("pieces in order give back the frame, for sizes around piece boundaries", () => {
    for (const length of [11, 19, 20, 21, 99, 100]) {
      const frame = frameOf(length, length);
      const { frames, counts } = feed(piecesOf(frame));
      expect(frames).toEqual([frame]);
      expect(counts).toEqual({ ...zeroCounts(), framesReassembled: 1 });
    }
  });

  test("consecutive frames reuse the buffer; each comes out whole", () => {
    const a = frameOf(1, 35);
    const b = frameOf(2, 100);
    const c = frameOf(3, 12);
    const { frames, counts } = feed([...piecesOf(a), ...piecesOf(b), ...piecesOf(c)]);
    expect(frames).toEqual([a, b, c]);
    expect(counts.framesReassembled).toBe(3);
    expect(counts.fragmentLosses).toBe(0);
  });

  test("a missing middle piece loses its frame, counted once; the next frame arrives", () => {
    const a = piecesOf(frameOf(1, 50));
    const b = frameOf(2, 30);
    const { frames, counts } = feed([...a.filter((p) => p.index !== 2), ...piecesOf(b)]);
    expect(frames).toEqual([b]);
    expect(counts.fragmentLosses).toBe(1);
    expect(counts.framesDropped).toBe(1);
    expect(counts.malformedDrops).toBe(0);
  });

  test("a missing first piece loses the frame, seen at its second piece", () => {
    const a = piecesOf(frameOf(1, 50));
    const b = frameOf(2, 30);
    const { frames, counts } = feed([...a.slice(1), ...piecesOf(b)]);
    expect(frames).toEqual([b]);
    expect(counts.fragmentLosses).toBe(1);
  });

  test("a missing last piece is seen when the next frame starts", () => {
    const a = piecesOf(frameOf(1, 50));
    const b = frameOf(2, 30);
    const { frames, counts, reassembly } = feed(a.slice(0, -1));
    expect(frames).toEqual([]);
    expect(counts.fragmentLosses).toBe(0);
    expect(reassembly.inProgress).toBe(true);
    for (const p of piecesOf(b)) reassembly.accept(p.seq, p.index, p.count, p.frameBytes, p.bytes, false);
    expect(counts.fragmentLosses).toBe(1);
    expect(counts.framesReassembled).toBe(1);
    expect(reassembly.inProgress).toBe(false);
  });

  test("a repeated middle piece or pieces out of order lose the frame, counted once", () => {
    const a = piecesOf(frameOf(1, 50));
    const b = frameOf(2, 30);
    const repeated = [a[0]!, a[1]!, a[1]!, a[2]!, a[3]!, a[4]!];
    const swapped = [a[0]!, a[2]!, a[1]!, a[3]!, a[4]!];
    for (const order of [repeated, swapped]) {
      const { frames, counts } = feed([...order, ...piecesOf(b)]);
      expect(frames).toEqual([b]);
      expect(counts.fragmentLosses).toBe(1);
      expect(counts.framesDropped).toBe(1);
    }
  });

  test("a repeated first piece restarts the frame: the first attempt is lost, the frame arrives", () => {
    const frame = frameOf(1, 30);
    const a = piecesOf(frame);
    const { frames, counts } = feed([a[0]!, a[0]!, a[1]!, a[2]!]);
    expect(frames).toEqual([frame]);
    expect(counts.fragmentLosses).toBe(1);
  });

  test("a piece of another frame (count or size differs) in the middle loses the frame", () => {
    const a = piecesOf(frameOf(1, 50));
    const other = piecesOf(frameOf(2, 60));
    const { frames, counts } = feed([a[0]!, a[1]!, other[2]!, a[3]!, a[4]!]);
    expect(frames).toEqual([]);
    expect(counts.fragmentLosses).toBe(1);
  });

  test("the head of one frame and the tail of the next, of the same size, are never spliced", () => {
    // Frame a loses its tail and b its head: b's second piece has the index a expects next, and
    // the same count and size; only its sequence number shows that pieces went missing between.
    const a = frameOf(1, 30);
    const b = frameOf(2, 30);
    const pa = piecesOf(a);
    const pb = piecesOf(b);
    const { frames, counts } = feed([pa[0]!, pb[1]!, pb[2]!]);
    expect(frames).toEqual([]);
    expect(counts.fragmentLosses).toBe(1);
    expect(counts.framesReassembled).toBe(0);
  });

  test("sequence numbers of a frame's pieces may wrap past 2^32", () => {
    nextSeq = 0xfffffffe;
    const frame = frameOf(5, 50);
    const pieces = piecesOf(frame);
    expect(pieces.map((p) => p.seq)).toEqual([0xffffffff, 0, 1, 2, 3]);
    expect(feed(pieces).frames).toEqual([frame]);
  });

  test("a dropped piece (drop rule) is lost like one the network lost, counted once per frame", () => {
    const a = piecesOf(frameOf(1, 50));
    const b = piecesOf(frameOf(2, 30));
    const c = frameOf(3, 40);
    // The first piece of a, two pieces of b.
    const all = [...a, ...b, ...piecesOf(c)];
    const dropAt = new Set([0, a.length + 1, a.length + 2]);
    const { frames, counts } = feed(all, (i) => dropAt.has(i));
    expect(frames).toEqual([c]);
    expect(counts.fragmentLosses).toBe(2);
    expect(counts.framesDropped).toBe(2);
    expect(counts.malformedDrops).toBe(0);
  });

  test("malformed first pieces are counted and their frame discarded", () => {
    const ok = frameOf(9, 30);
    const cases: Piece[] = [
      { seq: 1, index: 0, count: 1, frameBytes: 10, bytes: new Uint8Array(10) }, // one piece is not fragmented
      { seq: 1, index: 0, count: 11, frameBytes: frameBytesMax + 1, bytes: new Uint8Array(10) }, // larger than the buffer
      { seq: 1, index: 0, count: 3, frameBytes: 30, bytes: new Uint8Array(0) }, // empty piece
      { seq: 1, index: 0, count: 2, frameBytes: 5, bytes: new Uint8Array(10) }, // piece larger than its frame
    ];
    for (const bad of cases) {
      const { frames, counts } = feed([bad, { ...bad, seq: 2, index: 1 }, ...piecesOf(ok)]);
      expect(frames).toEqual([ok]);
      expect(counts.malformedDrops).toBe(1);
      expect(counts.fragmentLosses).toBe(1);
    }
  });

  test("pieces that overflow or underfill the frame are malformed; the next frame is fine", () => {
    const frame = frameOf(1, 30);
    const a = piecesOf(frame);
    const ok = frameOf(2, 25);
    const tooLong = { ...a[1]!, bytes: new Uint8Array(25) };
    const shortLast = { ...a[2]!, bytes: a[2]!.bytes.subarray(0, 5) };
    const emptyMiddle = { ...a[1]!, bytes: new Uint8Array(0) };
    for (const [bad, at] of [
      [tooLong, 1],
      [shortLast, 2],
      [emptyMiddle, 1],
    ] as const) {
      const order = a.map((p, i) => (i === at ? bad : p));
      const { frames, counts } = feed([...order, ...piecesOf(ok)]);
      expect(frames).toEqual([ok]);
      expect(counts.malformedDrops).toBe(1);
      expect(counts.fragmentLosses).toBe(1);
    }
  });

  test("with no buffer (frames never fragmented), every piece is malformed", () => {
    const { frames, counts } = feed(piecesOf(frameOf(1, 30)), () => false, 0);
    expect(frames).toEqual([]);
    expect(counts.malformedDrops).toBe(1);
    expect(counts.fragmentLosses).toBe(1);
  });

  test("random loss and drops: exactly the untouched frames arrive, intact and in order", () => {
    const seed = testSeed(0xf4a9);
    const rand = prng(seed);
    for (let run = 0; run < 200; run++) {
      nextSeq = rand() * 2 ** 32;
      // Few distinct sizes, so that frames of equal size (and piece count) follow each other often.
      const sizes = [11, 30, 30, 47, 100];
      const sent = Array.from({ length: 1 + below(rand, 12) }, (_, id) =>
        frameOf(run * 100 + id, sizes[below(rand, sizes.length)]!),
      );
      const arriving: Piece[] = [];
      const dropped: boolean[] = [];
      const expected: Uint8Array[] = [];
      let framesWithDrops = 0;
      for (const frame of sent) {
        let lost = false;
        let droppedHere = false;
        for (const piece of piecesOf(frame)) {
          const r = rand();
          if (r < 0.08) {
            lost = true; // the network loses it: never arrives
          } else {
            const drop = r < 0.16;
            droppedHere ||= drop;
            arriving.push(piece);
            dropped.push(drop);
          }
        }
        if (!lost && !droppedHere) expected.push(frame);
        if (droppedHere) framesWithDrops++;
      }
      const { frames, counts } = feed(arriving, (i) => dropped[i]!);
      expect(frames, `seed ${seed} run ${run}`).toEqual(expected);
      expect(counts.framesReassembled).toBe(expected.length);
      // Losses are never counted twice for one frame, and a frame with a dropped piece always
      // arrives partly, so its loss is seen (a frame the network lost whole may go unnoticed).
      expect(counts.fragmentLosses).toBeLessThanOrEqual(sent.length - expected.length);
      expect(counts.fragmentLosses).toBeGreaterThanOrEqual(Math.min(framesWithDrops, 1));
      expect(counts.framesDropped).toBe(counts.fragmentLosses);
      expect(counts.malformedDrops).toBe(0);
    }
  });
});
