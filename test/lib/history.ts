// Client histories of the KV store, in the shape the linearizability checker reads.
//
// One HistoryOp is one client operation: when it was invoked (`call`), when its answer arrived
// (`ret`), what was asked (`input`) and what was answered (`output`). This is Jepsen's
// invoke/ok/info/fail model folded into one record per op:
// - ok:      ret and output are set.
// - info:    ret === null and output === null. The outcome is unknown: the op may have taken effect,
//            at any time after `call` (even after the client gave up), or never.
// - fail:    the op definitely did not take effect; it is left out of the history altogether.
// Intervals are closed: two ops whose intervals touch (a.ret === b.call) are concurrent, because with
// coarse or simulated clocks "equal" does not mean "one finished before the other started".

import { kvOutputFitsInput } from "./kv-model.ts";

export type KvInput =
  | { type: "read" }
  /** `value: null` is a delete (a tombstone write): the key becomes absent. */
  | { type: "write"; value: string | null }
  /** Succeeds iff the current value === expected (null = absent, i.e. create-if-absent). */
  | { type: "cas"; expected: string | null; value: string | null }
  /** The value is a decimal integer string; absent counts as 0. */
  | { type: "incr"; by: number };

export type KvOutput =
  | { type: "read"; value: string | null }
  | { type: "write" }
  | { type: "cas"; ok: boolean }
  /** The new value. */
  | { type: "incr"; value: number }
  /** Incr on a value that is not a safe decimal integer (or would overflow one): nothing written. */
  | { type: "incr-nan" };

export interface HistoryOp {
  id: number;
  client: number;
  key: string;
  call: number;
  /** null: outcome unknown (then output is null too). */
  ret: number | null;
  input: KvInput;
  /** null: outcome unknown. */
  output: KvOutput | null;
}

/** Throws if `op` is malformed. Histories built by hand or loaded from files go through this. */
export function validateHistoryOp(op: HistoryOp): void {
  const where = `history op #${String(op.id)}`;
  if (!Number.isSafeInteger(op.id)) throw new Error(`${where}: id must be a safe integer`);
  if (!Number.isSafeInteger(op.client)) throw new Error(`${where}: client must be a safe integer`);
  if (typeof op.key !== "string") throw new Error(`${where}: key must be a string`);
  if (!Number.isFinite(op.call)) throw new Error(`${where}: call must be a finite number`);
  validateKvInput(op.input, where);
  if ((op.ret === null) !== (op.output === null)) {
    throw new Error(`${where}: ret and output must both be null (unknown outcome) or both be set`);
  }
  if (op.ret !== null) {
    if (!Number.isFinite(op.ret)) throw new Error(`${where}: ret must be a finite number or null`);
    if (op.ret < op.call) throw new Error(`${where}: ret ${String(op.ret)} is before call ${String(op.call)}`);
  }
  if (op.output !== null && !kvOutputFitsInput(op.input, op.output)) {
    throw new Error(`${where}: output ${op.output.type} does not fit input ${op.input.type}`);
  }
}

function validateKvInput(input: KvInput, where: string): void {
  switch (input.type) {
    case "read":
      return;
    case "write":
      if (input.value !== null && typeof input.value !== "string")
        throw new Error(`${where}: write value must be a string or null`);
      return;
    case "cas":
      if (input.expected !== null && typeof input.expected !== "string")
        throw new Error(`${where}: cas expected must be a string or null`);
      if (input.value !== null && typeof input.value !== "string")
        throw new Error(`${where}: cas value must be a string or null`);
      return;
    case "incr":
      if (!Number.isSafeInteger(input.by)) throw new Error(`${where}: incr by must be a safe integer`);
      return;
    default:
      throw new Error(`${where}: unknown input type ${String((input as { type: unknown }).type)}`);
  }
}

/** Longest value text shown in a formatted op; longer values are cut with an ellipsis. */
const formatValueCharsMax = 40;

export function formatKvValue(value: string | null): string {
  if (value === null) return "absent";
  const text = JSON.stringify(value);
  return text.length <= formatValueCharsMax ? text : `${text.slice(0, formatValueCharsMax - 1)}…`;
}

export function formatKvInput(input: KvInput): string {
  switch (input.type) {
    case "read":
      return "read";
    case "write":
      return input.value === null ? "delete" : `write(${formatKvValue(input.value)})`;
    case "cas":
      return `cas(${formatKvValue(input.expected)} -> ${formatKvValue(input.value)})`;
    case "incr":
      return `incr(${input.by >= 0 ? "+" : ""}${String(input.by)})`;
  }
}

