// PeerLinks in one thread: two (or three) shard workers' ends over real rings. An op forwarded by one
// worker reaches the other only once published (flush), its answer comes back with the forwarder's
// op id, answers wait in a backlog while the completion ring is full, limits answer Busy with
// nothing sent, and a failed or stopping worker's forwards are answered Unknown exactly once.

import { describe, expect, test } from "bun:test";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { OpResult } from "../../src/base/kv-backend.ts";
import type { OpRequestReader } from "../../src/ring/op-ring.ts";
import { createRing, ringCapacityBytesMin } from "../../src/ring/spsc-ring.ts";
import { createPeerRings, PeerLinks } from "../../src/worker/peer-links.ts";

const keyBytesMax = 16;
const valueBytesMax = 64;
const encoder = new TextEncoder();

interface Received {
  peer: number;
  opId: number;
  kind: OpKind;
  key: string;
  value: string | null;
}

/** `shards` workers' links; each records the ops forwarded to it. */
function workers(shards: number, forwardsMax = 64) {
  const rings = createPeerRings(shards, keyBytesMax, valueBytesMax, 0);
  const received: Received[][] = Array.from({ length: shards }, () => []);
  const decoder = new TextDecoder();
  const links = Array.from(
    { length: shards },
    (_, self) =>
      new PeerLinks(self, rings, forwardsMax, (peer: number, r: OpRequestReader) => {
        received[self]!.push({
          peer,
          opId: r.opId,
          kind: r.kind,
          key: r.key,
          value: r.value === null ? null : decoder.decode(r.value),
        });
      }),
  );
  return { rings, links, received };
}

/** A promise's outcome if it has settled by now, else "pending". */
async function settled<T>(value: T | Promise<T>): Promise<T | "pending"> {
  return Promise.race([
    Promise.resolve(value),
    new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), 0)),
  ]);
}

