// Validates and decodes received frames (layout in layout.ts).
//
// A frame comes from the network, so nothing in it is trusted: the WHOLE frame is validated
// (header, every message's fields and lengths, UTF-8 of every key, exact total length) before the
// first message is dispatched, so a receiver never acts on part of a bad frame. A bad frame is
// dropped and counted by reason in WireStats; decoding never throws on input. Messages are
// dispatched as offsets into the frame (key bytes, value bytes): decoding allocates nothing. (A handler that
// throws, e.g. on a core assertion, still propagates: that is not a decoding problem.)
//
// With a cluster key (config.mac), a frame must also carry a valid tag from its sender for this node
// (frame-mac.ts): the tag is checked right after the header's fixed fields and before any message is
// read, so a forged frame is dropped (droppedBadMac, droppedUnauthenticated) and never reaches the
// core. Without a key there is no checksum: UDP and TCP carry their own, RDMA has a link-level CRC,
// and validation is about never crashing and never mis-parsing.

import { MsgKind } from "../base/kinds.ts";
import { nodeIdMax, type Epoch, type NodeId, type WriterId } from "../base/ids.ts";
import { assert } from "../base/assert.ts";
import type { FrameMac } from "./frame-mac.ts";
import { utf8Check, Utf8Kind } from "../base/utf8.ts";
import {
  codecVersion,
  frameBytesOffset,
  frameClusterIdOffset,
  frameCodecVersionOffset,
  frameEpochOffset,
  frameFlagMac,
  frameFlagsOffset,
  frameHeaderBytes,
  frameMacBytes,
  frameMagic,
  frameMagicOffset,
  frameMessageCountOffset,
  frameReservedOffset,
  frameSenderOffset,
  frameShardIndexOffset,
  messageFixedBytes,
  msgEpochOffset,
  msgFlagRmw,
  msgFlagValue,
  msgFlagsKnown,
  msgFlagsOffset,
  msgKeyBytesOffset,
  msgKindOffset,
  msgValueBytesOffset,
  msgVersionHighOffset,
  msgVersionLowOffset,
  msgWriterOffset,
  shardIndexMax,
  versionHighMax,
  versionHighWeight,
  wireKeyBytesMax,
} from "./layout.ts";

/**
 * Receives one decoded message: Outbox.send's argument list with `from` (the frame's sender) in
 * place of `to`. The key is `key[keyAt..keyAt+keyLength)` and the value `value[valueAt..valueAt+
 * valueLength)` (value null = tombstone, or no value for Ack/Val): both lie in the frame itself,
 * valid only during the call, so nothing is allocated per message; copy what you keep.
 */
export type MessageHandler = (
  from: NodeId,
  kind: MsgKind,
  key: Uint8Array,
  keyAt: number,
  keyLength: number,
  version: number,
  writer: WriterId,
  epoch: Epoch,
  rmw: boolean,
  value: Uint8Array | null,
  valueAt: number,
  valueLength: number,
) => void;

/** Counters of a decoder: what was accepted and why frames were dropped. */
export class WireStats {
  framesAccepted = 0;
  messagesAccepted = 0;
  /** Shorter than its header, than its frameBytes, or a message runs past the end. */
  droppedTruncated = 0;
  /** Longer than frameBytesMax. */
  droppedOversized = 0;
  /** Bytes left after the last message, or received length larger than frameBytes. */
  droppedTrailing = 0;
  droppedBadMagic = 0;
  droppedBadVersion = 0;
  droppedForeignCluster = 0;
  /** Addressed to another shard index than this decoder's. */
  droppedWrongShard = 0;
  /** Header sender not a NodeId, or not the peer the transport says it came from. */
  droppedBadSender = 0;
  /** Non-zero header flags or reserved bytes. */
  droppedBadHeader = 0;
  /** Unknown kind, unknown flags, version above 2^53 - 1, value on Ack/Val. */
  droppedBadMessage = 0;
  droppedKeyTooLong = 0;
  droppedValueTooLong = 0;
  droppedBadUtf8 = 0;
  /** This node has a cluster key and the frame carries no tag (a node without the key, or a forger). */
  droppedUnauthenticated = 0;
  /** The tag does not verify: another key, another sender or receiver, or a changed byte. */
  droppedBadMac = 0;

