// The frame MAC (src/wire/frame-mac.ts): a tagged frame is accepted only by its one receiver, from its
// one sender, under the same cluster key, and byte for byte as it was sent; every other frame is
// dropped by reason before a single message is dispatched.

import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../../src/base/cluster-key.ts";
import { MsgKind } from "../../src/base/kinds.ts";
import { FrameBuilder, type FrameBuilderConfig } from "../../src/wire/frame-builder.ts";
import { FrameDecoder, WireStats } from "../../src/wire/frame-decoder.ts";
import { FrameMac } from "../../src/wire/frame-mac.ts";
import {
  frameBytesOffset,
  frameEpochOffset,
  frameFlagMac,
  frameFlagsOffset,
  frameHeaderBytes,
  frameMacBytes,
  frameMessageCountOffset,
  frameValueBytesMax,
} from "../../src/wire/layout.ts";
import { appendText, textHandler } from "../lib/key-bytes.ts";

const clusterId = 0x5ec;
const frameBytesMax = 1400;
const keyBytesMax = 200;
const clusterKey = generateClusterKey();
const frameKey = deriveClusterKey(clusterKey, clusterKeyLabel.frameMac);

function builder(sender: number, peer: number, key: Uint8Array | null = frameKey): FrameBuilder {
  const config: FrameBuilderConfig = {
    clusterId,
    sender,
    peer,
    shardIndex: 0,
    frameBytesMax,
    keyBytesMax,
    valueBytesMax: frameValueBytesMax(frameBytesMax, keyBytesMax),
    mac: key === null ? null : new FrameMac(key, sender),
  };
  return new FrameBuilder(config);
}

function decoder(self: number, key: Uint8Array | null = frameKey, stats = new WireStats()): FrameDecoder {
  return new FrameDecoder(
    {
      clusterId,
      shardIndex: 0,
      frameBytesMax,
      keyBytesMax,
      valueBytesMax: frameValueBytesMax(frameBytesMax, keyBytesMax),
      selfId: self,
      mac: key === null ? null : new FrameMac(key, self),
    },
    stats,
  );
}

/** A frame from `sender` to `peer` with an INV and an ACK, copied out of the builder. */
function frame(sender = 1, peer = 0, key: Uint8Array | null = frameKey): Uint8Array {
  const b = builder(sender, peer, key);
  b.senderEpoch = 3;
  appendText(b, peer, MsgKind.Inv, "k", 7, sender, 3, false, new Uint8Array([1, 2, 3]));
  appendText(b, peer, MsgKind.Ack, "other", 5, 2, 3, false, null);
  return b.finish().slice();
}

const dispatched: string[] = [];
const record = textHandler((from, kind, key) => dispatched.push(`${from}:${kind}:${key}`));
const fail = () => {
  throw new Error("dispatched from a dropped frame");
};

