// The sequential specification of one key of the store: what a single-threaded, in-memory KV would
// answer. The linearizability checker asks "is there a total order of the ops, consistent with
// real time, in which every op's recorded output is what this model answers?". Test generators use
// the same `kvApply` to produce known-good histories, so the checker and the generators can never
// disagree about what an op means.
//
// State is the key's current value, `null` when the key is absent (never written, or deleted).
// CAS compares values, not timestamps: tests write values that are unique per key, so "the value the
// client saw" names exactly one write and therefore exactly one timestamp (ETag). Keys updated by
// `incr` do not have unique values in general (5 → 6 → 5 with a negative `by`), so tests should not
// CAS on counters unless their increments keep values unique (e.g. always `by > 0`).

import type { KvInput, KvOutput } from "./history.ts";

export type KvState = string | null;

// The same rule as the core (src/core/replica.ts incremented()): no leading zeros, at most 16 digits.
const decimalIntegerPattern = /^-?(0|[1-9][0-9]{0,15})$/;

/**
 * The integer a value holds for `incr`, or null if it is not a safe decimal integer.
 * Accepted: an optional "-" and ASCII digits, nothing else (no "+", spaces, exponent or fraction),
 * within ±(2^53 − 1). This matches OpStatus.NotANumber in src/core/types.ts: "not a safe decimal
 * integer, or whose result would not be".
 */
export function parseKvInteger(value: string): number | null {
  if (!decimalIntegerPattern.test(value)) return null;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) return null;
  // "-0" parses to -0; normalise so that String(n) round-trips as "0".
  return n === 0 ? 0 : n;
}

export interface KvApplied {
  state: KvState;
  output: KvOutput;
}

/** Runs one op against the state: the new state and the output a sequential store would return. */
export function kvApply(state: KvState, input: KvInput): KvApplied {
  switch (input.type) {
    case "read":
      return { state, output: { type: "read", value: state } };
    case "write":
      return { state: input.value, output: { type: "write" } };
    case "cas":
      if (state === input.expected) return { state: input.value, output: { type: "cas", ok: true } };
      return { state, output: { type: "cas", ok: false } };
    case "incr": {
      const base = state === null ? 0 : parseKvInteger(state);
      if (base === null) return { state, output: { type: "incr-nan" } };
      const sum = base + input.by;
      if (!Number.isSafeInteger(sum)) return { state, output: { type: "incr-nan" } };
      return { state: String(sum), output: { type: "incr", value: sum } };
    }
  }
}

export function kvOutputsEqual(a: KvOutput, b: KvOutput): boolean {
  switch (a.type) {
    case "read":
      return b.type === "read" && a.value === b.value;
    case "write":
      return b.type === "write";
    case "cas":
      return b.type === "cas" && a.ok === b.ok;
    case "incr":
      return b.type === "incr" && a.value === b.value;
    case "incr-nan":
      return b.type === "incr-nan";
  }
}

/**
 * One step of the model as the checker uses it: the state after `input` if `output` is what the
 * model answers in `state`, else `undefined` (this op cannot be linearized here).
 * `output === null` is an unknown outcome: any answer is acceptable, so the step always succeeds
 * and applies the op's effect (a CAS whose precondition fails, or an incr on a non-integer, has none).
 * Equal to `kvApply` followed by `kvOutputsEqual` (a test checks that), but allocates nothing: the
 * checker calls it once per search step.
 */
export function kvStep(state: KvState, input: KvInput, output: KvOutput | null): KvState | undefined {
  switch (input.type) {
    case "read":
      if (output === null) return state;
      return output.type === "read" && output.value === state ? state : undefined;
    case "write":
      if (output === null) return input.value;
      return output.type === "write" ? input.value : undefined;
    case "cas": {
      const matches = state === input.expected;
      if (output === null) return matches ? input.value : state;
      if (output.type !== "cas" || output.ok !== matches) return undefined;
      return matches ? input.value : state;
    }
    case "incr": {
      const base = state === null ? 0 : parseKvInteger(state);
      const sum = base === null ? Number.NaN : base + input.by;
      if (!Number.isSafeInteger(sum)) {
        if (output === null) return state;
        return output.type === "incr-nan" ? state : undefined;
      }
      if (output === null) return String(sum);
      return output.type === "incr" && output.value === sum ? String(sum) : undefined;
    }
  }
}

/** Whether `output` is a shape that `input` can produce at all (a malformed history otherwise). */
export function kvOutputFitsInput(input: KvInput, output: KvOutput): boolean {
  switch (input.type) {
    case "read":
      return output.type === "read";
    case "write":
      return output.type === "write";
    case "cas":
      return output.type === "cas";
    case "incr":
      return output.type === "incr" || output.type === "incr-nan";
  }
}
