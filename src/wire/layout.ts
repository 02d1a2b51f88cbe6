// Byte layout of a protocol frame: one frame carries many Hermes messages from worker i of the
// sender to worker i of one peer. Every field is little-endian; offsets are named here and used by
// both the builder and the decoder, so the two cannot drift apart.
//
// Frame header (frameHeaderBytes = 24):
//    0 u32 magic          frameMagic: the bytes "HRMF"
//    4 u8  codecVersion   codecVersion; a receiver drops other versions
//    5 u8  sender         NodeId of the sending node (0..nodeIdMax)
//    6 u8  shardIndex     the worker (shard) on both ends
//    7 u8  flags          frameFlagMac, or 0; other bits must be 0
//    8 u32 clusterId      frames of another cluster are dropped (two clusters on one network)
//   12 u32 epoch          the sender's current membership epoch
//   16 u16 messageCount   messages that follow (0 is a valid, empty frame)
//   18 u16 reserved       must be 0
//   20 u32 frameBytes     total length including this header and the tag; must equal the received length
//   24 messages, back to back, no padding
//      with frameFlagMac: a 16-byte tag (frameMacBytes) ends the frame, HMAC-SHA-256 of everything
//      before it under the sender->receiver link key (src/wire/frame-mac.ts)
//
// Versions: 1 had no flags and a u8 writer. 2 adds frameFlagMac (a node with a cluster key sends only
// tagged frames and drops untagged ones; a node without one sends untagged frames and drops tagged
// ones, which it cannot check) and widens the message's writer to a u32 writer id (a node restarted
// under its old id writes timestamps under a new incarnation; version 1 had no room for it). A
// version-1 node drops every version-2 frame (BadVersion), so a cluster is upgraded whole.
//
// Message (messageFixedBytes = 24, then the key, then the value):
//    0 u8  kind           MsgKind: Inv, Ack, Val, Reject
//    1 u8  flags          bit 0: rmw; bit 1: value present (Inv/Reject only); other bits 0
//    2 u16 keyBytes
//    4 u32 epoch          the message's epoch (Outbox.send's `epoch`)
//    8 u32 versionLow     version mod 2^32
//   12 u32 versionHigh    floor(version / 2^32) <= versionHighMax, so version <= 2^53 - 1
//   16 u32 valueBytes     0 unless the value-present flag is set
//   20 u32 writer         the timestamp's WriterId (incarnation and node id, src/base/ids.ts)
//   24 key (keyBytes of UTF-8), then the value (valueBytes)
//
// The value-present flag separates an empty value (present, 0 bytes) from a tombstone (null).

export const frameMagic = 0x464d5248; // "HRMF" read as a little-endian u32
export const codecVersion = 2;

export const frameMagicOffset = 0;
export const frameCodecVersionOffset = 4;
export const frameSenderOffset = 5;
export const frameShardIndexOffset = 6;
export const frameFlagsOffset = 7;
export const frameClusterIdOffset = 8;
export const frameEpochOffset = 12;
export const frameMessageCountOffset = 16;
export const frameReservedOffset = 18;
export const frameBytesOffset = 20;
export const frameHeaderBytes = 24;

export const msgKindOffset = 0;
export const msgFlagsOffset = 1;
export const msgKeyBytesOffset = 2;
export const msgEpochOffset = 4;
export const msgVersionLowOffset = 8;
export const msgVersionHighOffset = 12;
export const msgValueBytesOffset = 16;
export const msgWriterOffset = 20;
export const messageFixedBytes = 24;

/** Header flag: the frame ends with a MAC tag (frameMacBytes). */
export const frameFlagMac = 1;
/** Bytes of the MAC tag; reserved at the end of every frame buffer whether or not it is used. */
export const frameMacBytes = 16;

export const msgFlagRmw = 1;
export const msgFlagValue = 2;
export const msgFlagsKnown = msgFlagRmw | msgFlagValue;

/** 2^32, the weight of versionHigh. */
export const versionHighWeight = 0x1_0000_0000;
/** versionHigh of Number.MAX_SAFE_INTEGER: larger would not be an exact JS number. */
export const versionHighMax = 0x1f_ffff;
/** The messageCount field is a u16. */
export const frameMessagesMax = 0xffff;
/** The keyBytes field is a u16. */
export const wireKeyBytesMax = 0xffff;
/** Largest shard index the header can carry (u8). */
export const shardIndexMax = 0xff;

/** Bytes one message takes in a frame. */
export function messageBytes(keyBytes: number, valueBytes: number): number {
  return messageFixedBytes + keyBytes + valueBytes;
}

/**
 * Largest value that still lets one INV with a key of `keyBytesMax` fit alone in a frame of
 * `frameBytesMax`. The node caps client values at (at most) this, so every message fits a frame.
 */
export function frameValueBytesMax(frameBytesMax: number, keyBytesMax: number): number {
  // The tag's room is kept whether the cluster has a key or not: limits do not depend on the key.
  return frameBytesMax - frameHeaderBytes - frameMacBytes - messageFixedBytes - keyBytesMax;
}