  /** Every frame dropped, whatever the reason. */
  get framesDropped(): number {
    return (
      this.droppedTruncated +
      this.droppedOversized +
      this.droppedTrailing +
      this.droppedBadMagic +
      this.droppedBadVersion +
      this.droppedForeignCluster +
      this.droppedWrongShard +
      this.droppedBadSender +
      this.droppedBadHeader +
      this.droppedBadMessage +
      this.droppedKeyTooLong +
      this.droppedValueTooLong +
      this.droppedBadUtf8 +
      this.droppedUnauthenticated +
      this.droppedBadMac
    );
  }
}

/** Why a frame was dropped; each maps to one WireStats counter. */
const enum Drop {
  None = 0,
  Truncated,
  Oversized,
  Trailing,
  BadMagic,
  BadVersion,
  ForeignCluster,
  WrongShard,
  BadSender,
  BadHeader,
  BadMessage,
  KeyTooLong,
  ValueTooLong,
  BadUtf8,
  Unauthenticated,
  BadMac,
}

export interface FrameDecoderConfig {
  /** Frames with another clusterId are dropped. */
  clusterId: number;
  /** Frames for another shard index are dropped; -1 accepts any (tools, tests). */
  shardIndex: number;
  /** Longer frames are dropped without being parsed. */
  frameBytesMax: number;
  keyBytesMax: number;
  valueBytesMax: number;
  /** This node's id: a frame claiming to come from it is forged (the core asserts it never is). */
  selfId?: NodeId;
  /** Checks the tag of every frame and drops untagged ones (the cluster key); null or absent: no key. */
  mac?: FrameMac | null;
}

/** Limits used by `decodeFrame` when none are given: the widest the format allows. */
export const wireLimitsDefault = {
  frameBytesMax: 0xffff_ffff,
  keyBytesMax: wireKeyBytesMax,
  valueBytesMax: 0xffff_ffff,
} as const;

function u16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/**
 * One receiving worker's decoder: its limits and its counters. The header fields of the frame being
 * dispatched are readable during the handler calls (`frameSender`, `frameEpoch`).
 */
export class FrameDecoder {
  readonly config: Readonly<FrameDecoderConfig>;
  readonly stats: WireStats;
  /** Sender of the frame being dispatched. */
  frameSender: NodeId = 0;
  /** The sender's epoch from the header of the frame being dispatched. */
  frameEpoch: Epoch = 0;
  readonly #mac: FrameMac | null;

  constructor(config: FrameDecoderConfig, stats: WireStats = new WireStats()) {
    assert(config.clusterId >>> 0 === config.clusterId, "clusterId must be a u32");
    assert(
      Number.isInteger(config.shardIndex) && config.shardIndex >= -1 && config.shardIndex <= shardIndexMax,
      "shardIndex must be a u8 or -1",
    );
    assert(
      Number.isInteger(config.frameBytesMax) && config.frameBytesMax >= frameHeaderBytes,
      "frameBytesMax below the header size",
    );
    assert(
      Number.isInteger(config.keyBytesMax) && config.keyBytesMax >= 0 && config.keyBytesMax <= wireKeyBytesMax,
      "keyBytesMax must fit the u16 key length",
    );
    assert(Number.isInteger(config.valueBytesMax) && config.valueBytesMax >= 0, "valueBytesMax must be >= 0");
    assert(config.mac == null || config.mac.self === config.selfId, "the frame MAC is this receiver's (selfId)");
    this.config = { ...config };
    this.#mac = config.mac ?? null;
    this.stats = stats;
  }

