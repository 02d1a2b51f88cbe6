// Closed-loop simulated clients: reads, writes, deletes, CAS, create and increments over a few hot
// keys, with unique written values so that every read names its write. Each op is recorded in the
// history (simulated time) for the linearizability check; answers feed the answer-level oracles.

import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { NodeId } from "../../src/base/ids.ts";
import { HistoryRecorder, type KvInput } from "../lib/history.ts";
import { SimViolation, type SimNode, type Simulation } from "./simulation.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Seen {
  version: number;
  writer: NodeId;
  value: string | null;
}

export class Workload {
  readonly history = new HistoryRecorder();
  readonly registerKeys: string[];
  readonly counterKeys: string[];
  issued = 0;
  answered = 0;
  readonly #clients: SimClient[] = [];
  readonly #sim: Simulation;
  readonly #onIssued: () => void;
  /** Liveness: set when the healing phase started; ops invoked after healAt + settle must finish fast. */
  healAtMs = Infinity;
  readonly livenessFailures: string[] = [];
  readonly statusCounts = new Map<string, number>();

  constructor(sim: Simulation, onIssued: () => void) {
    this.#sim = sim;
    this.#onIssued = onIssued;
    const o = sim.options;
    this.registerKeys = Array.from({ length: o.registerKeys }, (_, i) => `r${i}`);
    this.counterKeys = Array.from({ length: o.counterKeys }, (_, i) => `c${i}`);
  }

  get keys(): string[] {
    return [...this.registerKeys, ...this.counterKeys];
  }

  start(): void {
    let clientId = 0;
    for (const node of this.#sim.nodes) {
      for (let i = 0; i < this.#sim.options.clientsPerNode; i++) {
        const client = new SimClient(clientId++, node);
        this.#clients.push(client);
        this.#sim.events.push(this.#sim.random.range(0, 2), () => this.#next(client));
      }
    }
  }

