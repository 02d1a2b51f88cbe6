// Three replicas of one cluster in one thread, wired through an in-memory message queue that
// reuses its slots, for the core's microbenchmarks (bench/core-rounds.ts, bench/ordered-round.ts).
// The queue copies each message's key and value into its slot, as the frame builder does: the core
// lends them from its store, so a slot must not keep the lent view.

import type { Replica } from "../src/core/replica.ts";
import { defaultReplicaConfig, type Completions, type Outbox, type ReplicaConfig } from "../src/core/types.ts";
import type { MsgKind } from "../src/base/kinds.ts";
import type { NodeId } from "../src/base/ids.ts";

/** Bytes a slot keeps of a key or a value (the benchmarks' are shorter). */
const slotBytes = 64;

interface Slot {
  from: NodeId;
  to: NodeId;
  kind: MsgKind;
  key: Uint8Array;
  keyLength: number;
  version: number;
  writer: NodeId;
  epoch: number;
  rmw: boolean;
  value: Uint8Array;
  valueLength: number;
  hasValue: boolean;
}

/** A FIFO of reusable message slots, so a benchmark measures the core, not allocation. */
export class SlotQueue {
  readonly slots: Slot[] = [];
  size = 0;
  push(
    from: NodeId,
    to: NodeId,
    kind: MsgKind,
    key: Uint8Array,
    keyAt: number,
    keyLength: number,
    version: number,
    writer: NodeId,
    epoch: number,
    rmw: boolean,
    value: Uint8Array | null,
    valueAt: number,
    valueLength: number,
  ): void {
    let slot = this.slots[this.size];
    if (slot === undefined) {
      slot = {
        from,
        to,
        kind,
        key: new Uint8Array(slotBytes),
        keyLength,
        version,
        writer,
        epoch,
        rmw,
        value: new Uint8Array(slotBytes),
        valueLength,
        hasValue: false,
      };
      this.slots.push(slot);
    }
    slot.from = from;
    slot.to = to;
    slot.kind = kind;
    slot.version = version;
    slot.writer = writer;
    slot.epoch = epoch;
    slot.rmw = rmw;
    slot.keyLength = keyLength;
    for (let i = 0; i < keyLength; i++) slot.key[i] = key[keyAt + i]!;
    slot.hasValue = value !== null;
    slot.valueLength = value === null ? 0 : valueLength;
    for (let i = 0; i < slot.valueLength; i++) slot.value[i] = value![valueAt + i]!;
    this.size++;
  }
}

/**
 * Three members of one view (epoch 1, leases that never end) whose messages go into `queue`.
 * `ReplicaOf` is this checkout's Replica or another checkout's with the same constructor.
 */
export function memoryCluster(
  ReplicaOf: typeof Replica,
  queue: SlotQueue,
  completions: Completions,
  config: Partial<ReplicaConfig> = {},
): Replica[] {
  const replicas: Replica[] = [];
  for (let id = 0; id < 3; id++) {
    const outbox: Outbox = {
      send: (to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) =>
        queue.push(id, to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength),
    };
    replicas.push(new ReplicaOf({ ...defaultReplicaConfig, ...config, self: id }, outbox, completions));
  }
  for (const r of replicas) {
    r.setMembership(1, [0, 1, 2], 0);
    r.setLease(Number.MAX_SAFE_INTEGER, 0);
  }
  return replicas;
}

/** Deliver until quiet. Messages produced while delivering go to the back of the same queue. */
export function drain(queue: SlotQueue, replicas: Replica[]): void {
  for (let i = 0; i < queue.size; i++) {
    const m = queue.slots[i]!;
    replicas[m.to]!.receive(
      m.from,
      m.kind,
      m.key,
      0,
      m.keyLength,
      m.version,
      m.writer,
      m.epoch,
      m.rmw,
      m.hasValue ? m.value : null,
      0,
      m.valueLength,
      0,
    );
  }
  queue.size = 0;
}