  /**
   * Validates `bytes` as one whole frame and, if valid, calls `handler` for each message in order.
   * `transportFrom` is the peer the transport attributes the frame to (-1: unknown); a frame whose
   * header names another sender is dropped. Returns the number of messages dispatched, or -1 when
   * the frame was dropped (counted in `stats`, nothing dispatched).
   */
  decode(bytes: Uint8Array, handler: MessageHandler, transportFrom: NodeId = -1): number {
    const drop = this.#validate(bytes, transportFrom);
    if (drop !== Drop.None) {
      this.#count(drop);
      return -1;
    }
    const count = u16(bytes, frameMessageCountOffset);
    const from = bytes[frameSenderOffset];
    this.frameSender = from;
    this.frameEpoch = u32(bytes, frameEpochOffset);
    this.stats.framesAccepted++;
    this.stats.messagesAccepted += count;
    // Every field below was checked by #validate, so this pass only reads. (Locals, so that a
    // handler decoding another frame re-entrantly cannot change this frame's state.) Keys and
    // values are handed over where they lie in the frame: no string, no view per message.
    let at = frameHeaderBytes;
    for (let i = 0; i < count; i++) {
      const kind = bytes[at + msgKindOffset] as MsgKind;
      const writer = u32(bytes, at + msgWriterOffset);
      const flags = bytes[at + msgFlagsOffset];
      const epoch = u32(bytes, at + msgEpochOffset);
      const version = u32(bytes, at + msgVersionHighOffset) * versionHighWeight + u32(bytes, at + msgVersionLowOffset);
      const valueBytes = u32(bytes, at + msgValueBytesOffset);
      const keyBytes = u16(bytes, at + msgKeyBytesOffset);
      const keyAt = at + messageFixedBytes;
      const keyEnd = keyAt + keyBytes;
      at = keyEnd + valueBytes;
      handler(
        from,
        kind,
        bytes,
        keyAt,
        keyBytes,
        version,
        writer,
        epoch,
        (flags & msgFlagRmw) !== 0,
        (flags & msgFlagValue) !== 0 ? bytes : null,
        keyEnd,
        valueBytes,
      );
    }
    return count;
  }

