// The rounds of the core's microbenchmarks (bench/core.bench.ts measures them with mitata,
// bench/core-profile.ts runs one in a loop under the profiler): a local read, and a full write round
// (coordinator + 2 followers in one thread: INV, ACK, VAL) with an in-memory message queue that
// reuses its slots. Keys go in as UTF-8 bytes (as the worker's bench clients and the wire hand
// them over), and the queue copies each message's key and value into its slot, as the frame
// builder does: the core lends them from its store.

import { Replica } from "../src/core/replica.ts";
import { defaultReplicaConfig, type Outbox } from "../src/core/types.ts";
import { MsgKind, OpKind } from "../src/base/kinds.ts";
import type { NodeId } from "../src/base/ids.ts";

/** Bytes a slot keeps of a key or a value (the benchmark's are shorter). */
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

/** A FIFO of reusable message slots, so the benchmark measures the core, not allocation. */
class SlotQueue {
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

export let completed = 0;
const completions = { complete: () => void completed++ };
const queue = new SlotQueue();

/** Three replicas of one cluster, with or without the ordered key index (issue 12), sharing `queue`. */
function cluster(orderedKeys: boolean): Replica[] {
  const replicas: Replica[] = [];
  for (let id = 0; id < 3; id++) {
    const outbox: Outbox = {
      send: (to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) =>
        queue.push(id, to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength),
    };
    replicas.push(new Replica({ ...defaultReplicaConfig, self: id, orderedKeys }, outbox, completions));
  }
  for (const r of replicas) {
    r.setMembership(1, [0, 1, 2], 0);
    r.setLease(Number.MAX_SAFE_INTEGER, 0);
  }
  return replicas;
}
const replicas = cluster(true);
const unorderedReplicas = cluster(false);

/** Deliver until quiet. Messages produced while delivering go to the back of the same queue. */
function drain(replicas: Replica[]): void {
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

const encoder = new TextEncoder();
const keys = Array.from({ length: 1024 }, (_, i) => encoder.encode(`key-${i}`));
const counters = Array.from({ length: 64 }, (_, i) => encoder.encode(`n-${i}`));
const value = new Uint8Array(32).fill(7);
for (const key of keys) {
  replicas[0]!.submitKey(0, OpKind.Write, key, 0, key.length, value, 0, 0, 0, 0);
  drain(replicas);
}

// New keys in a scattered order (a multiplicative hash of a counter): every write round creates a
// key, so the ordered index takes one insert per replica. Both clusters start with 200 k keys, so
// the tree is three levels deep as in a loaded store.
const newKeyBytes = new Uint8Array(24);
let newKeys = 0;
function newKey(): number {
  const text = `nk-${(Math.imul(newKeys++, 0x9e3779b1) >>> 0).toString(16)}-${newKeys}`;
  return encoder.encodeInto(text, newKeyBytes).written;
}
for (const set of [replicas, unorderedReplicas])
  for (let i = 0; i < 200_000; i++) {
    const length = newKey();
    set[0]!.submitKey(0, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
    drain(set);
  }

let k = 0;

export function readRound(): void {
  const key = keys[k++ & 1023]!;
  replicas[1]!.submitKey(1, OpKind.Read, key, 0, key.length, null, 0, 0, 0, 0);
}
export function writeRound(): void {
  const key = keys[k++ & 1023]!;
  replicas[k % 3]!.submitKey(2, OpKind.Write, key, 0, key.length, value, 0, 0, 0, 0);
  drain(replicas);
}
export function incrRound(): void {
  const key = counters[k++ & 63]!;
  replicas[k % 3]!.submitKey(3, OpKind.Incr, key, 0, key.length, null, 0, 0, 1, 0);
  drain(replicas);
}
/** A write round that creates a key: the ordered index takes one insert per replica. */
export function createRound(): void {
  const length = newKey();
  replicas[k++ % 3]!.submitKey(2, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
  drain(replicas);
}
/** createRound without the ordered key index. */
export function createRoundUnordered(): void {
  const length = newKey();
  unorderedReplicas[k++ % 3]!.submitKey(2, OpKind.Write, newKeyBytes, 0, length, value, 0, 0, 0, 0);
  drain(unorderedReplicas);
}
