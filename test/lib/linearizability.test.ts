// Tests of the linearizability checker: hand-written histories with known verdicts, the history
// recorder, a cross-check against a brute-force definition on small random histories, and
// histories generated from real sequential executions (must pass) with one read corrupted (must
// fail). Random tests use a seeded PRNG; a failure prints the seed, and SEED=<n> replays one.

import { describe, expect, test } from "bun:test";
import { formatHistoryOp, HistoryRecorder, type HistoryOp, type KvInput, type KvOutput } from "./history.ts";
import { kvApply, kvOutputsEqual, kvStep, parseKvInteger, type KvState } from "./kv-model.ts";
import { checkKeyLinearizable, checkLinearizable, formatLinResult, type LinResult } from "./linearizability.ts";
import { prng } from "./prng.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** Builds one key's history from compact rows; ret/output null = unknown outcome. */
class H {
  readonly ops: HistoryOp[] = [];
  add(client: number, call: number, ret: number | null, input: KvInput, output: KvOutput | null, key = "k"): this {
    this.ops.push({ id: this.ops.length, client, key, call, ret, input, output });
    return this;
  }
  write(client: number, call: number, ret: number | null, value: string | null, key = "k"): this {
    return this.add(client, call, ret, { type: "write", value }, ret === null ? null : { type: "write" }, key);
  }
  read(client: number, call: number, ret: number, value: string | null, key = "k"): this {
    return this.add(client, call, ret, { type: "read" }, { type: "read", value }, key);
  }
  cas(
    client: number,
    call: number,
    ret: number | null,
    expected: string | null,
    value: string | null,
    ok: boolean | null,
    key = "k",
  ): this {
    return this.add(client, call, ret, { type: "cas", expected, value }, ok === null ? null : { type: "cas", ok }, key);
  }
  incr(client: number, call: number, ret: number | null, by: number, result: number | "nan" | null, key = "k"): this {
    const output: KvOutput | null =
      result === null ? null : result === "nan" ? { type: "incr-nan" } : { type: "incr", value: result };
    return this.add(client, call, ret, { type: "incr", by }, output, key);
  }
}

function expectOk(result: LinResult): void {
  if (result.ok !== true) throw new Error(`expected linearizable, got ${JSON.stringify(result, null, 2)}`);
  expect(result.ok).toBe(true);
}

interface Violation {
  message: string;
  witness: string[];
}

function violationOf(result: LinResult, key: string, how: string): Violation {
  if (result.ok !== false)
    throw new Error(`expected a violation on key ${key} (${how}), got ${JSON.stringify(result)}`);
  expect(result.key).toBe(key);
  expect(result.message.length).toBeGreaterThan(0);
  expect(result.witness.length).toBeGreaterThan(0);
  return result;
}

/** Both the default check and the search alone (no quick checks) must find the violation. */
function expectViolation(ops: HistoryOp[], key = "k"): { quick: Violation; search: Violation } {
  return {
    quick: violationOf(checkLinearizable(ops), key, "default"),
    search: violationOf(checkLinearizable(ops, { quickChecks: false }), key, "search only"),
  };
}

