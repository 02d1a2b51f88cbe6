// The cluster key: 32 random bytes shared by every node of a cluster (`hermes-kv keygen` writes one,
// as `consul keygen` does), written as 64 hex digits. Nothing uses the key itself: each use gets its
// own key derived by HKDF-SHA-256 (RFC 5869) with a label, so that a MAC of one kind can never be
// replayed as a MAC of another (a frame tag as an HTTP proof, say), and a new use is a new label.

import { hkdfSync } from "node:crypto";

/** Bytes of a cluster key (and of every key derived from it). */
export const clusterKeyBytes = 32;

/** HKDF labels ("info"), one per use; the version suffix changes when the use's MAC input changes. */
export const clusterKeyLabel = {
  /** Per-frame MAC of replica traffic (src/wire/frame-mac.ts). */
  frameMac: "hermes-kv frame mac v1",
  /** Proof on the internal HTTP routes (src/node/internal-proof.ts). */
  internalHttp: "hermes-kv internal http v1",
} as const;

export type ClusterKeyLabel = (typeof clusterKeyLabel)[keyof typeof clusterKeyLabel];

/** Parses the text of a key file: 64 hex digits, surrounding whitespace allowed. Throws with the reason. */
export function parseClusterKey(text: string): Uint8Array {
  const hex = text.trim();
  if (hex.length !== 2 * clusterKeyBytes)
    throw new Error(
      `a cluster key is ${2 * clusterKeyBytes} hex digits (${clusterKeyBytes} bytes), got ${hex.length} characters`,
    );
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Error("a cluster key is hex digits only (0-9, a-f)");
  const key = new Uint8Array(clusterKeyBytes);
  for (let i = 0; i < clusterKeyBytes; i++) key[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  // An all-zero key is what a forgotten `keygen` or a zero-filled file gives, never a random one.
  if (key.every((b) => b === 0))
    throw new Error("the cluster key is all zeros: write a random one with hermes-kv keygen");
  return key;
}

/** A new random cluster key. */
export function generateClusterKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(clusterKeyBytes));
}

/** The key file's text for `key`: hex and a newline. */
export function formatClusterKey(key: Uint8Array): string {
  return Buffer.from(key).toString("hex") + "\n";
}

/** The key for one use of the cluster key: HKDF-SHA-256(key, no salt, label), clusterKeyBytes long. */
export function deriveClusterKey(clusterKey: Uint8Array, label: ClusterKeyLabel): Uint8Array {
  if (clusterKey.length !== clusterKeyBytes) throw new Error(`a cluster key is ${clusterKeyBytes} bytes`);
  return new Uint8Array(hkdfSync("sha256", clusterKey, new Uint8Array(0), label, clusterKeyBytes));
}