export function formatKvOutput(output: KvOutput | null): string {
  if (output === null) return "unknown";
  switch (output.type) {
    case "read":
      return formatKvValue(output.value);
    case "write":
      return "ok";
    case "cas":
      return output.ok ? "ok" : "precondition-failed";
    case "incr":
      return String(output.value);
    case "incr-nan":
      return "not-a-number";
  }
}

/** Simulated ticks are integers and print as such; wall-clock milliseconds print with 3 decimals. */
export function formatTime(time: number | null): string {
  if (time === null) return "-";
  return Number.isInteger(time) ? String(time) : time.toFixed(3);
}

/** One line: `#12 c3 [10.000, 12.500] write("v1") -> ok` (with the key when `withKey`). */
export function formatHistoryOp(op: HistoryOp, withKey = false): string {
  const key = withKey ? ` key=${JSON.stringify(op.key)}` : "";
  return `#${String(op.id)} c${String(op.client)}${key} [${formatTime(op.call)}, ${formatTime(op.ret)}] ${formatKvInput(op.input)} -> ${formatKvOutput(op.output)}`;
}

/** Default bound on the ops one recorder holds: a test that records more is runaway. */
export const historyOpsMaxDefault = 1_000_000;

const enum RecordStatus {
  Pending = 0,
  Ok = 1,
  Unknown = 2,
  Failed = 3,
}

const recordStatusNames = ["pending", "ok", "unknown", "failed"] as const;

/**
 * Records a history as a test runs. Each op is invoked once and completed at most once, with
 * `ok` (answered), `unknown` (timed out or otherwise in doubt: stays pending forever) or `failed`
 * (definitely not applied: dropped from the history). Ops never completed count as unknown.
 * Times default to performance.now(); the simulator passes its own (simulated) time.
 */
export class HistoryRecorder {
  readonly opsMax: number;
  readonly #ops: HistoryOp[] = [];
  readonly #status: RecordStatus[] = [];

  constructor(options: { opsMax?: number } = {}) {
    const opsMax = options.opsMax ?? historyOpsMaxDefault;
    if (!Number.isSafeInteger(opsMax) || opsMax <= 0)
      throw new Error(`HistoryRecorder: opsMax must be a positive integer, got ${String(opsMax)}`);
    this.opsMax = opsMax;
  }

  /** How many ops were invoked so far (including failed ones). */
  get invokedCount(): number {
    return this.#ops.length;
  }

  invoke(client: number, key: string, input: KvInput, now: number = performance.now()): number {
    if (this.#ops.length >= this.opsMax)
      throw new Error(`HistoryRecorder: more than opsMax=${String(this.opsMax)} ops`);
    const id = this.#ops.length;
    const op: HistoryOp = { id, client, key, call: now, ret: null, input, output: null };
    validateHistoryOp(op);
    this.#ops.push(op);
    this.#status.push(RecordStatus.Pending);
    return id;
  }

  ok(id: number, output: KvOutput, now: number = performance.now()): void {
    const op = this.#pending(id, "ok");
    if (!kvOutputFitsInput(op.input, output)) {
      throw new Error(`HistoryRecorder: op #${String(id)} ${op.input.type} cannot have output ${output.type}`);
    }
    if (!Number.isFinite(now) || now < op.call) {
      throw new Error(
        `HistoryRecorder: op #${String(id)} returns at ${String(now)}, before its call at ${String(op.call)}`,
      );
    }
    op.ret = now;
    op.output = output;
    this.#status[id] = RecordStatus.Ok;
  }

  /** The outcome is in doubt: the op may take effect at any time after its call, or never. */
  unknown(id: number): void {
    this.#pending(id, "unknown");
    this.#status[id] = RecordStatus.Unknown;
  }

  /** The op definitely did not take effect (e.g. rejected before it started): it leaves the history. */
  failed(id: number): void {
    this.#pending(id, "failed");
    this.#status[id] = RecordStatus.Failed;
  }

  /** Copies of the ops that belong to the history (all but failed ones), in invocation order. */
  ops(): HistoryOp[] {
    const out: HistoryOp[] = [];
    for (let i = 0; i < this.#ops.length; i++) {
      if (this.#status[i] === RecordStatus.Failed) continue;
      out.push({ ...(this.#ops[i] as HistoryOp) });
    }
    return out;
  }

  #pending(id: number, completion: string): HistoryOp {
    const op = this.#ops[id];
    if (!Number.isSafeInteger(id) || op === undefined)
      throw new Error(`HistoryRecorder.${completion}: no op #${String(id)}`);
    if (this.#status[id] !== RecordStatus.Pending) {
      throw new Error(
        `HistoryRecorder.${completion}: op #${String(id)} was already completed (${recordStatusNames[this.#status[id] as RecordStatus]})`,
      );
    }
    return op;
  }
}