describe("frame MAC", () => {
  test("a tagged frame ends with the tag, flags say so, and its receiver accepts it", () => {
    const f = frame();
    expect(f[frameFlagsOffset]).toBe(frameFlagMac);
    expect(new DataView(f.buffer).getUint32(frameBytesOffset, true)).toBe(f.length);
    // The tag is HMAC-SHA-256/128 under the 1->0 link key, of everything before it.
    const linkKey = createHmac("sha256", frameKey)
      .update(Uint8Array.of(0x6c, 0x69, 0x6e, 0x6b, 1, 0))
      .digest();
    const tag = createHmac("sha256", linkKey)
      .update(f.subarray(0, f.length - frameMacBytes))
      .digest()
      .subarray(0, frameMacBytes);
    expect(Buffer.from(f.subarray(f.length - frameMacBytes)).equals(tag)).toBe(true);
    dispatched.length = 0;
    const d = decoder(0);
    expect(d.decode(f, record, 1)).toBe(2);
    expect(dispatched).toEqual([`1:${MsgKind.Inv}:k`, `1:${MsgKind.Ack}:other`]);
    expect(d.stats.framesDropped).toBe(0);
  });

  test("another key, another receiver, another sender, an untagged frame, a changed byte: dropped by reason", () => {
    const stats = new WireStats();
    const at0 = decoder(0, frameKey, stats);
    const good = frame();
    // Another cluster key (a hostile node that was given the wrong key file).
    expect(at0.decode(frame(1, 0, deriveClusterKey(generateClusterKey(), clusterKeyLabel.frameMac)), fail, 1)).toBe(-1);
    expect(stats.droppedBadMac).toBe(1);
    // The same key under another label is another key: an HTTP proof key cannot sign frames.
    expect(at0.decode(frame(1, 0, deriveClusterKey(clusterKey, clusterKeyLabel.internalHttp)), fail, 1)).toBe(-1);
    expect(stats.droppedBadMac).toBe(2);
    // Node 1's frame for node 2, replayed to node 0 (the receiver is in the link key).
    expect(at0.decode(frame(1, 2), fail, 1)).toBe(-1);
    expect(stats.droppedBadMac).toBe(3);
    // Node 2's frame with its sender byte rewritten to 1 (the sender is in the key and the header).
    const resent = frame(2, 0);
    resent[5] = 1;
    expect(at0.decode(resent, fail, 1)).toBe(-1);
    expect(stats.droppedBadMac).toBe(4);
    // No tag at all: a node without the key, or a forger who cannot make one.
    expect(at0.decode(frame(1, 0, null), fail, 1)).toBe(-1);
    expect(stats.droppedUnauthenticated).toBe(1);
    // Every single byte of a good frame changed, one at a time: dropped, never dispatched.
    let macDrops = 0;
    for (let i = 0; i < good.length; i++) {
      const x = good.slice();
      x[i] ^= 0x20;
      const before = stats.framesDropped;
      expect(at0.decode(x, fail, 1)).toBe(-1);
      expect(stats.framesDropped).toBe(before + 1);
      const checkedAfterTag =
        i >= frameHeaderBytes ||
        (i >= frameEpochOffset && i < frameEpochOffset + 4) ||
        (i >= frameMessageCountOffset && i < frameMessageCountOffset + 2);
      if (checkedAfterTag) macDrops++;
    }
    // Only the header's fixed fields (magic, version, cluster, sender, shard, flags, length) are looked
    // at before the tag: a change anywhere else (epoch, count, messages, tag) is a MAC drop.
    expect(stats.droppedBadMac).toBe(4 + macDrops);
    expect(stats.framesAccepted).toBe(0);
    expect(at0.decode(good, () => {}, 1)).toBe(2);
  });

  test("a node without a key drops tagged frames (it cannot check them); untagged traffic is unchanged", () => {
    const stats = new WireStats();
    const plain = decoder(0, null, stats);
    expect(plain.decode(frame(), fail, 1)).toBe(-1);
    expect(stats.droppedBadHeader).toBe(1);
    expect(plain.decode(frame(1, 0, null), () => {}, 1)).toBe(2);
  });

  test("a message of frameValueBytesMax with a key of keyBytesMax fills a tagged frame exactly", () => {
    const b = builder(1, 0);
    const value = new Uint8Array(frameValueBytesMax(frameBytesMax, keyBytesMax)).fill(9);
    expect(appendText(b, 0, MsgKind.Inv, "k".repeat(keyBytesMax), 1, 1, 0, false, value)).toBe(true);
    expect(appendText(b, 0, MsgKind.Ack, "a", 1, 1, 0, false, null)).toBe(false);
    const f = b.finish();
    expect(f.length).toBe(frameBytesMax);
    expect(decoder(0).decode(f, () => {}, 1)).toBe(1);
  });

  test("finish() may be called again: the tag follows the frame's content", () => {
    const b = builder(1, 0);
    appendText(b, 0, MsgKind.Val, "x", 2, 1, 0, false, null);
    const first = b.finish().slice();
    appendText(b, 0, MsgKind.Val, "y", 3, 1, 0, false, null);
    const second = b.finish().slice();
    const d = decoder(0);
    expect(d.decode(first, () => {}, 1)).toBe(1);
    expect(d.decode(second, () => {}, 1)).toBe(2);
  });
});
