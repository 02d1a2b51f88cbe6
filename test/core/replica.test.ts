// Scenario tests of the Hermes replica: one exact interleaving each, driven by hand.

import { describe, expect, test } from "bun:test";
import { Replica, SnapshotCursor } from "../../src/core/replica.ts";
import { RecordError } from "../../src/core/snapshot-records.ts";
import { SnapshotDecoder } from "../../src/node/snapshot-codec.ts";
import { defaultReplicaConfig, KeyState } from "../../src/core/types.ts";
import { MsgKind, OpKind, OpStatus } from "../../src/base/kinds.ts";
import { ManualCluster, receiveText } from "./manual-cluster.ts";
import { AssertionError } from "../../src/base/assert.ts";
import type { KeySide } from "../../src/core/key-side.ts";
import type { KeyStore } from "../../src/core/key-store.ts";
import { CheckedReplica } from "./manual-cluster.ts";
import { incarnationMax, incarnationOfWriter, nodeIdMax, nodeOfWriter, writerIdOf } from "../../src/base/ids.ts";

const text = (bytes: Uint8Array | null) => (bytes === null ? null : new TextDecoder().decode(bytes));

describe("writes", () => {
  test("commit after every ACK; followers are Invalid until the VAL and their reads wait", () => {
    const c = new ManualCluster(3);
    const w = c.submit(0, OpKind.Write, "k", "v1");
    expect(c.find({ kind: MsgKind.Inv }).length).toBe(2);
    c.deliver({ kind: MsgKind.Inv });
    expect(c.replicas[1]!.inspect("k")!.state).toBe(KeyState.Invalid);
    const r = c.submit(1, OpKind.Read, "k");
    expect(c.answers.has(r)).toBe(false); // waits for Valid
    c.deliver({ kind: MsgKind.Ack, to: 0, from: 1 });
    expect(c.answers.has(w)).toBe(false); // one ACK missing
    c.deliver({ kind: MsgKind.Ack, to: 0, from: 2 });
    expect(c.answers.get(w)).toEqual({ status: OpStatus.Ok, value: null, version: 2, writer: 0 });
    expect(c.replicas[0]!.inspect("k")!.state).toBe(KeyState.Valid);
    c.deliver({ kind: MsgKind.Val });
    expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: "v1", version: 2, writer: 0 });
  });

  test("reads of a Valid key are local and immediate; an untouched key is absent at 0.0", () => {
    const c = new ManualCluster(3);
    const r = c.submit(2, OpKind.Read, "nothing");
    expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: null, version: 0, writer: 0 });
    expect(c.inFlight.length).toBe(0);
  });

  test("concurrent writes: the higher ts wins everywhere, the lower completes without VAL", () => {
    const c = new ManualCluster(3);
    const low = c.submit(0, OpKind.Write, "k", "from0"); // ts 2.0
    const high = c.submit(2, OpKind.Write, "k", "from2"); // ts 2.2
    c.settle();
    expect(c.answers.get(low)!.status).toBe(OpStatus.Ok);
    expect(c.answers.get(high)!.status).toBe(OpStatus.Ok);
    for (const r of c.replicas) {
      const rec = r.inspect("k")!;
      expect([rec.version, rec.writer, rec.state, text(rec.value)]).toEqual([2, 2, KeyState.Valid, "from2"]);
    }
  });

  test("a replica with a higher ts answers a lower write INV with its state, counted as the ACK", () => {
    const c = new ManualCluster(3);
    const low = c.submit(0, OpKind.Write, "k", "low"); // 2.0
    const high = c.submit(1, OpKind.Write, "k", "high"); // 2.1
    c.deliver({ from: 0, to: 1, kind: MsgKind.Inv });
    const reject = c.find({ from: 1, to: 0 });
    expect(reject.map((m) => m.kind)).toEqual([MsgKind.Inv, MsgKind.Reject]);
    c.deliver({ from: 1, to: 0, kind: MsgKind.Reject }); // node 0 adopts 2.1 and goes Trans
    expect(c.replicas[0]!.inspect("k")!.state).toBe(KeyState.Trans);
    c.deliver({ from: 0, to: 2, kind: MsgKind.Inv });
    c.deliver({ from: 2, to: 0, kind: MsgKind.Ack });
    // The lower write finished in Trans: Ok, no VAL, the key stays Invalid at 2.1.
    expect(c.answers.get(low)).toEqual({ status: OpStatus.Ok, value: null, version: 2, writer: 0 });
    expect(c.find({ from: 0, kind: MsgKind.Val }).length).toBe(0);
    expect(c.replicas[0]!.inspect("k")!.state).toBe(KeyState.Invalid);
    c.settle();
    expect(c.answers.get(high)!.status).toBe(OpStatus.Ok);
    expect(text(c.replicas[0]!.inspect("k")!.value)).toBe("high");
  });

  test("delete writes a tombstone: reads say absent with its ts, create then succeeds", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "v");
    c.settle();
    const d = c.submit(1, OpKind.Delete, "k");
    c.settle();
    expect(c.answers.get(d)).toMatchObject({ status: OpStatus.Ok, version: 4, writer: 1 });
    const r = c.submit(2, OpKind.Read, "k");
    expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: null, version: 4, writer: 1 });
    const create = c.submit(2, OpKind.Create, "k", "again");
    c.settle();
    expect(c.answers.get(create)).toMatchObject({ status: OpStatus.Ok, version: 5, writer: 2 });
  });
});