const pick = <T>(rng: () => number, items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;

const seedOverride = process.env.SEED === undefined ? null : Number(process.env.SEED);
function seedsFor(base: number, count: number): number[] {
  if (seedOverride !== null) return [seedOverride];
  return Array.from({ length: count }, (_, i) => base + i);
}

// ---------------------------------------------------------------------------------------------
// The sequential model

describe("kv model", () => {
  test("read, write, delete, cas and incr follow the sequential specification", () => {
    expect(kvApply(null, { type: "read" })).toEqual({ state: null, output: { type: "read", value: null } });
    expect(kvApply("a", { type: "write", value: "b" })).toEqual({ state: "b", output: { type: "write" } });
    expect(kvApply("a", { type: "write", value: null })).toEqual({ state: null, output: { type: "write" } });
    expect(kvApply("a", { type: "cas", expected: "a", value: "b" })).toEqual({
      state: "b",
      output: { type: "cas", ok: true },
    });
    expect(kvApply("a", { type: "cas", expected: "x", value: "b" })).toEqual({
      state: "a",
      output: { type: "cas", ok: false },
    });
    expect(kvApply(null, { type: "cas", expected: null, value: "b" })).toEqual({
      state: "b",
      output: { type: "cas", ok: true },
    });
    expect(kvApply("a", { type: "cas", expected: null, value: "b" })).toEqual({
      state: "a",
      output: { type: "cas", ok: false },
    });
    expect(kvApply(null, { type: "incr", by: 3 })).toEqual({ state: "3", output: { type: "incr", value: 3 } });
    expect(kvApply("-4", { type: "incr", by: 3 })).toEqual({ state: "-1", output: { type: "incr", value: -1 } });
    expect(kvApply("x", { type: "incr", by: 3 })).toEqual({ state: "x", output: { type: "incr-nan" } });
    expect(kvApply(String(Number.MAX_SAFE_INTEGER), { type: "incr", by: 1 }).output).toEqual({ type: "incr-nan" });
  });

  test("parseKvInteger accepts only safe decimal integers", () => {
    expect(parseKvInteger("0")).toBe(0);
    expect(parseKvInteger("-0")).toBe(0);
    expect(parseKvInteger("42")).toBe(42);
    expect(parseKvInteger("-17")).toBe(-17);
    // Leading zeros are refused, as the core refuses them (NotANumber).
    for (const bad of ["0042", "00", "", "-", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "abc", "9007199254740992"])
      expect(parseKvInteger(bad)).toBeNull();
  });

  test("kvStep agrees with kvApply and kvOutputsEqual on random states, inputs and outputs", () => {
    const rng = prng(seedOverride ?? 42);
    const values = [null, "a", "b", "0", "7", "-3", "x1", String(Number.MAX_SAFE_INTEGER)];
    for (let t = 0; t < 20_000; t++) {
      const state = pick(rng, values);
      const kind = rng();
      const input: KvInput =
        kind < 0.25
          ? { type: "read" }
          : kind < 0.5
            ? { type: "write", value: pick(rng, values) }
            : kind < 0.75
              ? { type: "cas", expected: pick(rng, values), value: pick(rng, values) }
              : { type: "incr", by: pick(rng, [-8, -1, 0, 1, 7]) };
      const outputs: (KvOutput | null)[] = [
        null,
        { type: "read", value: pick(rng, values) },
        { type: "write" },
        { type: "cas", ok: rng() < 0.5 },
        { type: "incr", value: pick(rng, [-11, -4, -1, 0, 1, 7, 14]) },
        { type: "incr-nan" },
      ];
      const output = pick(rng, outputs);
      const applied = kvApply(state, input);
      const expected =
        output === null ? applied.state : kvOutputsEqual(applied.output, output) ? applied.state : undefined;
      expect(kvStep(state, input, output)).toBe(expected);
    }
  });

  test("kvStep rejects outputs the model does not give and accepts anything when unknown", () => {
    expect(kvStep("a", { type: "read" }, { type: "read", value: "b" })).toBeUndefined();
    expect(kvStep("a", { type: "read" }, { type: "read", value: "a" })).toBe("a");
    expect(kvStep("a", { type: "cas", expected: "a", value: "b" }, { type: "cas", ok: false })).toBeUndefined();
    expect(kvStep("a", { type: "cas", expected: "a", value: "b" }, null)).toBe("b");
    expect(kvStep("a", { type: "cas", expected: "z", value: "b" }, null)).toBe("a");
    expect(kvStep("5", { type: "incr", by: 1 }, { type: "incr", value: 5 })).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// The recorder

describe("HistoryRecorder", () => {
  test("records ok, unknown and failed ops; failed ones leave the history", () => {
    const rec = new HistoryRecorder();
    const w = rec.invoke(1, "k", { type: "write", value: "a" }, 10);
    const r = rec.invoke(2, "k", { type: "read" }, 11);
    const u = rec.invoke(3, "k", { type: "write", value: "b" }, 12);
    const f = rec.invoke(4, "k", { type: "cas", expected: "z", value: "c" }, 13);
    const p = rec.invoke(5, "j", { type: "incr", by: 1 }, 14);
    rec.ok(w, { type: "write" }, 20);
    rec.ok(r, { type: "read", value: "a" }, 21);
    rec.unknown(u);
    rec.failed(f);
    expect(rec.invokedCount).toBe(5);
    const ops = rec.ops();
    expect(ops.map((o) => o.id)).toEqual([w, r, u, p]);
    expect(ops[0]).toEqual({
      id: w,
      client: 1,
      key: "k",
      call: 10,
      ret: 20,
      input: { type: "write", value: "a" },
      output: { type: "write" },
    });
    expect(ops[2]?.ret).toBeNull();
    expect(ops[2]?.output).toBeNull();
    // Never completed: counts as unknown.
    expect(ops[3]?.ret).toBeNull();
    expectOk(checkLinearizable(ops));
  });

  test("an op completed twice, or with a mismatched output, or before its call, throws", () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke(1, "k", { type: "read" }, 5);
    rec.ok(a, { type: "read", value: null }, 6);
    expect(() => rec.ok(a, { type: "read", value: null }, 7)).toThrow(/already completed/);
    expect(() => rec.unknown(a)).toThrow(/already completed/);
    expect(() => rec.failed(a)).toThrow(/already completed/);
    const b = rec.invoke(1, "k", { type: "write", value: "x" }, 8);
    expect(() => rec.ok(b, { type: "read", value: "x" }, 9)).toThrow(/cannot have output/);
    expect(() => rec.ok(b, { type: "write" }, 7)).toThrow(/before its call/);
    rec.unknown(b);
    expect(() => rec.ok(b, { type: "write" }, 9)).toThrow(/already completed/);
    expect(() => rec.ok(99, { type: "write" }, 9)).toThrow(/no op #99/);
  });

  test("times default to performance.now() and ops are bounded by opsMax", () => {
    const rec = new HistoryRecorder({ opsMax: 2 });
    const before = performance.now();
    const a = rec.invoke(1, "k", { type: "write", value: "v" });
    rec.ok(a, { type: "write" });
    const [op] = rec.ops();
    expect(op?.call).toBeGreaterThanOrEqual(before);
    expect(op?.ret).toBeGreaterThanOrEqual(op?.call as number);
    rec.invoke(1, "k", { type: "read" });
    expect(() => rec.invoke(1, "k", { type: "read" })).toThrow(/opsMax/);
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-written histories

describe("linearizable histories pass", () => {
  test("empty history", () => {
    expect(checkLinearizable([])).toEqual({ ok: true, keys: 0, ops: 0 });
  });

  test("sequential writes, reads and deletes", () => {
    const h = new H()
      .read(1, 0, 1, null)
      .write(1, 2, 3, "a")
      .read(2, 4, 5, "a")
      .write(2, 6, 7, null)
      .read(1, 8, 9, null)
      .write(1, 10, 11, "b")
      .read(2, 12, 13, "b");
    expect(checkLinearizable(h.ops)).toEqual({ ok: true, keys: 1, ops: 7 });
  });

  test("a read concurrent with a write may see the old or the new value", () => {
    expectOk(
      checkLinearizable(
        new H().write(1, 0, 1, "a").write(2, 2, 10, "b").read(3, 3, 4, "a").read(4, 5, 6, "b").read(3, 11, 12, "b").ops,
      ),
    );
    // Both reads overlap the write but the later one sees the old value: still fine, as long as the
    // earlier one did not already see the new value (see the non-monotonic case below).
    expectOk(
      checkLinearizable(new H().write(1, 0, 1, "a").write(2, 2, 10, "b").read(3, 3, 4, "a").read(4, 5, 6, "a").ops),
    );
  });

  test("concurrent writes may take effect in either order", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 10, "a").write(2, 1, 9, "b").read(3, 11, 12, "a").ops));
    expectOk(checkLinearizable(new H().write(1, 0, 10, "a").write(2, 1, 9, "b").read(3, 11, 12, "b").ops));
  });

  test("intervals are closed: ops whose intervals touch are concurrent", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 5, "a").read(2, 5, 6, null).ops));
  });

  test("an unknown write that is later read", () => {
    expectOk(
      checkLinearizable(
        new H().write(1, 0, 1, "a").write(2, 2, null, "b").read(3, 50, 51, "b").read(3, 52, 53, "b").ops,
      ),
    );
  });

  test("an unknown write may take effect long after its client gave up", () => {
    // Client 2's write times out at (unrecorded) time ~5; reads at 10 still see "a", one at 30 sees "b".
    expectOk(
      checkLinearizable(
        new H().write(1, 0, 1, "a").write(2, 2, null, "b").read(3, 10, 11, "a").read(3, 30, 31, "b").ops,
      ),
    );
  });

  test("unknown writes that are never read", () => {
    const h = new H().write(1, 0, 1, "a");
    for (let i = 0; i < 40; i++) h.write(2 + i, 2 + i, null, `lost${String(i)}`);
    h.read(1, 100, 101, "a").write(1, 102, 103, "c").read(1, 104, 105, "c");
    expectOk(checkLinearizable(h.ops));
  });

  test("many unknown writes, some of which are read, next to a long failed cas", () => {
    // A failed cas that may come after them keeps unread unknown writes in the search (one of them
    // could be why it failed), so the search itself has to cope with 30 unknown writes that could
    // each go anywhere.
    const h = new H().write(1, 0, 1, "a").cas(1, 2, 300, "a", "q", false);
    for (let i = 0; i < 30; i++) h.write(2 + i, 4 + i, null, `u${String(i)}`);
    h.read(40, 100, 101, "u7").read(40, 102, 103, "u3").read(40, 104, 105, "u29");
    expectOk(checkLinearizable(h.ops));
    // The failed cas needs one of them before it: without them, "a" is still there.
    expectViolation(new H().write(1, 0, 1, "a").cas(1, 2, 300, "a", "q", false).read(40, 100, 101, "a").ops);
    // u7 cannot come back after u3 replaced it: values are written once.
    h.read(40, 106, 107, "u7");
    expectViolation(h.ops);
  });

  test("an unknown write explains a failed cas", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 1, "a").write(2, 2, null, "x").cas(1, 5, 6, "a", "b", false).ops));
  });

  test("an unknown write of a non-number explains incr-nan", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 1, "1").write(2, 2, null, "x").incr(1, 5, 6, 1, "nan").ops));
  });

  test("a cas race from the same expected value: exactly one wins", () => {
    const h = new H()
      .write(1, 0, 1, "a")
      .cas(2, 2, 10, "a", "b", true)
      .cas(3, 3, 9, "a", "c", false)
      .read(1, 11, 12, "b");
    expectOk(checkLinearizable(h.ops));
  });

  test("create-if-absent (cas from absent) and cas after delete", () => {
    const h = new H()
      .cas(1, 0, 5, null, "a", true)
      .cas(2, 1, 4, null, "b", false)
      .read(3, 6, 7, "a")
      .write(1, 8, 9, null)
      .cas(2, 10, 11, null, "c", true)
      .read(3, 12, 13, "c");
    expectOk(checkLinearizable(h.ops));
  });

  test("an unknown cas that took effect", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 1, "a").cas(2, 2, null, "a", "b", null).read(3, 20, 21, "b").ops));
  });

  test("an unknown cas whose precondition failed changes nothing", () => {
    expectOk(checkLinearizable(new H().write(1, 0, 1, "a").cas(2, 2, null, "zz", "b", null).read(3, 20, 21, "a").ops));
  });

  test("concurrent increments", () => {
    const h = new H()
      .incr(1, 0, 10, 1, 2)
      .incr(2, 1, 9, 1, 1)
      .incr(3, 2, 8, 5, 7)
      .read(1, 11, 12, "7")
      .incr(2, 13, 14, -7, 0);
    expectOk(checkLinearizable(h.ops));
  });

  test("an unknown increment that took effect, and one that did not", () => {
    expectOk(checkLinearizable(new H().incr(1, 0, 1, 1, 1).incr(2, 2, null, 10, null).incr(1, 3, 4, 1, 12).ops));
    expectOk(checkLinearizable(new H().incr(1, 0, 1, 1, 1).incr(2, 2, null, 10, null).incr(1, 3, 4, 1, 2).ops));
  });

  test("incr on a non-integer value answers not-a-number and writes nothing", () => {
    expectOk(
      checkLinearizable(
        new H().write(1, 0, 1, "x").incr(2, 2, 3, 1, "nan").read(1, 4, 5, "x").write(1, 6, 7, "41").incr(2, 8, 9, 1, 42)
          .ops,
      ),
    );
  });

  test("independent keys are checked independently", () => {
    const h = new H()
      .write(1, 0, 10, "a", "x")
      .write(2, 0, 10, "b", "y")
      .read(1, 11, 12, "a", "x")
      .read(2, 11, 12, "b", "y")
      .read(3, 1, 2, null, "y");
    expect(checkLinearizable(h.ops)).toEqual({ ok: true, keys: 2, ops: 5 });
  });
});

