import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../src/base/assert.ts";
import { MsgKind } from "../../src/base/kinds.ts";
import { FrameBuilder, type FrameBuilderConfig } from "../../src/wire/frame-builder.ts";
import { decodeFrame, FrameDecoder, WireStats } from "../../src/wire/frame-decoder.ts";
import {
  frameBytesOffset,
  frameEpochOffset,
  frameFlagsOffset,
  frameHeaderBytes,
  frameMacBytes,
  frameMessagesMax,
  frameValueBytesMax,
  messageBytes,
  messageFixedBytes,
  codecVersion,
  msgFlagsOffset,
  msgVersionHighOffset,
  msgVersionLowOffset,
} from "../../src/wire/layout.ts";
import { appendText, textHandler } from "../lib/key-bytes.ts";

interface Msg {
  from: number;
  kind: MsgKind;
  key: string;
  version: number;
  writer: number;
  epoch: number;
  rmw: boolean;
  value: Uint8Array | null;
}

const clusterId = 0xc0ffee;
const frameBytesMax = 1400;
const keyBytesMax = 200;
const baseConfig: FrameBuilderConfig = {
  clusterId,
  sender: 3,
  peer: 5,
  shardIndex: 1,
  frameBytesMax,
  keyBytesMax,
  valueBytesMax: frameValueBytesMax(frameBytesMax, keyBytesMax),
};

function decoderFor(config: FrameBuilderConfig, stats = new WireStats()): FrameDecoder {
  return new FrameDecoder(
    {
      clusterId: config.clusterId,
      shardIndex: config.shardIndex,
      frameBytesMax: config.frameBytesMax,
      keyBytesMax: config.keyBytesMax,
      valueBytesMax: config.valueBytesMax,
    },
    stats,
  );
}

/** Decodes into plain objects, copying values (they are views into the frame). */
function collect(decoder: FrameDecoder, frame: Uint8Array, transportFrom = -1): { count: number; msgs: Msg[] } {
  const msgs: Msg[] = [];
  const count = decoder.decode(
    frame,
    textHandler((from, kind, key, version, writer, epoch, rmw, value) => {
      msgs.push({ from, kind, key, version, writer, epoch, rmw, value });
    }),
    transportFrom,
  );
  return { count, msgs };
}

function append(b: FrameBuilder, m: Msg): boolean {
  return appendText(b, b.config.peer, m.kind, m.key, m.version, m.writer, m.epoch, m.rmw, m.value);
}

const samples: Msg[] = [
  {
    from: 3,
    kind: MsgKind.Inv,
    key: "user:1",
    version: 2,
    writer: 3,
    epoch: 1,
    rmw: false,
    value: new Uint8Array([1, 2, 3]),
  },
  { from: 3, kind: MsgKind.Inv, key: "tomb", version: 4, writer: 0, epoch: 1, rmw: false, value: null },
  {
    from: 3,
    kind: MsgKind.Inv,
    key: "empty",
    version: 6,
    writer: 31,
    epoch: 0xffff_ffff,
    rmw: true,
    value: new Uint8Array(0),
  },
  { from: 3, kind: MsgKind.Ack, key: "user:1", version: 2 ** 32, writer: 3, epoch: 7, rmw: false, value: null },
  { from: 3, kind: MsgKind.Ack, key: "rmw-ack", version: 2 ** 32 - 1, writer: 3, epoch: 7, rmw: true, value: null },
  { from: 3, kind: MsgKind.Val, key: "ключ🔑", version: 2 ** 53 - 1, writer: 30, epoch: 0, rmw: false, value: null },
  // Writer ids of restarted processes (incarnation * 32 + node id, src/base/ids.ts), up to the largest u32.
  { from: 3, kind: MsgKind.Ack, key: "restarted", version: 5, writer: 2 * 32 + 3, epoch: 7, rmw: false, value: null },
  { from: 3, kind: MsgKind.Val, key: "last", version: 5, writer: 0xffff_ffff, epoch: 7, rmw: true, value: null },
  {
    from: 3,
    kind: MsgKind.Reject,
    key: "κλειδί",
    version: 2 ** 53 - 2,
    writer: 1,
    epoch: 9,
    rmw: true,
    value: new Uint8Array([0, 255, 0]),
  },
  { from: 3, kind: MsgKind.Reject, key: "", version: 1, writer: 0, epoch: 0, rmw: false, value: null },
];

