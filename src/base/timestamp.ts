// Per-key Hermes timestamps (spec: nodeTS) as every layer sees them: (version, writer) pairs,
// ordered lexicographically, shown to clients as the ETag "version.writer". The writer is a WriterId
// (one node process: incarnation and node id, see ids.ts), not a bare node id.

import type { WriterId } from "./ids.ts";

/** Compare two timestamps lexicographically: negative, 0, positive. */
export function compareTs(aVersion: number, aWriter: WriterId, bVersion: number, bWriter: WriterId): number {
  if (aVersion !== bVersion) return aVersion < bVersion ? -1 : 1;
  if (aWriter !== bWriter) return aWriter < bWriter ? -1 : 1;
  return 0;
}

/** The HTTP ETag form of a timestamp: "version.writer" (quoted by the HTTP layer). */
export function formatTs(version: number, writer: WriterId): string {
  return `${version}.${writer}`;
}