describe("violations are caught", () => {
  test("stale read after a completed write", () => {
    const r = expectViolation(new H().write(1, 0, 1, "a").write(2, 2, 3, "b").read(3, 4, 5, "a").ops);
    expect(r.search.message).toContain('#2 c3 [4, 5] read -> "a"');
    expect(r.search.message).toContain('model answers "b"');
    // The quick check names the writer and the op that overwrote it.
    expect(r.quick.message).toContain("which only #0 writes, but #1 changed the value");
    expect(r.quick.witness).toEqual([
      expect.stringContaining('key "k"'),
      '  #0 c1 [0, 1] write("a") -> ok',
      '  #1 c2 [2, 3] write("b") -> ok',
      '  #2 c3 [4, 5] read -> "a"',
    ]);
  });

  test("read of a value never written", () => {
    const r = expectViolation(new H().write(1, 0, 1, "a").read(2, 2, 3, "ghost").ops);
    expect(r.quick.message).toContain('"ghost", which no op of this key writes');
    expect(r.quick.witness.join("\n")).toContain('#1 c2 [2, 3] read -> "ghost"');
    expect(r.search.message).toContain('model answers "a"');
  });

  test("read of a value before its write was invoked", () => {
    const r = expectViolation(new H().read(1, 0, 1, "a").write(2, 2, 3, "a").ops);
    expect(r.quick.message).toContain("which only #1 writes, and that was called after it returned");
  });

  test("read of absent after a completed write, with no delete", () => {
    expectViolation(new H().write(1, 0, 1, "a").read(2, 2, 3, null).ops);
  });

  test("two cas from the same expected value both succeed", () => {
    expectViolation(new H().write(1, 0, 1, "a").cas(2, 2, 10, "a", "b", true).cas(3, 3, 9, "a", "c", true).ops);
  });

  test("two creates of an absent key both succeed", () => {
    expectViolation(new H().cas(1, 0, 5, null, "a", true).cas(2, 1, 4, null, "b", true).ops);
  });

  test("lost increment", () => {
    expectViolation(new H().incr(1, 0, 10, 1, 1).incr(2, 1, 9, 1, 1).ops);
    expectViolation(new H().incr(1, 0, 1, 1, 1).incr(2, 2, 3, 1, 2).read(3, 4, 5, "1").ops);
  });

  test("a read sees a write, then a later read sees the older value (non-monotonic)", () => {
    const r = expectViolation(
      new H().write(1, 0, 1, "a").write(2, 2, 20, "b").read(3, 3, 4, "b").read(4, 5, 6, "a").ops,
    );
    expect(r.search.witness.some((line) => line.includes('read -> "a"'))).toBe(true);
  });

  test("an unknown write is read, then a later read misses it", () => {
    expectViolation(new H().write(1, 0, 1, "a").write(2, 2, null, "b").read(3, 10, 11, "b").read(3, 12, 13, "a").ops);
  });

  test("a cas fails although the value matched and nothing was concurrent", () => {
    expectViolation(new H().write(1, 0, 1, "a").cas(2, 2, 3, "a", "b", false).ops);
  });

  test("a cas succeeds although the value did not match", () => {
    expectViolation(new H().write(1, 0, 1, "a").write(1, 2, 3, "b").cas(2, 4, 5, "a", "c", true).ops);
  });

  test("incr-nan on an integer value, and incr on a non-integer", () => {
    expectViolation(new H().write(1, 0, 1, "5").incr(2, 2, 3, 1, "nan").ops);
    expectViolation(new H().write(1, 0, 1, "x").incr(2, 2, 3, 1, 1).ops);
  });

  test("an unknown cas cannot be placed before its own call", () => {
    expectViolation(new H().write(1, 0, 1, "a").read(2, 2, 3, "b").cas(3, 4, null, "a", "b", null).ops);
  });

  test("the violating key is reported among linearizable ones, with a readable witness", () => {
    const h = new H()
      .write(1, 0, 1, "a", "good")
      .read(2, 2, 3, "a", "good")
      .write(1, 0, 1, "a", "bad")
      .write(1, 2, 3, "b", "bad")
      .read(2, 4, 5, "a", "bad");
    const r = expectViolation(h.ops, "bad");
    const text = r.search.witness.join("\n");
    // The prefix that fits, the value it leaves, and the op that cannot follow, one op per line.
    expect(text).toContain('#3 c1 [2, 3] write("b") -> ok   => "b"');
    expect(text).toContain('value after the prefix: "b"');
    expect(text).toContain('#4 c2 [4, 5] read -> "a"   <- model answers "b" here');
    const printed = formatLinResult(checkLinearizable(h.ops, { quickChecks: false }));
    expect(printed.split("\n")[0]).toStartWith('key "bad": not linearizable');
    expect(printed).toContain(text);
  });

  test("the witness shows real values, including ones nobody read", () => {
    // "x" and "y" are never read, so the search treats them as one state; the report must not.
    const r = expectViolation(
      new H().write(1, 0, 1, "a").write(1, 2, 3, "x").write(1, 4, 5, "y").read(2, 6, 7, "a").ops,
    );
    expect(r.search.message).toContain('value "y"');
    expect(r.search.witness).toContain('value after the prefix: "y"');
    expect(r.search.witness.join("\n")).toContain('#3 c2 [6, 7] read -> "a"   <- model answers "y" here');
  });

  test("the search stops at statesMax and answers unknown", () => {
    // Many concurrent writes and a read at the end of a value that is stale no matter the order:
    // the search has to try the orders of the concurrent writes before it can say so.
    const h = new H().write(0, 0, 1, "old");
    for (let c = 1; c <= 12; c++) h.write(c, 2, 100, `v${String(c)}`);
    h.read(0, 200, 201, "old");
    const bounded = checkLinearizable(h.ops, { statesMax: 50, quickChecks: false });
    expect(bounded.ok).toBe("unknown");
    if (bounded.ok === "unknown") expect(bounded.message).toContain("statesMax=50");
    expectViolation(h.ops);
  });
});

