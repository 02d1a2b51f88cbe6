// What a replayed frame can do (src/wire/frame-mac.ts, README "Running securely"), shown with real
// parts: three shards (the real loop, codec and replica) of nodes 0, 1 and 2 with a cluster key, over
// real TCP transports on 127.0.0.1. Every frame a shard receives is captured as it came off the
// socket. After a recorded client load, an attacker replays every captured frame over a real TCP
// connection (claiming the original sender in the hello):
// - to its own receiver, in the same epoch: the frames verify (they are genuine), and change nothing:
//   every key keeps its value and timestamp and stays Valid, and no op is started or answered;
// - to another receiver: dropped, counted as bad MACs (the receiver is bound in the link key);
// - after an epoch change, to its own receiver again: INV, ACK and Reject are dropped by the core as
//   stale; a VAL carries no epoch, and validates only a key at its exact timestamp, which these are.
// More client ops follow, and the whole history is linearizable. The same shards over UDP carry a
// load on tagged frames alone (UDP sources cannot be spoofed from a test, so no replay there).

import { afterAll, expect, test } from "bun:test";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../../src/base/cluster-key.ts";
import type { NodeId } from "../../src/base/ids.ts";
import { OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { OpResult } from "../../src/base/kv-backend.ts";
import { monotonicMs } from "../../src/base/clock.ts";
import { defaultReplicaConfig, KeyState } from "../../src/core/types.ts";
import { TcpTransport } from "../../src/transport/tcp.ts";
import { UdpTransport } from "../../src/transport/udp.ts";
import type { FrameHandler, Transport } from "../../src/transport/transport.ts";
import type { ShardInit } from "../../src/worker/messages.ts";
import { createNodeBoard } from "../../src/worker/node-board.ts";
import { Shard } from "../../src/worker/shard.ts";
import { HistoryRecorder } from "../lib/history.ts";
import { checkLinearizable, formatLinResult } from "../lib/linearizability.ts";
import { prng, testSeed } from "../lib/prng.ts";
import { injectTcpFrames } from "../lib/tcp-inject.ts";

const seed = testSeed(0x4e9_1a7);
const clusterId = 0x7e57;
const frameBytesMax = 60 * 1024;
const keys = ["r0", "r1", "r2", "r3"];
const clientsPerNode = 2;
const opsPerClient = 60;
/** Frames per attacker connection: well under the receive queue, so the transport drops none. */
const replayBatchFrames = 256;
const frameKey = deriveClusterKey(generateClusterKey(), clusterKeyLabel.frameMac);

interface Captured {
  from: NodeId;
  frame: Uint8Array;
}

/** The real transport, with a copy of every frame handed to the shard (as it came off the socket). */
class CapturingTransport implements Transport {
  readonly captured: Captured[] = [];
  capturing = true;
  constructor(readonly inner: Transport) {}
  get kind() {
    return this.inner.kind;
  }
  get address() {
    return this.inner.address;
  }
  get frameBytesMax() {
    return this.inner.frameBytesMax;
  }
  connect(peer: NodeId, address: string): void {
    this.inner.connect(peer, address);
  }
  disconnect(peer: NodeId): void {
    this.inner.disconnect(peer);
  }
  send(peer: NodeId, frame: Uint8Array): boolean {
    return this.inner.send(peer, frame);
  }
  flush(): void {
    this.inner.flush();
  }
  poll(handler: FrameHandler): number {
    return this.inner.poll((from, frame) => {
      if (this.capturing) this.captured.push({ from, frame: frame.slice() });
      handler(from, frame);
    });
  }
  whenReadable(): Promise<void> {
    return this.inner.whenReadable();
  }
  stats() {
    return this.inner.stats();
  }
  close(): void {
    this.inner.close();
  }
}

/** The nodes of the running test (the tests run one after the other). */
let shards: Shard[] = [];
let transports: CapturingTransport[] = [];
const allShards: Shard[] = [];
const allTransports: Transport[] = [];
const loops: Promise<void>[] = [];
afterAll(async () => {
  for (const s of allShards) if (!s.stopped) s.stop();
  await Promise.allSettled(loops);
  for (const t of allTransports) t.close();
});

async function startNodes(kind: "tcp" | "udp"): Promise<void> {
  shards = [];
  transports = [];
  for (let id = 0; id < 3; id++) {
    const options = { host: "127.0.0.1", port: 0, self: id, frameBytesMax };
    const inner = kind === "tcp" ? await TcpTransport.open(options) : await UdpTransport.open(options);
    allTransports.push(inner);
    transports.push(new CapturingTransport(inner));
  }
  const members = transports.map((t, id) => ({ id, address: t.address }));
  for (let id = 0; id < 3; id++) {
    const init: ShardInit = {
      type: "init",
      nodeId: id,
      shardIndex: 0,
      clusterId,
      transport: { kind, host: "127.0.0.1", port: 0, frameBytesMax },
      replica: { ...defaultReplicaConfig, self: id, valueBytesMax: 256, opsMax: 1024 },
      keyBytesMax: 64,
      board: createNodeBoard(1),
      opsInFlightMax: 256,
      numaNode: -1,
      bench: null,
      frameKey,
    };
    const shard = new Shard(init, transports[id]!);
    shard.setMembership(1, members);
    shard.setLease(monotonicMs() + 10 * 60_000);
    shards.push(shard);
    allShards.push(shard);
    loops.push(shard.run());
  }
}

const decoder = new TextDecoder();

/** Closed-loop clients on every node: reads and writes of unique values, recorded. */
async function runClients(history: HistoryRecorder, clientBase: number, tag: string): Promise<number> {
  let ok = 0;
  const clients: Promise<void>[] = [];
  for (let node = 0; node < 3; node++) {
    for (let c = 0; c < clientsPerNode; c++) {
      const client = clientBase + node * clientsPerNode + c;
      const random = prng(seed ^ Math.imul(client + 1, 0x9e3779b1));
      clients.push(
        (async () => {
          for (let i = 0; i < opsPerClient; i++) {
            const key = keys[Math.floor(random() * keys.length)]!;
            const write = random() < 0.5;
            const value = `${tag}-c${client}-${i}`;
            const id = history.invoke(client, key, write ? { type: "write", value } : { type: "read" });
            const result: OpResult = await shards[node]!.submitLocal(
              write ? OpKind.Write : OpKind.Read,
              key,
              write ? new TextEncoder().encode(value) : null,
              0,
              0,
              0,
              monotonicMs(),
            );
            if (result.status !== OpStatus.Ok) {
              history.unknown(id);
              continue;
            }
            ok++;
            history.ok(
              id,
              write
                ? { type: "write" }
                : { type: "read", value: result.value === null ? null : decoder.decode(result.value) },
            );
          }
        })(),
      );
    }
  }
  await Promise.all(clients);
  return ok;
}

/** Every key's state on every node, as text. */
function state(): string[] {
  const rows: string[] = [];
  for (const shard of shards) {
    for (const key of keys) {
      const v = shard.replica.inspect(key);
      rows.push(
        v === undefined
          ? `${shard.init.nodeId} ${key} absent`
          : `${shard.init.nodeId} ${key} state=${v.state} ts=${v.version}.${v.writer} value=${v.value === null ? "null" : decoder.decode(v.value)} pending=${v.hasPending}`,
      );
    }
  }
  return rows;
}

function wire(node: number) {
  return shards[node]!.decoder.stats;
}

/** Replays `frames` to `to` over real TCP connections, and waits until its decoder has seen them all. */
async function replay(to: number, frames: Captured[]): Promise<void> {
  const stats = wire(to);
  const seenBefore = stats.framesAccepted + stats.framesDropped;
  for (const from of [0, 1, 2]) {
    const mine = frames.filter((f) => f.from === from).map((f) => f.frame);
    for (let i = 0; i < mine.length; i += replayBatchFrames)
      await injectTcpFrames(
        Number(transports[to]!.address.split(":")[1]),
        from,
        to,
        mine.slice(i, i + replayBatchFrames),
      );
  }
  const deadline = performance.now() + 20_000;
  while (stats.framesAccepted + stats.framesDropped < seenBefore + frames.length) {
    if (performance.now() > deadline) throw new Error(`node ${to} did not take the replayed frames`);
    await Bun.sleep(20);
  }
}

/** Lets the cluster finish whatever the replay set off (ACKs back to coordinators). */
async function settle(): Promise<void> {
  await Bun.sleep(300);
}

test(`replayed captured frames change nothing: same receiver, another receiver, a later epoch (seed ${seed})`, async () => {
  await startNodes("tcp");
  const history = new HistoryRecorder();
  expect(await runClients(history, 0, "before")).toBeGreaterThan(0);
  await settle();
  for (const t of transports) t.capturing = false;
  const captured = transports.map((t) => t.captured.slice());
  // The load made real traffic: frames from both peers at every node.
  for (let to = 0; to < 3; to++)
    for (const from of [0, 1, 2].filter((f) => f !== to))
      expect(captured[to]!.filter((c) => c.from === from).length).toBeGreaterThan(0);
  const before = state();
  expect(before.every((row) => row.includes(`state=${KeyState.Valid}`) && row.includes("pending=false"))).toBe(true);
  // What only a live update moves: commits, INVs sent, replays of others' updates.
  const updateCounters = () =>
    shards.map((s) => {
      const c = s.replica.counters;
      return { committed: c.updatesCommitted, invsSent: c.invsSent, replays: c.replaysStarted };
    });
  const updatesBefore = updateCounters();

  // 1. To its own receiver, same epoch: genuine frames, accepted, and nothing changes.
  for (let to = 0; to < 3; to++) {
    const accepted = wire(to).framesAccepted;
    await replay(to, captured[to]!);
    expect(wire(to).framesAccepted).toBe(accepted + captured[to]!.length);
  }
  await settle();
  expect(state()).toEqual(before);
  // No update was started or finished by the replays (the clients are idle).
  expect(shards.map((s) => s.replica.opsInFlight)).toEqual([0, 0, 0]);
  expect(shards.map((s) => s.clientOps.inFlight)).toEqual([0, 0, 0]);

  // 2. To another receiver: the link key binds the receiver, so none verifies.
  for (let to = 0; to < 3; to++) {
    const other = (to + 1) % 3;
    const foreign = captured[other]!.filter((c) => c.from !== to);
    const badMac = wire(to).droppedBadMac;
    await replay(to, foreign);
    expect(wire(to).droppedBadMac).toBe(badMac + foreign.length);
  }
  await settle();
  expect(state()).toEqual(before);

  // 3. After an epoch change (same members), to the same receiver: stale, dropped by the core.
  const members = transports.map((t, id) => ({ id, address: t.address }));
  for (const shard of shards) shard.setMembership(2, members);
  await settle();
  const afterEpoch = state();
  const stale = shards.map((s) => s.replica.counters.staleEpochMessages);
  for (let to = 0; to < 3; to++) await replay(to, captured[to]!);
  await settle();
  expect(state()).toEqual(afterEpoch);
  for (let to = 0; to < 3; to++) expect(shards[to]!.replica.counters.staleEpochMessages).toBeGreaterThan(stale[to]!);
  // Through all three replays, no update was committed, started or replayed.
  expect(updateCounters()).toEqual(updatesBefore);

  // The cluster still works, and the whole history is linearizable.
  expect(await runClients(history, 100, "after")).toBeGreaterThan(0);
  const result = checkLinearizable(history.ops());
  expect(result.ok, formatLinResult(result)).toBe(true);
  for (const shard of shards) shard.stop();
}, 120_000);

test(`a keyed cluster over UDP: every frame of the load verified, none dropped, linearizable (seed ${seed})`, async () => {
  await startNodes("udp");
  const history = new HistoryRecorder();
  expect(await runClients(history, 0, "udp")).toBeGreaterThan(0);
  await settle();
  for (let node = 0; node < 3; node++) {
    const stats = wire(node);
    expect(stats.framesAccepted).toBeGreaterThan(0);
    expect(stats.framesAccepted).toBe(transports[node]!.captured.length);
    expect(stats.framesDropped).toBe(0);
  }
  const result = checkLinearizable(history.ops());
  expect(result.ok, formatLinResult(result)).toBe(true);
  for (const shard of shards) shard.stop();
}, 120_000);
