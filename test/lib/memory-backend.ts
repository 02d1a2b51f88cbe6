// An in-memory KvBackend for tests of the HTTP shell and the CLI client. Not for production: one
// map, no replication, no lease. It follows the Hermes timestamp rules so that ETags behave as on a
// real node: a write (put, delete) adds 2 to the key's version, an RMW (cas, create, incr) adds 1,
// and the writer is this node's id. Tests can script the next results (`failNext`) to reach every
// OpStatus, and can see how many ops were submitted (`submitted`).

import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { NodeId } from "../../src/base/ids.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult } from "../../src/base/kv-backend.ts";

interface Entry {
  /** null = tombstone */
  value: Uint8Array | null;
  version: number;
  writer: NodeId;
}

export interface MemoryBackendOptions {
  nodeId?: NodeId;
  keyBytesMax?: number;
  valueBytesMax?: number;
  /** Keys stored (tombstones included); creating one more answers StoreFull. */
  keysMax?: number;
}

/** Scripted results are a bounded queue, like every queue in the project. */
export const scriptedResultsMax = 1024;

const decimal = /^-?(0|[1-9][0-9]{0,15})$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class MemoryBackend implements KvBackend {
  readonly nodeId: NodeId;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly keysMax: number;
  /** What status() reports as `serving` (and /health answers). */
  serving = true;
  /** How many ops were submitted, and the last one (a rejected request must leave both alone). */
  submitCount = 0;
  lastSubmitted: OpRequest | undefined = undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #scripted: OpResult[] = [];

  constructor(options: MemoryBackendOptions = {}) {
    this.nodeId = options.nodeId ?? 1;
    this.keyBytesMax = options.keyBytesMax ?? 1024;
    this.valueBytesMax = options.valueBytesMax ?? 64 * 1024;
    this.keysMax = options.keysMax ?? 1_000_000;
  }

  /** The next submit answers `status` (with this ts and value) without touching the map. */
  failNext(
    status: OpStatus,
    ts: { version: number; writer: NodeId } = { version: 0, writer: 0 },
    value: Uint8Array | null = null,
  ): void {
    if (this.#scripted.length >= scriptedResultsMax) throw new Error("too many scripted results");
    this.#scripted.push({ status, value, version: ts.version, writer: ts.writer });
  }

  /** The stored entry, for assertions (undefined = never written). */
  peek(key: string): Readonly<Entry> | undefined {
    return this.#entries.get(key);
  }

  async submit(request: OpRequest): Promise<OpResult> {
    this.submitCount += 1;
    this.lastSubmitted = request;
    const scripted = this.#scripted.shift();
    if (scripted !== undefined) return scripted;
    return this.#apply(request);
  }

  #apply(request: OpRequest): OpResult {
    const entry = this.#entries.get(request.key);
    const version = entry?.version ?? 0;
    const writer = entry?.writer ?? 0;
    const current = entry?.value ?? null;
    const result = (status: OpStatus, value: Uint8Array | null, v: number, w: NodeId): OpResult => ({
      status,
      value,
      version: v,
      writer: w,
    });
    switch (request.kind) {
      case OpKind.Read:
        return result(OpStatus.Ok, current, version, writer);
      case OpKind.Write:
      case OpKind.Delete:
        return this.#store(request.key, entry, request.kind === OpKind.Write ? request.value! : null, version + 2);
      case OpKind.Cas:
        if (version !== request.expectedVersion || writer !== request.expectedWriter) {
          return result(OpStatus.PreconditionFailed, null, version, writer);
        }
        return this.#store(request.key, entry, request.value!, version + 1);
      case OpKind.Create:
        if (current !== null) return result(OpStatus.PreconditionFailed, null, version, writer);
        return this.#store(request.key, entry, request.value!, version + 1);
      case OpKind.Incr: {
        const text = current === null ? "0" : decoder.decode(current);
        if (!decimal.test(text)) return result(OpStatus.NotANumber, null, version, writer);
        const next = Number(text) + request.by!;
        if (!Number.isSafeInteger(Number(text)) || !Number.isSafeInteger(next))
          return result(OpStatus.NotANumber, null, version, writer);
        return this.#store(request.key, entry, encoder.encode(String(next)), version + 1);
      }
      default:
        throw new Error(`unknown op kind ${String(request.kind)}`);
    }
  }

  #store(key: string, entry: Entry | undefined, value: Uint8Array | null, version: number): OpResult {
    if (entry === undefined && this.#entries.size >= this.keysMax)
      return { status: OpStatus.StoreFull, value: null, version: 0, writer: 0 };
    // Copy: the caller's buffer is borrowed.
    const stored = value === null ? null : value.slice();
    this.#entries.set(key, { value: stored, version, writer: this.nodeId });
    return { status: OpStatus.Ok, value: stored, version, writer: this.nodeId };
  }

  status(): NodeStatus {
    return {
      nodeId: this.nodeId,
      epoch: 1,
      members: [this.nodeId],
      serving: this.serving,
      hasState: true,
      leaseRemainingMs: this.serving ? 1000 : 0,
      transport: "memory",
      shards: [{ index: 0, keys: this.#entries.size, opsInFlight: 0, numaNode: null, cpu: null }],
    };
  }

  metrics(): string {
    return [
      "# HELP hermes_memory_keys Keys stored by the in-memory test backend.",
      "# TYPE hermes_memory_keys gauge",
      `hermes_memory_keys ${this.#entries.size}`,
      "",
    ].join("\n");
  }
}
