// The main thread's end of one shard worker: pushes ops into the request ring (one commit per
// batch of ops submitted in the same microtask), reads answers from the completion ring, and
// resolves each op's promise. Control messages go by postMessage.

import { OpStatus } from "../base/kinds.ts";
import { createRing } from "../ring/spsc-ring.ts";
import { OpCompletionReader, OpRequestWriter, opRingCapacityBytesMin } from "../ring/op-ring.ts";
import type { SnapshotEntry } from "../base/snapshot-entry.ts";
import type { FromShard, ShardInit, ShardStats, ToShard } from "../worker/messages.ts";
import { shardWorkerUrl } from "../worker-entry.ts";
import type { OpRequest, OpResult } from "../base/kv-backend.ts";
import { NotReadyError } from "./not-ready-error.ts";

type Resolver = (result: OpResult) => void;

const busy: OpResult = { status: OpStatus.Busy, value: null, version: 0, writer: 0 };
const unavailable: OpResult = { status: OpStatus.Unavailable, value: null, version: 0, writer: 0 };
/** Answers taken from the ring per turn before yielding. */
const completionBatchMax = 4096;

export interface ShardHandleOptions {
  init: Omit<ShardInit, "type" | "requestRing" | "completionRing">;
  /** Ops of this shard in flight at once (a named limit: more answer Busy). */
  opsInFlightMax: number;
  onFatal: (shardIndex: number, message: string) => void;
}

export class ShardHandle {
  readonly index: number;
  readonly worker: Worker;
  address = "";
  readonly #requests: OpRequestWriter;
  readonly #completions: OpCompletionReader;
  readonly #resolvers: (Resolver | null)[];
  readonly #freeIds: Int32Array;
  #freeCount: number;
  #commitScheduled = false;
  #closed = false;
  #statsRequests = new Map<number, (stats: ShardStats) => void>();
  #nextStatsRequest = 1;
  #snapshotRequests = new Map<number, (entries: SnapshotEntry[], done: boolean, notReady: string | null) => void>();
  #stopped: Promise<void>;
  #ready: Promise<void>;