  #validate(bytes: Uint8Array, transportFrom: NodeId): Drop {
    const config = this.config;
    const length = bytes.length;
    if (length > config.frameBytesMax) return Drop.Oversized;
    if (length < frameHeaderBytes) return Drop.Truncated;
    if (u32(bytes, frameMagicOffset) !== frameMagic) return Drop.BadMagic;
    if (bytes[frameCodecVersionOffset] !== codecVersion) return Drop.BadVersion;
    if (u32(bytes, frameClusterIdOffset) !== config.clusterId) return Drop.ForeignCluster;
    const sender = bytes[frameSenderOffset];
    if (sender > nodeIdMax) return Drop.BadSender;
    if (transportFrom >= 0 && sender !== transportFrom) return Drop.BadSender;
    if (sender === config.selfId) return Drop.BadSender;
    if (config.shardIndex >= 0 && bytes[frameShardIndexOffset] !== config.shardIndex) return Drop.WrongShard;
    const mac = this.#mac;
    const headerFlags = bytes[frameFlagsOffset];
    if (mac !== null && headerFlags !== frameFlagMac) return Drop.Unauthenticated;
    // Without a key a tagged frame cannot be checked: a node configured apart from its cluster.
    if ((mac === null && headerFlags !== 0) || u16(bytes, frameReservedOffset) !== 0) return Drop.BadHeader;
    const frameBytes = u32(bytes, frameBytesOffset);
    const tagBytes = mac === null ? 0 : frameMacBytes;
    if (frameBytes < frameHeaderBytes + tagBytes) return Drop.BadHeader;
    if (frameBytes > length) return Drop.Truncated;
    if (frameBytes < length) return Drop.Trailing;
    // Before any message is read: nothing of a forged frame is parsed past its header.
    if (mac !== null && !mac.verify(bytes, sender)) return Drop.BadMac;
    const end = length - tagBytes;
    const count = u16(bytes, frameMessageCountOffset);
    let at = frameHeaderBytes;
    for (let i = 0; i < count; i++) {
      if (at + messageFixedBytes > end) return Drop.Truncated;
      const kind = bytes[at + msgKindOffset];
      if (kind < MsgKind.Inv || kind > MsgKind.Reject) return Drop.BadMessage;
      const flags = bytes[at + msgFlagsOffset];
      if ((flags & ~msgFlagsKnown) !== 0) return Drop.BadMessage;
      if (u32(bytes, at + msgVersionHighOffset) > versionHighMax) return Drop.BadMessage;
      // Every message names an update's timestamp, which is above the initial 0.0: the core asserts
      // it, so a forged version 0 must stop here rather than kill the worker.
      if (u32(bytes, at + msgVersionHighOffset) === 0 && u32(bytes, at + msgVersionLowOffset) === 0)
        return Drop.BadMessage;
      const valueBytes = u32(bytes, at + msgValueBytesOffset);
      if ((flags & msgFlagValue) === 0) {
        if (valueBytes !== 0) return Drop.BadMessage;
      } else if (kind !== MsgKind.Inv && kind !== MsgKind.Reject) {
        return Drop.BadMessage;
      }
      const keyBytes = u16(bytes, at + msgKeyBytesOffset);
      if (keyBytes > config.keyBytesMax) return Drop.KeyTooLong;
      if (valueBytes > config.valueBytesMax) return Drop.ValueTooLong;
      const keyAt = at + messageFixedBytes;
      // Compared before adding the value length so that a huge valueBytes cannot overflow.
      if (keyBytes > end - keyAt || valueBytes > end - keyAt - keyBytes) return Drop.Truncated;
      // Keys stay bytes in the core, but they become strings at the edges (HTTP, snapshots): a key
      // that no client could have sent must not get in.
      if (utf8Check(bytes, keyAt, keyAt + keyBytes) === Utf8Kind.Invalid) return Drop.BadUtf8;
      at = keyAt + keyBytes + valueBytes;
    }
    if (at !== end) return Drop.Trailing;
    return Drop.None;
  }

  #count(drop: Drop): void {
    const s = this.stats;
    switch (drop) {
      case Drop.Truncated:
        s.droppedTruncated++;
        break;
      case Drop.Oversized:
        s.droppedOversized++;
        break;
      case Drop.Trailing:
        s.droppedTrailing++;
        break;
      case Drop.BadMagic:
        s.droppedBadMagic++;
        break;
      case Drop.BadVersion:
        s.droppedBadVersion++;
        break;
      case Drop.ForeignCluster:
        s.droppedForeignCluster++;
        break;
      case Drop.WrongShard:
        s.droppedWrongShard++;
        break;
      case Drop.BadSender:
        s.droppedBadSender++;
        break;
      case Drop.BadHeader:
        s.droppedBadHeader++;
        break;
      case Drop.BadMessage:
        s.droppedBadMessage++;
        break;
      case Drop.KeyTooLong:
        s.droppedKeyTooLong++;
        break;
      case Drop.ValueTooLong:
        s.droppedValueTooLong++;
        break;
      case Drop.BadUtf8:
        s.droppedBadUtf8++;
        break;
      case Drop.Unauthenticated:
        s.droppedUnauthenticated++;
        break;
      case Drop.BadMac:
        s.droppedBadMac++;
        break;
      default:
        assert(false, "unknown drop reason");
    }
  }
}

/**
 * One-shot form: validates and dispatches one frame of cluster `expectedClusterId`, any shard.
 * Returns the messages dispatched, or -1 when dropped (counted in `stats` if given).
 */
export function decodeFrame(
  bytes: Uint8Array,
  expectedClusterId: number,
  handler: MessageHandler,
  stats: WireStats = new WireStats(),
  limits: { frameBytesMax: number; keyBytesMax: number; valueBytesMax: number } = wireLimitsDefault,
): number {
  const decoder = new FrameDecoder({ clusterId: expectedClusterId, shardIndex: -1, ...limits }, stats);
  return decoder.decode(bytes, handler);
}
