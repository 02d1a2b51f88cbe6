// Shard.turn driven by hand, as raft's tests drive RawNode: a fake transport records what the loop
// sends, client ops go in through the real request ring and answers come out of the real
// completion ring (the test plays shard worker 1 of the node, forwarding to shard 0). Covers the
// loop's own paths: splitting a turn's messages into frames when one fills up, refused frames, the
// completion backlog when the completion ring is full, and ops of the shard's own HTTP server.

import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/base/ids.ts";
import { MsgKind, OpKind, OpStatus } from "../../src/base/kinds.ts";
import { defaultReplicaConfig } from "../../src/core/types.ts";
import { OpCompletionReader, OpRequestWriter, opCompletionBytes } from "../../src/ring/op-ring.ts";
import { createRing, ringCapacityBytesMin, ringRecordFootprintBytes } from "../../src/ring/spsc-ring.ts";
import type { FrameHandler, Transport, TransportStats } from "../../src/transport/transport.ts";
import { frameHeaderBytes, messageBytes } from "../../src/wire/layout.ts";
import { FrameDecoder } from "../../src/wire/frame-decoder.ts";
import { FrameBuilder } from "../../src/wire/frame-builder.ts";
import type { ShardInit } from "../../src/worker/messages.ts";
import { createNodeBoard, NodeBoard } from "../../src/worker/node-board.ts";
import { createPeerRings } from "../../src/worker/peer-links.ts";
import { Shard } from "../../src/worker/shard.ts";
import { ControlClient } from "../../src/worker/control-client.ts";
import { WorkerBackend } from "../../src/worker/worker-backend.ts";
import type { OpRequest, OpResult } from "../../src/base/kv-backend.ts";
import { appendText, textHandler } from "../lib/key-bytes.ts";

const clusterId = 7;
const keyBytesMax = 8;
const valueBytesMax = 16;

/** Records every frame sent (a copy) and when flush was called; hands out queued frames on poll. */
class FakeTransport implements Transport {
  readonly kind = "sim" as const;
  readonly address = "fake";
  readonly frameBytesMax: number;
  /** Frames sent, in order, with the number of flushes that came before each. */
  readonly sent: { to: NodeId; frame: Uint8Array; flushesBefore: number }[] = [];
  readonly connected = new Set<NodeId>();
  readonly incoming: { from: NodeId; frame: Uint8Array }[] = [];
  flushes = 0;
  /** send() returns false while this is positive (and counts it down). */
  refuseNext = 0;
  readonly #stats: TransportStats = {
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    sendsRefused: 0,
    framesDropped: 0,
  };

  constructor(frameBytesMax: number) {
    this.frameBytesMax = frameBytesMax;
  }
  connect(peer: NodeId): void {
    this.connected.add(peer);
  }
  disconnect(peer: NodeId): void {
    this.connected.delete(peer);
  }
  send(peer: NodeId, frame: Uint8Array): boolean {
    if (this.refuseNext > 0) {
      this.refuseNext--;
      this.#stats.sendsRefused++;
      return false;
    }
    this.sent.push({ to: peer, frame: frame.slice(), flushesBefore: this.flushes });
    this.#stats.framesSent++;
    return true;
  }
  flush(): void {
    this.flushes++;
  }
  poll(handler: FrameHandler): number {
    const frames = this.incoming.splice(0);
    for (const f of frames) handler(f.from, f.frame);
    return frames.length;
  }
  whenReadable(): Promise<void> {
    return Promise.resolve();
  }
  stats(): TransportStats {
    return { ...this.#stats };
  }
  close(): void {}
}

interface Harness {
  shard: Shard;
  /** The node board as the main thread writes it. */
  board: NodeBoard;
  transport: FakeTransport;
  requests: OpRequestWriter;
  answers: OpCompletionReader;
  /** Every completion read so far, in ring order. */
  readAnswers(): { opId: number; status: OpStatus; value: string | null }[];
}