describe("RMWs", () => {
  test("CAS on the current ts succeeds (+1 version), on another ts it is PreconditionFailed", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "a");
    c.settle();
    const ok = c.submit(1, OpKind.Cas, "k", "b", { version: 2, writer: 0 });
    c.settle();
    expect(c.answers.get(ok)).toMatchObject({ status: OpStatus.Ok, version: 3, writer: 1 });
    const stale = c.submit(2, OpKind.Cas, "k", "c", { version: 2, writer: 0 });
    expect(c.answers.get(stale)).toMatchObject({ status: OpStatus.PreconditionFailed, version: 3, writer: 1 });
    const create = c.submit(2, OpKind.Create, "k", "d");
    expect(c.answers.get(create)!.status).toBe(OpStatus.PreconditionFailed);
  });

  test("of two concurrent CAS from one base exactly one commits; the loser hears 412 once final", () => {
    const c = new ManualCluster(3);
    const a = c.submit(0, OpKind.Cas, "k", "A", { version: 0, writer: 0 });
    const b = c.submit(2, OpKind.Cas, "k", "B", { version: 0, writer: 0 });
    c.settle();
    for (let i = 0; i < 5; i++) (c.tick(50), c.settle());
    const statuses = [c.answers.get(a)!.status, c.answers.get(b)!.status].sort();
    expect(statuses).toEqual([OpStatus.Ok, OpStatus.PreconditionFailed]);
    expect(text(c.replicas[1]!.inspect("k")!.value)).toBe("B"); // 1.2 beats 1.0
  });

  test("concurrent increments both apply: the loser retries once its abort is final", () => {
    const c = new ManualCluster(3);
    const a = c.submit(0, OpKind.Incr, "n", null, undefined, 1);
    const b = c.submit(2, OpKind.Incr, "n", null, undefined, 10);
    for (let i = 0; i < 5; i++) (c.settle(), c.tick(50));
    expect(c.answers.get(a)!.status).toBe(OpStatus.Ok);
    expect(c.answers.get(b)!.status).toBe(OpStatus.Ok);
    for (const r of c.replicas) expect(text(r.inspect("n")!.value)).toBe("11");
  });

  test("incr on a non-number is NotANumber and writes nothing", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "hello");
    c.settle();
    const i = c.submit(1, OpKind.Incr, "k", null, undefined, 1);
    expect(c.answers.get(i)!.status).toBe(OpStatus.NotANumber);
    expect(c.inFlight.length).toBe(0);
  });

  test("a coordinator does not ACK someone else's replay of its own pending RMW", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Incr, "n", null, undefined, 1); // 1.0
    c.deliver({ from: 0, to: 1, kind: MsgKind.Inv });
    c.drop({ from: 0 });
    c.drop({ to: 0 });
    c.tick(defaultMlt() + 1); // node 1 replays 1.0 (node 0 also retransmits)
    const replayToCoordinator = c.find({ from: 1, to: 0, kind: MsgKind.Inv });
    expect(replayToCoordinator.length).toBe(1);
    c.drop({ from: 0 });
    c.deliver({ from: 1, to: 0, kind: MsgKind.Inv });
    expect(c.find({ from: 0, to: 1, kind: MsgKind.Ack }).length).toBe(0);
  });
});

function defaultMlt(): number {
  return defaultReplicaConfig.mltMs;
}

describe("message loss and replays", () => {
  test("a lost INV is retransmitted to the members that have not ACKed", () => {
    const c = new ManualCluster(3);
    const w = c.submit(0, OpKind.Write, "k", "v");
    c.deliver({ to: 1, kind: MsgKind.Inv });
    c.drop({ to: 2, kind: MsgKind.Inv });
    c.deliver({ kind: MsgKind.Ack });
    c.tick(25);
    expect(c.find({ from: 0, kind: MsgKind.Inv }).map((m) => m.to)).toEqual([2]);
    c.settle();
    expect(c.answers.get(w)!.status).toBe(OpStatus.Ok);
  });

  test("a lost VAL is recovered by the follower's replay after the message-loss timeout", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "v");
    c.deliver({ kind: MsgKind.Inv });
    c.deliver({ kind: MsgKind.Ack });
    c.drop({ kind: MsgKind.Val, to: 2 });
    c.settle();
    expect(c.replicas[2]!.inspect("k")!.state).toBe(KeyState.Invalid);
    c.tick(defaultMlt());
    expect(c.replicas[2]!.inspect("k")!.state).toBe(KeyState.Replay);
    c.settle();
    expect(c.replicas[2]!.inspect("k")!.state).toBe(KeyState.Valid);
    expect(text(c.replicas[2]!.inspect("k")!.value)).toBe("v");
  });

  test("a follower whose last writer left the membership replays at once in the new epoch", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "v");
    c.deliver({ from: 0, to: 1, kind: MsgKind.Inv });
    c.drop({ from: 0 }); // node 0 crashes
    c.drop({ to: 0 });
    for (const id of [1, 2]) c.replicas[id]!.setMembership(2, [1, 2], c.nowMs);
    const replay = c.find({ from: 1, to: 2, kind: MsgKind.Inv });
    expect(replay.map((m) => [m.version, m.writer, m.epoch])).toEqual([[2, 0, 2]]);
    c.settle();
    for (const id of [1, 2]) expect(text(c.replicas[id]!.inspect("k")!.value)).toBe("v");
  });
});

describe("epochs and membership", () => {
  test("INV and ACK from another epoch are ignored", () => {
    const c = new ManualCluster(3);
    receiveText(
      c.replicas[1]!,
      { from: 0, kind: MsgKind.Inv, key: "k", version: 2, writer: 0, epoch: 7, rmw: false, value: new Uint8Array([1]) },
      0,
    );
    expect(c.inFlight.length).toBe(0);
    expect(c.replicas[1]!.counters.staleEpochMessages).toBe(1);
  });

  test("an epoch change resets the ACK set and re-sends the pending INV in the new epoch", () => {
    const c = new ManualCluster(3);
    const w = c.submit(0, OpKind.Write, "k", "v");
    c.deliver({ to: 1, kind: MsgKind.Inv });
    c.deliver({ from: 1, kind: MsgKind.Ack }); // counted in epoch 1
    c.drop({ to: 2 });
    for (const id of [0, 1]) c.replicas[id]!.setMembership(2, [0, 1], c.nowMs);
    expect(c.answers.has(w)).toBe(false); // the epoch-1 ACK no longer counts
    expect(c.find({ from: 0, to: 1, kind: MsgKind.Inv }).map((m) => m.epoch)).toEqual([2]);
    c.settle();
    expect(c.answers.get(w)!.status).toBe(OpStatus.Ok);
  });

  test("a node outside the membership stops serving: Unknown for started updates, Unavailable for the rest", () => {
    const c = new ManualCluster(3);
    const w = c.submit(0, OpKind.Write, "k", "v");
    const queued = c.submit(0, OpKind.Write, "k", "w");
    c.replicas[0]!.setMembership(2, [1, 2], c.nowMs);
    expect(c.answers.get(w)!.status).toBe(OpStatus.Unknown);
    expect(c.answers.get(queued)!.status).toBe(OpStatus.Unavailable);
    const later = c.submit(0, OpKind.Read, "k");
    expect(c.answers.get(later)!.status).toBe(OpStatus.Unavailable);
  });
});

