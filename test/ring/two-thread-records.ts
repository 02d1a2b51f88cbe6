// The sequenced records of the two-thread ring test, shared by the test (main thread) and its
// worker: request and completion number `seq` have contents that are a function of `seq`, so each
// side checks every field of every record it receives.

import type { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { OpCompletionReader, OpRequestReader } from "../../src/ring/op-ring.ts";

export interface TwoThreadInit {
  requestRing: SharedArrayBuffer;
  completionRing: SharedArrayBuffer;
  /** Requests the worker answers before it reports and stops. */
  total: number;
  /** The worker holds every holdEvery-th completion until the main thread sleeps (0: never). */
  holdEvery: number;
  /** Records the worker handles between two releases/commits. */
  batchMax: number;
}

export interface TwoThreadReport {
  requestsChecked: number;
  waitCount: number;
  notifyCount: number;
  holds: number;
}

export function requestKey(seq: number): string {
  return seq % 7 === 0 ? `ключ-${seq}-🔑` : `k${seq}`;
}

export function requestValue(seq: number): Uint8Array | null {
  if (seq % 13 === 0) return null;
  const value = new Uint8Array(seq % 201);
  for (let i = 0; i < value.length; i++) value[i] = (seq * 31 + i) & 0xff;
  return value;
}

export function requestKind(seq: number): OpKind {
  return (1 + (seq % 6)) as OpKind;
}

/** Versions beyond 2^32 for most seqs. */
export function requestExpectedVersion(seq: number): number {
  return seq * 2 ** 21;
}

export function requestBy(seq: number): number {
  return seq - 50_000;
}

export function completionValue(seq: number): Uint8Array | null {
  if (seq % 11 === 0) return null;
  const value = new Uint8Array((seq * 7) % 150);
  for (let i = 0; i < value.length; i++) value[i] = (seq ^ i) & 0xff;
  return value;
}

export function completionStatus(seq: number): OpStatus {
  return (seq % 9) as OpStatus;
}

export function completionVersion(seq: number): number {
  return 2 ** 33 + seq * 3;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Throws (naming the field) unless `r` holds request `seq`. */
export function checkRequest(r: OpRequestReader, seq: number): void {
  if (r.opId !== seq) throw new Error(`request ${seq}: opId ${r.opId}`);
  if (r.kind !== requestKind(seq)) throw new Error(`request ${seq}: kind ${r.kind}`);
  if (r.key !== requestKey(seq)) throw new Error(`request ${seq}: key ${r.key}`);
  if (!sameBytes(r.value, requestValue(seq))) throw new Error(`request ${seq}: value differs`);
  if (r.expectedVersion !== requestExpectedVersion(seq))
    throw new Error(`request ${seq}: expectedVersion ${r.expectedVersion}`);
  if (r.expectedWriter !== seq % 32) throw new Error(`request ${seq}: expectedWriter ${r.expectedWriter}`);
  if (r.by !== requestBy(seq)) throw new Error(`request ${seq}: by ${r.by}`);
}

/** Throws (naming the field) unless `c` holds completion `seq`. */
export function checkCompletion(c: OpCompletionReader, seq: number): void {
  if (c.opId !== seq) throw new Error(`completion ${seq}: opId ${c.opId}`);
  if (c.status !== completionStatus(seq)) throw new Error(`completion ${seq}: status ${c.status}`);
  if (!sameBytes(c.value, completionValue(seq))) throw new Error(`completion ${seq}: value differs`);
  if (c.version !== completionVersion(seq)) throw new Error(`completion ${seq}: version ${c.version}`);
  if (c.writer !== (seq * 5) % 32) throw new Error(`completion ${seq}: writer ${c.writer}`);
}
