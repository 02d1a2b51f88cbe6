import { describe, expect, test } from "bun:test";
import { AssertionError } from "../../src/base/assert.ts";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import {
  OpCompletionReader,
  OpCompletionWriter,
  opCompletionBytes,
  opKeyBytesMax,
  OpRequestReader,
  OpRequestWriter,
  opRequestBytes,
  opRingCapacityBytesMin,
} from "../../src/ring/op-ring.ts";
import { createRing, ringRecordBytesMax, ringRecordFootprintBytes } from "../../src/ring/spsc-ring.ts";

interface Req {
  opId: number;
  kind: OpKind;
  key: string;
  value: Uint8Array | null;
  expectedVersion: number;
  expectedWriter: number;
  by: number;
}

const requests: Req[] = [
  { opId: 0, kind: OpKind.Read, key: "a", value: null, expectedVersion: 0, expectedWriter: 0, by: 0 },
  {
    opId: 1,
    kind: OpKind.Write,
    key: "user:42",
    value: new Uint8Array([1, 2, 3]),
    expectedVersion: 0,
    expectedWriter: 0,
    by: 0,
  },
  {
    opId: 2,
    kind: OpKind.Write,
    key: "empty-value",
    value: new Uint8Array(0),
    expectedVersion: 0,
    expectedWriter: 0,
    by: 0,
  },
  { opId: 3, kind: OpKind.Delete, key: "ключ", value: null, expectedVersion: 0, expectedWriter: 0, by: 0 },
  {
    opId: 0xffff_ffff,
    kind: OpKind.Cas,
    key: "κλειδί🔑",
    value: new Uint8Array([255]),
    expectedVersion: 2 ** 53 - 1,
    expectedWriter: 31,
    by: 0,
  },
  {
    opId: 5,
    kind: OpKind.Create,
    key: "new",
    value: new Uint8Array([7, 7]),
    expectedVersion: 0,
    expectedWriter: 0,
    by: 0,
  },
  {
    opId: 6,
    kind: OpKind.Incr,
    key: "counter",
    value: null,
    expectedVersion: 0,
    expectedWriter: 0,
    by: -(2 ** 53 - 1),
  },
  {
    opId: 7,
    kind: OpKind.Incr,
    key: "counter",
    value: null,
    expectedVersion: 2 ** 32 + 2,
    expectedWriter: 3,
    by: 2 ** 40,
  },
  { opId: 8, kind: OpKind.Read, key: "", value: null, expectedVersion: 0, expectedWriter: 0, by: 0 },
  // A CAS on the ETag of a restarted process's write: a u32 writer id (incarnation and node id).
  { opId: 9, kind: OpKind.Cas, key: "k", value: null, expectedVersion: 5, expectedWriter: 0xffff_ffff, by: 0 },
];

function pushReq(w: OpRequestWriter, q: Req): boolean {
  return w.push(q.opId, q.kind, q.key, q.value, q.expectedVersion, q.expectedWriter, q.by);
}

