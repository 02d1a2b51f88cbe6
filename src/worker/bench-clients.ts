// Closed-loop benchmark clients inside a worker, in the style of the Hermes reference: a fixed
// number of request slots, each refilled as soon as its op completes, over uniformly chosen keys.
// They bypass HTTP and the rings, so `hermes-kv bench` measures the protocol, the worker loop and
// the transport. Latencies go into 1 µs histograms (as the reference's) with an overflow bucket.

import type { KeyStamp, Replica } from "../core/replica.ts";
import { OpKind, OpStatus } from "../base/kinds.ts";
import { KeyState } from "../core/types.ts";
import type { NodeId } from "../base/ids.ts";
import { monotonicMs } from "../base/clock.ts";
import type { ShardBenchConfig, ShardBenchStats } from "./messages.ts";

export const latencyBucketsUs = 10_000;
/** Slots re-issued per loop turn: bounds one turn. */
const issueBatchMax = 256;

export class BenchClients {
  readonly #config: ShardBenchConfig;
  /** The keys' UTF-8 bytes back to back, and where each starts: the replica reads them in place. */
  readonly #keyBytes: Uint8Array;
  readonly #keyAt: Uint32Array;
  readonly #keyCount: number;
  readonly #value: Uint8Array;
  /** Reused for the CAS ops' expected timestamp. */
  readonly #stamp: KeyStamp = { state: KeyState.Valid, version: 0, writer: 0 };
  /** Per slot: when its op started (ms) and whether it is a read. */
  readonly #startedMs: Float64Array;
  readonly #isRead: Uint8Array;
  readonly #kind: Uint8Array;
  readonly #free: Int32Array;
  #freeCount: number;
  #random: number;
  #running = false;
  readonly #readHistogram = new Float64Array(latencyBucketsUs + 1);
  readonly #writeHistogram = new Float64Array(latencyBucketsUs + 1);
  reads = 0;
  writes = 0;
  rmws = 0;
  rmwAborts = 0;
  constructor(config: ShardBenchConfig, nodeId: NodeId, shardIndex: number) {
    this.#config = config;
    const keys = Array.from({ length: config.keys }, (_, i) => new TextEncoder().encode(`bench-${i}`));
    this.#keyCount = keys.length;
    this.#keyAt = new Uint32Array(keys.length + 1);
    for (let i = 0; i < keys.length; i++) this.#keyAt[i + 1] = this.#keyAt[i]! + keys[i]!.length;
    this.#keyBytes = new Uint8Array(this.#keyAt[keys.length]!);
    for (let i = 0; i < keys.length; i++) this.#keyBytes.set(keys[i]!, this.#keyAt[i]!);
    this.#value = new Uint8Array(config.valueBytes).fill(0x61 + ((nodeId + shardIndex) % 26));
    this.#startedMs = new Float64Array(config.slots);
    this.#isRead = new Uint8Array(config.slots);
    this.#kind = new Uint8Array(config.slots);
    this.#free = new Int32Array(config.slots);
    for (let i = 0; i < config.slots; i++) this.#free[i] = i;
    this.#freeCount = config.slots;
    // A per-worker xorshift seed: workloads differ between workers but are reproducible.
    this.#random = (0x9e3779b9 ^ (nodeId * 7919 + shardIndex * 104729)) >>> 0 || 1;
  }

  start(): void {
    this.#running = true;
  }

  #next(): number {
    let x = this.#random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#random = x >>> 0;
    return this.#random;
  }

  /** Issue ops for free slots; returns how many were issued. */
  issue(replica: Replica, nowMs: number, opIdBase: number): number {
    if (!this.#running) return 0;
    let issued = 0;
    while (this.#freeCount > 0 && issued < issueBatchMax) {
      const slot = this.#free[--this.#freeCount]!;
      const k = this.#next() % this.#keyCount;
      const keyAt = this.#keyAt[k]!;
      const keyLength = this.#keyAt[k + 1]! - keyAt;
      const keys = this.#keyBytes;
      const isUpdate = this.#next() % 1000 < this.#config.writePerMille;
      this.#startedMs[slot] = nowMs;
      issued++;
      if (!isUpdate) {
        this.#isRead[slot] = 1;
        this.#kind[slot] = OpKind.Read;
        replica.submitKey(opIdBase + slot, OpKind.Read, keys, keyAt, keyLength, null, 0, 0, 0, nowMs);
        continue;
      }
      this.#isRead[slot] = 0;
      if (this.#next() % 1000 < this.#config.rmwPerMille) {
        // An RMW: CAS against the timestamp this replica holds now (usually current).
        const stamp = this.#stamp;
        replica.timestampOfKey(keys, keyAt, keyLength, stamp);
        this.#kind[slot] = OpKind.Cas;
        replica.submitKey(
          opIdBase + slot,
          OpKind.Cas,
          keys,
          keyAt,
          keyLength,
          this.#value,
          stamp.version,
          stamp.writer,
          0,
          nowMs,
        );
      } else {
        this.#kind[slot] = OpKind.Write;
        replica.submitKey(opIdBase + slot, OpKind.Write, keys, keyAt, keyLength, this.#value, 0, 0, 0, nowMs);
      }
    }
    return issued;
  }

  complete(slot: number, status: OpStatus): void {
    this.#free[this.#freeCount++] = slot;
    if (status !== OpStatus.Ok) {
      if (status === OpStatus.PreconditionFailed) this.rmwAborts++;
      return;
    }
    const bucket = Math.min(latencyBucketsUs, Math.max(0, Math.floor((this.#clock() - this.#startedMs[slot]!) * 1000)));
    if (this.#isRead[slot] === 1) {
      this.reads++;
      this.#readHistogram[bucket]!++;
    } else {
      if (this.#kind[slot] === OpKind.Cas) this.rmws++;
      else this.writes++;
      this.#writeHistogram[bucket]!++;
    }
  }

  #clock(): number {
    return monotonicMs();
  }

  stats(): ShardBenchStats {
    return {
      reads: this.reads,
      writes: this.writes,
      rmws: this.rmws,
      rmwAborts: this.rmwAborts,
      readLatencyUs: Array.from(this.#readHistogram),
      writeLatencyUs: Array.from(this.#writeHistogram),
    };
  }
}