describe("malformed histories throw", () => {
  test("ret before call, half-unknown ops, duplicate ids, mismatched outputs", () => {
    expect(() => checkLinearizable(new H().write(1, 5, 4, "a").ops)).toThrow(/before call/);
    expect(() =>
      checkLinearizable([
        {
          id: 0,
          client: 1,
          key: "k",
          call: 0,
          ret: null,
          input: { type: "read" },
          output: { type: "read", value: null },
        },
      ]),
    ).toThrow(/both be null/);
    const dup = new H().write(1, 0, 1, "a").write(1, 2, 3, "b").ops;
    (dup[1] as HistoryOp).id = 0;
    expect(() => checkLinearizable(dup)).toThrow(/appears twice/);
    expect(() => checkLinearizable(new H().add(1, 0, 1, { type: "read" }, { type: "write" }).ops)).toThrow(
      /does not fit/,
    );
    expect(() => checkLinearizable(new H().incr(1, 0, 1, 0.5, 1).ops)).toThrow(/safe integer/);
  });
});

// ---------------------------------------------------------------------------------------------
// Cross-check against the definition on small random histories

/**
 * Linearizability by its definition, with no cleverness: try every op that may go next (no op
 * with a known outcome returned before its call), recursively; unknown-outcome ops may be placed
 * or left out. Exponential, for histories of a handful of ops.
 */
