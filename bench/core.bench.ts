// mitata microbenchmarks of the Hermes core: the cost of a local read, and of a full write round
// (coordinator + 2 followers in one thread: INV, ACK, VAL) with an in-memory message queue that
// reuses its slots. `bun bench/core.bench.ts`

import { bench, run, summary } from "mitata";
import { Replica } from "../src/core/replica.ts";
import { defaultReplicaConfig } from "../src/core/types.ts";
import { MsgKind, OpKind } from "../src/base/kinds.ts";
import type { NodeId } from "../src/base/ids.ts";

interface Slot {
  from: NodeId;
  to: NodeId;
  kind: MsgKind;
  key: string;
  version: number;
  writer: NodeId;
  epoch: number;
  rmw: boolean;
  value: Uint8Array | null;
}

/** A FIFO of reusable message slots, so the benchmark measures the core, not allocation. */
class SlotQueue {
  readonly slots: Slot[] = [];
  size = 0;
  push(
    from: NodeId,
    to: NodeId,
    kind: MsgKind,
    key: string,
    version: number,
    writer: NodeId,
    epoch: number,
    rmw: boolean,
    value: Uint8Array | null,
  ): void {
    let slot = this.slots[this.size];
    if (slot === undefined) {
      slot = { from, to, kind, key, version, writer, epoch, rmw, value };
      this.slots.push(slot);
    } else {
      slot.from = from;
      slot.to = to;
      slot.kind = kind;
      slot.key = key;
      slot.version = version;
      slot.writer = writer;
      slot.epoch = epoch;
      slot.rmw = rmw;
      slot.value = value;
    }
    this.size++;
  }
}

let completed = 0;
const completions = { complete: () => void completed++ };
const queue = new SlotQueue();
const replicas: Replica[] = [];
for (let id = 0; id < 3; id++) {
  const outbox = {
    send: (
      to: NodeId,
      kind: MsgKind,
      key: string,
      version: number,
      writer: NodeId,
      epoch: number,
      rmw: boolean,
      value: Uint8Array | null,
    ) => queue.push(id, to, kind, key, version, writer, epoch, rmw, value),
  };
  replicas.push(new Replica({ ...defaultReplicaConfig, self: id }, outbox, completions));
}
for (const r of replicas) {
  r.setMembership(1, [0, 1, 2], 0);
  r.setLease(Number.MAX_SAFE_INTEGER, 0);
}

/** Deliver until quiet. Messages produced while delivering go to the back of the same queue. */
function drain(): void {
  for (let i = 0; i < queue.size; i++) {
    const m = queue.slots[i]!;
    replicas[m.to]!.receive(m.from, m.kind, m.key, m.version, m.writer, m.epoch, m.rmw, m.value, 0);
  }
  queue.size = 0;
}

const keys = Array.from({ length: 1024 }, (_, i) => `key-${i}`);
const value = new Uint8Array(32).fill(7);
for (const key of keys) {
  replicas[0]!.submit(0, OpKind.Write, key, value, 0, 0, 0, 0);
  drain();
}

let k = 0;
summary(() => {
  bench("core: local read of a Valid key", () => {
    replicas[1]!.submit(1, OpKind.Read, keys[k++ & 1023]!, null, 0, 0, 0, 0);
  });
  bench("core: write round, 3 replicas (INV, 2 ACK, VAL in memory)", () => {
    replicas[k % 3]!.submit(2, OpKind.Write, keys[k++ & 1023]!, value, 0, 0, 0, 0);
    drain();
  });
  bench("core: incr round, 3 replicas (RMW)", () => {
    replicas[k % 3]!.submit(3, OpKind.Incr, `n-${k++ & 63}`, null, 0, 0, 1, 0);
    drain();
  });
});

await run({ colors: false });
if (completed === 0) throw new Error("no op completed: the benchmark measured nothing");
