// Keys travel as UTF-8 bytes between the wire, the worker and the core; tests mostly think in
// strings. These convert at the test's edge.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function keyBytes(key: string): Uint8Array {
  return encoder.encode(key);
}

export function keyText(bytes: Uint8Array, at: number, length: number): string {
  return decoder.decode(bytes.subarray(at, at + length));
}

/** A copy of `bytes[at..at+length)` (null stays null): what a callee that keeps a lent range does. */
export function copyRange(bytes: Uint8Array | null, at: number, length: number): Uint8Array | null {
  return bytes === null ? null : bytes.slice(at, at + length);
}

import type { Epoch, NodeId } from "../../src/base/ids.ts";
import type { MsgKind } from "../../src/base/kinds.ts";
import type { FrameBuilder } from "../../src/wire/frame-builder.ts";
import type { MessageHandler } from "../../src/wire/frame-decoder.ts";

/** FrameBuilder.append with a string key and a whole-array value. */
export function appendText(
  b: FrameBuilder,
  to: NodeId,
  kind: MsgKind,
  key: string,
  version: number,
  writer: NodeId,
  epoch: Epoch,
  rmw: boolean,
  value: Uint8Array | null,
): boolean {
  const bytes = keyBytes(key);
  return b.append(
    to,
    kind,
    bytes,
    0,
    bytes.length,
    version,
    writer,
    epoch,
    rmw,
    value,
    0,
    value === null ? 0 : value.length,
  );
}

/** A decoder handler that gets the key as a string and the value as a copy. */
export function textHandler(
  handler: (
    from: NodeId,
    kind: MsgKind,
    key: string,
    version: number,
    writer: NodeId,
    epoch: Epoch,
    rmw: boolean,
    value: Uint8Array | null,
  ) => void,
): MessageHandler {
  return (from, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) =>
    handler(
      from,
      kind,
      keyText(key, keyAt, keyLength),
      version,
      writer,
      epoch,
      rmw,
      copyRange(value, valueAt, valueLength),
    );
}
