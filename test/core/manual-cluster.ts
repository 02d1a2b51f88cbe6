// A cluster of real replicas with a hand-driven network: every sent message waits in a list until
// the test delivers or drops it. For scenario tests that need one exact interleaving. Every
// replica's whole state is checked (Replica.checkInvariants) after every step: the default replicas
// check themselves after each input, tests included that call a replica directly, and the cluster
// checks all of them after each of its own steps (which covers replicas from a custom `make`).

import { Replica } from "../../src/core/replica.ts";
import type { KeySide } from "../../src/core/key-side.ts";
import type { KeyStore } from "../../src/core/key-store.ts";
import { defaultReplicaConfig, type Outbox, type ReplicaConfig } from "../../src/core/types.ts";
import { MsgKind, OpKind, OpStatus } from "../../src/base/kinds.ts";
import { copyRange, keyBytes, keyText } from "../lib/key-bytes.ts";
import type { NodeId } from "../../src/base/ids.ts";

export interface Sent {
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

export interface Answer {
  status: OpStatus;
  value: string | null;
  version: number;
  writer: NodeId;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const kindNames = ["", "INV", "ACK", "VAL", "REJ"];

export type MakeReplica = (config: ReplicaConfig, cluster: ManualCluster) => Replica;

/** A replica that checks its invariants after every input (every public method that changes it). */
export class CheckedReplica extends Replica {
  /** The state behind the replica's back, for tests that corrupt it on purpose. */
  internals(key: string): { store: KeyStore<KeySide>; slot: number; side: KeySide | null } {
    const bytes = encoder.encode(key);
    const slot = this.store.find(bytes, 0, bytes.length);
    return { store: this.store, slot, side: slot < 0 ? null : this.store.side(slot) };
  }

  override setMembership(...args: Parameters<Replica["setMembership"]>): void {
    super.setMembership(...args);
    this.checkInvariants();
  }
  override setLease(...args: Parameters<Replica["setLease"]>): void {
    super.setLease(...args);
    this.checkInvariants();
  }
  override stop(): void {
    super.stop();
    this.checkInvariants();
  }
  override beginJoin(): void {
    super.beginJoin();
    this.checkInvariants();
  }
  override installSnapshotEntry(...args: Parameters<Replica["installSnapshotEntry"]>): void {
    super.installSnapshotEntry(...args);
    this.checkInvariants();
  }
  override finishJoin(...args: Parameters<Replica["finishJoin"]>): void {
    super.finishJoin(...args);
    this.checkInvariants();
  }
  override submit(...args: Parameters<Replica["submit"]>): void {
    super.submit(...args);
    this.checkInvariants();
  }
  override receive(...args: Parameters<Replica["receive"]>): void {
    super.receive(...args);
    this.checkInvariants();
  }
  override tick(...args: Parameters<Replica["tick"]>): void {
    super.tick(...args);
    this.checkInvariants();
  }
}

export class ManualCluster {
  readonly replicas: Replica[] = [];
  readonly inFlight: Sent[] = [];
  readonly answers = new Map<number, Answer>();
  nowMs = 0;
  #nextOp = 1;

  constructor(size: number, make?: MakeReplica, overrides: Partial<ReplicaConfig> = {}) {
    for (let id = 0; id < size; id++) {
      const config: ReplicaConfig = { ...defaultReplicaConfig, ...overrides, self: id };
      const replica = make ? make(config, this) : new CheckedReplica(config, this.outboxFor(id), this.completions);
      this.replicas.push(replica);
    }
    const all = this.replicas.map((_, i) => i);
    for (const r of this.replicas) {
      r.setMembership(1, all, 0);
      r.setLease(1e12, 0);
    }
    this.checkInvariants();
  }

  /** Every replica's whole-state invariants; throws AssertionError naming the replica and key. */
  checkInvariants(): void {
    for (const r of this.replicas) r.checkInvariants();
  }

  outboxFor(from: NodeId): Outbox {
    return {
      // The key and value are lent: keep copies (the key as a string, for the tests' filters).
      send: (to, kind, key, keyAt, keyLength, version, writer, epoch, rmw, value, valueAt, valueLength) => {
        this.inFlight.push({
          from,
          to,
          kind,
          key: keyText(key, keyAt, keyLength),
          version,
          writer,
          epoch,
          rmw,
          value: copyRange(value, valueAt, valueLength),
        });
      },
    };
  }

  readonly completions = {
    complete: (
      opId: number,
      status: OpStatus,
      value: Uint8Array | null,
      valueAt: number,
      valueLength: number,
      version: number,
      writer: NodeId,
    ) => {
      if (this.answers.has(opId)) throw new Error(`op ${opId} answered twice`);
      this.answers.set(opId, {
        status,
        value: value === null ? null : decoder.decode(value.subarray(valueAt, valueAt + valueLength)),
        version,
        writer,
      });
    },
  };

  submit(
    node: NodeId,
    kind: OpKind,
    key: string,
    value: string | null = null,
    expected?: { version: number; writer: NodeId },
    by = 0,
  ): number {
    const opId = this.#nextOp++;
    this.replicas[node]!.submit(
      opId,
      kind,
      key,
      value === null ? null : encoder.encode(value),
      expected?.version ?? 0,
      expected?.writer ?? 0,
      by,
      this.nowMs,
    );
    this.checkInvariants();
    return opId;
  }

  /** Messages in flight matching a filter, e.g. { from: 0, kind: MsgKind.Inv }. */
  find(filter: Partial<Sent>): Sent[] {
    return this.inFlight.filter((m) =>
      Object.entries(filter).every(([k, v]) => (m as unknown as Record<string, unknown>)[k] === v),
    );
  }

  /** Deliver (and remove) every in-flight message matching the filter, in send order. Returns how many. */
  deliver(filter: Partial<Sent>): number {
    const chosen = this.find(filter);
    for (const m of chosen) {
      this.inFlight.splice(this.inFlight.indexOf(m), 1);
      receiveText(this.replicas[m.to]!, m, this.nowMs);
      this.checkInvariants();
    }
    return chosen.length;
  }

  /** Drop (remove without delivering) every in-flight message matching the filter. */
  drop(filter: Partial<Sent>): number {
    const chosen = this.find(filter);
    for (const m of chosen) this.inFlight.splice(this.inFlight.indexOf(m), 1);
    return chosen.length;
  }

  /** Deliver everything until the network is empty (bounded). */
  settle(roundsMax = 1000): void {
    for (let i = 0; i < roundsMax && this.inFlight.length > 0; i++) {
      const m = this.inFlight.shift()!;
      receiveText(this.replicas[m.to]!, m, this.nowMs);
      this.checkInvariants();
    }
    if (this.inFlight.length > 0) throw new Error("network did not settle");
  }

  tick(ms: number): void {
    this.nowMs += ms;
    for (const r of this.replicas) r.tick(this.nowMs);
    this.checkInvariants();
  }

  describe(m: Sent): string {
    return `${kindNames[m.kind]} ${m.from}->${m.to} ${m.key} ${m.version}.${m.writer} e${m.epoch}`;
  }
}

/** Deliver a message whose key is a string (tests think in strings; the core takes key bytes). */
export function receiveText(replica: Replica, m: Omit<Sent, "to">, nowMs: number): void {
  const key = keyBytes(m.key);
  replica.receive(
    m.from,
    m.kind,
    key,
    0,
    key.length,
    m.version,
    m.writer,
    m.epoch,
    m.rmw,
    m.value,
    0,
    m.value === null ? 0 : m.value.length,
    nowMs,
  );
}