describe("leases, timeouts and limits", () => {
  test("without a lease reads wait, and are served once the lease is renewed", () => {
    const c = new ManualCluster(3);
    c.replicas[1]!.setLease(0, 0);
    const r = c.submit(1, OpKind.Read, "k");
    expect(c.answers.has(r)).toBe(false);
    c.replicas[1]!.setLease(1e12, 0);
    expect(c.answers.get(r)!.status).toBe(OpStatus.Ok);
  });

  test("a waiting read times out as Timeout; a started write times out as Unknown", () => {
    const c = new ManualCluster(3, undefined, { opTimeoutMs: 100 });
    c.replicas[1]!.setLease(0, 0);
    const r = c.submit(1, OpKind.Read, "k");
    const w = c.submit(0, OpKind.Write, "k", "v");
    c.drop({});
    c.tick(101);
    expect(c.answers.get(r)!.status).toBe(OpStatus.Timeout);
    expect(c.answers.get(w)!.status).toBe(OpStatus.Unknown);
    expect(c.replicas[0]!.opsInFlight).toBe(0);
  });

  test("a full key queue, a full op pool and a full store answer Busy / StoreFull, writing nothing", () => {
    const c = new ManualCluster(3, undefined, { keyQueueMax: 2, opsMax: 3, keysMax: 1 });
    c.submit(0, OpKind.Write, "k", "1"); // pending (W)
    c.submit(0, OpKind.Write, "k", "2"); // waits
    c.submit(0, OpKind.Write, "k", "3"); // waits
    const full = c.submit(0, OpKind.Write, "k", "4");
    expect(c.answers.get(full)!.status).toBe(OpStatus.Busy);
    const newKey = c.submit(0, OpKind.Write, "other", "x");
    expect(c.answers.get(newKey)!.status).toBe(OpStatus.StoreFull);
  });

  test("every op is answered exactly once across a full run", () => {
    const c = new ManualCluster(3);
    const ids = [] as number[];
    for (let i = 0; i < 50; i++)
      ids.push(c.submit(i % 3, i % 4 === 0 ? OpKind.Read : OpKind.Write, `k${i % 5}`, `v${i}`));
    for (let i = 0; i < 20; i++) (c.settle(), c.tick(30));
    expect(ids.every((id) => c.answers.has(id))).toBe(true);
    expect(c.replicas.every((r: Replica) => r.opsInFlight === 0)).toBe(true);
  });
});

describe("values lent to the outbox and to completions", () => {
  test("a read's value is lent from the store: a later write of the same size overwrites it in place, so callers copy", () => {
    const lent: { value: Uint8Array | null; at: number; length: number }[] = [];
    const c = new ManualCluster(3);
    const r = c.replicas[1]!;
    c.submit(0, OpKind.Write, "k", "old!");
    c.settle();
    // A completion that keeps the range without copying (what callers must not do), and one that copies.
    const keep = new (r.constructor as typeof Replica)(
      r.config,
      { send: () => {} },
      {
        complete: (_id, _status, value, at, length) => lent.push({ value, at, length }),
      },
    );
    keep.setMembership(1, [1], 0);
    keep.setLease(1e12, 0);
    keep.submit(1, OpKind.Write, "k", new TextEncoder().encode("old!"), 0, 0, 0, 0);
    keep.submit(2, OpKind.Read, "k", null, 0, 0, 0, 0);
    const read = lent.at(-1)!;
    const copy = read.value!.slice(read.at, read.at + read.length);
    keep.submit(3, OpKind.Write, "k", new TextEncoder().encode("new!"), 0, 0, 0, 0);
    expect(text(copy)).toBe("old!");
    expect(text(read.value!.subarray(read.at, read.at + read.length))).toBe("new!");
    // ManualCluster's completions copy: its answers keep what was read.
    const before = c.submit(1, OpKind.Read, "k");
    c.submit(0, OpKind.Write, "k", "new!");
    c.settle();
    expect(c.answers.get(before)!.value).toBe("old!");
  });

  test("an INV's value is lent: the pending value survives a higher INV taking the key's slot (Trans keeps a copy)", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "low!"); // 2.0 at node 0
    c.submit(1, OpKind.Write, "k", "hi!!"); // 2.1, same size: node 0 will overwrite its slot in place
    c.deliver({ from: 1, to: 0, kind: MsgKind.Inv }); // node 0 goes Trans, its own value copied aside
    expect(c.replicas[0]!.inspect("k")!.state).toBe(KeyState.Trans);
    c.drop({ from: 0, kind: MsgKind.Inv }); // node 0's first INVs are lost: it retransmits
    c.tick(defaultReplicaConfig.retransmitMs);
    const resent = c.find({ from: 0, kind: MsgKind.Inv });
    expect(resent.length).toBeGreaterThan(0);
    for (const m of resent) expect([m.version, m.writer, text(m.value)]).toEqual([2, 0, "low!"]);
  });
});

describe("rejoin with state transfer", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  test("a joining replica serves nothing but takes part in INVs", () => {
    const c = new ManualCluster(3);
    c.replicas[2]!.beginJoin();
    const r = c.submit(2, OpKind.Read, "k");
    expect(c.answers.get(r)!.status).toBe(OpStatus.Unavailable);
    const w = c.submit(0, OpKind.Write, "k", "v");
    c.settle();
    expect(c.answers.get(w)!.status).toBe(OpStatus.Ok); // the joiner ACKed the INV
    expect(c.replicas[2]!.inspect("k")!.version).toBe(2);
  });

  test("snapshot entries merge by timestamp: higher wins, committed ones are Valid, others settle later", () => {
    const c = new ManualCluster(3);
    const joiner = c.replicas[2]!;
    joiner.beginJoin();
    joiner.installSnapshotEntry("a", 4, 1, false, bytes("a4"), true, 0);
    joiner.installSnapshotEntry("b", 5, 0, true, bytes("b5"), false, 0);
    joiner.installSnapshotEntry("a", 2, 0, false, bytes("a2"), true, 0); // lower: ignored
    expect([joiner.inspect("a")!.state, text(joiner.inspect("a")!.value)]).toEqual([KeyState.Valid, "a4"]);
    expect([joiner.inspect("b")!.state, joiner.inspect("b")!.version]).toEqual([KeyState.Invalid, 5]);
    joiner.finishJoin(0);
    const r = c.submit(2, OpKind.Read, "a");
    expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: "a4", version: 4, writer: 1 });
  });

  test("a replica that kept stale state replaces it with the higher committed entries it loads", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "k", "old");
    c.settle();
    const kept = c.replicas[2]!;
    expect(text(kept.inspect("k")!.value)).toBe("old");
    kept.beginJoin(); // lost its lease: keeps its entries, serves nothing
    kept.installSnapshotEntry("k", 6, 1, false, bytes("new"), true, 0);
    kept.installSnapshotEntry("k", 2, 0, false, bytes("old"), true, 0); // its own old value again: ignored
    kept.finishJoin(0);
    const r = c.submit(2, OpKind.Read, "k");
    expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: "new", version: 6, writer: 1 });
  });

  test("snapshot() yields every key in bounded chunks, with whether each is committed", () => {
    const c = new ManualCluster(3);
    for (let i = 0; i < 5; i++) c.submit(0, OpKind.Write, `k${i}`, `v${i}`);
    c.settle();
    c.submit(0, OpKind.Write, "pending", "p"); // its INVs stay in flight: not committed
    const chunks = [...c.replicas[0]!.snapshot(2)];
    expect(chunks.map((chunk) => chunk.length)).toEqual([2, 2, 2]);
    const entries = chunks.flat();
    expect(
      entries
        .filter((e) => e.committed)
        .map((e) => e.key)
        .sort(),
    ).toEqual(["k0", "k1", "k2", "k3", "k4"]);
    expect(entries.find((e) => e.key === "pending")!.committed).toBe(false);
  });
});