function bruteForceLinearizable(ops: HistoryOp[]): boolean {
  const placed = new Array<boolean>(ops.length).fill(false);
  const go = (state: KvState, knownLeft: number): boolean => {
    if (knownLeft === 0) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed[i]) continue;
      const op = ops[i] as HistoryOp;
      const blocked = ops.some((other, j) => !placed[j] && j !== i && other.ret !== null && other.ret < op.call);
      if (blocked) continue;
      const after = kvStep(state, op.input, op.output);
      if (after === undefined) continue;
      placed[i] = true;
      const found = go(after, knownLeft - (op.output === null ? 0 : 1));
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return go(null, ops.filter((op) => op.output !== null).length);
}

/** A small random history on one key with random (often wrong) outputs. */
function randomSmallHistory(rng: () => number): HistoryOp[] {
  const counter = rng() < 0.3;
  const values = ["a", "b", "c", "1", "2"];
  const count = 2 + Math.floor(rng() * 6);
  const ops: HistoryOp[] = [];
  for (let id = 0; id < count; id++) {
    const call = Math.floor(rng() * 10);
    const ret = call + Math.floor(rng() * 5);
    let input: KvInput;
    const kind = rng();
    if (counter && kind < 0.5) input = { type: "incr", by: pick(rng, [1, 1, 2, -1]) };
    else if (kind < 0.35) input = { type: "read" };
    else if (kind < 0.65) input = { type: "write", value: rng() < 0.15 ? null : pick(rng, values) };
    else if (kind < 0.9)
      input = { type: "cas", expected: rng() < 0.2 ? null : pick(rng, values), value: pick(rng, values) };
    else input = { type: "incr", by: 1 };
    let output: KvOutput | null;
    if (rng() < 0.2 && input.type !== "read") output = null;
    else if (input.type === "read") output = { type: "read", value: rng() < 0.2 ? null : pick(rng, values) };
    else if (input.type === "write") output = { type: "write" };
    else if (input.type === "cas") output = { type: "cas", ok: rng() < 0.5 };
    else output = rng() < 0.2 ? { type: "incr-nan" } : { type: "incr", value: Math.floor(rng() * 4) };
    ops.push({ id, client: id, key: "k", call, ret: output === null ? null : ret, input, output });
  }
  return ops;
}

