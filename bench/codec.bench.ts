// Wire codec microbenchmarks (mitata): encode and decode one frame of 64 messages, for ACKs
// (no value) and for INVs with 32-byte values, 17-byte ASCII keys. Keys are bytes on both sides
// (the core lends them from its store; the decoder hands over ranges of the frame).
//
//   bun bench/codec.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { MsgKind } from "../src/base/kinds.ts";
import { FrameBuilder } from "../src/wire/frame-builder.ts";
import { FrameDecoder, type MessageHandler } from "../src/wire/frame-decoder.ts";
import { frameValueBytesMax } from "../src/wire/layout.ts";

const messagesPerFrame = 64;
const frameBytesMax = 9000; // a jumbo-frame-sized UDP datagram
const keyBytesMax = 256;
const config = {
  clusterId: 1,
  sender: 1,
  peer: 2,
  shardIndex: 0,
  frameBytesMax,
  keyBytesMax,
  valueBytesMax: frameValueBytesMax(frameBytesMax, keyBytesMax),
};
const keys = Array.from({ length: messagesPerFrame }, (_, i) =>
  new TextEncoder().encode(`user:${String(100_000_000_000 + i)}`),
);
const value32 = new Uint8Array(32).fill(0xab);

function buildFrame(builder: FrameBuilder, kind: MsgKind, value: Uint8Array | null): Uint8Array {
  builder.reset();
  for (let i = 0; i < messagesPerFrame; i++) {
    const key = keys[i]!;
    if (
      !builder.append(
        config.peer,
        kind,
        key,
        0,
        key.length,
        2 ** 33 + i * 2,
        1,
        7,
        false,
        value,
        0,
        value === null ? 0 : value.length,
      )
    )
      throw new Error("frame too small for the benchmark");
  }
  return builder.finish();
}

const builder = new FrameBuilder(config);
const ackFrame = buildFrame(builder, MsgKind.Ack, null).slice();
const invFrame = buildFrame(builder, MsgKind.Inv, value32).slice();
const decoder = new FrameDecoder({
  clusterId: 1,
  shardIndex: 0,
  frameBytesMax,
  keyBytesMax,
  valueBytesMax: config.valueBytesMax,
});
let sink = 0;
// A handler that touches what a replica would: the key, the version and the value length.
const handler: MessageHandler = (
  _from,
  _kind,
  key,
  keyAt,
  keyLength,
  version,
  _writer,
  _epoch,
  _rmw,
  _value,
  _valueAt,
  valueLength,
) => {
  sink += key[keyAt]! + keyLength + version + valueLength;
};

console.log(`frame bytes: 64 ACKs = ${ackFrame.length}, 64 INVs with 32-byte values = ${invFrame.length}`);

summary(() => {
  group("64-message frame", () => {
    bench("encode 64 ACKs", () => do_not_optimize(buildFrame(builder, MsgKind.Ack, null)));
    bench("decode 64 ACKs", () => {
      decoder.decode(ackFrame, handler);
      do_not_optimize(sink);
    });
    bench("encode 64 INVs (32-byte values)", () => do_not_optimize(buildFrame(builder, MsgKind.Inv, value32)));
    bench("decode 64 INVs (32-byte values)", () => {
      decoder.decode(invFrame, handler);
      do_not_optimize(sink);
    });
  });
});

await run({ colors: false });