describe("PeerLinks", () => {
  test("a forwarded op is delivered once published, and its answer resolves the forwarder's promise", async () => {
    const { links, received } = workers(2);
    const [a, b] = links as [PeerLinks, PeerLinks];
    const result = a.forward(1, OpKind.Write, "k", encoder.encode("v"), 0, 0, 0);
    expect(result instanceof Promise).toBe(true);
    // Nothing is visible before the forwarder's flush (one publication per loop turn).
    expect(b.drainRequests(100)).toBe(0);
    a.flush();
    expect(b.drainRequests(100)).toBe(1);
    expect(received[1]).toEqual([{ peer: 0, opId: received[1]![0]!.opId, kind: OpKind.Write, key: "k", value: "v" }]);
    b.answer(0, received[1]![0]!.opId, OpStatus.Ok, null, 2, 1);
    expect(a.drainCompletions(100)).toBe(0);
    b.flush();
    expect(a.drainCompletions(100)).toBe(1);
    expect(await result).toEqual({ status: OpStatus.Ok, value: null, version: 2, writer: 1 });
    expect(a.forwardsInFlight).toBe(0);
    expect(a.forwardedOut).toBe(1);
    expect(b.forwardedIn).toBe(1);
  });

  test("Busy, with nothing sent, once forwardsMax ops are out; a slot is free again once answered", async () => {
    const { links, received } = workers(2, 2);
    const [a, b] = links as [PeerLinks, PeerLinks];
    const first = a.forward(1, OpKind.Read, "x", null, 0, 0, 0);
    a.forward(1, OpKind.Read, "y", null, 0, 0, 0);
    expect(a.forward(1, OpKind.Read, "z", null, 0, 0, 0)).toEqual({
      status: OpStatus.Busy,
      value: null,
      version: 0,
      writer: 0,
    });
    a.flush();
    b.drainRequests(100);
    expect(received[1]!.map((r) => r.key)).toEqual(["x", "y"]);
    b.answer(0, received[1]![0]!.opId, OpStatus.Ok, encoder.encode("1"), 2, 0);
    b.flush();
    a.drainCompletions(100);
    expect((await first).status).toBe(OpStatus.Ok);
    expect(a.forward(1, OpKind.Read, "z", null, 0, 0, 0) instanceof Promise).toBe(true);
  });

  test("answers wait in a backlog while the completion ring is full, and go out in order as it drains", async () => {
    const forwards = 40;
    const rings = createPeerRings(2, keyBytesMax, valueBytesMax, 1 << 16);
    // The smallest completion ring from 1 back to 0: it holds fewer answers than are asked for.
    rings.completions[0]![1] = createRing(ringCapacityBytesMin);
    const ids: number[] = [];
    const a = new PeerLinks(0, rings, forwards, () => {});
    const b = new PeerLinks(1, rings, forwards, (_peer, r) => ids.push(r.opId));
    const results: Promise<OpResult>[] = [];
    for (let i = 0; i < forwards; i++)
      results.push(a.forward(1, OpKind.Read, `k${i}`, null, 0, 0, 0) as Promise<OpResult>);
    a.flush();
    expect(b.drainRequests(1000)).toBe(forwards);
    // Each answer carries its index in its version, to check the order they come back in.
    const value = encoder.encode("x".repeat(valueBytesMax));
    ids.forEach((id, i) => b.answer(0, id, OpStatus.Ok, value, i + 1, 1));
    let turns = 0;
    let answered = 0;
    while (answered < forwards) {
      b.flush();
      answered += a.drainCompletions(1000);
      expect(++turns).toBeLessThan(forwards);
    }
    expect(turns).toBeGreaterThan(1);
    const values = await Promise.all(results);
    expect(values.map((v) => v.version)).toEqual(Array.from({ length: forwards }, (_, i) => i + 1));
    expect(values.every((v) => v.status === OpStatus.Ok && v.value?.length === valueBytesMax)).toBe(true);
  });

  test("a failed peer's forwards are answered Unknown once; nothing more goes to it, nothing from it is read", async () => {
    const { links, received } = workers(3);
    const [a, b, c] = links as [PeerLinks, PeerLinks, PeerLinks];
    const toB = a.forward(1, OpKind.Write, "k", encoder.encode("v"), 0, 0, 0);
    const toC = a.forward(2, OpKind.Write, "m", encoder.encode("w"), 0, 0, 0);
    a.flush();
    b.drainRequests(10);
    c.drainRequests(10);
    a.peerFailed(1);
    expect(await toB).toEqual({ status: OpStatus.Unknown, value: null, version: 0, writer: 0 });
    expect(await settled(toC)).toBe("pending");
    // A late answer of the failed worker is never read; new forwards to it start nothing.
    b.answer(0, received[1]![0]!.opId, OpStatus.Ok, null, 2, 1);
    b.flush();
    expect(a.drainCompletions(10)).toBe(0);
    expect(a.forward(1, OpKind.Read, "k", null, 0, 0, 0)).toEqual({
      status: OpStatus.Unavailable,
      value: null,
      version: 0,
      writer: 0,
    });
    c.answer(0, received[2]![0]!.opId, OpStatus.Ok, null, 2, 2);
    c.flush();
    expect(a.drainCompletions(10)).toBe(1);
    expect((await toC).status).toBe(OpStatus.Ok);
  });

  test("a stopping worker answers its own forwards Unknown and takes nothing more", async () => {
    const { links } = workers(2);
    const [a, b] = links as [PeerLinks, PeerLinks];
    const pending = a.forward(1, OpKind.Incr, "n", null, 0, 0, 1);
    a.flush();
    a.stop();
    expect((await pending).status).toBe(OpStatus.Unknown);
    expect(a.forward(1, OpKind.Read, "n", null, 0, 0, 0)).toEqual({
      status: OpStatus.Unavailable,
      value: null,
      version: 0,
      writer: 0,
    });
    b.forward(0, OpKind.Read, "q", null, 0, 0, 0);
    b.flush();
    expect(a.drainRequests(10)).toBe(0);
  });
});