describe("wire codec", () => {
  test("every message kind round-trips (tombstones, empty values, unicode keys, versions near 2^53)", () => {
    const b = new FrameBuilder(baseConfig);
    b.senderEpoch = 42;
    for (const m of samples) expect(append(b, m)).toBe(true);
    const frame = b.finish();
    expect(frame.length).toBe(b.byteLength);
    expect(b.messageCount).toBe(samples.length);
    const d = decoderFor(baseConfig);
    const { count, msgs } = collect(d, frame, 3);
    expect(count).toBe(samples.length);
    expect(msgs).toEqual(samples);
    expect(d.frameSender).toBe(3);
    expect(d.frameEpoch).toBe(42);
    expect(d.stats.framesAccepted).toBe(1);
    expect(d.stats.messagesAccepted).toBe(samples.length);
    expect(d.stats.framesDropped).toBe(0);
  });

  test("keys and values are passed as ranges of the frame itself (no string, no view per message)", () => {
    const b = new FrameBuilder(baseConfig);
    append(b, samples[0]);
    const frame = b.finish();
    const seen: {
      key: Uint8Array;
      keyAt: number;
      keyLength: number;
      value: Uint8Array | null;
      valueAt: number;
      valueLength: number;
    }[] = [];
    decoderFor(baseConfig).decode(
      frame,
      (_f, _k, key, keyAt, keyLength, _v, _w, _e, _r, value, valueAt, valueLength) => {
        seen.push({ key, keyAt, keyLength, value, valueAt, valueLength });
      },
    );
    expect(seen.length).toBe(1);
    expect(seen[0]!.key).toBe(frame);
    expect(seen[0]!.value).toBe(frame);
    expect(new TextDecoder().decode(frame.subarray(seen[0]!.keyAt, seen[0]!.keyAt + seen[0]!.keyLength))).toBe(
      "user:1",
    );
    expect(Array.from(frame.subarray(seen[0]!.valueAt, seen[0]!.valueAt + seen[0]!.valueLength))).toEqual([1, 2, 3]);
  });

  test("an empty frame is valid and carries the sender's epoch", () => {
    const b = new FrameBuilder(baseConfig);
    b.senderEpoch = 0xffff_ffff;
    const frame = b.finish();
    expect(frame.length).toBe(frameHeaderBytes);
    const d = decoderFor(baseConfig);
    expect(
      d.decode(frame, () => {
        throw new Error("no message expected");
      }),
    ).toBe(0);
    expect(d.frameEpoch).toBe(0xffff_ffff);
  });

  test("a value of frameValueBytesMax with a key of keyBytesMax fills one frame but the MAC tag's room", () => {
    const b = new FrameBuilder(baseConfig);
    const key = "k".repeat(keyBytesMax);
    const value = new Uint8Array(baseConfig.valueBytesMax).map((_, i) => (i * 13) & 0xff);
    expect(append(b, { ...samples[0], key, value })).toBe(true);
    const frame = b.finish();
    // The tag's room is kept so that the limits do not depend on the cluster key (frame-mac.test.ts
    // shows the same message filling a tagged frame exactly).
    expect(frame.length).toBe(frameBytesMax - frameMacBytes);
    // Nothing else fits now, not even an ACK: append reports "full".
    expect(append(b, samples[3])).toBe(false);
    const { msgs } = collect(decoderFor(baseConfig), frame);
    expect(msgs[0].key).toBe(key);
    expect(msgs[0].value).toEqual(value);
    // With a 4-byte character key, the limit counts UTF-8 bytes.
    b.reset();
    expect(append(b, { ...samples[0], key: "🔑".repeat(keyBytesMax / 4), value })).toBe(true);
    expect(b.byteLength).toBe(frameBytesMax - frameMacBytes);
  });

  test("append returns false when full and leaves the frame intact; reset starts over", () => {
    const b = new FrameBuilder(baseConfig);
    const d = decoderFor(baseConfig);
    const all: Msg[] = [];
    const received: Msg[] = [];
    let frames = 0;
    for (let i = 0; i < 500; i++) {
      const m: Msg = {
        from: 3,
        kind: MsgKind.Inv,
        key: `key-${i}`,
        version: i * 2 + 2,
        writer: i % 32,
        epoch: 5,
        rmw: i % 3 === 0,
        value: new Uint8Array(i % 50).fill(i & 0xff),
      };
      all.push(m);
      if (!append(b, m)) {
        const before = b.byteLength;
        expect(append(b, m)).toBe(false);
        expect(b.byteLength).toBe(before);
        received.push(...collect(d, b.finish()).msgs);
        frames++;
        b.reset();
        expect(b.isEmpty).toBe(true);
        expect(append(b, m)).toBe(true);
      }
    }
    received.push(...collect(d, b.finish()).msgs);
    frames++;
    expect(received).toEqual(all);
    expect(frames).toBeGreaterThan(10);
    expect(messageBytes(5, 0)).toBe(messageFixedBytes + 5);
  });

  test("the message count limit ends a frame", () => {
    const config = { ...baseConfig, frameBytesMax: 4 * 1024 * 1024, valueBytesMax: 0 };
    const b = new FrameBuilder(config);
    let n = 0;
    while (appendText(b, config.peer, MsgKind.Ack, "a", 2, 1, 1, false, null)) n++;
    expect(n).toBe(frameMessagesMax);
    const { count } = collect(decoderFor(config), b.finish());
    expect(count).toBe(frameMessagesMax);
  });

  test("boundary assertions: limits, kinds, value on Ack/Val, wrong peer, config", () => {
    const b = new FrameBuilder(baseConfig);
    const peer = baseConfig.peer;
    expect(() => appendText(b, peer, MsgKind.Inv, "k".repeat(keyBytesMax + 1), 2, 1, 1, false, null)).toThrow(
      AssertionError,
    );
    expect(() => appendText(b, peer, MsgKind.Inv, "é".repeat(keyBytesMax / 2 + 1), 2, 1, 1, false, null)).toThrow(
      AssertionError,
    );
    expect(() =>
      appendText(b, peer, MsgKind.Inv, "k", 2, 1, 1, false, new Uint8Array(baseConfig.valueBytesMax + 1)),
    ).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", 2, 1, 1, false, new Uint8Array(1))).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Val, "k", 2, 1, 1, false, new Uint8Array(0))).toThrow(AssertionError);
    expect(() => appendText(b, peer, 0 as MsgKind, "k", 2, 1, 1, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", 2 ** 53, 1, 1, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", -2, 1, 1, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", 2, 2 ** 32, 1, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", 2, -1, 1, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer, MsgKind.Ack, "k", 2, 1, 2 ** 32, false, null)).toThrow(AssertionError);
    expect(() => appendText(b, peer + 1, MsgKind.Ack, "k", 2, 1, 1, false, null)).toThrow(AssertionError);
    expect(b.isEmpty).toBe(true);
    // The node must cap values so that one INV always fits: a larger cap is refused up front.
    expect(() => new FrameBuilder({ ...baseConfig, valueBytesMax: baseConfig.valueBytesMax + 1 })).toThrow(
      AssertionError,
    );
    expect(() => new FrameBuilder({ ...baseConfig, sender: 32 })).toThrow(AssertionError);
    expect(() => new FrameBuilder({ ...baseConfig, shardIndex: 256 })).toThrow(AssertionError);
    expect(() => new FrameBuilder({ ...baseConfig, keyBytesMax: 0x10000 })).toThrow(AssertionError);
    expect(frameValueBytesMax(1400, 200)).toBe(1400 - frameHeaderBytes - frameMacBytes - messageFixedBytes - 200);
  });

  test("frames are dropped and counted by reason, with nothing dispatched", () => {
    const b = new FrameBuilder(baseConfig);
    for (const m of samples) append(b, m);
    const good = b.finish().slice();
    const stats = new WireStats();
    const d = decoderFor(baseConfig, stats);
    const fail = () => {
      throw new Error("dispatched from a dropped frame");
    };
    const mutated = (f: (x: Uint8Array, v: DataView) => void): Uint8Array => {
      const x = good.slice();
      f(x, new DataView(x.buffer));
      return x;
    };
    const cases: [keyof WireStats, Uint8Array, number?][] = [
      ["droppedTruncated", good.subarray(0, 10)],
      ["droppedTruncated", good.subarray(0, good.length - 1)],
      ["droppedTrailing", new Uint8Array([...good, 0])],
      ["droppedBadMagic", mutated((x) => (x[0] ^= 1))],
      ["droppedBadVersion", mutated((x) => (x[4] = codecVersion - 1))],
      ["droppedForeignCluster", mutated((x) => (x[8] ^= 0x10))],
      ["droppedBadSender", mutated((x) => (x[5] = 32))],
      ["droppedBadSender", good, 4],
      ["droppedWrongShard", mutated((x) => (x[6] = 2))],
      ["droppedBadHeader", mutated((x) => (x[frameFlagsOffset] = 1))],
      ["droppedBadHeader", mutated((_x, v) => v.setUint32(frameBytesOffset, 3, true))],
      ["droppedTruncated", mutated((_x, v) => v.setUint32(frameBytesOffset, good.length + 1, true))],
      ["droppedTrailing", mutated((_x, v) => v.setUint32(frameBytesOffset, good.length - 1, true))],
      ["droppedBadMessage", mutated((x) => (x[frameHeaderBytes] = 9))],
      ["droppedBadMessage", mutated((x) => (x[frameHeaderBytes + msgFlagsOffset] |= 4))],
      ["droppedBadMessage", mutated((_x, v) => v.setUint32(frameHeaderBytes + msgVersionHighOffset, 0x20_0000, true))],
    ];
    let expected = 0;
    for (const [counter, frame, from] of cases) {
      const before = stats[counter] as number;
      expect(d.decode(frame, fail, from ?? -1)).toBe(-1);
      expect(stats[counter] as number).toBe(before + 1);
      expect(stats.framesDropped).toBe(++expected);
    }
    expect(stats.framesAccepted).toBe(0);
    expect(d.decode(good, () => {}, 3)).toBe(samples.length);
  });

  test("a message with timestamp 0.0 and a frame claiming to come from the receiver itself are dropped", () => {
    const stats = new WireStats();
    const fail = () => {
      throw new Error("dispatched from a dropped frame");
    };
    const b = new FrameBuilder(baseConfig);
    append(b, { ...samples[3]!, version: 2 });
    const frame = b.finish().slice();
    const view = new DataView(frame.buffer);
    view.setUint32(frameHeaderBytes + msgVersionHighOffset, 0, true);
    view.setUint32(frameHeaderBytes + msgVersionLowOffset, 0, true);
    expect(decoderFor(baseConfig, stats).decode(frame, fail)).toBe(-1);
    expect(stats.droppedBadMessage).toBe(1);
    view.setUint32(frameHeaderBytes + msgVersionLowOffset, 2, true);
    const asSelf = new FrameDecoder({ ...decoderFor(baseConfig).config, selfId: baseConfig.sender }, stats);
    expect(asSelf.decode(frame, fail)).toBe(-1);
    expect(stats.droppedBadSender).toBe(1);
    expect(decoderFor(baseConfig, stats).decode(frame, () => {})).toBe(1);
  });

  test("ACK/VAL with a value, bad UTF-8 keys and over-limit lengths are dropped", () => {
    const stats = new WireStats();
    const fail = () => {
      throw new Error("dispatched from a dropped frame");
    };
    const one = (m: Msg): Uint8Array => {
      const b = new FrameBuilder(baseConfig);
      append(b, m);
      return b.finish().slice();
    };
    const d = decoderFor(baseConfig, stats);
    // An ACK carrying a value flag.
    const ack = one(samples[3]);
    ack[frameHeaderBytes + msgFlagsOffset] |= 2;
    expect(d.decode(ack, fail)).toBe(-1);
    expect(stats.droppedBadMessage).toBe(1);
    // A value length on a message without the value flag.
    const tomb = one(samples[1]);
    new DataView(tomb.buffer).setUint32(frameHeaderBytes + 16, 1, true);
    expect(d.decode(tomb, fail)).toBe(-1);
    expect(stats.droppedBadMessage).toBe(2);
    // An invalid UTF-8 key byte (0xff) in an otherwise valid frame.
    const bad = one({ ...samples[0], key: "abc" });
    bad[frameHeaderBytes + messageFixedBytes + 1] = 0xff;
    expect(d.decode(bad, fail)).toBe(-1);
    expect(stats.droppedBadUtf8).toBe(1);
    // Keys and values over this receiver's (smaller) limits.
    const strict = new FrameDecoder(
      { clusterId, shardIndex: 1, frameBytesMax, keyBytesMax: 3, valueBytesMax: 2 },
      stats,
    );
    expect(strict.decode(one({ ...samples[0], key: "abcd", value: null }), fail)).toBe(-1);
    expect(stats.droppedKeyTooLong).toBe(1);
    expect(strict.decode(one({ ...samples[0], key: "abc", value: new Uint8Array(3) }), fail)).toBe(-1);
    expect(stats.droppedValueTooLong).toBe(1);
    // A frame over this receiver's frameBytesMax is not even parsed.
    const small = new FrameDecoder(
      { clusterId, shardIndex: 1, frameBytesMax: 30, keyBytesMax, valueBytesMax: 100 },
      stats,
    );
    expect(small.decode(one(samples[0]), fail)).toBe(-1);
    expect(stats.droppedOversized).toBe(1);
    expect(stats.framesAccepted).toBe(0);
  });

  test("decodeFrame: one-shot decoding with a cluster check", () => {
    const b = new FrameBuilder(baseConfig);
    for (const m of samples) append(b, m);
    const frame = b.finish();
    const stats = new WireStats();
    const keys: string[] = [];
    expect(
      decodeFrame(
        frame,
        clusterId,
        textHandler((_f, _k, key) => keys.push(key)),
        stats,
      ),
    ).toBe(samples.length);
    expect(keys).toEqual(samples.map((m) => m.key));
    expect(decodeFrame(frame, clusterId + 1, () => keys.push("x"), stats)).toBe(-1);
    expect(stats.droppedForeignCluster).toBe(1);
    expect(keys.length).toBe(samples.length);
    expect(new DataView(frame.buffer).getUint32(frameEpochOffset, true)).toBe(0);
  });
});
