// The KvBackend of a shard worker's HTTP server: an op for this shard goes straight into the
// replica (no ring, no other thread: a read of a Valid key is answered before submit returns); an op
// for another shard of the node goes to that shard's worker over the rings between workers. Node
// facts (serving, status) come from the node board; the node's metrics from the main thread.

import { monotonicMs } from "../base/clock.ts";
import { OpStatus } from "../base/kinds.ts";
import type { BrowseBackend } from "../base/browse.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult, StatusExtras } from "../base/kv-backend.ts";
import type { ControlClient } from "./control-client.ts";
import { shardOf } from "./key-shard.ts";
import type { Shard } from "./shard.ts";

const unavailable: OpResult = Object.freeze({ status: OpStatus.Unavailable, value: null, version: 0, writer: 0 });

/**
 * Ops of a batch that share one clock reading (and one look at the board): a batch of 64 reads
 * the clock once, one of batchOpsMax (1,024) sixteen times, so no op is judged (its lease, its
 * serving) at a time older than the few tens of microseconds that 64 ops take to submit.
 */
const opsPerClockReading = 64;

export class WorkerBackend implements KvBackend {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  /** Listings and watch streams (browse-service.ts). */
  readonly browse: BrowseBackend | undefined;
  readonly #shard: Shard;
  readonly #control: ControlClient;
  readonly #self: number;
  readonly #shards: number;
  #extras: StatusExtras | null = null;
  #extrasAtMs = 0;

  constructor(shard: Shard, control: ControlClient, browse?: BrowseBackend) {
    this.#shard = shard;
    this.browse = browse;
    this.#control = control;
    this.#self = shard.init.shardIndex;
    this.#shards = shard.board.shards;
    this.keyBytesMax = shard.init.keyBytesMax;
    this.valueBytesMax = shard.init.replica.valueBytesMax;
  }

  submit(request: OpRequest): OpResult | Promise<OpResult> {
    const now = monotonicMs();
    // Not a member with a lease (or joining, failed, closed): answer 503 now rather than let the
    // op wait in a replica until its timeout, as the node always did.
    if (!this.#shard.board.serving(now)) return unavailable;
    return this.#submitAt(request, now);
  }

  /**
   * A batch's ops with the clock and the board read once per opsPerClockReading ops, not per op
   * (a clock read was 3 % of a shard worker's time on batches).
   */
  submitEach(ops: readonly OpRequest[], into: (OpResult | Promise<OpResult>)[]): void {
    let now = 0;
    let serving = false;
    for (let index = 0; index < ops.length; index++) {
      if (index % opsPerClockReading === 0) {
        now = monotonicMs();
        serving = this.#shard.board.serving(now);
      }
      into[index] = serving ? this.#submitAt(ops[index]!, now) : unavailable;
    }
  }

  #submitAt(request: OpRequest, now: number): OpResult | Promise<OpResult> {
    const target = this.#shards === 1 ? this.#self : shardOf(request.key, this.#shards);
    const value = request.value ?? null;
    const expectedVersion = request.expectedVersion ?? 0;
    const expectedWriter = request.expectedWriter ?? 0;
    const by = request.by ?? 0;
    if (target === this.#self) {
      // The key's bytes when the request holds them (a binary batch): no encoding of the string again.
      const keyBytes = request.keyBytes ?? null;
      return this.#shard.submitLocalKey(
        request.kind,
        request.key,
        keyBytes,
        keyBytes === null ? 0 : request.keyAt!,
        keyBytes === null ? 0 : request.keyLength!,
        value,
        expectedVersion,
        expectedWriter,
        by,
        now,
      );
    }
    return this.#shard.forward(target, request.kind, request.key, value, expectedVersion, expectedWriter, by);
  }

  /** The main thread's failure detector view (see HermesNode.setStatusExtras). */
  setStatusExtras(extras: StatusExtras | null, atMs: number): void {
    this.#extras = extras;
    this.#extrasAtMs = atMs;
  }

  /** The node stops serving at once (a stop request arrived; the main thread completes the stop). */
  stopServing(): void {
    this.#shard.board.setClosed();
  }

  status(): NodeStatus {
    const now = monotonicMs();
    const status = this.#shard.board.status(now);
    const extras = this.#extras;
    if (extras === null) return status;
    // "Heard ago" grew since the main thread computed it.
    const sinceMs = Math.max(0, Math.round(now - this.#extrasAtMs));
    const heardAgoMs: Record<string, number | null> = {};
    for (const [peer, ago] of Object.entries(extras.heardAgoMs)) heardAgoMs[peer] = ago === null ? null : ago + sinceMs;
    return { ...status, ...extras, heardAgoMs };
  }

  metrics(): Promise<string> {
    return this.#control.nodeMetrics();
  }
}
