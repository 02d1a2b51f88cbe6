// The replica's Journal hook: every timestamp it installs is reported before anything that could
// announce it (the coordinator's INVs, a follower's ACK) reaches the Outbox, and Valid transitions
// are reported too. A shard that makes the reported installs durable before it sends its frames
// therefore never ACKs what is not on disk (src/worker/shard-journal.ts).

import { describe, expect, test } from "bun:test";
import type { Journal } from "../../src/core/types.ts";
import { MsgKind, OpKind, OpStatus } from "../../src/base/kinds.ts";
import { ManualCluster } from "./manual-cluster.ts";

const text = (bytes: Uint8Array, at: number, length: number) =>
  new TextDecoder().decode(bytes.subarray(at, at + length));

interface Seen {
  event: "installed" | "validated";
  key: string;
  version: number;
  writer: number;
  value?: string | null;
  /** Messages the cluster's network held when the event was reported. */
  inFlight: number;
}

function recorder(c: ManualCluster, seen: Seen[]): Journal {
  return {
    installed: (key, keyAt, keyLength, version, writer, _rmw, value, valueAt, valueLength) =>
      seen.push({
        event: "installed",
        key: text(key, keyAt, keyLength),
        version,
        writer,
        value: value === null ? null : text(value, valueAt, valueLength),
        inFlight: c.inFlight.length,
      }),
    validated: (key, keyAt, keyLength, version, writer, _rmw, value, valueAt, valueLength) =>
      seen.push({
        event: "validated",
        key: text(key, keyAt, keyLength),
        version,
        writer,
        value: value === null ? null : text(value, valueAt, valueLength),
        inFlight: c.inFlight.length,
      }),
  };
}

describe("journal", () => {
  test("a coordinator's write is reported before its INVs, a follower's adopted INV before its ACK", () => {
    const c = new ManualCluster(3);
    const coordinator: Seen[] = [];
    const follower: Seen[] = [];
    c.replicas[0]!.setJournal(recorder(c, coordinator));
    c.replicas[1]!.setJournal(recorder(c, follower));
    const w = c.submit(0, OpKind.Write, "k", "v1");
    expect(coordinator).toEqual([{ event: "installed", key: "k", version: 2, writer: 0, value: "v1", inFlight: 0 }]);
    const invs = c.find({ kind: MsgKind.Inv }).length;
    expect(invs).toBe(2);
    c.deliver({ kind: MsgKind.Inv, to: 1 });
    // Reported while the network held only the other INV: the ACK came after.
    expect(follower).toEqual([{ event: "installed", key: "k", version: 2, writer: 0, value: "v1", inFlight: 1 }]);
    expect(c.find({ kind: MsgKind.Ack, from: 1 }).length).toBe(1);
    c.deliver({ kind: MsgKind.Inv, to: 2 });
    c.deliver({ kind: MsgKind.Ack });
    expect(c.answers.get(w)?.status).toBe(OpStatus.Ok);
    expect(coordinator.at(-1)).toMatchObject({ event: "validated", key: "k", version: 2, writer: 0, value: "v1" });
    c.deliver({ kind: MsgKind.Val });
    expect(follower.at(-1)).toMatchObject({ event: "validated", key: "k", version: 2, writer: 0 });
  });

  test("a delete is reported with no value; a lower INV is not reported (nothing installed)", () => {
    const c = new ManualCluster(2);
    const seen: Seen[] = [];
    c.replicas[1]!.setJournal(recorder(c, seen));
    c.submit(0, OpKind.Delete, "gone");
    c.deliver({ kind: MsgKind.Inv });
    expect(seen).toEqual([{ event: "installed", key: "gone", version: 2, writer: 0, value: null, inFlight: 0 }]);
    c.settle();
    const before = seen.length;
    c.submit(1, OpKind.Write, "gone", "back");
    expect(seen.length).toBe(before + 1);
    expect(seen.at(-1)).toMatchObject({ event: "installed", key: "gone", version: 4, writer: 1, value: "back" });
  });

  test("without a journal nothing is reported and the replica behaves as before", () => {
    const c = new ManualCluster(3);
    const seen: Seen[] = [];
    c.replicas[0]!.setJournal(recorder(c, seen));
    c.replicas[0]!.setJournal(null);
    const w = c.submit(0, OpKind.Write, "k", "v");
    c.settle();
    expect(c.answers.get(w)?.status).toBe(OpStatus.Ok);
    expect(seen).toEqual([]);
  });
});
