// The MAC of replica traffic: every protocol frame carries a tag that proves it was made by a holder
// of the cluster key, for this receiver, by this sender. Verified by the decoder before it reads a
// single message, so a forged frame never reaches the core (layout.ts: flag frameFlagMac, trailer).
//
// Algorithm: HMAC-SHA-256 truncated to frameMacBytes (16: 128 bits, RFC 2104 section 5 allows
// truncation to half the hash), under a key per ordered pair of nodes derived from the cluster's
// frame key: linkKey(from, to) = HMAC-SHA-256(frameKey, "link" | from | to). The pair in the key
// binds sender and receiver without a byte on the wire: a frame node 1 sent to node 0 does not
// verify at node 2 (nor as node 2's), and the header binds the rest (cluster id, shard index,
// sender epoch, message count and length).
//
// What a replay can do (README "The cluster key"; test/worker/frame-replay.test.ts shows it):
// the MAC has no sequence number, so an attacker on the network can capture a valid frame and send
// it again, later, to the same receiver. It gets exactly what a duplicated or delayed packet gets,
// which the protocol tolerates by design (UDP duplicates and reorders, and Hermes retransmits INVs
// itself): an INV at or below the receiver's timestamp for the key changes nothing (it is answered
// with an ACK); an ACK counts only for the update with exactly its timestamp, which a coordinator
// never reuses, once per sender; a VAL validates only a key whose timestamp equals its own, which it
// does only after its ACKs were in; an INV, ACK or Reject of an earlier epoch is dropped by the core
// (which also stops an INV held since before its writer restarted under the same id, and so could
// reuse the timestamp, see docs/benchmarks.md "Simulation": a restart is a new epoch). It cannot make
// a value the key never had, raise a timestamp, or move a frame to another receiver, sender, shard
// or cluster. It can keep a receiver busy (as any flood can) and refresh the liveness "last heard"
// of the sender it replays, which only delays the failure detector's suspicion of a silent node
// (the etcd lease still removes a crashed one).
//
// Cost: one HMAC per frame, not per message (a frame batches many). Bun's CryptoHasher with an HMAC
// key is native SHA-256; each frame copies a keyed hasher (precomputed pads) rather than keying a
// new one: measured in bench/frame-mac.bench.ts, and the in-process bench (docs/benchmarks.md).

import { createHmac } from "node:crypto";
import { assert } from "../base/assert.ts";
import { nodeIdMax, type NodeId } from "../base/ids.ts";
import { clusterKeyBytes } from "../base/cluster-key.ts";
import { frameMacBytes } from "./layout.ts";

export { frameMacBytes };

/** Bun writes an HMAC digest only into a buffer of at least a SHA-512 block's digest (64 bytes). */
const digestScratchBytes = 64;

export class FrameMac {
  readonly self: NodeId;
  readonly #frameKey: Uint8Array;
  /** Keyed hashers for frames this node sends to [peer], and receives from [peer]; made on first use. */
  readonly #toPeer: (Bun.CryptoHasher | null)[] = [];
  readonly #fromPeer: (Bun.CryptoHasher | null)[] = [];
  readonly #digest = new Uint8Array(digestScratchBytes);

  /** `frameKey`: deriveClusterKey(clusterKey, clusterKeyLabel.frameMac); `self`: this node. */
  constructor(frameKey: Uint8Array, self: NodeId) {
    assert(frameKey.length === clusterKeyBytes, "a frame key is clusterKeyBytes long");
    assert(Number.isInteger(self) && self >= 0 && self <= nodeIdMax, "self must be a NodeId");
    this.#frameKey = frameKey.slice();
    this.self = self;
    for (let id = 0; id <= nodeIdMax; id++) {
      this.#toPeer.push(null);
      this.#fromPeer.push(null);
    }
  }

  /** Writes the tag of `frame[0..length)`, for `to`, at `frame[length..length+frameMacBytes)`. */
  sign(frame: Uint8Array, length: number, to: NodeId): void {
    assert(length + frameMacBytes <= frame.length, "no room for the tag");
    const base = (this.#toPeer[to] ??= this.#linkHasher(this.self, to));
    const digest = this.#tag(base, frame, length);
    for (let i = 0; i < frameMacBytes; i++) frame[length + i] = digest[i]!;
  }

  /** Whether the last frameMacBytes of `frame` are the tag of the rest, as sent by `from` to this node. */
  verify(frame: Uint8Array, from: NodeId): boolean {
    const length = frame.length - frameMacBytes;
    if (length < 0 || from > nodeIdMax) return false;
    const base = (this.#fromPeer[from] ??= this.#linkHasher(from, this.self));
    const digest = this.#tag(base, frame, length);
    // Constant time: every byte is compared whatever the first difference.
    let difference = 0;
    for (let i = 0; i < frameMacBytes; i++) difference |= digest[i]! ^ frame[length + i]!;
    return difference === 0;
  }

  #tag(base: Bun.CryptoHasher, frame: Uint8Array, length: number): Uint8Array {
    // Per frame: one copy of the keyed hasher and one view; nothing per message.
    const hasher = base.copy();
    hasher.update(length === frame.length ? frame : frame.subarray(0, length));
    hasher.digest(this.#digest);
    return this.#digest;
  }

  #linkHasher(from: NodeId, to: NodeId): Bun.CryptoHasher {
    const linkKey = createHmac("sha256", this.#frameKey)
      .update(Uint8Array.of(0x6c, 0x69, 0x6e, 0x6b, from, to)) // "link" | from | to
      .digest();
    return new Bun.CryptoHasher("sha256", linkKey);
  }
}