  constructor(options: ShardHandleOptions) {
    const { init } = options;
    this.index = init.shardIndex;
    const ringBytes = ceilPowerOfTwo(Math.max(1 << 22, opRingCapacityBytesMin(init.keyBytesMax, init.replica.valueBytesMax)));
    const requestRing = createRing(ringBytes);
    const completionRing = createRing(ringBytes);
    this.#requests = new OpRequestWriter(requestRing);
    this.#completions = new OpCompletionReader(completionRing);
    this.#resolvers = new Array(options.opsInFlightMax).fill(null);
    this.#freeIds = new Int32Array(options.opsInFlightMax);
    for (let i = 0; i < options.opsInFlightMax; i++) this.#freeIds[i] = options.opsInFlightMax - 1 - i;
    this.#freeCount = options.opsInFlightMax;

    this.worker = new Worker(shardWorkerUrl);
    let readyResolve!: () => void;
    let readyReject!: (error: Error) => void;
    this.#ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    let stoppedResolve!: () => void;
    this.#stopped = new Promise((resolve) => (stoppedResolve = resolve));
    this.worker.onmessage = (event: MessageEvent<FromShard>) => {
      const message = event.data;
      switch (message.type) {
        case "ready":
          this.address = message.address;
          readyResolve();
          return;
        case "stats":
          this.#statsRequests.get(message.requestId)?.(message.stats);
          this.#statsRequests.delete(message.requestId);
          return;
        case "stopped":
          stoppedResolve();
          return;
        case "snapshot-chunk":
          this.#snapshotRequests.get(message.requestId)?.(message.entries, message.done, message.notReady);
          if (message.done) this.#snapshotRequests.delete(message.requestId);
          return;
        case "fatal":
          readyReject(new Error(message.message));
          options.onFatal(this.index, message.message);
          this.#failAll();
          stoppedResolve();
          return;
      }
    };
    // A Worker that fails to load fires "error" and never throws: without this the node would hang.
    this.worker.addEventListener("error", (event) => {
      const message = (event as ErrorEvent).message ?? "worker error";
      readyReject(new Error(message));
      options.onFatal(this.index, message);
      this.#failAll();
      stoppedResolve();
    });
    this.#post({ ...init, type: "init", requestRing, completionRing });
    void this.#pumpCompletions();
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  post(message: ToShard): void {
    this.#post(message);
  }

  #post(message: ToShard): void {
    if (!this.#closed) this.worker.postMessage(message);
  }

  submit(request: OpRequest): Promise<OpResult> {
    if (this.#closed) return Promise.resolve(unavailable);
    if (this.#freeCount === 0) return Promise.resolve(busy);
    const opId = this.#freeIds[--this.#freeCount]!;
    const pushed = this.#requests.push(
      opId,
      request.kind,
      request.key,
      request.value ?? null,
      request.expectedVersion ?? 0,
      request.expectedWriter ?? 0,
      request.by ?? 0,
    );
    if (!pushed) {
      this.#freeIds[this.#freeCount++] = opId;
      return Promise.resolve(busy);
    }
    if (!this.#commitScheduled) {
      this.#commitScheduled = true;
      queueMicrotask(this.#commit);
    }
    return new Promise<OpResult>((resolve) => {
      this.#resolvers[opId] = resolve;
    });
  }

  readonly #commit = (): void => {
    this.#commitScheduled = false;
    this.#requests.commit();
  };

  async #pumpCompletions(): Promise<void> {
    const reader = this.#completions;
    const onCompletion = (c: OpCompletionReader) => {
      const resolve = this.#resolvers[c.opId];
      if (resolve === null || resolve === undefined) return; // answered already (failAll)
      this.#resolvers[c.opId] = null;
      this.#freeIds[this.#freeCount++] = c.opId;
      resolve({ status: c.status, value: c.value, version: c.version, writer: c.writer });
    };
    while (!this.#closed) {
      if (reader.drain(onCompletion, completionBatchMax) === 0) await reader.waitAsync(100);
      else await Promise.resolve();
    }
  }

  stats(): Promise<ShardStats> {
    const requestId = this.#nextStatsRequest++;
    return new Promise((resolve) => {
      this.#statsRequests.set(requestId, resolve);
      this.#post({ type: "stats", requestId });
    });
  }

  /** Stream this shard's snapshot to `onChunk`; rejects with NotReadyError if the replica cannot be a source yet. */
  exportSnapshot(epochMin: number, allowJoining: boolean, onChunk: (entries: SnapshotEntry[]) => void | Promise<void>): Promise<number> {
    const requestId = this.#nextStatsRequest++;
    let count = 0;
    return new Promise((resolve, reject) => {
      this.#snapshotRequests.set(requestId, (entries, done, notReady) => {
        if (notReady !== null) return reject(new NotReadyError(notReady));
        count += entries.length;
        if (entries.length > 0) void onChunk(entries);
        if (done) resolve(count);
      });
      this.#post({ type: "snapshot-export", requestId, epochMin, allowJoining });
    });
  }

  get opsInFlight(): number {
    return this.#resolvers.length - this.#freeCount;
  }

  /** Answer everything still pending as Unknown (updates may have happened) — the worker is gone. */
  #failAll(): void {
    for (let id = 0; id < this.#resolvers.length; id++) {
      const resolve = this.#resolvers[id];
      if (resolve === null || resolve === undefined) continue;
      this.#resolvers[id] = null;
      this.#freeIds[this.#freeCount++] = id;
      resolve({ status: OpStatus.Unknown, value: null, version: 0, writer: 0 });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#post({ type: "stop" });
    // The worker answers every op before it stops (Unknown for started updates).
    await Promise.race([this.#stopped, Bun.sleep(2000)]);
    const reader = this.#completions;
    reader.drain((c) => {
      const resolve = this.#resolvers[c.opId];
      if (resolve) {
        this.#resolvers[c.opId] = null;
        resolve({ status: c.status, value: c.value, version: c.version, writer: c.writer });
      }
    }, 1 << 30);
    this.#closed = true;
    this.#failAll();
    this.worker.terminate();
  }
}

function ceilPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