function harness(options: {
  frameBytesMax: number;
  completionRingBytes?: number;
  opsMax?: number;
  members?: NodeId[];
}): Harness {
  // Shard 0 is the one under test; the test forwards to it as shard worker 1 would.
  const rings = createPeerRings(2, keyBytesMax, valueBytesMax, 1 << 16);
  rings.completions[1]![0] = createRing(options.completionRingBytes ?? 1 << 16);
  const init: ShardInit = {
    type: "init",
    nodeId: 0,
    shardIndex: 0,
    clusterId,
    transport: { kind: "sim", host: "", port: 0, frameBytesMax: options.frameBytesMax },
    replica: { ...defaultReplicaConfig, self: 0, valueBytesMax, opsMax: options.opsMax ?? 1024 },
    keyBytesMax,
    board: createNodeBoard(1),
    opsInFlightMax: options.opsMax ?? 1024,
    numaNode: -1,
    bench: null,
  };
  const transport = new FakeTransport(options.frameBytesMax);
  let nowMs = 1000;
  const shard = new Shard(init, transport, { clock: () => nowMs });
  const members = options.members ?? [0, 1];
  shard.setMembership(
    1,
    members.map((id) => ({ id, address: `peer-${id}` })),
  );
  shard.setLease(nowMs + 60_000);
  nowMs += 1;
  shard.connectPeers(rings);
  const requests = new OpRequestWriter(rings.requests[1]![0]!);
  const answers = new OpCompletionReader(rings.completions[1]![0]!);
  const decoder = new TextDecoder();
  const board = new NodeBoard(init.board, 0, "sim");
  board.setView(1, members);
  return {
    shard,
    board,
    transport,
    requests,
    answers,
    readAnswers() {
      const out: { opId: number; status: OpStatus; value: string | null }[] = [];
      while (answers.next())
        out.push({
          opId: answers.opId,
          status: answers.status,
          value: answers.value === null ? null : decoder.decode(answers.value),
        });
      answers.release();
      return out;
    },
  };
}

const encoder = new TextEncoder();

function decodeAll(frames: Uint8Array[]): { kind: MsgKind; key: string; value: string | null }[][] {
  const decoder = new FrameDecoder({ clusterId, shardIndex: 0, frameBytesMax: 1 << 16, keyBytesMax, valueBytesMax });
  const text = new TextDecoder();
  return frames.map((frame) => {
    const messages: { kind: MsgKind; key: string; value: string | null }[] = [];
    const count = decoder.decode(
      frame,
      textHandler((_from, kind, key, _version, _writer, _epoch, _rmw, value) => {
        messages.push({ kind, key, value: value === null ? null : text.decode(value) });
      }),
    );
    expect(count).toBe(messages.length);
    return messages;
  });
}