describe("state transfer as snapshot records (bytes from slab to slab)", () => {
  const enc = new TextEncoder();
  /** A source with committed keys, a tombstone, an empty value, an RMW and one update in flight. */
  const source = (): ManualCluster => {
    const c = new ManualCluster(3);
    for (let i = 0; i < 40; i++) c.submit(i % 3, OpKind.Write, `k${i}`, `value-${i}`.repeat(1 + (i % 4)));
    c.submit(0, OpKind.Write, "empty", "");
    c.submit(1, OpKind.Incr, "n", null, undefined, 5);
    c.settle();
    c.submit(2, OpKind.Delete, "k3");
    c.settle();
    c.submit(0, OpKind.Write, "pending", "p"); // its INVs stay in flight: not committed
    return c;
  };
  const chunkBytes = 200_000;

  test("records round-trip: a joiner fed the stream cut anywhere ends up as one fed the entries", () => {
    const c = source();
    const from = c.replicas[0]!;
    const cursor = new SnapshotCursor();
    const stream: number[] = [];
    const chunk = new Uint8Array(chunkBytes);
    for (let n = from.snapshotRecords(cursor, chunk); n > 0 || !cursor.done; n = from.snapshotRecords(cursor, chunk))
      stream.push(...chunk.subarray(0, n));
    expect(cursor.done).toBe(true);
    expect(from.snapshotRecords(cursor, chunk)).toBe(0);
    const bytes = Uint8Array.from(stream);
    // The node's codec reads the same format: the same entries as snapshot() gives.
    const decoded = new SnapshotDecoder(1024, 64 * 1024).push(bytes);
    const entries = [...from.snapshot(1000)].flat();
    expect(decoded.sort((a, b) => a.key.localeCompare(b.key))).toEqual(
      entries.sort((a, b) => a.key.localeCompare(b.key)),
    );
    // Joiner A takes the bytes in pieces of 1, 7 and 1000 bytes (a record cut anywhere waits for the rest).
    const joined = (feed: (r: Replica) => void): Map<string, unknown> => {
      const j = new ManualCluster(3).replicas[2]!;
      j.beginJoin();
      feed(j);
      j.finishJoin(0);
      return new Map(entries.map((e) => [e.key, { ...j.inspect(e.key)!, lastWriter: undefined }]));
    };
    for (const piece of [1, 7, 1000]) {
      const viaRecords = joined((j) => {
        let pending = new Uint8Array(0);
        for (let at = 0; at < bytes.length; at += piece) {
          const next = new Uint8Array(pending.length + Math.min(piece, bytes.length - at));
          next.set(pending);
          next.set(bytes.subarray(at, at + piece), pending.length);
          const used = j.installSnapshotRecords(next, 0, next.length, 0);
          expect(used).toBeGreaterThanOrEqual(0);
          pending = next.slice(used);
        }
        expect(pending.length).toBe(0);
      });
      const viaEntries = joined((j) => {
        for (const e of entries) j.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, 0);
      });
      expect(viaRecords).toEqual(viaEntries);
    }
    const j = joined(() => {});
    expect(j.size).toBe(entries.length);
  });

  test("a scan starts over when the source's index grows between chunks, so no key is missed", () => {
    const c = new ManualCluster(1);
    const from = c.replicas[0]!;
    for (let i = 0; i < 10; i++) c.submit(0, OpKind.Write, `a${i}`, "x");
    const cursor = new SnapshotCursor();
    const chunk = new Uint8Array(30); // room for one small record at a time
    const seen = new Set<string>();
    const take = (n: number) => {
      for (const e of new SnapshotDecoder(65535, 64 * 1024).push(chunk.slice(0, n))) seen.add(e.key);
    };
    take(from.snapshotRecords(cursor, chunk));
    // Many new keys: the index grows (every slot moves) before the next chunk.
    for (let i = 0; i < 500; i++) c.submit(0, OpKind.Write, `b${i}`, "y");
    while (!cursor.done) take(from.snapshotRecords(cursor, chunk));
    expect(cursor.restarts).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) expect(seen.has(`a${i}`)).toBe(true);
    expect(seen.size).toBe(510);
  });

  test("malformed records are refused with their reason and nothing after them is installed", () => {
    const record = (key: string, version: number, writer: number, flags: number, value: Uint8Array): Uint8Array => {
      const k = enc.encode(key);
      const out = new Uint8Array(19 + k.length + value.length);
      const view = new DataView(out.buffer);
      view.setUint16(0, k.length, true);
      out.set(k, 2);
      view.setFloat64(2 + k.length, version, true);
      view.setUint32(10 + k.length, writer, true);
      out[14 + k.length] = flags;
      view.setUint32(15 + k.length, value.length, true);
      out.set(value, 19 + k.length);
      return out;
    };
    const cases: [Uint8Array, RecordError][] = [
      [record("", 2, 0, 6, new Uint8Array(1)), RecordError.BadKeyLength],
      [record("k", 2, 0, 6, new Uint8Array(64 * 1024 + 1)), RecordError.BadValueLength],
      [record("k", 2.5, 0, 6, new Uint8Array(1)), RecordError.BadFields],
      [record("k", 2, 0, 8, new Uint8Array(1)), RecordError.BadFields],
      [record("k", 2, 0, 2, new Uint8Array(1)), RecordError.BadFields],
    ];
    for (const [bad, reason] of cases) {
      const j = new ManualCluster(3).replicas[2]!;
      j.beginJoin();
      const good = record("good", 2, 1, 6, enc.encode("v"));
      const after = record("after", 2, 1, 6, enc.encode("v"));
      const both = new Uint8Array(good.length + bad.length + after.length);
      both.set(good);
      both.set(bad, good.length);
      both.set(after, good.length + bad.length);
      expect(j.installSnapshotRecords(both, 0, both.length, 0)).toBe(-reason);
      expect(j.inspect("good")?.version).toBe(2);
      expect(j.inspect("after")).toBeUndefined();
    }
  });
});

