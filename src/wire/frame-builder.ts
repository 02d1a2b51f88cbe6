// Encodes protocol messages for one peer into one pre-allocated frame buffer.
//
// The worker keeps one FrameBuilder per peer and implements Outbox.send as `builder.append(...)`;
// when append returns false the frame is full: the worker sends `finish()`, calls `reset()` and
// appends again. With a FrameMac, finish() also writes the tag (layout.ts, frame-mac.ts) into the
// last frameMacBytes of the buffer, which append then leaves free. Nothing is allocated per message: the key's bytes and the value are copied in
// place from wherever the core lends them (its store's slab), so they can change as soon as append
// returns.

import { assert } from "../base/assert.ts";
import { MsgKind } from "../base/kinds.ts";
import { isWriterId, nodeIdMax, type Epoch, type NodeId, type WriterId } from "../base/ids.ts";
import type { FrameMac } from "./frame-mac.ts";
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
  frameMessagesMax,
  frameReservedOffset,
  frameSenderOffset,
  frameShardIndexOffset,
  frameValueBytesMax,
  messageFixedBytes,
  msgEpochOffset,
  msgFlagRmw,
  msgFlagValue,
  msgFlagsOffset,
  msgKeyBytesOffset,
  msgKindOffset,
  msgValueBytesOffset,
  msgVersionHighOffset,
  msgVersionLowOffset,
  msgWriterOffset,
  shardIndexMax,
  versionHighWeight,
  wireKeyBytesMax,
} from "./layout.ts";

export interface FrameBuilderConfig {
  /** Identifies the cluster; receivers drop frames with another id. */
  clusterId: number;
  /** This node. */
  sender: NodeId;
  /** The one peer this builder's frames go to (asserted against `append`'s `to`). */
  peer: NodeId;
  /** The worker (shard) index, the same on both ends. */
  shardIndex: number;
  /** The buffer size: the transport's frameBytesMax. */
  frameBytesMax: number;
  /** Largest key (UTF-8 bytes) the node accepts. */
  keyBytesMax: number;
  /** Largest value the node accepts; must be <= frameValueBytesMax(frameBytesMax, keyBytesMax). */
  valueBytesMax: number;
  /** Signs every frame (the cluster key's frame MAC); null or absent: frames go untagged. */
  mac?: FrameMac | null;
}

export class FrameBuilder {
  readonly config: Readonly<FrameBuilderConfig>;
  /** The sender's current membership epoch, written into the header by `finish`. */
  senderEpoch: Epoch = 0;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #mac: FrameMac | null;
  /** Messages end by here: the buffer's end, less the tag's room with a MAC. */
  readonly #messagesEnd: number;
  #byteLength = frameHeaderBytes;
  #messageCount = 0;

  constructor(config: FrameBuilderConfig) {
    const { clusterId, sender, peer, shardIndex, frameBytesMax, keyBytesMax, valueBytesMax } = config;
    assert(clusterId >>> 0 === clusterId, "clusterId must be a u32");
    assert(Number.isInteger(sender) && sender >= 0 && sender <= nodeIdMax, "sender must be a NodeId");
    assert(Number.isInteger(peer) && peer >= 0 && peer <= nodeIdMax, "peer must be a NodeId");
    assert(Number.isInteger(shardIndex) && shardIndex >= 0 && shardIndex <= shardIndexMax, "shardIndex must be a u8");
    assert(Number.isInteger(frameBytesMax) && frameBytesMax >>> 0 === frameBytesMax, "frameBytesMax must be a u32");
    assert(
      Number.isInteger(keyBytesMax) && keyBytesMax >= 1 && keyBytesMax <= wireKeyBytesMax,
      "keyBytesMax must fit the u16 key length",
    );
    assert(Number.isInteger(valueBytesMax) && valueBytesMax >= 0, "valueBytesMax must be >= 0");
    // The boundary guarantee: any message within the limits fits an empty frame, so `append`
    // returning false always means "flush and retry", never "this can never be sent".
    assert(
      valueBytesMax <= frameValueBytesMax(frameBytesMax, keyBytesMax),
      "valueBytesMax too large for one INV per frame: see frameValueBytesMax",
    );
    assert(config.mac == null || config.mac.self === sender, "the frame MAC is this sender's");
    this.config = { ...config };
    this.#mac = config.mac ?? null;
    this.#messagesEnd = this.#mac === null ? frameBytesMax : frameBytesMax - frameMacBytes;
    this.#bytes = new Uint8Array(frameBytesMax);
    this.#view = new DataView(this.#bytes.buffer);
  }

  get messageCount(): number {
    return this.#messageCount;
  }

  /** Bytes of the frame so far, header included. */
  get byteLength(): number {
    return this.#byteLength;
  }

  get isEmpty(): boolean {
    return this.#messageCount === 0;
  }