describe("op ring: requests", () => {
  test("every kind round-trips, keys as strings and values as copies", () => {
    const sab = createRing(4096);
    const w = new OpRequestWriter(sab);
    const r = new OpRequestReader(sab);
    for (const q of requests) expect(pushReq(w, q)).toBe(true);
    w.commit();
    const kept: (Uint8Array | null)[] = [];
    for (const q of requests) {
      expect(r.next()).toBe(true);
      expect({
        opId: r.opId,
        kind: r.kind,
        key: r.key,
        value: r.value,
        expectedVersion: r.expectedVersion,
        expectedWriter: r.expectedWriter,
        by: r.by,
      }).toEqual(q);
      if (r.value !== null) expect(r.value.buffer).not.toBeInstanceOf(SharedArrayBuffer);
      kept.push(r.value);
    }
    expect(r.next()).toBe(false);
    r.release();
    // Reuse the ring space: the values taken before must not change.
    for (let i = 0; i < 30; i++) pushReq(w, { ...requests[1], value: new Uint8Array(100).fill(0xee) });
    w.commit();
    expect(kept.map((v) => (v === null ? null : Array.from(v)))).toEqual(
      requests.map((q) => (q.value === null ? null : Array.from(q.value))),
    );
  });

  test("drain hands the reused decoded object to the handler", () => {
    const sab = createRing(4096);
    const w = new OpRequestWriter(sab);
    const r = new OpRequestReader(sab);
    for (const q of requests) pushReq(w, q);
    w.commit();
    const keys: string[] = [];
    expect(
      r.drain((req) => {
        expect(req).toBe(r);
        keys.push(req.key);
      }, 100),
    ).toBe(requests.length);
    expect(keys).toEqual(requests.map((q) => q.key));
  });

  test("a full ring refuses a request; the exact footprint is used", () => {
    const capacityBytes = 1024;
    const sab = createRing(capacityBytes);
    const w = new OpRequestWriter(sab);
    const r = new OpRequestReader(sab);
    const key = "é".repeat(10); // 20 bytes of UTF-8: the reservation must use the exact length
    const footprintBytes = ringRecordFootprintBytes(opRequestBytes(20, 0));
    let pushed = 0;
    while (w.push(pushed, OpKind.Read, key, null, 0, 0, 0)) pushed++;
    expect(pushed).toBe(Math.floor(capacityBytes / footprintBytes));
    w.commit();
    expect(r.next()).toBe(true);
    r.release();
    expect(w.push(pushed, OpKind.Read, key, null, 0, 0, 0)).toBe(true);
  });

  test("a request of exactly recordBytesMax fits; one byte more is an assertion", () => {
    const capacityBytes = 2048;
    const sab = createRing(capacityBytes);
    const w = new OpRequestWriter(sab);
    const r = new OpRequestReader(sab);
    const valueBytes = ringRecordBytesMax(capacityBytes) - opRequestBytes(4, 0); // "k€" is 4 bytes
    const value = new Uint8Array(valueBytes).map((_, i) => i & 0xff);
    for (let round = 0; round < 10; round++) {
      expect(w.push(round, OpKind.Write, "k€", value, 0, 0, 0)).toBe(true);
      w.commit();
      expect(r.next()).toBe(true);
      expect(r.opId).toBe(round);
      expect(r.value).toEqual(value);
      r.release();
    }
    expect(() => w.push(1, OpKind.Write, "k€", new Uint8Array(valueBytes + 1), 0, 0, 0)).toThrow(AssertionError);
  });

  test("opRingCapacityBytesMin sizes a ring for the largest request", () => {
    const capacityBytes = opRingCapacityBytesMin(256, 64 * 1024);
    expect(ringRecordBytesMax(capacityBytes)).toBeGreaterThanOrEqual(opRequestBytes(256, 64 * 1024));
    expect(ringRecordBytesMax(capacityBytes / 2)).toBeLessThan(opRequestBytes(256, 64 * 1024));
    const w = new OpRequestWriter(createRing(capacityBytes));
    expect(w.push(1, OpKind.Write, "x".repeat(256), new Uint8Array(64 * 1024), 0, 0, 0)).toBe(true);
  });

  test("invalid fields are assertions at the boundary", () => {
    const w = new OpRequestWriter(createRing(1 << 20));
    expect(() => w.push(-1, OpKind.Read, "k", null, 0, 0, 0)).toThrow(AssertionError);
    expect(() => w.push(2 ** 32, OpKind.Read, "k", null, 0, 0, 0)).toThrow(AssertionError);
    expect(() => w.push(1, 9 as OpKind, "k", null, 0, 0, 0)).toThrow(AssertionError);
    expect(() => w.push(1, OpKind.Cas, "k", null, 2 ** 53, 0, 0)).toThrow(AssertionError);
    expect(() => w.push(1, OpKind.Cas, "k", null, 1, 2 ** 32, 0)).toThrow(AssertionError);
    expect(() => w.push(1, OpKind.Incr, "k", null, 0, 0, 0.5)).toThrow(AssertionError);
    expect(() => w.push(1, OpKind.Read, "x".repeat(opKeyBytesMax + 1), null, 0, 0, 0)).toThrow(AssertionError);
    expect(w.push(1, OpKind.Read, "x".repeat(opKeyBytesMax), null, 0, 0, 0)).toBe(true);
  });
});

describe("op ring: completions", () => {
  test("round-trip with null, empty and large values and versions beyond 2^32", () => {
    const sab = createRing(8192);
    const w = new OpCompletionWriter(sab);
    const r = new OpCompletionReader(sab);
    const cases = [
      { opId: 1, status: OpStatus.Ok, value: null, version: 0, writer: 0 },
      { opId: 2, status: OpStatus.Ok, value: new Uint8Array(0), version: 2, writer: 1 },
      { opId: 3, status: OpStatus.PreconditionFailed, value: null, version: 2 ** 32 + 4, writer: 31 },
      // Writer ids of restarted processes (incarnation * 32 + node id), up to the largest u32.
      { opId: 5, status: OpStatus.Ok, value: null, version: 6, writer: 2 * 32 + 3 },
      { opId: 6, status: OpStatus.Ok, value: null, version: 6, writer: 0xffff_ffff },
      { opId: 4, status: OpStatus.Ok, value: new Uint8Array(3000).fill(5), version: 2 ** 53 - 1, writer: 7 },
      { opId: 0xffff_ffff, status: OpStatus.Timeout, value: null, version: 0, writer: 0 },
    ];
    for (const c of cases) expect(w.push(c.opId, c.status, c.value, c.version, c.writer)).toBe(true);
    w.commit();
    for (const c of cases) {
      expect(r.next()).toBe(true);
      expect({ opId: r.opId, status: r.status, value: r.value, version: r.version, writer: r.writer }).toEqual(c);
    }
    expect(r.next()).toBe(false);
    expect(opCompletionBytes(3000)).toBe(3024);
  });

  test("full ring refuses; oversized and invalid completions are assertions", () => {
    const sab = createRing(1024);
    const w = new OpCompletionWriter(sab);
    let pushed = 0;
    while (w.push(pushed, OpStatus.Ok, new Uint8Array(40), 2, 1)) pushed++;
    expect(pushed).toBe(Math.floor(1024 / ringRecordFootprintBytes(opCompletionBytes(40))));
    expect(() => w.push(1, OpStatus.Ok, new Uint8Array(1024), 2, 1)).toThrow(AssertionError);
    expect(() => w.push(1, 99 as OpStatus, null, 2, 1)).toThrow(AssertionError);
    expect(() => w.push(1, OpStatus.Ok, null, -2, 1)).toThrow(AssertionError);
    expect(() => w.push(1, OpStatus.Ok, null, 2, 2 ** 32)).toThrow(AssertionError);
  });
});