describe("a coordinator that lost its lease", () => {
  test("its pending RMW, committed without it by a replay, is answered Unknown and never applied twice", () => {
    const c = new ManualCluster(3);
    const inc = c.submit(2, OpKind.Incr, "n", null, undefined, 1); // RMW 1.2
    c.deliver({ from: 2, kind: MsgKind.Inv }); // nodes 0 and 1 hold it (Invalid)
    c.drop({ to: 2 }); // their ACKs are lost: node 2 is cut off
    // Node 2 loses its lease: from now on others may commit without it. It stops serving.
    c.replicas[2]!.beginJoin();
    expect(c.answers.get(inc)!.status).toBe(OpStatus.Unknown);
    // The majority removes node 2, replays its RMW (committing the +1), and increments again.
    for (const id of [0, 1]) c.replicas[id]!.setMembership(2, [0, 1], c.nowMs);
    c.drop({ to: 2 });
    c.settle();
    const again = c.submit(0, OpKind.Incr, "n", null, undefined, 1);
    c.settle();
    expect(c.answers.get(again)).toMatchObject({ status: OpStatus.Ok, value: "2" });
    // Node 2 comes back in a new epoch and loads: its stale INV is not re-sent, nothing is retried.
    for (const r of c.replicas) r.setMembership(3, [0, 1, 2], c.nowMs);
    c.settle();
    expect(c.find({ from: 2 }).length).toBe(0);
    for (const e of [...c.replicas[0]!.snapshot(100)].flat())
      c.replicas[2]!.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, c.nowMs);
    c.replicas[2]!.finishJoin(c.nowMs);
    for (let i = 0; i < 20; i++) (c.settle(), c.tick(250));
    for (const r of c.replicas) expect(text(r.inspect("n")!.value)).toBe("2");
  });
});