  /** Every op is issued and answered (a crash answers the ops of its node: their connections reset). */
  get quiescent(): boolean {
    if (this.issued < this.#sim.options.ops) return false;
    for (const client of this.#clients) if (client.busy) return false;
    return true;
  }

  #next(client: SimClient): void {
    const sim = this.#sim;
    if (this.issued >= sim.options.ops) return;
    const random = sim.random;
    if (client.node.crashed) {
      // Its node is down: go to another one, or wait until one is up.
      this.#failOver(client);
      if (client.node.crashed) {
        sim.events.push(sim.nowMs + 1 + random.range(0, sim.options.thinkMsMax), () => this.#next(client));
        return;
      }
    }
    const useCounter = this.counterKeys.length > 0 && random.chance(0.25);
    const key = random.pick(useCounter ? this.counterKeys : this.registerKeys);
    const roll = random.float();
    let kind: OpKind;
    let input: KvInput;
    let value: string | null = null;
    let expected: Seen | undefined;
    // Every other client is read-mostly, so that some client keeps reading on a node whose
    // writers are stuck (e.g. a node without a lease): that is where stale reads would show.
    if (roll < (client.id % 2 === 1 ? 0.85 : 0.4)) {
      kind = OpKind.Read;
      input = { type: "read" };
    } else if (useCounter) {
      kind = OpKind.Incr;
      input = { type: "incr", by: 1 + random.int(3) };
    } else if (roll < 0.65) {
      kind = OpKind.Write;
      value = `c${client.id}-${client.sequence++}`;
      input = { type: "write", value };
    } else if (roll < 0.72) {
      kind = OpKind.Delete;
      input = { type: "write", value: null };
    } else {
      value = `c${client.id}-${client.sequence++}`;
      expected = client.seen.get(key);
      if (expected === undefined || expected.value === null) {
        // Tombstones share the value null, so create-if-absent stands for CAS on an absent key.
        kind = OpKind.Create;
        input = { type: "cas", expected: null, value };
      } else {
        kind = OpKind.Cas;
        input = { type: "cas", expected: expected.value, value };
      }
    }
    const historyId = this.history.invoke(client.id, key, input, sim.nowMs);
    const invokedAtMs = sim.nowMs;
    this.issued++;
    client.busy = true;
    this.#onIssued();
    const by = input.type === "incr" ? input.by : 0;
    sim.submit(
      client.node,
      kind,
      key,
      value === null ? null : encoder.encode(value),
      expected?.version ?? 0,
      expected?.writer ?? 0,
      by,
      (status, answer, version, writer) => {
        this.answered++;
        client.busy = false;
        this.#record(client, kind, key, value, historyId, status, answer, version, writer, invokedAtMs);
        // Like a real client, go to another replica when this one does not serve or is down.
        if (status === OpStatus.Unavailable || client.node.crashed) this.#failOver(client);
        sim.events.push(sim.nowMs + random.range(0, sim.options.thinkMsMax), () => this.#next(client));
      },
    );
  }

  #record(
    client: SimClient,
    kind: OpKind,
    key: string,
    value: string | null,
    historyId: number,
    status: OpStatus,
    answer: Uint8Array | null,
    version: number,
    writer: NodeId,
    invokedAtMs: number,
  ): void {
    const sim = this.#sim;
    const statusName = OpStatusNames[status] ?? String(status);
    this.statusCounts.set(statusName, (this.statusCounts.get(statusName) ?? 0) + 1);
    sim.trace(
      `client ${client.id}@${client.node.id} ${OpKindNames[kind]} ${key} -> ${statusName} ${version}.${writer}`,
    );
    const isWrite = kind === OpKind.Write || kind === OpKind.Delete;
    if (
      isWrite &&
      (status === OpStatus.PreconditionFailed || status === OpStatus.Aborted || status === OpStatus.NotANumber)
    ) {
      throw new SimViolation(
        "writes-never-abort",
        `client ${client.id} ${OpKindNames[kind]} ${key} answered ${statusName}`,
      );
    }
    this.#checkLiveness(client, kind, key, status, invokedAtMs);
    const now = sim.nowMs;
    switch (status) {
      case OpStatus.Ok:
        switch (kind) {
          case OpKind.Read: {
            const text = answer === null ? null : decoder.decode(answer);
            this.history.ok(historyId, { type: "read", value: text }, now);
            client.seen.set(key, { version, writer, value: text });
            return;
          }
          case OpKind.Write:
          case OpKind.Delete:
            this.history.ok(historyId, { type: "write" }, now);
            client.seen.set(key, { version, writer, value });
            return;
          case OpKind.Cas:
          case OpKind.Create:
            this.history.ok(historyId, { type: "cas", ok: true }, now);
            client.seen.set(key, { version, writer, value });
            return;
          case OpKind.Incr:
            this.history.ok(historyId, { type: "incr", value: Number(decoder.decode(answer!)) }, now);
            return;
        }
        return;
      case OpStatus.PreconditionFailed:
        this.history.ok(historyId, { type: "cas", ok: false }, now);
        client.seen.delete(key); // read it again before the next CAS
        return;
      case OpStatus.NotANumber:
        this.history.ok(historyId, { type: "incr-nan" }, now);
        return;
      case OpStatus.Unknown:
        this.history.unknown(historyId);
        return;
      default:
        // Aborted (final), Unavailable, Busy, StoreFull, Timeout: nothing was written.
        this.history.failed(historyId);
    }
  }

  #failOver(client: SimClient): void {
    const sim = this.#sim;
    let candidates = sim.nodes.filter((n) => sim.serving(n));
    if (candidates.length === 0) candidates = sim.nodes.filter((n) => !n.crashed);
    if (candidates.length > 0) client.node = sim.random.pick(candidates);
  }

  #checkLiveness(client: SimClient, kind: OpKind, key: string, status: OpStatus, invokedAtMs: number): void {
    const sim = this.#sim;
    if (invokedAtMs < this.healAtMs + sim.options.settleMs) return;
    if (client.node.crashed || !sim.rm.members.has(client.node.id) || !sim.serving(client.node)) return;
    const tookMs = sim.nowMs - invokedAtMs;
    const definite =
      status === OpStatus.Ok ||
      status === OpStatus.PreconditionFailed ||
      status === OpStatus.NotANumber ||
      status === OpStatus.Aborted;
    if (!definite || tookMs > sim.options.livenessMs) {
      throw new SimViolation(
        "liveness",
        `after healing, client ${client.id}@${client.node.id} ${OpKindNames[kind]} ${key} answered ${OpStatusNames[status]} after ${tookMs.toFixed(1)}ms (bound ${sim.options.livenessMs}ms)`,
      );
    }
  }
}

class SimClient {
  readonly id: number;
  node: SimNode;
  sequence = 0;
  busy = false;
  readonly seen = new Map<string, Seen>();
  constructor(id: number, node: SimNode) {
    this.id = id;
    this.node = node;
  }
}

export const OpKindNames: Record<number, string> = {
  1: "read",
  2: "write",
  3: "delete",
  4: "cas",
  5: "create",
  6: "incr",
};
export const OpStatusNames: Record<number, string> = {
  0: "ok",
  1: "precondition-failed",
  2: "not-a-number",
  3: "aborted",
  4: "unknown",
  5: "unavailable",
  6: "busy",
  7: "store-full",
  8: "timeout",
};
