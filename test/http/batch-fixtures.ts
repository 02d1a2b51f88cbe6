// What the batch route tests share (test/http/batch.test.ts for the JSON form,
// test/http/batch-binary.test.ts for the binary one): an app over the in-memory backend, base64 of
// text or bytes, and the table of op statuses a scripted backend answers with.

import { OpStatus } from "../../src/base/kinds.ts";
import { createApp } from "../../src/http/app.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";

export type App = ReturnType<typeof createApp>;
export type Json = Record<string, unknown>;

const encoder = new TextEncoder();

/** Standard padded base64 of `text`'s UTF-8 bytes, or of `bytes`. */
export const b64 = (text: string | Uint8Array): string =>
  Buffer.from(typeof text === "string" ? encoder.encode(text) : text).toString("base64");

export function setup(options?: ConstructorParameters<typeof MemoryBackend>[0]) {
  const backend = new MemoryBackend(options);
  return { backend, app: createApp(backend) };
}

/** One answer a scripted backend gives to every op: its status, timestamp and value. */
export interface Scripted {
  label: string;
  status: OpStatus;
  ts: { version: number; writer: number };
  value?: Uint8Array | null;
}

export const scripted: Scripted[] = [
  { label: "PreconditionFailed, key written", status: OpStatus.PreconditionFailed, ts: { version: 6, writer: 2 } },
  { label: "PreconditionFailed, never written", status: OpStatus.PreconditionFailed, ts: { version: 0, writer: 0 } },
  { label: "NotANumber", status: OpStatus.NotANumber, ts: { version: 6, writer: 2 } },
  { label: "Aborted", status: OpStatus.Aborted, ts: { version: 0, writer: 0 } },
  { label: "Unknown", status: OpStatus.Unknown, ts: { version: 0, writer: 0 } },
  { label: "Unavailable", status: OpStatus.Unavailable, ts: { version: 0, writer: 0 } },
  { label: "Busy", status: OpStatus.Busy, ts: { version: 0, writer: 0 } },
  { label: "StoreFull", status: OpStatus.StoreFull, ts: { version: 0, writer: 0 } },
  { label: "Timeout", status: OpStatus.Timeout, ts: { version: 0, writer: 0 } },
  { label: "Ok, large timestamp", status: OpStatus.Ok, ts: { version: 2 ** 53 - 1, writer: 0xffff_ffff } },
  { label: "Ok, absent (tombstone)", status: OpStatus.Ok, ts: { version: 8, writer: 1 }, value: null },
];