  /**
   * Appends one message (Outbox.send's argument list): the key is `key[keyAt..keyAt+keyLength)`
   * (UTF-8), the value `value[valueAt..valueAt+valueLength)` (null: none, or a tombstone).
   * Returns false, and leaves the frame as it was, when the message does not fit: send
   * `finish()`, `reset()`, and append it again. Both are copied; the caller may change them as
   * soon as this returns.
   */
  append(
    to: NodeId,
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
  ): boolean {
    const config = this.config;
    assert(to === config.peer, "frame builder used for another peer");
    assert(kind >= MsgKind.Inv && kind <= MsgKind.Reject, "message kind is not a MsgKind");
    assert(Number.isSafeInteger(version), "version must be a safe integer");
    assert(version > 0, "every message names an update's timestamp, above the initial 0.0 (the decoder drops 0)");
    assert(isWriterId(writer), "writer must be a WriterId (a u32)");
    assert(epoch >>> 0 === epoch, "epoch must be a u32");
    const carriesValue = kind === MsgKind.Inv || kind === MsgKind.Reject;
    assert(carriesValue || value === null, "only Inv and Reject carry a value");
    assert(keyLength <= config.keyBytesMax, "key longer than keyBytesMax");
    const valueBytes = value === null ? 0 : valueLength;
    assert(valueBytes <= config.valueBytesMax, "value larger than valueBytesMax");
    if (this.#messageCount === frameMessagesMax) return false;

    const bytes = this.#bytes;
    const start = this.#byteLength;
    const keyTo = start + messageFixedBytes;
    const keyEnd = keyTo + keyLength;
    if (keyEnd + valueBytes > this.#messagesEnd) {
      // The frame is full; the message alone always fits an empty frame (see the constructor).
      assert(this.#messageCount > 0, "message larger than an empty frame");
      return false;
    }
    copyInto(bytes, keyTo, key, keyAt, keyLength);
    if (value !== null) copyInto(bytes, keyEnd, value, valueAt, valueBytes);

    const view = this.#view;
    view.setUint8(start + msgKindOffset, kind);
    view.setUint8(start + msgFlagsOffset, (rmw ? msgFlagRmw : 0) | (value !== null ? msgFlagValue : 0));
    view.setUint32(start + msgWriterOffset, writer, true);
    view.setUint32(start + msgEpochOffset, epoch, true);
    view.setUint32(start + msgVersionLowOffset, version >>> 0, true);
    view.setUint32(start + msgVersionHighOffset, Math.floor(version / versionHighWeight), true);
    view.setUint32(start + msgValueBytesOffset, valueBytes, true);
    view.setUint16(start + msgKeyBytesOffset, keyLength, true);
    this.#byteLength = keyEnd + valueBytes;
    this.#messageCount++;
    return true;
  }

  /**
   * Writes the header (and the tag, with a MAC) and returns the frame: a view of the builder's
   * buffer, valid until the next `append` or `reset` (transports copy or send it before returning).
   * May be called again.
   */
  finish(): Uint8Array {
    const view = this.#view;
    const config = this.config;
    const mac = this.#mac;
    const frameBytes = mac === null ? this.#byteLength : this.#byteLength + frameMacBytes;
    assert(this.senderEpoch >>> 0 === this.senderEpoch, "senderEpoch must be a u32");
    view.setUint32(frameMagicOffset, frameMagic, true);
    view.setUint8(frameCodecVersionOffset, codecVersion);
    view.setUint8(frameSenderOffset, config.sender);
    view.setUint8(frameShardIndexOffset, config.shardIndex);
    view.setUint8(frameFlagsOffset, mac === null ? 0 : frameFlagMac);
    view.setUint32(frameClusterIdOffset, config.clusterId, true);
    view.setUint32(frameEpochOffset, this.senderEpoch, true);
    view.setUint16(frameMessageCountOffset, this.#messageCount, true);
    view.setUint16(frameReservedOffset, 0, true);
    view.setUint32(frameBytesOffset, frameBytes, true);
    if (mac !== null) mac.sign(this.#bytes, this.#byteLength, config.peer);
    return this.#bytes.subarray(0, frameBytes);
  }

  /** Empties the frame (after it was sent). */
  reset(): void {
    this.#byteLength = frameHeaderBytes;
    this.#messageCount = 0;
  }
}

/** Ranges up to this size are copied by a loop, larger ones by set() (a memcpy with more setup and a view). */
const copyLoopBytesMax = 64;

function copyInto(to: Uint8Array, toAt: number, from: Uint8Array, fromAt: number, length: number): void {
  if (length <= copyLoopBytesMax) {
    for (let i = 0; i < length; i++) to[toAt + i] = from[fromAt + i];
    return;
  }
  to.set(from.subarray(fromAt, fromAt + length), toAt);
}
