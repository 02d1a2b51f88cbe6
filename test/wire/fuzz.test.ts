// Seeded fuzzing of the frame decoder: random bytes, every truncation and every single-bit flip of
// valid frames, and random multi-byte corruption. Properties checked on every input:
//   - decode never throws;
//   - a dropped frame dispatches nothing, an accepted one dispatches exactly its count;
//   - every frame is either accepted or counted under one drop reason;
//   - an accepted frame re-encodes to the same bytes (the format is canonical), so the decoder
//     never accepts something it parsed differently from how the builder would have written it.
// A failure names its seed; SEED=<n> replays one seed.

import { describe, expect, test } from "bun:test";
import { MsgKind } from "../../src/base/kinds.ts";
import { FrameBuilder } from "../../src/wire/frame-builder.ts";
import { FrameDecoder, WireStats } from "../../src/wire/frame-decoder.ts";
import {
  codecVersion,
  frameBytesOffset,
  frameHeaderBytes,
  frameMagic,
  frameValueBytesMax,
} from "../../src/wire/layout.ts";
import { below, prng } from "../lib/prng.ts";
import { appendText, textHandler } from "../lib/key-bytes.ts";

const clusterId = 77;
const frameBytesMax = 1 << 16;
const keyBytesMax = 255;
const valueBytesMax = frameValueBytesMax(frameBytesMax, keyBytesMax);
const seeds = process.env.SEED !== undefined ? [Number(process.env.SEED)] : Array.from({ length: 12 }, (_, i) => i + 1);

interface Decoded {
  from: number;
  kind: MsgKind;
  key: string;
  version: number;
  writer: number;
  epoch: number;
  rmw: boolean;
  value: Uint8Array | null;
}

function randomKey(rand: () => number): string {
  const n = below(rand, 12);
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.7) s += String.fromCharCode(0x20 + below(rand, 0x5f));
    else if (r < 0.85) s += String.fromCharCode(0x400 + below(rand, 0x100));
    else s += String.fromCodePoint(0x1f300 + below(rand, 0x100));
  }
  return s;
}

/** A valid frame of up to 12 random messages. */
function randomFrame(rand: () => number): Uint8Array {
  const b = new FrameBuilder({
    clusterId,
    sender: below(rand, 32),
    peer: below(rand, 32),
    shardIndex: below(rand, 4),
    frameBytesMax,
    keyBytesMax,
    valueBytesMax,
  });
  b.senderEpoch = below(rand, 2 ** 32);
  const count = below(rand, 13);
  for (let i = 0; i < count; i++) {
    const kind = (1 + below(rand, 4)) as MsgKind;
    const carries = kind === MsgKind.Inv || kind === MsgKind.Reject;
    const value = carries && rand() < 0.8 ? new Uint8Array(below(rand, 40)).map(() => below(rand, 256)) : null;
    const version = rand() < 0.2 ? 2 ** 53 - 1 - below(rand, 4) : below(rand, 2 ** 40);
    appendText(
      b,
      b.config.peer,
      kind,
      randomKey(rand),
      version,
      // A writer id: a first process's (its node id) or any u32 (incarnation and node id, src/base/ids.ts).
      rand() < 0.5 ? below(rand, 32) : below(rand, 2 ** 32),
      below(rand, 2 ** 32),
      rand() < 0.5,
      value,
    );
  }
  return b.finish().slice();
}

/** Re-encodes decoded messages with the header fields of `frame`. */
function reencode(frame: Uint8Array, decoder: FrameDecoder, msgs: Decoded[]): Uint8Array {
  const b = new FrameBuilder({
    clusterId,
    sender: decoder.frameSender,
    peer: 0,
    shardIndex: frame[6],
    frameBytesMax,
    keyBytesMax,
    valueBytesMax,
  });
  b.senderEpoch = decoder.frameEpoch;
  for (const m of msgs) {
    if (!appendText(b, 0, m.kind, m.key, m.version, m.writer, m.epoch, m.rmw, m.value))
      throw new Error("re-encoding did not fit");
  }
  return b.finish().slice();
}

/** Runs one input through the decoder and checks the properties; returns whether it was accepted. */
function check(decoder: FrameDecoder, frame: Uint8Array): boolean {
  const stats = decoder.stats;
  const before = stats.framesAccepted + stats.framesDropped;
  const msgs: Decoded[] = [];
  const count = decoder.decode(
    frame,
    textHandler((from, kind, key, version, writer, epoch, rmw, value) => {
      msgs.push({ from, kind, key, version, writer, epoch, rmw, value });
    }),
  );
  if (stats.framesAccepted + stats.framesDropped !== before + 1)
    throw new Error("a frame was neither accepted nor counted once");
  if (count < 0) {
    if (msgs.length !== 0) throw new Error("dispatched from a dropped frame");
    return false;
  }
  if (msgs.length !== count) throw new Error("dispatched count differs from the returned count");
  const again = reencode(frame, decoder, msgs);
  if (again.length !== frame.length || !again.every((x, i) => x === frame[i]))
    throw new Error("accepted frame does not re-encode to the same bytes");
  return true;
}

