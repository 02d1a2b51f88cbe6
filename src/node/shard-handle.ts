// The main thread's end of one shard worker: control only (start, membership and lease, stats,
// snapshots, HTTP start and stop, stop), all by postMessage. Client ops never pass through here: the
// workers serve HTTP themselves (see src/worker/worker-backend.ts).

import type { FromShard, HttpStart, ShardInit, ShardRecovered, ShardStats, ToShard } from "../worker/messages.ts";
import { shardWorkerUrl } from "../worker-entry.ts";
import { NotReadyError } from "./not-ready-error.ts";

/** How long a worker may take to answer every op and stop, or to finish its HTTP requests, before it is terminated anyway. */
const workerStopWaitMs = 2000;

export type ControlRequest = Extract<FromShard, { type: "control-request" }>;

export interface ShardHandleOptions {
  init: Omit<ShardInit, "type">;
  onFatal: (shardIndex: number, message: string) => void;
  /** A request under the main thread's HTTP paths, received by this worker. */
  onControlRequest: (shard: ShardHandle, message: ControlRequest) => void;
  /** This worker's /metrics wants the node's series. */
  onNodeMetricsRequest: (shard: ShardHandle, requestId: number) => void;
}

export class ShardHandle {
  readonly index: number;
  readonly worker: Worker;
  address = "";
  /** What the worker loaded from the node's data dir before it was ready (null: no data dir). */
  recovered: ShardRecovered | null = null;
  #terminated = false;
  #statsRequests = new Map<number, (stats: ShardStats) => void>();
  #nextRequest = 1;
  #snapshotRequests = new Map<
    number,
    (records: Uint8Array, entries: number, done: boolean, notReady: string | null) => void
  >();
  #httpReady: {
    resolve: (ready: { port: number; metricsBuffer: SharedArrayBuffer }) => void;
    reject: (error: Error) => void;
  } | null = null;
  #httpStopped: (() => void) | null = null;
  #stopped: Promise<void>;
  #ready: Promise<void>;

  constructor(options: ShardHandleOptions) {
    const { init } = options;
    this.index = init.shardIndex;
    this.worker = new Worker(shardWorkerUrl);
    let readyResolve!: () => void;
    let readyReject!: (error: Error) => void;
    this.#ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    let stoppedResolve!: () => void;
    this.#stopped = new Promise((resolve) => (stoppedResolve = resolve));
    const died = (message: string): void => {
      readyReject(new Error(message));
      this.#httpReady?.reject(new Error(`shard ${this.index} died: ${message}`));
      this.#httpReady = null;
      options.onFatal(this.index, message);
      stoppedResolve();
      this.#httpStopped?.();
    };
    this.worker.onmessage = (event: MessageEvent<FromShard>) => {
      const message = event.data;
      switch (message.type) {
        case "ready":
          this.address = message.address;
          this.recovered = message.recovered ?? null;
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
          this.#snapshotRequests.get(message.requestId)?.(
            message.records,
            message.entries,
            message.done,
            message.notReady,
          );
          if (message.done) this.#snapshotRequests.delete(message.requestId);
          return;
        case "http-ready":
          this.#httpReady?.resolve({ port: message.port, metricsBuffer: message.metricsBuffer });
          this.#httpReady = null;
          return;
        case "http-failed":
          this.#httpReady?.reject(new Error(message.message));
          this.#httpReady = null;
          return;
        case "http-stopped":
          this.#httpStopped?.();
          this.#httpStopped = null;
          return;
        case "control-request":
          options.onControlRequest(this, message);
          return;
        case "node-metrics-request":
          options.onNodeMetricsRequest(this, message.requestId);
          return;
        case "fatal":
          died(message.message);
          return;
      }
    };
    // A Worker that fails to load fires "error" and never throws: without this the node would hang.
    this.worker.addEventListener("error", (event) => died((event as ErrorEvent).message ?? "worker error"));
    this.post({ ...init, type: "init" });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  post(message: ToShard, transfer: MessagePort[] = []): void {
    if (!this.#terminated) this.worker.postMessage(message, transfer);
  }

  stats(): Promise<ShardStats> {
    const requestId = this.#nextRequest++;
    return new Promise((resolve) => {
      this.#statsRequests.set(requestId, resolve);
      this.post({ type: "stats", requestId });
    });
  }

  /**
   * Stream this shard's snapshot to `onChunk` as runs of whole records (src/core/snapshot-records.ts);
   * resolves with the number of records; rejects with NotReadyError if the replica cannot be a source yet.
   */
  exportSnapshot(
    epochMin: number,
    allowJoining: boolean,
    onChunk: (records: Uint8Array) => void | Promise<void>,
  ): Promise<number> {
    const requestId = this.#nextRequest++;
    let count = 0;
    return new Promise((resolve, reject) => {
      this.#snapshotRequests.set(requestId, (records, entries, done, notReady) => {
        if (notReady !== null) return reject(new NotReadyError(notReady));
        count += entries;
        if (records.length > 0) void onChunk(records);
        if (done) resolve(count);
      });
      this.post({ type: "snapshot-export", requestId, epochMin, allowJoining });
    });
  }

  /** Serve HTTP on this worker; resolves with the port it bound and its metrics buffer, rejects if it cannot. */
  startHttp(start: Omit<HttpStart, "type">): Promise<{ port: number; metricsBuffer: SharedArrayBuffer }> {
    return new Promise((resolve, reject) => {
      this.#httpReady = { resolve, reject };
      // Its browse ports move to the worker (a MessagePort has one owner).
      const ports = (start.browsePorts ?? []).filter((port) => port !== null);
      this.post({ ...start, type: "http-start" }, ports);
    });
  }

  /** The worker answers every op (Unknown for started updates) and stops its replica and transport. */
  async stop(): Promise<void> {
    this.post({ type: "stop" });
    await Promise.race([this.#stopped, Bun.sleep(workerStopWaitMs)]);
  }

  /** Close the worker's HTTP server once its requests in flight are answered. */
  async stopHttp(): Promise<void> {
    const stopped = new Promise<void>((resolve) => (this.#httpStopped = resolve));
    this.post({ type: "http-stop" });
    await Promise.race([stopped, Bun.sleep(workerStopWaitMs)]);
  }

  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.worker.terminate();
  }
}