describe("whole-state invariants (checkInvariants)", () => {
  // Every ManualCluster step checks every replica, so the scenarios above all run under the check.
  // Here the state is corrupted behind the replica's back (through the store and the key's side
  // object) and the check must name the broken invariant, the replica and the key.
  interface Internals {
    store: KeyStore<KeySide>;
    slot: number;
    side: KeySide;
  }
  const internals = (c: ManualCluster, key: string): Internals =>
    (c.replicas[0] as CheckedReplica).internals(key) as Internals;
  const corrupted = (corrupt: (k: Internals, c: ManualCluster) => void): ManualCluster => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Write, "done", "v");
    c.settle();
    c.submit(0, OpKind.Write, "k", "v1"); // pending at node 0 (Write), its INVs in flight
    c.submit(0, OpKind.Write, "k", "v2"); // waits behind it
    expect(() => c.checkInvariants()).not.toThrow();
    corrupt(internals(c, "k"), c);
    return c;
  };
  const cases: [string, (k: Internals, c: ManualCluster) => void, RegExp][] = [
    [
      "a Valid key marked Invalid without a side object (outside the unsettled set)",
      (_k, c) => internals(c, "done").store.setState(internals(c, "done").slot, KeyState.Invalid),
      /key "done": a key without a side object is Valid/,
    ],
    [
      "a pending update that lost its state",
      (k) => k.store.setState(k.slot, KeyState.Invalid),
      /a key has a pending update iff its state is Write, Replay or Trans/,
    ],
    [
      "a pending update's client op forgotten",
      (k) => (k.side.pendingOp = null),
      /every live op is waiting on its key or is its key's pending op/,
    ],
    [
      "a waiting op dropped from its queue",
      (k) => k.side.waiting.pop(),
      /a key is in the waiting-keys set iff ops wait on it/,
    ],
    [
      "a pending op also put in the queue",
      (k) => k.side.waiting.push(k.side.pendingOp!),
      /only the front op of a key queue may have been issued/,
    ],
    ["an ACK from itself", (k) => (k.side.acks |= 1), /a replica never ACKs its own update/],
    [
      "a Write pending under another process's writer id (incarnation 1 of this node)",
      (k) => {
        k.store.setTs(k.slot, k.store.version(k.slot), writerIdOf(1, 0), false, 0);
        k.side.pendingWriter = writerIdOf(1, 0);
      },
      /in W and Trans the pending update is this process's own/,
    ],
    [
      "a Write holding another ts than its pending update",
      (k) =>
        k.store.setTs(
          k.slot,
          k.store.version(k.slot) + 1,
          k.store.writer(k.slot),
          k.store.rmw(k.slot),
          k.store.lastWriter(k.slot),
        ),
      /in W and R the key holds the pending update's timestamp \(version\)/,
    ],
    [
      "a side object on a settled key",
      (_k, c) =>
        internals(c, "done").store.attachSide(
          internals(c, "done").slot,
          new (internals(c, "k").side.constructor as new () => KeySide)(),
        ),
      /key "done": a key has a side object only while it is not Valid or ops wait on it/,
    ],
    [
      "a stored key's bytes changed (the index no longer finds it)",
      (k) => (k.store.page(k.slot)[k.store.keyAt(k.slot)] = 0x78),
      /an index entry's tag is its key's hash/,
    ],
  ];
  for (const [what, corrupt, message] of cases) {
    test(`catches ${what}`, () => {
      const c = corrupted(corrupt);
      expect(() => c.replicas[0]!.checkInvariants()).toThrow(AssertionError);
      expect(() => c.replicas[0]!.checkInvariants()).toThrow(message);
      expect(() => c.replicas[0]!.checkInvariants()).toThrow(/^replica 0[: ]/);
      for (const id of [1, 2]) expect(() => c.replicas[id]!.checkInvariants()).not.toThrow();
    });
  }

  test("receive asserts its preconditions: a message from another node id 0..31, above ts 0.0", () => {
    const c = new ManualCluster(3);
    const r = c.replicas[1]!;
    expect(() =>
      receiveText(
        r,
        { from: 1, kind: MsgKind.Ack, key: "k", version: 2, writer: 0, epoch: 1, rmw: false, value: null },
        0,
      ),
    ).toThrow("a replica never sends to itself");
    expect(() =>
      receiveText(
        r,
        { from: 32, kind: MsgKind.Ack, key: "k", version: 2, writer: 0, epoch: 1, rmw: false, value: null },
        0,
      ),
    ).toThrow("a message comes from a node id 0..31");
    expect(() =>
      receiveText(
        r,
        { from: 0, kind: MsgKind.Inv, key: "k", version: 2, writer: 2 ** 32, epoch: 1, rmw: false, value: null },
        0,
      ),
    ).toThrow("a timestamp's writer is a writer id");
    expect(() =>
      receiveText(
        r,
        { from: 0, kind: MsgKind.Inv, key: "k", version: 0, writer: 0, epoch: 1, rmw: false, value: null },
        0,
      ),
    ).toThrow("an INV carries an update's timestamp, above the initial 0.0");
    receiveText(
      r,
      { from: 0, kind: MsgKind.Inv, key: "k", version: 2, writer: 0, epoch: 1, rmw: false, value: null },
      0,
    ); // the same message from a valid sender is taken
    expect(r.inspect("k")!.state).toBe(KeyState.Invalid);
  });

  test("ManualCluster checks after every step: a corrupted replica fails the next tick", () => {
    const c = corrupted((k) => (k.side.pendingOp = null));
    expect(() => c.tick(1)).toThrow(/every live op is waiting on its key or is its key's pending op/);
  });

  test("a full key queue holds one op more when its pending RMW aborts: the bound is keyQueueMax + 1", () => {
    const c = new ManualCluster(3, undefined, { keyQueueMax: 2 });
    const cas = c.submit(0, OpKind.Cas, "k", "x", { version: 0, writer: 0 }); // RMW 1.0, pending
    const writes = [c.submit(0, OpKind.Write, "k", "a"), c.submit(0, OpKind.Write, "k", "b")]; // the queue is full
    expect(c.answers.get(c.submit(0, OpKind.Write, "k", "refused"))!.status).toBe(OpStatus.Busy);
    c.submit(1, OpKind.Write, "k", "h"); // 2.1
    c.deliver({ from: 1, to: 0, kind: MsgKind.Inv }); // node 0's RMW aborts and goes back to the front
    const rec = c.replicas[0]!.inspect("k")!;
    expect(rec.state).toBe(KeyState.Invalid);
    expect(rec.waitingOps).toBe(3); // keyQueueMax + 1, and checkInvariants (run by deliver) accepts it
    expect(c.answers.get(c.submit(0, OpKind.Write, "k", "refused"))!.status).toBe(OpStatus.Busy);
    c.settle();
    expect(c.answers.get(cas)).toMatchObject({ status: OpStatus.PreconditionFailed, version: 2, writer: 1 });
    for (const w of writes) expect(c.answers.get(w)!.status).toBe(OpStatus.Ok);
    expect(c.replicas[0]!.opsInFlight).toBe(0);
  });

  test("keysMax bounds the keys a node's clients create, not the keys others' updates bring (so it is no invariant)", () => {
    const c = new ManualCluster(3, undefined, { keysMax: 1 });
    const a = c.submit(0, OpKind.Write, "a", "1");
    const b = c.submit(1, OpKind.Write, "b", "2");
    c.settle();
    expect(c.answers.get(a)!.status).toBe(OpStatus.Ok);
    expect(c.answers.get(b)!.status).toBe(OpStatus.Ok);
    for (const r of c.replicas) expect(r.keyCount).toBe(2); // a follower cannot refuse an INV
    expect(c.answers.get(c.submit(2, OpKind.Write, "c", "3"))!.status).toBe(OpStatus.StoreFull);
  });
});

describe("a process restarted under its old node id (the simulator's --restart-identity same)", () => {
  // The restarted process is empty: it knows nothing of the updates its previous process issued.
  // With the node id alone as the writer, its first write of a key the cluster holds at 0.0 is
  // 2.<id> again, the timestamp of the dead process's uncommitted write; a replica still holding
  // that INV takes the new update for the old one (equal timestamps: ACK, keep its value) and
  // validates the old value. Its new incarnation makes the writer id, and so the timestamp, new.

  test("its first write gets a timestamp of its own, so a replica holding the old process's INV takes the new value", () => {
    const c = new ManualCluster(3);
    c.submit(2, OpKind.Write, "k", "old"); // 2.2, incarnation 0
    c.deliver({ from: 2, to: 1, kind: MsgKind.Inv }); // only node 1 holds it
    c.drop({ from: 2 });
    c.drop({ to: 2 }); // node 2 crashes: its INV to node 0 and node 1's ACK are lost
    for (const id of [0, 1]) c.replicas[id]!.setMembership(2, [0, 1], c.nowMs);
    c.tick(1);
    c.drop({ from: 1 }); // node 1 replays 2.2 (its writer left), but node 0 does not hear it yet
    expect(c.replicas[0]!.inspect("k")).toBeUndefined();
    expect([c.replicas[1]!.inspect("k")!.version, c.replicas[1]!.inspect("k")!.writer]).toEqual([2, 2]);

    // Node 2's next process: empty, incarnation 1 (from the RM), loads node 0's state.
    const restarted = new CheckedReplica(
      { ...defaultReplicaConfig, self: 2, incarnation: 1 },
      c.outboxFor(2),
      c.completions,
    );
    c.replicas[2] = restarted;
    restarted.beginJoin();
    for (const r of c.replicas) r.setMembership(3, [0, 1, 2], c.nowMs);
    restarted.setLease(1e12, c.nowMs);
    c.drop({ from: 1 }); // node 1's replay, re-sent in the new epoch, is still lost
    for (const e of [...c.replicas[0]!.snapshot(100)].flat())
      restarted.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, c.nowMs);
    restarted.finishJoin(c.nowMs);

    const w = c.submit(2, OpKind.Write, "k", "new"); // from 0.0: version 2 again, but writer 34
    for (let i = 0; i < 10; i++) (c.settle(), c.tick(250));
    // Every replica reads the value the write was acknowledged with (with the node id as the writer,
    // node 1 validated "old" under the same timestamp 2.2 and read it forever).
    const reads = [0, 1, 2].map((id) => c.submit(id, OpKind.Read, "k"));
    expect(reads.map((r) => c.answers.get(r)!.value)).toEqual(["new", "new", "new"]);
    expect(c.answers.get(w)).toMatchObject({ status: OpStatus.Ok, version: 2, writer: writerIdOf(1, 2) });
    expect(restarted.writer).toBe(writerIdOf(1, 2));
    expect(nodeOfWriter(c.answers.get(w)!.writer)).toBe(2);
    for (const r of reads)
      expect(c.answers.get(r)).toEqual({ status: OpStatus.Ok, value: "new", version: 2, writer: writerIdOf(1, 2) });
  });

  test("writer ids order by incarnation, then node id, and stay within a u32", () => {
    expect(writerIdOf(0, 5)).toBe(5); // a first process's ETags read "version.nodeId"
    expect(writerIdOf(1, 0)).toBeGreaterThan(writerIdOf(0, nodeIdMax));
    expect(writerIdOf(incarnationMax, nodeIdMax)).toBe(0xffff_ffff);
    for (const [incarnation, id] of [
      [0, 0],
      [3, 17],
      [incarnationMax, nodeIdMax],
    ] as const) {
      expect(nodeOfWriter(writerIdOf(incarnation, id))).toBe(id);
      expect(incarnationOfWriter(writerIdOf(incarnation, id))).toBe(incarnation);
    }
    expect(
      () =>
        new Replica(
          { ...defaultReplicaConfig, self: 0, incarnation: incarnationMax + 1 },
          { send() {} },
          { complete() {} },
        ),
    ).toThrow(AssertionError);
  });
});