function withSeed(seed: number, body: () => void): void {
  try {
    body();
  } catch (e) {
    throw new Error(`seed ${seed} (replay: SEED=${seed} bun test test/wire/fuzz.test.ts): ${(e as Error).message}`);
  }
}

function newDecoder(): FrameDecoder {
  return new FrameDecoder({ clusterId, shardIndex: -1, frameBytesMax, keyBytesMax, valueBytesMax }, new WireStats());
}

describe("wire fuzz", () => {
  test("valid random frames are accepted and re-encode identically", () => {
    const decoder = newDecoder();
    for (const seed of seeds) {
      withSeed(seed, () => {
        const rand = prng(seed);
        for (let i = 0; i < 300; i++) expect(check(decoder, randomFrame(rand))).toBe(true);
      });
    }
    expect(decoder.stats.framesDropped).toBe(0);
  });

  test("random bytes, with and without a plausible header, are dropped without dispatching", () => {
    const decoder = newDecoder();
    let accepted = 0;
    let attempts = 0;
    for (const seed of seeds) {
      withSeed(seed, () => {
        const rand = prng(seed);
        for (let i = 0; i < 2000; i++) {
          const bytes = new Uint8Array(below(rand, 200)).map(() => below(rand, 256));
          const view = new DataView(bytes.buffer);
          const plausible = rand() < 0.6 && bytes.length >= frameHeaderBytes;
          if (plausible) {
            // Get past the header checks so the message validation is exercised too.
            view.setUint32(0, frameMagic, true);
            bytes[4] = codecVersion;
            bytes[5] &= 31;
            bytes[7] = 0;
            view.setUint32(8, clusterId, true);
            view.setUint16(16, below(rand, 4), true);
            view.setUint16(18, 0, true);
            view.setUint32(frameBytesOffset, bytes.length, true);
          }
          if (check(decoder, bytes)) accepted++;
          attempts++;
        }
      });
    }
    const stats = decoder.stats;
    expect(stats.framesAccepted).toBe(accepted);
    expect(stats.framesDropped).toBe(attempts - accepted);
    // Several reasons show up, message-level ones included.
    expect(stats.droppedBadMagic).toBeGreaterThan(0);
    expect(stats.droppedBadMessage + stats.droppedTruncated).toBeGreaterThan(0);
    expect(stats.framesDropped).toBeGreaterThan(attempts * 0.9);
  });

  test("every truncation of a valid frame is dropped as truncated; extensions as trailing", () => {
    const decoder = newDecoder();
    const stats = decoder.stats;
    let cuts = 0;
    for (const seed of seeds) {
      withSeed(seed, () => {
        const rand = prng(seed);
        for (let i = 0; i < 10; i++) {
          const frame = randomFrame(rand);
          for (let length = 0; length < frame.length; length++) {
            const truncatedBefore = stats.droppedTruncated;
            expect(check(decoder, frame.subarray(0, length))).toBe(false);
            expect(stats.droppedTruncated).toBe(truncatedBefore + 1);
            cuts++;
          }
          const longer = new Uint8Array(frame.length + 1 + below(rand, 8));
          longer.set(frame);
          const trailingBefore = stats.droppedTrailing;
          expect(check(decoder, longer)).toBe(false);
          expect(stats.droppedTrailing).toBe(trailingBefore + 1);
        }
      });
    }
    expect(stats.framesAccepted).toBe(0);
    expect(stats.droppedTruncated).toBe(cuts);
  });

  test("every single-bit flip of valid frames: never throws, accepted only if canonical", () => {
    const decoder = newDecoder();
    let flips = 0;
    for (const seed of seeds) {
      withSeed(seed, () => {
        const rand = prng(seed);
        for (let i = 0; i < 2; i++) {
          const frame = randomFrame(rand);
          for (let bit = 0; bit < frame.length * 8; bit++) {
            const flipped = frame.slice();
            flipped[bit >> 3] ^= 1 << (bit & 7);
            check(decoder, flipped);
            flips++;
          }
        }
      });
    }
    const stats = decoder.stats;
    expect(stats.framesAccepted + stats.framesDropped).toBe(flips);
    // Header bits alone guarantee drops; payload bits (values, versions, epochs) may stay valid.
    expect(stats.framesDropped).toBeGreaterThan(0);
    expect(stats.framesAccepted).toBeGreaterThan(0);
    expect(stats.droppedBadUtf8).toBeGreaterThan(0);
  });

  test("random multi-byte corruption of valid frames", () => {
    const decoder = newDecoder();
    let attempts = 0;
    for (const seed of seeds) {
      withSeed(seed, () => {
        const rand = prng(seed);
        for (let i = 0; i < 500; i++) {
          const frame = randomFrame(rand);
          const corrupt = frame.slice();
          const hits = 1 + below(rand, 6);
          for (let k = 0; k < hits; k++) corrupt[below(rand, corrupt.length)] = below(rand, 256);
          check(decoder, corrupt);
          attempts++;
        }
      });
    }
    expect(decoder.stats.framesAccepted + decoder.stats.framesDropped).toBe(attempts);
    expect(decoder.stats.framesDropped).toBeGreaterThan(0);
  });
});