/**
 * A small history from a real execution on one key (values often repeat, many unknown outcomes,
 * times on a coarse grid so that intervals often touch), with one output changed half the time.
 */
function smallExecution(rng: () => number): HistoryOp[] {
  const values = ["a", "b", "1", "2"];
  const clients = 2 + Math.floor(rng() * 2);
  const gen: GenOp[] = [];
  let id = 0;
  for (let client = 0; client < clients; client++) {
    let now = Math.floor(rng() * 3);
    const count = 1 + Math.floor(rng() * 3);
    for (let k = 0; k < count; k++) {
      const kind = rng();
      let input: KvInput;
      if (kind < 0.3) input = { type: "read" };
      else if (kind < 0.55) input = { type: "write", value: rng() < 0.15 ? null : pick(rng, values) };
      else if (kind < 0.8)
        input = { type: "cas", expected: rng() < 0.2 ? null : pick(rng, values), value: pick(rng, values) };
      else input = { type: "incr", by: pick(rng, [1, 1, 2]) };
      const call = now;
      const at = call + rng() * 3;
      const ret = Math.ceil(at + rng() * 2);
      const op: HistoryOp = { id: id++, client, key: "k", call, ret, input, output: null };
      if (input.type !== "read" && rng() < 0.35) {
        op.ret = null;
        gen.push({ op, at: rng() < 0.5 ? null : call + rng() * 8 });
      } else {
        gen.push({ op, at });
      }
      now = ret + Math.floor(rng() * 2);
    }
  }
  let state: KvState = null;
  for (const g of gen.filter((x) => x.at !== null).sort((x, y) => (x.at as number) - (y.at as number))) {
    const applied = kvApply(state, g.op.input);
    state = applied.state;
    if (g.op.ret !== null) g.op.output = applied.output;
  }
  const ops = gen.map((g) => g.op);
  const known = ops.filter((op) => op.output !== null);
  if (rng() < 0.5 && known.length > 0) {
    const victim = pick(rng, known);
    const output = victim.output as KvOutput;
    if (output.type === "read") victim.output = { type: "read", value: rng() < 0.2 ? null : pick(rng, values) };
    else if (output.type === "cas") victim.output = { type: "cas", ok: !output.ok };
    else if (output.type === "incr") victim.output = { type: "incr", value: output.value + pick(rng, [-1, 1, 2]) };
  }
  return ops;
}

/** The brute-force verdict, after checking that the checker agrees with and without quick checks. */
function crossCheck(seed: number, ops: HistoryOp[]): boolean {
  const expected = bruteForceLinearizable(ops);
  for (const quickChecks of [true, false]) {
    const got = checkLinearizable(ops, { quickChecks });
    if ((got.ok === true) !== expected) {
      throw new Error(
        `seed ${String(seed)}: brute force says ${String(expected)}, checker (quickChecks ${String(quickChecks)}) says ${JSON.stringify(got)}\n${ops.map((op) => formatHistoryOp(op)).join("\n")}`,
      );
    }
  }
  return expected;
}