describe("a replica that rejoins with kept state (found by the simulator's rejoins)", () => {
  // Two RMWs from one base: at most one may commit. While a node is out of the view, the others
  // can commit the lower one (its higher INV never reached them, or only reached nodes now out
  // too). Its kept, uncommitted higher INV must then never spread again: it is stale until the
  // join loads the cluster's state (or a live update replaces it), and is not re-sent, replayed or
  // answered with in the meantime.

  test("its own pending RMW, superseded while it was out by a lower RMW from the same base, is not re-sent in the new epoch", () => {
    const c = new ManualCluster(3);
    const late = c.submit(1, OpKind.Create, "k", "from1"); // RMW 1.1 from 0.0
    c.drop({ from: 1 }); // node 1 is cut off right after it issued: nobody holds 1.1
    c.replicas[1]!.beginJoin(); // its lease ends: it stops serving, keeps its state
    expect(c.answers.get(late)!.status).toBe(OpStatus.Unknown);
    for (const id of [0, 2]) c.replicas[id]!.setMembership(2, [0, 2], c.nowMs);
    const first = c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0 from 0.0
    c.settle();
    expect(c.answers.get(first)).toMatchObject({ status: OpStatus.Ok, version: 1, writer: 0 });
    // Node 1 registers again: a new epoch with all three. It must not push 1.1 in it.
    for (const r of c.replicas) r.setMembership(3, [0, 1, 2], c.nowMs);
    c.settle();
    for (const e of [...c.replicas[0]!.snapshot(100)].flat())
      c.replicas[1]!.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, c.nowMs);
    c.replicas[1]!.finishJoin(c.nowMs);
    for (let i = 0; i < 20; i++) (c.settle(), c.tick(250));
    for (const r of c.replicas)
      expect([r.inspect("k")!.version, r.inspect("k")!.writer, text(r.inspect("k")!.value)]).toEqual([1, 0, "from0"]);
  });

  test("an RMW INV it holds for a coordinator that is out too is not replayed after it returns", () => {
    const c = new ManualCluster(5);
    c.submit(4, OpKind.Create, "k", "from4"); // RMW 1.4 from 0.0
    c.deliver({ from: 4, to: 3, kind: MsgKind.Inv }); // only node 3 holds it
    c.drop({ from: 4 });
    c.drop({ from: 3 });
    for (const id of [3, 4]) c.replicas[id]!.beginJoin(); // both cut off: leases end
    for (const id of [0, 1, 2]) c.replicas[id]!.setMembership(2, [0, 1, 2], c.nowMs);
    const first = c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0 from 0.0 commits without them
    c.settle();
    expect(c.answers.get(first)).toMatchObject({ status: OpStatus.Ok, version: 1, writer: 0 });
    // Nodes 3 and 4 come back; node 3's 1.4 is Invalid, its writer's INVs lost: it would replay it.
    for (const r of c.replicas) r.setMembership(3, [0, 1, 2, 3, 4], c.nowMs);
    for (let i = 0; i < 4; i++) (c.settle(), c.tick(250));
    for (const id of [3, 4]) {
      for (const e of [...c.replicas[0]!.snapshot(100)].flat())
        c.replicas[id]!.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, c.nowMs);
      c.replicas[id]!.finishJoin(c.nowMs);
    }
    for (let i = 0; i < 20; i++) (c.settle(), c.tick(250));
    for (const r of c.replicas)
      expect([r.inspect("k")!.version, r.inspect("k")!.writer, text(r.inspect("k")!.value)]).toEqual([1, 0, "from0"]);
  });

  test("in the epoch in which it lost its lease it still rejects a lower RMW racing its own (it may be the only one left to)", () => {
    const c = new ManualCluster(3);
    const high = c.submit(2, OpKind.Create, "k", "from2"); // RMW 1.2
    const low = c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0, racing
    c.deliver({ from: 0, to: 1, kind: MsgKind.Inv }); // node 1 ACKs 1.0 first...
    c.deliver({ from: 2, to: 1, kind: MsgKind.Inv }); // ...then adopts 1.2 and ACKs it
    c.deliver({ from: 1, to: 0, kind: MsgKind.Ack });
    c.drop({ from: 2, to: 0 }); // node 0 never hears of 1.2 from node 2
    c.drop({ from: 1, to: 2 });
    c.replicas[2]!.beginJoin(); // node 2 is evicted, not yet removed: still a member of epoch 1
    expect(c.answers.get(high)!.status).toBe(OpStatus.Unknown);
    c.deliver({ from: 0, to: 2, kind: MsgKind.Inv }); // 1.0 reaches the coordinator of 1.2
    expect(c.find({ from: 2, to: 0 }).map((m) => [m.kind, m.version, m.writer])).toEqual([[MsgKind.Reject, 1, 2]]);
    c.settle();
    for (let i = 0; i < 10; i++) (c.settle(), c.tick(250));
    // 1.0 aborted (node 0 learned of 1.2); node 1 replays 1.2, which commits: one create only.
    expect(c.answers.get(low)!.status).toBe(OpStatus.PreconditionFailed);
    for (const id of [0, 1])
      expect([c.replicas[id]!.inspect("k")!.state, text(c.replicas[id]!.inspect("k")!.value)]).toEqual([
        KeyState.Valid,
        "from2",
      ]);
  });

  test("what a joining replica takes before it is removed and added again is stale too (it may have been superseded meanwhile)", () => {
    const c = new ManualCluster(5);
    c.replicas[4]!.beginJoin(); // evicted: joining, still a member of epoch 1; "k" is Valid, so not stale
    c.submit(3, OpKind.Create, "k", "from3"); // RMW 1.3; its coordinator dies right after
    c.deliver({ from: 3, to: 4, kind: MsgKind.Inv }); // only the joiner takes it (a live INV)
    c.drop({ from: 3 });
    c.drop({ from: 4 });
    for (const id of [0, 1, 2, 4]) c.replicas[id]!.setMembership(2, [0, 1, 2], c.nowMs); // 3 and 4 removed
    const first = c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0 from 0.0 commits without them
    c.settle();
    expect(c.answers.get(first)).toMatchObject({ status: OpStatus.Ok, version: 1, writer: 0 });
    for (const id of [0, 1, 2, 4]) c.replicas[id]!.setMembership(3, [0, 1, 2, 4], c.nowMs); // 4 comes back
    c.tick(c.replicas[4]!.config.mltMs);
    expect(c.find({ from: 4, kind: MsgKind.Inv }).length).toBe(0); // 1.3 (writer gone) is not replayed
    c.settle();
    for (const e of [...c.replicas[0]!.snapshot(100)].flat())
      c.replicas[4]!.installSnapshotEntry(e.key, e.version, e.writer, e.rmw, e.value, e.committed, c.nowMs);
    c.replicas[4]!.finishJoin(c.nowMs);
    for (let i = 0; i < 20; i++) (c.settle(), c.tick(250));
    for (const id of [0, 1, 2, 4]) expect(text(c.replicas[id]!.inspect("k")!.value)).toBe("from0");
  });

  test("loading kept state: an uncommitted RMW never displaces a committed value of its version", () => {
    const c = new ManualCluster(3);
    c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0, committed everywhere
    c.settle();
    const joiner = c.replicas[2]!;
    joiner.beginJoin(); // no member serves: it merges the others' kept state
    joiner.installSnapshotEntry("k", 1, 1, true, new TextEncoder().encode("lost"), false, c.nowMs, true); // 1.1 from 0.0: lost its race
    expect([joiner.inspect("k")!.state, joiner.inspect("k")!.writer]).toEqual([KeyState.Valid, 0]);
  });

  test("a stale key takes a same-version entry from a serving source, but from kept state only a committed one", () => {
    const setUp = () => {
      const c = new ManualCluster(3);
      c.submit(2, OpKind.Create, "k", "from2"); // RMW 1.2, cut off at once
      c.drop({ from: 2 });
      c.replicas[2]!.beginJoin();
      for (const r of c.replicas) r.setMembership(2, [0, 1, 2], c.nowMs); // a new epoch: 1.2 is stale
      c.drop({ from: 2 });
      return c.replicas[2]!;
    };
    const lower = new TextEncoder().encode("from0");
    // A serving source holds every committed update: its uncommitted 1.0 may be committed, 1.2 is not.
    const fromServing = setUp();
    fromServing.installSnapshotEntry("k", 1, 0, true, lower, false, 0);
    expect([fromServing.inspect("k")!.writer, fromServing.inspect("k")!.stale]).toEqual([0, true]);
    // Kept state is no such authority: two uncommitted RMWs of one version, the higher stays.
    const fromKept = setUp();
    fromKept.installSnapshotEntry("k", 1, 0, true, lower, false, 0, true);
    expect(fromKept.inspect("k")!.writer).toBe(2);
    // ...unless the other is known committed.
    fromKept.installSnapshotEntry("k", 1, 0, true, lower, true, 0, true);
    expect([fromKept.inspect("k")!.writer, fromKept.inspect("k")!.state]).toEqual([0, KeyState.Valid]);
  });

  test("a kept uncommitted entry does not answer a lower INV with itself (a Reject would spread it)", () => {
    const c = new ManualCluster(3);
    c.submit(1, OpKind.Create, "k", "from1"); // RMW 1.1
    c.drop({ from: 1 });
    c.replicas[1]!.beginJoin();
    for (const id of [0, 2]) c.replicas[id]!.setMembership(2, [0, 2], c.nowMs);
    c.submit(0, OpKind.Create, "k", "from0"); // RMW 1.0
    c.deliver({ from: 0, to: 2, kind: MsgKind.Inv });
    c.deliver({ from: 2, to: 0, kind: MsgKind.Ack }); // committed at node 0; node 2's VAL is lost
    c.drop({ kind: MsgKind.Val });
    expect(c.replicas[2]!.inspect("k")!.state).toBe(KeyState.Invalid);
    for (const r of c.replicas) r.setMembership(3, [0, 1, 2], c.nowMs);
    c.drop({ from: 1 });
    c.tick(c.replicas[2]!.config.mltMs); // node 2 replays 1.0, to node 1 too
    c.deliver({ from: 2, to: 1, kind: MsgKind.Inv });
    // Node 1 takes the live update (ACK), and sends nothing carrying 1.1.
    expect(c.find({ from: 1 }).map((m) => [m.kind, m.version, m.writer])).toEqual([[MsgKind.Ack, 1, 0]]);
    expect([c.replicas[1]!.inspect("k")!.version, c.replicas[1]!.inspect("k")!.writer]).toEqual([1, 0]);
    c.settle();
    for (const r of c.replicas) expect(text(r.inspect("k")!.value)).toBe("from0");
  });
});
