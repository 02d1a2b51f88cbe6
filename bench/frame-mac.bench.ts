// The cost of the frame MAC (src/wire/frame-mac.ts), per frame, with mitata:
// - encode (finish) and decode (verify + dispatch) of the same frames with and without the MAC: an
//   empty heartbeat frame, 64 ACKs, 64 INVs with 32-byte values, and one INV filling a 60 KiB frame;
// - the ways of computing HMAC-SHA-256 of one frame that Bun offers without native code of ours:
//   node:crypto createHmac per frame, a new keyed Bun.CryptoHasher per frame, and a copy of one keyed
//   hasher per frame (the pads precomputed once: what FrameMac does).
//
//   bun bench/frame-mac.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { createHmac } from "node:crypto";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../src/base/cluster-key.ts";
import { MsgKind } from "../src/base/kinds.ts";
import { FrameBuilder } from "../src/wire/frame-builder.ts";
import { FrameDecoder, type MessageHandler } from "../src/wire/frame-decoder.ts";
import { FrameMac } from "../src/wire/frame-mac.ts";
import { frameValueBytesMax } from "../src/wire/layout.ts";

const frameBytesMax = 60 * 1024; // the node's default
const keyBytesMax = 1024;
const valueBytesMax = frameValueBytesMax(frameBytesMax, keyBytesMax);
const frameKey = deriveClusterKey(generateClusterKey(), clusterKeyLabel.frameMac);
const keys = Array.from({ length: 64 }, (_, i) => new TextEncoder().encode(`user:${String(100_000_000_000 + i)}`));
const value32 = new Uint8Array(32).fill(0xab);
const valueBig = new Uint8Array(32 * 1024).fill(0xcd);

function newBuilder(mac: boolean): FrameBuilder {
  return new FrameBuilder({
    clusterId: 1,
    sender: 1,
    peer: 2,
    shardIndex: 0,
    frameBytesMax,
    keyBytesMax,
    valueBytesMax,
    mac: mac ? new FrameMac(frameKey, 1) : null,
  });
}

function newDecoder(mac: boolean): FrameDecoder {
  return new FrameDecoder({
    clusterId: 1,
    shardIndex: 0,
    frameBytesMax,
    keyBytesMax,
    valueBytesMax,
    selfId: 2,
    mac: mac ? new FrameMac(frameKey, 2) : null,
  });
}

type Shape = "heartbeat" | "64 ACKs" | "64 INVs (32 B)" | "1 INV (32 KiB)";

function fill(b: FrameBuilder, shape: Shape): Uint8Array {
  b.reset();
  const n = shape === "heartbeat" ? 0 : shape === "1 INV (32 KiB)" ? 1 : 64;
  const kind = shape === "64 ACKs" ? MsgKind.Ack : MsgKind.Inv;
  const value = shape === "64 ACKs" ? null : shape === "1 INV (32 KiB)" ? valueBig : value32;
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    if (!b.append(2, kind, key, 0, key.length, 2 ** 33 + i, 1, 7, false, value, 0, value?.length ?? 0))
      throw new Error("frame too small for the benchmark");
  }
  return b.finish();
}

let sink = 0;
const handler: MessageHandler = (_f, _k, key, keyAt, keyLength, version, _w, _e, _r, _v, _va, valueLength) => {
  sink += key[keyAt]! + keyLength + version + valueLength;
};

const shapes: Shape[] = ["heartbeat", "64 ACKs", "64 INVs (32 B)", "1 INV (32 KiB)"];
for (const shape of shapes) {
  const plainBuilder = newBuilder(false);
  const macBuilder = newBuilder(true);
  const plainFrame = fill(plainBuilder, shape).slice();
  const macFrame = fill(macBuilder, shape).slice();
  const plainDecoder = newDecoder(false);
  const macDecoder = newDecoder(true);
  if (plainDecoder.decode(plainFrame, handler, 1) < 0 || macDecoder.decode(macFrame, handler, 1) < 0)
    throw new Error("a benchmark frame does not decode");
  console.log(`${shape}: ${plainFrame.length} bytes, ${macFrame.length} with the tag`);
  summary(() => {
    group(`${shape}, ${plainFrame.length} B`, () => {
      bench("encode, no MAC", () => do_not_optimize(fill(plainBuilder, shape)));
      bench("encode + MAC", () => do_not_optimize(fill(macBuilder, shape)));
      bench("decode, no MAC", () => do_not_optimize(plainDecoder.decode(plainFrame, handler, 1) + sink));
      bench("verify + decode", () => do_not_optimize(macDecoder.decode(macFrame, handler, 1) + sink));
    });
  });
}

// The HMAC alone, three ways, over a heartbeat-sized frame (fixed cost) and a 4 KiB one (64 INVs of
// 32 bytes are about 4.5 KiB).
const keyed = new Bun.CryptoHasher("sha256", frameKey);
const digest = new Uint8Array(64);
for (const bytes of [40, 4096]) {
  const data = new Uint8Array(bytes).fill(7);
  summary(() => {
    group(`HMAC-SHA-256 of ${bytes} B`, () => {
      bench("node:crypto createHmac per frame", () =>
        do_not_optimize(createHmac("sha256", frameKey).update(data).digest()),
      );
      bench("new keyed Bun.CryptoHasher per frame", () => {
        const h = new Bun.CryptoHasher("sha256", frameKey);
        h.update(data);
        do_not_optimize(h.digest(digest));
      });
      bench("copy of one keyed CryptoHasher (FrameMac)", () => {
        const h = keyed.copy();
        h.update(data);
        do_not_optimize(h.digest(digest));
      });
    });
  });
}

await run({ colors: false });