describe("agrees with the brute-force definition", () => {
  test("on 3000 small random histories, including unknown ops, deletes, cas and incr", () => {
    let linearizable = 0;
    let violations = 0;
    for (const seed of seedsFor(1000, 3000)) {
      if (crossCheck(seed, randomSmallHistory(prng(seed)))) linearizable++;
      else violations++;
    }
    // Both verdicts must be well represented, or the cross-check proves little.
    if (seedOverride === null) {
      expect(linearizable).toBeGreaterThan(300);
      expect(violations).toBeGreaterThan(300);
    }
  });

  test("on 3000 small executions with many unknown outcomes, repeated values and touching intervals", () => {
    let linearizable = 0;
    let violations = 0;
    for (const seed of seedsFor(5000, 3000)) {
      if (crossCheck(seed, smallExecution(prng(seed)))) linearizable++;
      else violations++;
    }
    if (seedOverride === null) {
      expect(linearizable).toBeGreaterThan(1000);
      expect(violations).toBeGreaterThan(300);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Histories from real sequential executions

interface GenOptions {
  clients: number;
  opsPerClient: number;
  registerKeys: string[];
  counterKeys: string[];
  /** Share of ops whose outcome is unknown (half of them took effect), and that definitely failed. */
  unknownRate: number;
  failedRate: number;
  /** Whether counter keys also get the odd write (of a non-number or a jump), not only incr/read. */
  counterWrites: boolean;
}

interface GenOp {
  op: HistoryOp;
  /** The instant the op took effect, or null if it never did. */
  at: number | null;
}

/**
 * Clients issue ops one after another on random keys; each op takes effect at a random instant
 * inside its interval (unknown ones possibly later, or never). Outputs come from applying the ops
 * in order of those instants to kv-model, so the history is linearizable by construction.
 * Values written are unique per register key; CAS expects a recent value (often a stale one).
 */
function generateHistory(rng: () => number, opts: GenOptions): HistoryOp[] {
  const recentValues = new Map<string, (string | null)[]>();
  const gen: GenOp[] = [];
  let id = 0;
  for (let client = 0; client < opts.clients; client++) {
    let now = rng() * 10;
    for (let k = 0; k < opts.opsPerClient; k++) {
      const counter = opts.counterKeys.length > 0 && (opts.registerKeys.length === 0 || rng() < 0.3);
      const key = counter ? pick(rng, opts.counterKeys) : pick(rng, opts.registerKeys);
      const recent = recentValues.get(key) ?? [null];
      let input: KvInput;
      const kind = rng();
      if (counter) {
        if (kind < 0.5) input = { type: "incr", by: 1 + Math.floor(rng() * 3) };
        else if (kind < 0.97 || !opts.counterWrites) input = { type: "read" };
        else input = { type: "write", value: rng() < 0.5 ? `nan-${String(id)}` : String(1000 * id) };
      } else if (kind < 0.45) {
        input = { type: "read" };
      } else if (kind < 0.75) {
        input = { type: "write", value: rng() < 0.1 ? null : `${key}:${String(client)}:${String(id)}` };
      } else {
        input = { type: "cas", expected: pick(rng, recent.slice(-3)), value: `${key}:${String(client)}:${String(id)}` };
      }
      if ((input.type === "write" || input.type === "cas") && input.value !== null)
        recentValues.set(key, [...recent, input.value].slice(-8));
      const call = now;
      const at = call + rng() * 5;
      const ret = at + rng() * 5;
      const fate = rng();
      const op: HistoryOp = { id: id++, client, key, call, ret, input, output: null };
      if (input.type !== "read" && fate < opts.failedRate) {
        gen.push({ op, at: null }); // removed below: it never happened
        op.ret = -1;
      } else if (input.type !== "read" && fate < opts.failedRate + opts.unknownRate) {
        op.ret = null;
        gen.push({ op, at: rng() < 0.5 ? null : call + rng() * 30 });
      } else {
        gen.push({ op, at });
      }
      now = ret + rng() * 3;
    }
  }
  const state = new Map<string, KvState>();
  const effective = gen.filter((g) => g.at !== null).sort((a, b) => (a.at as number) - (b.at as number));
  for (const g of effective) {
    const applied = kvApply(state.get(g.op.key) ?? null, g.op.input);
    state.set(g.op.key, applied.state);
    if (g.op.ret !== null) g.op.output = applied.output;
  }
  return gen.filter((g) => g.op.ret !== -1).map((g) => g.op);
}

/**
 * Corrupts one read on a register key so that no linearization exists: it returns a value whose
 * only writer was overwritten (by a completed op) before the read began, or a value whose only
 * writer began after the read returned. Returns a description, or null if no read qualifies.
 */
function corruptOneRead(rng: () => number, ops: HistoryOp[], registerKeys: string[]): string | null {
  const reads = ops.filter((op) => registerKeys.includes(op.key) && op.output?.type === "read");
  const offset = Math.floor(rng() * Math.max(1, reads.length));
  for (let t = 0; t < reads.length; t++) {
    const read = reads[(offset + t) % reads.length] as HistoryOp;
    const current = (read.output as { value: string | null }).value;
    const writers = ops.filter(
      (op) =>
        op.key === read.key &&
        (op.input.type === "write" || op.input.type === "cas") &&
        op.input.value !== null &&
        op.input.value !== current,
    );
    const overwrites = ops.filter(
      (op) =>
        op.key === read.key &&
        op.ret !== null &&
        op.ret < read.call &&
        (op.input.type === "write" || (op.input.type === "cas" && op.output?.type === "cas" && op.output.ok)),
    );
    const candidates: { value: string; why: string }[] = [];
    for (const w of writers) {
      const value = (w.input as { value: string }).value;
      if (w.call > read.ret!) candidates.push({ value, why: `future value from #${String(w.id)}` });
      if (
        w.ret !== null &&
        w.output !== null &&
        overwrites.some((x) => x !== w && w.ret! < x.call && (x.input as { value: string | null }).value !== value)
      ) {
        candidates.push({ value, why: `stale value from #${String(w.id)}` });
      }
    }
    if (candidates.length === 0) continue;
    const chosen = pick(rng, candidates);
    read.output = { type: "read", value: chosen.value };
    return `read #${String(read.id)} now returns ${chosen.value} (${chosen.why})`;
  }
  return null;
}

describe("histories from real executions", () => {
  const options: GenOptions = {
    clients: 6,
    opsPerClient: 40,
    registerKeys: ["r0", "r1"],
    counterKeys: ["n0"],
    unknownRate: 0.08,
    failedRate: 0.04,
    counterWrites: true,
  };

  test("pass, and fail once one read is corrupted", () => {
    let corrupted = 0;
    for (const seed of seedsFor(1, 150)) {
      const rng = prng(seed);
      const ops = generateHistory(rng, options);
      const good = checkLinearizable(ops);
      if (good.ok !== true)
        throw new Error(`seed ${String(seed)}: a generated history was rejected: ${JSON.stringify(good, null, 2)}`);
      const what = corruptOneRead(rng, ops, options.registerKeys);
      if (what === null) continue;
      corrupted++;
      for (const quickChecks of [true, false]) {
        const bad = checkLinearizable(ops, { quickChecks });
        if (bad.ok !== false)
          throw new Error(
            `seed ${String(seed)}: ${what}, but the checker (quickChecks ${String(quickChecks)}) said ${JSON.stringify(bad)}`,
          );
      }
    }
    if (seedOverride === null) expect(corrupted).toBeGreaterThan(100);
  });

  test("a long, highly concurrent history (2000 ops on one key, 10 clients) passes, and fails once corrupted", () => {
    for (const seed of seedsFor(500, 2)) {
      const rng = prng(seed);
      const ops = generateHistory(rng, {
        clients: 10,
        opsPerClient: 200,
        registerKeys: ["r"],
        counterKeys: [],
        unknownRate: 0.02,
        failedRate: 0.01,
        counterWrites: false,
      });
      const good = checkKeyLinearizable("r", ops);
      if (good.kind !== "ok") throw new Error(`seed ${String(seed)}: rejected: ${JSON.stringify(good, null, 2)}`);
      const what = corruptOneRead(rng, ops, ["r"]);
      expect(what).not.toBeNull();
      expectViolation(ops, "r");
    }
  });

  test("a long history with many unknown outcomes (15%) passes, and fails once corrupted", () => {
    for (const seed of seedsFor(600, 2)) {
      const rng = prng(seed);
      const ops = generateHistory(rng, {
        clients: 10,
        opsPerClient: 150,
        registerKeys: ["r"],
        counterKeys: [],
        unknownRate: 0.15,
        failedRate: 0.02,
        counterWrites: false,
      });
      expectOk(checkLinearizable(ops));
      const what = corruptOneRead(rng, ops, ["r"]);
      expect(what).not.toBeNull();
      expectViolation(ops, "r");
    }
  });

  test("a long counter history with concurrent increments passes, and fails with a lost increment", () => {
    for (const seed of seedsFor(700, 2)) {
      const rng = prng(seed);
      const ops = generateHistory(rng, {
        clients: 8,
        opsPerClient: 150,
        registerKeys: [],
        counterKeys: ["n"],
        unknownRate: 0.02,
        failedRate: 0.01,
        counterWrites: false,
      });
      expectOk(checkLinearizable(ops));
      // With only positive increments the counter never goes down, so an incr that begins after
      // another one returned e must answer at least e + by. Answering e + by - 1 loses an increment.
      const incrs = ops.filter((op) => op.output?.type === "incr");
      const victim = incrs
        .filter((op) => incrs.some((earlier) => (earlier.ret as number) < op.call))
        .at(-1) as HistoryOp;
      const before = Math.max(
        ...incrs.filter((op) => (op.ret as number) < victim.call).map((op) => (op.output as { value: number }).value),
      );
      victim.output = { type: "incr", value: before + (victim.input as { by: number }).by - 1 };
      expectViolation(ops, "n");
    }
  });
});