describe("Shard.turn", () => {
  test("an idle turn does no work and sends nothing; a turn returns the ops and frames it took", () => {
    const h = harness({ frameBytesMax: 4096 });
    expect(h.shard.turn(1001)).toBe(0);
    expect(h.transport.sent).toEqual([]);
    h.requests.push(1, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.push(2, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.commit();
    expect(h.shard.turn(1002)).toBe(2);
    expect(h.readAnswers()).toEqual([
      { opId: 1, status: OpStatus.Ok, value: null },
      { opId: 2, status: OpStatus.Ok, value: null },
    ]);
    expect(h.shard.loopTurns).toBe(2);
  });

  test("frame full: a turn's messages to one peer are split over as many frames as needed, in order, then flushed once", () => {
    // Room for three messages with a 2-byte key and a 4-byte value per frame.
    const perMessage = messageBytes(2, 4);
    const frameBytesMax = frameHeaderBytes + 3 * perMessage + 10;
    const h = harness({
      frameBytesMax: Math.max(frameBytesMax, frameHeaderBytes + messageBytes(keyBytesMax, valueBytesMax)),
    });
    const frameBytes = h.transport.frameBytesMax;
    const perFrame = Math.floor((frameBytes - frameHeaderBytes) / perMessage);
    const writes = 10;
    for (let i = 0; i < writes; i++)
      h.requests.push(i + 1, OpKind.Write, `k${i}`, encoder.encode(`v${String(i).padStart(3, "0")}`), 0, 0, 0);
    h.requests.commit();
    const flushesBefore = h.transport.flushes;
    expect(h.shard.turn(1002)).toBe(writes);
    const sent = h.transport.sent;
    // Full frames went out during the turn, before its one flush; the last frame at the flush.
    expect(sent.length).toBe(Math.ceil(writes / perFrame));
    expect(sent.every((s) => s.to === 1 && s.frame.length <= frameBytes && s.flushesBefore === flushesBefore)).toBe(
      true,
    );
    expect(h.transport.flushes).toBe(flushesBefore + 1);
    const messages = decodeAll(sent.map((s) => s.frame));
    expect(messages.slice(0, -1).every((m) => m.length === perFrame)).toBe(true);
    expect(messages.flat()).toEqual(
      Array.from({ length: writes }, (_, i) => ({
        kind: MsgKind.Inv,
        key: `k${i}`,
        value: `v${String(i).padStart(3, "0")}`,
      })),
    );
    // The writes wait for peer 1's ACKs: nothing answered yet.
    expect(h.readAnswers()).toEqual([]);
  });

  test("a refused frame is counted and dropped; the builder starts the next frame clean", () => {
    // Three INVs per frame: the fourth fills the first frame, which the transport refuses.
    const h = harness({ frameBytesMax: frameHeaderBytes + 3 * messageBytes(2, 4) + 10 });
    h.transport.refuseNext = 1;
    for (let i = 0; i < 4; i++) h.requests.push(i + 1, OpKind.Write, `k${i}`, encoder.encode("vvvv"), 0, 0, 0);
    h.requests.commit();
    h.shard.turn(1002);
    expect(h.shard.framesRefused).toBe(1);
    // The INVs of the refused frame are lost (the protocol retransmits them); the next frame is whole.
    const frames = decodeAll(h.transport.sent.map((s) => s.frame));
    expect(frames.map((f) => f.map((m) => m.key))).toEqual([["k3"]]);
    expect(h.shard.stats({ node: null, cpu: null, pinned: false }).counters.framesRefused).toBe(1);
  });

  test("completion backlog: answers the full ring cannot take wait, in order, and are published as it drains", () => {
    // The smallest completion ring, and many reads answered at once in one turn.
    const h = harness({ frameBytesMax: 4096, completionRingBytes: ringCapacityBytesMin, members: [0] });
    const recordBytes = ringRecordFootprintBytes(opCompletionBytes(0));
    const ringHolds = Math.floor(ringCapacityBytesMin / recordBytes);
    const reads = 3 * ringHolds;
    for (let i = 0; i < reads; i++) h.requests.push(i + 1, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.commit();
    h.shard.turn(1002);
    const answered: number[] = [];
    let turns = 0;
    for (;;) {
      const batch = h.readAnswers();
      // The ring never hands out more than it holds; nothing is lost, duplicated or reordered.
      expect(batch.length).toBeLessThanOrEqual(ringHolds);
      for (const a of batch) {
        expect(a.status).toBe(OpStatus.Ok);
        answered.push(a.opId);
      }
      if (answered.length === reads) break;
      // A turn with nothing new to do still replays the backlog into the freed space.
      expect(h.shard.turn(1003 + turns)).toBe(0);
      turns++;
      expect(turns).toBeLessThan(reads);
    }
    expect(turns).toBeGreaterThanOrEqual(2);
    expect(answered).toEqual(Array.from({ length: reads }, (_, i) => i + 1));
    // A turn while the reader is away keeps the backlog; answers still come out in order.
    for (let i = 0; i < 2 * ringHolds; i++) h.requests.push(10_000 + i, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.commit();
    h.shard.turn(2000);
    h.shard.turn(2001);
    const later: number[] = [];
    for (let t = 0; later.length < 2 * ringHolds; t++) {
      for (const a of h.readAnswers()) later.push(a.opId);
      h.shard.turn(2002 + t);
    }
    expect(later).toEqual(Array.from({ length: 2 * ringHolds }, (_, i) => 10_000 + i));
  });

  test("a read's answer keeps its bytes when the key is overwritten in place later, through the ring and through the backlog", () => {
    // The replica lends a read's value from its store's slab, and a write of the same size goes
    // into the same slot: every answer must have been copied before that write.
    const h = harness({ frameBytesMax: 4096, completionRingBytes: ringCapacityBytesMin, members: [0] });
    h.requests.push(1, OpKind.Write, "k", encoder.encode("aaaa"), 0, 0, 0);
    h.requests.commit();
    h.shard.turn(1002);
    expect(h.readAnswers().map((a) => a.status)).toEqual([OpStatus.Ok]);
    // More reads than the ring holds (the rest wait in the backlog), then an overwrite in the same turn.
    const ringHolds = Math.floor(ringCapacityBytesMin / ringRecordFootprintBytes(opCompletionBytes(4)));
    const reads = 2 * ringHolds;
    for (let i = 0; i < reads; i++) h.requests.push(100 + i, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.push(99, OpKind.Write, "k", encoder.encode("bbbb"), 0, 0, 0);
    h.requests.commit();
    h.shard.turn(1003);
    expect(h.shard.replica.inspect("k")!.value).toEqual(encoder.encode("bbbb"));
    const values: (string | null)[] = [];
    for (let t = 0; values.length < reads + 1 && t < 100; t++) {
      for (const a of h.readAnswers()) if (a.opId !== 99) values.push(a.value);
      h.shard.turn(1004 + t);
    }
    expect(values.length).toBe(reads);
    expect(values.every((v) => v === "aaaa")).toBe(true);
  });

  test("the completion backlog is bounded by opsMax: a requester with more ops in flight breaks an invariant", () => {
    const opsMax = 8;
    const h = harness({ frameBytesMax: 4096, completionRingBytes: ringCapacityBytesMin, opsMax, members: [0] });
    const ringHolds = Math.floor(ringCapacityBytesMin / ringRecordFootprintBytes(opCompletionBytes(0)));
    for (let i = 0; i < ringHolds + opsMax + 1; i++) h.requests.push(i + 1, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.commit();
    expect(() => h.shard.turn(1002)).toThrow(/completion backlog/);
  });

  test("received frames are decoded and stepped at the turn's time; the answers go back in the same turn", () => {
    const h = harness({ frameBytesMax: 4096 });
    const builder = new FrameBuilder({
      clusterId,
      sender: 1,
      peer: 0,
      shardIndex: 0,
      frameBytesMax: 4096,
      keyBytesMax,
      valueBytesMax,
    });
    builder.senderEpoch = 1;
    appendText(builder, 0, MsgKind.Inv, "x", 5, 1, 1, false, encoder.encode("hello"));
    h.transport.incoming.push({ from: 1, frame: builder.finish().slice() });
    expect(h.shard.turn(1002)).toBe(1);
    const replies = decodeAll(h.transport.sent.map((s) => s.frame)).flat();
    expect(replies).toEqual([{ kind: MsgKind.Ack, key: "x", value: null }]);
    expect(h.shard.replica.inspect("x")?.version).toBe(5);
  });

  test("a frame claiming to come from this node is dropped and counted, never stepped", () => {
    const h = harness({ frameBytesMax: 4096 });
    const builder = new FrameBuilder({
      clusterId,
      sender: 0,
      peer: 0,
      shardIndex: 0,
      frameBytesMax: 4096,
      keyBytesMax,
      valueBytesMax,
    });
    builder.senderEpoch = 1;
    appendText(builder, 0, MsgKind.Inv, "x", 5, 0, 1, false, encoder.encode("forged"));
    h.transport.incoming.push({ from: 0, frame: builder.finish().slice() });
    expect(h.shard.turn(1002)).toBe(1);
    expect(h.shard.decoder.stats.droppedBadSender).toBe(1);
    expect(h.shard.replica.inspect("x")).toBeUndefined();
    expect(h.transport.sent).toEqual([]);
  });

  test("control calls use the injected clock", () => {
    const h = harness({ frameBytesMax: 4096, members: [0] });
    // The harness granted a lease of 60 s from its clock's 1000 ms, not from the real clock.
    expect(h.shard.replica.leaseValid(1000 + 59_999)).toBe(true);
    expect(h.shard.replica.leaseValid(1000 + 60_000)).toBe(false);
  });

  test("stats are plain numbers", () => {
    const h = harness({ frameBytesMax: 4096 });
    const stats = h.shard.stats({ node: null, cpu: null, pinned: false });
    for (const group of [stats.transport, stats.wire, stats.counters])
      for (const value of Object.values(group)) expect(typeof value).toBe("number");
    expect(stats.wire.framesDropped).toBe(0);
    expect(stats.transport.framesSent).toBe(0);
  });
});

describe("client ops of the shard's own HTTP server (submitLocal)", () => {
  test("a read of a Valid key is answered at once, without a promise", () => {
    const h = harness({ frameBytesMax: 4096, members: [0] });
    const result = h.shard.submitLocal(OpKind.Read, "k", null, 0, 0, 0, 1002);
    expect(result instanceof Promise).toBe(false);
    expect(result).toEqual({ status: OpStatus.Ok, value: null, version: 0, writer: 0 });
    expect(h.shard.clientOps.inFlight).toBe(0);
  });

  test("a local read's answer keeps its bytes when the key is overwritten in place later", () => {
    const h = harness({ frameBytesMax: 4096, members: [0] });
    h.shard.submitLocal(OpKind.Write, "k", encoder.encode("aaaa"), 0, 0, 0, 1002);
    const read = h.shard.submitLocal(OpKind.Read, "k", null, 0, 0, 0, 1002);
    expect(read instanceof Promise).toBe(false);
    // Same size: the replica writes it into the slot the read's value was lent from.
    h.shard.submitLocal(OpKind.Write, "k", encoder.encode("bbbb"), 0, 0, 0, 1002);
    expect(h.shard.replica.inspect("k")!.value).toEqual(encoder.encode("bbbb"));
    expect((read as { value: Uint8Array | null }).value).toEqual(encoder.encode("aaaa"));
  });

  test("a write waits for its peers: a promise, its INV sent by the next turn, answered when the ACK arrives", async () => {
    const h = harness({ frameBytesMax: 4096 });
    const result = h.shard.submitLocal(OpKind.Write, "k", encoder.encode("v"), 0, 0, 0, 1002);
    expect(result instanceof Promise).toBe(true);
    h.shard.turn(1002);
    const [inv] = decodeAll(h.transport.sent.map((s) => s.frame)).flat();
    expect(inv).toEqual({ kind: MsgKind.Inv, key: "k", value: "v" });
    const version = h.shard.replica.inspect("k")!.pendingVersion;
    const ack = new FrameBuilder({
      clusterId,
      sender: 1,
      peer: 0,
      shardIndex: 0,
      frameBytesMax: 4096,
      keyBytesMax,
      valueBytesMax,
    });
    ack.senderEpoch = 1;
    appendText(ack, 0, MsgKind.Ack, "k", version, 0, 1, false, null);
    h.transport.incoming.push({ from: 1, frame: ack.finish().slice() });
    h.shard.turn(1003);
    expect(await result).toEqual({ status: OpStatus.Ok, value: null, version, writer: 0 });
    expect(h.shard.clientOps.inFlight).toBe(0);
  });

  test("Busy, at once and with nothing started, when the shard holds opsInFlightMax client ops", () => {
    const h = harness({ frameBytesMax: 4096, opsMax: 2 });
    h.shard.submitLocal(OpKind.Write, "a", encoder.encode("1"), 0, 0, 0, 1002);
    h.shard.submitLocal(OpKind.Write, "b", encoder.encode("2"), 0, 0, 0, 1002);
    expect(h.shard.submitLocal(OpKind.Write, "c", encoder.encode("3"), 0, 0, 0, 1002)).toEqual({
      status: OpStatus.Busy,
      value: null,
      version: 0,
      writer: 0,
    });
    expect(h.shard.replica.inspect("c")).toBeUndefined();
  });

  test("an op that finds the node board ahead of its replica (a view or a join's end not yet applied) waits for it instead of a spurious Unavailable", async () => {
    const h = harness({ frameBytesMax: 4096, members: [0] });
    // The main thread has published epoch 2 on the board; its membership message is still on its way.
    h.board.setView(2, [0]);
    const local = h.shard.submitLocal(OpKind.Read, "k", null, 0, 0, 0, 1002);
    h.requests.push(7, OpKind.Read, "k", null, 0, 0, 0);
    h.requests.commit();
    h.shard.turn(1002);
    expect(local instanceof Promise).toBe(true);
    expect(h.readAnswers()).toEqual([]);
    h.shard.setMembership(2, [{ id: 0, address: "peer-0" }]);
    expect(await local).toEqual({ status: OpStatus.Ok, value: null, version: 0, writer: 0 });
    expect(h.readAnswers()).toEqual([{ opId: 7, status: OpStatus.Ok, value: null }]);
    // Likewise a join's end: the board says joined, the replica still joins.
    h.shard.replica.beginJoin();
    const joining = h.shard.submitLocal(OpKind.Read, "k", null, 0, 0, 0, 1003);
    expect(joining instanceof Promise).toBe(true);
    h.shard.finishJoin();
    expect((await joining).status).toBe(OpStatus.Ok);
  });
});

describe("a batch's ops through the worker backend (WorkerBackend.submitEach)", () => {
  /** A single-member shard serving at the real clock (the backend reads monotonicMs), and its backend. */
  function serving(): { h: Harness; backend: WorkerBackend } {
    const h = harness({ frameBytesMax: 4096, members: [0] });
    h.shard.setLease(Number.MAX_SAFE_INTEGER);
    h.board.setLeaseUntil(Number.MAX_SAFE_INTEGER);
    return { h, backend: new WorkerBackend(h.shard, new ControlClient(() => {})) };
  }

  function submitted(backend: WorkerBackend, ops: OpRequest[]): (OpResult | Promise<OpResult>)[] {
    const into: (OpResult | Promise<OpResult>)[] = [];
    backend.submitEach(ops, into);
    return into;
  }

  test("keys given as bytes inside a larger buffer name the same keys as their strings", () => {
    const { h, backend } = serving();
    // "ab" at bytes 2-3 and "a" at byte 2: the bytes around them must not be read as part of a key.
    const body = encoder.encode("xxabyy");
    const bytes = { keyBytes: body, keyAt: 2, keyLength: 2 };
    const writes = submitted(backend, [
      { kind: OpKind.Write, key: "ab", ...bytes, value: encoder.encode("by-bytes") },
      { kind: OpKind.Write, key: "ba", value: encoder.encode("by-string") },
    ]);
    expect(writes.map((r) => (r as OpResult).status)).toEqual([OpStatus.Ok, OpStatus.Ok]);
    const reads = submitted(backend, [
      { kind: OpKind.Read, key: "ab" },
      { kind: OpKind.Read, key: "ab", ...bytes },
      { kind: OpKind.Read, key: "a", keyBytes: body, keyAt: 2, keyLength: 1 },
      { kind: OpKind.Read, key: "ba", keyBytes: encoder.encode("ba"), keyAt: 0, keyLength: 2 },
    ]);
    expect(reads.some((r) => r instanceof Promise)).toBe(false);
    expect(reads.map((r) => (r as OpResult).value)).toEqual([
      encoder.encode("by-bytes"),
      encoder.encode("by-bytes"),
      null,
      encoder.encode("by-string"),
    ]);
    expect(h.shard.replica.inspect("xxab")).toBeUndefined();
    expect(h.shard.replica.inspect("a")).toBeUndefined();
  });

  test("an op with key bytes that finds the board ahead of its replica waits, then runs on its key", async () => {
    const { h, backend } = serving();
    submitted(backend, [{ kind: OpKind.Write, key: "k", value: encoder.encode("held") }]);
    h.board.setView(2, [0]);
    const body = encoder.encode("-k-");
    const [held] = submitted(backend, [{ kind: OpKind.Read, key: "k", keyBytes: body, keyAt: 1, keyLength: 1 }]);
    expect(held instanceof Promise).toBe(true);
    h.shard.setMembership(2, [{ id: 0, address: "peer-0" }]);
    expect((await held!).value).toEqual(encoder.encode("held"));
  });

  test("a batch longer than one clock reading's share (64 ops) answers every op, each on its own key", () => {
    const { backend } = serving();
    const count = 150;
    const writes = submitted(
      backend,
      Array.from({ length: count }, (_, i) => ({ kind: OpKind.Write, key: `w${i}`, value: encoder.encode(`v${i}`) })),
    );
    expect(writes.map((r) => (r as OpResult).status)).toEqual(Array(count).fill(OpStatus.Ok));
    const reads = submitted(
      backend,
      Array.from({ length: count }, (_, i) => {
        const keyBytes = encoder.encode(`w${i}`);
        return { kind: OpKind.Read, key: `w${i}`, keyBytes, keyAt: 0, keyLength: keyBytes.length };
      }),
    );
    expect(reads.map((r) => new TextDecoder().decode((r as OpResult).value!))).toEqual(
      Array.from({ length: count }, (_, i) => `v${i}`),
    );
  });

  test("a node that does not serve answers every op of the batch Unavailable, with nothing started", () => {
    const { h, backend } = serving();
    backend.stopServing();
    const results = submitted(backend, [
      { kind: OpKind.Write, key: "w", value: encoder.encode("never") },
      { kind: OpKind.Read, key: "r", keyBytes: encoder.encode("r"), keyAt: 0, keyLength: 1 },
    ]);
    expect(results.map((r) => (r as OpResult).status)).toEqual([OpStatus.Unavailable, OpStatus.Unavailable]);
    expect(h.shard.replica.inspect("w")).toBeUndefined();
    expect(h.shard.clientOps.inFlight).toBe(0);
  });
});
