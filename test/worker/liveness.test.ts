// The shard's transport liveness (src/worker/shard.ts), driven by hand with a fake transport and
// an injected clock: heartbeats (an empty frame to a member that got nothing for heartbeatMs, none
// when liveness is off), the per-peer "last heard" and "last heard fresh" times shared with the node
// (fresh: sent at our epoch or later, so not a stale frame from before a view change), heartbeats
// to a candidate (probe) only while we hear it freshly, and redialling a silent link.

import { describe, expect, test } from "bun:test";
import { nodeIdMax, type NodeId } from "../../src/base/ids.ts";
import { defaultReplicaConfig } from "../../src/core/types.ts";
import { createNodeBoard } from "../../src/worker/node-board.ts";
import type { FrameHandler, Transport, TransportStats } from "../../src/transport/transport.ts";
import { FrameBuilder } from "../../src/wire/frame-builder.ts";
import { FrameDecoder } from "../../src/wire/frame-decoder.ts";
import { lastFreshSlot, livenessSlots, type ShardInit } from "../../src/worker/messages.ts";
import { Shard } from "../../src/worker/shard.ts";

const clusterId = 7;
const heartbeatMs = 100;

class FakeTransport implements Transport {
  readonly kind = "sim" as const;
  readonly address = "fake";
  readonly frameBytesMax = 4096;
  readonly sent: { to: NodeId; messages: number; epoch: number }[] = [];
  readonly dials: NodeId[] = [];
  readonly connected = new Set<NodeId>();
  readonly incoming: { from: NodeId; frame: Uint8Array }[] = [];
  readonly #decoder = new FrameDecoder({
    clusterId,
    shardIndex: 0,
    frameBytesMax: 4096,
    keyBytesMax: 8,
    valueBytesMax: 16,
  });
  connect(peer: NodeId): void {
    if (!this.connected.has(peer)) this.dials.push(peer);
    this.connected.add(peer);
  }
  disconnect(peer: NodeId): void {
    this.connected.delete(peer);
  }
  send(peer: NodeId, frame: Uint8Array): boolean {
    const messages = this.#decoder.decode(frame, () => {});
    this.sent.push({ to: peer, messages, epoch: this.#decoder.frameEpoch });
    return true;
  }
  flush(): void {}
  poll(handler: FrameHandler): number {
    const frames = this.incoming.splice(0);
    for (const f of frames) handler(f.from, f.frame);
    return frames.length;
  }
  whenReadable(): Promise<void> {
    return Promise.resolve();
  }
  stats(): TransportStats {
    return { framesSent: 0, framesReceived: 0, bytesSent: 0, bytesReceived: 0, sendsRefused: 0, framesDropped: 0 };
  }
  close(): void {}
}

/** An empty frame from `from` to node 0 carrying `epoch` (what a peer's heartbeat looks like). */
function heartbeatFrom(from: NodeId, epoch: number): Uint8Array {
  const b = new FrameBuilder({
    clusterId,
    sender: from,
    peer: 0,
    shardIndex: 0,
    frameBytesMax: 4096,
    keyBytesMax: 8,
    valueBytesMax: 16,
  });
  b.senderEpoch = epoch;
  return b.finish().slice();
}

function harness(liveness: boolean) {
  const shared = new SharedArrayBuffer(8 * livenessSlots);
  const init: ShardInit = {
    type: "init",
    nodeId: 0,
    shardIndex: 0,
    clusterId,
    transport: { kind: "sim", host: "", port: 0, frameBytesMax: 4096 },
    replica: { ...defaultReplicaConfig, self: 0, valueBytesMax: 16, opsMax: 64 },
    keyBytesMax: 8,
    board: createNodeBoard(1),
    opsInFlightMax: 64,
    numaNode: -1,
    bench: null,
    ...(liveness ? { liveness: { heartbeatMs, lastHeard: shared } } : {}),
  };
  const transport = new FakeTransport();
  const clock = { now: 1000 };
  const shard = new Shard(init, transport, { clock: () => clock.now });
  const heard = new BigInt64Array(shared);
  return {
    shard,
    transport,
    clock,
    /** Runs turns every 5 ms up to `untilMs`. */
    runUntil(untilMs: number): void {
      while (clock.now < untilMs) {
        clock.now += 5;
        shard.turn(clock.now);
      }
    },
    heardMs: (id: NodeId) => Number(Atomics.load(heard, id)),
    freshMs: (id: NodeId) => Number(Atomics.load(heard, lastFreshSlot + id)),
  };
}

describe("shard liveness", () => {
  test("an idle shard sends every member an empty frame each heartbeatMs; none without liveness", () => {
    const h = harness(true);
    h.shard.setMembership(5, [
      { id: 0, address: "a0" },
      { id: 1, address: "a1" },
      { id: 2, address: "a2" },
    ]);
    h.runUntil(2000);
    const to1 = h.transport.sent.filter((s) => s.to === 1);
    expect(to1.length).toBeGreaterThanOrEqual(9);
    expect(to1.length).toBeLessThanOrEqual(11);
    expect(to1.every((s) => s.messages === 0 && s.epoch === 5)).toBe(true);
    expect(h.transport.sent.filter((s) => s.to === 2).length).toBe(to1.length);
    expect(h.shard.stats({ node: null, cpu: null, pinned: false }).counters.heartbeatsSent).toBe(
      h.transport.sent.length,
    );

    const off = harness(false);
    off.shard.setMembership(5, [
      { id: 0, address: "a0" },
      { id: 1, address: "a1" },
    ]);
    off.runUntil(2000);
    expect(off.transport.sent).toEqual([]);
  });

  test("when each peer was last heard, and heard fresh (at our epoch or later), is shared with the node", () => {
    const h = harness(true);
    h.shard.setMembership(5, [
      { id: 0, address: "a0" },
      { id: 1, address: "a1" },
      { id: 2, address: "a2" },
    ]);
    expect([h.heardMs(1), h.freshMs(1)]).toEqual([0, 0]);
    h.transport.incoming.push({ from: 1, frame: heartbeatFrom(1, 5) }, { from: 2, frame: heartbeatFrom(2, 4) });
    h.runUntil(1100);
    expect(h.heardMs(1)).toBe(1005);
    expect(h.freshMs(1)).toBe(1005);
    // Node 2's frame carries an older epoch: heard (it reaches us), but not fresh.
    expect(h.heardMs(2)).toBe(1005);
    expect(h.freshMs(2)).toBe(0);
    expect(h.heardMs(nodeIdMax)).toBe(0);
  });

  test("a candidate (probe) gets heartbeats only while we hear it freshly", () => {
    const h = harness(true);
    h.shard.setMembership(5, [
      { id: 0, address: "a0" },
      { id: 1, address: "a1" },
    ]);
    h.shard.setProbes([{ id: 3, address: "a3" }]);
    expect(h.transport.connected.has(3)).toBe(true);
    h.runUntil(1500);
    expect(h.transport.sent.filter((s) => s.to === 3)).toEqual([]);
    // Stale bytes (an epoch before ours) do not count.
    h.transport.incoming.push({ from: 3, frame: heartbeatFrom(3, 4) });
    h.runUntil(1800);
    expect(h.transport.sent.filter((s) => s.to === 3)).toEqual([]);
    h.transport.incoming.push({ from: 3, frame: heartbeatFrom(3, 5) });
    h.runUntil(2000);
    expect(h.transport.sent.filter((s) => s.to === 3).length).toBeGreaterThan(0);
    // Silent again for longer than the echo window: no more.
    h.runUntil(2500);
    const sent = h.transport.sent.filter((s) => s.to === 3).length;
    h.runUntil(3000);
    expect(h.transport.sent.filter((s) => s.to === 3).length).toBe(sent);
    // A probe that leaves is disconnected; a member that becomes a probe keeps its link.
    h.shard.setProbes([{ id: 1, address: "a1" }]);
    expect(h.transport.connected.has(3)).toBe(false);
    h.shard.setMembership(6, [{ id: 0, address: "a0" }]);
    expect(h.transport.connected.has(1)).toBe(true);
    h.shard.setProbes([]);
    expect(h.transport.connected.has(1)).toBe(false);
  });

  test("a link silent for 10 heartbeats is dialled again, then after twice as long, up to 30; hearing resets it", () => {
    const h = harness(true);
    h.shard.setMembership(5, [
      { id: 0, address: "a0" },
      { id: 1, address: "a1" },
    ]);
    expect(h.transport.dials).toEqual([1]);
    h.runUntil(1000 + 10 * heartbeatMs - 10);
    expect(h.transport.dials).toEqual([1]);
    h.runUntil(1000 + 10 * heartbeatMs + 50);
    expect(h.transport.dials).toEqual([1, 1]);
    h.runUntil(1000 + 30 * heartbeatMs + 50); // +2 s: the second redial
    expect(h.transport.dials.length).toBe(3);
    h.runUntil(1000 + 60 * heartbeatMs + 50); // +3 s: capped at 30 heartbeats
    expect(h.transport.dials.length).toBe(4);
    h.transport.incoming.push({ from: 1, frame: heartbeatFrom(1, 5) });
    const heardAt = h.clock.now + 5;
    h.runUntil(heardAt + 10 * heartbeatMs + 50); // back to 10 heartbeats
    expect(h.transport.dials.length).toBe(5);
    expect(h.shard.stats({ node: null, cpu: null, pinned: false }).counters.redials).toBe(4);
  });
});
