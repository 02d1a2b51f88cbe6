// The shard loop with a real write-ahead log (src/worker/shard-journal.ts) on real files: driven by
// hand as in shard.test.ts, with a transport that records, for every frame it is handed, whether
// the log still held anything not yet on disk at that moment.
//
// Asserted:
// - fsync: a turn of many writes is one fdatasync (group commit), and it happens before the turn's
//   first frame leaves; an INV adopted from a peer is on disk before the frame carrying its ACK;
// - a member alone answers a write only once it is on disk;
// - async: frames leave without an fdatasync (the log written to the kernel first), the log is
//   synced once the interval has passed;
// - what was written comes back after a restart on the same dir (recovered, committed keys Valid);
// - a full disk (a tmpfs of 64 KiB made by the test): the log fails, the shard sends no frame any
//   more, refuses updates (Unavailable, nothing written), still answers reads, and puts the errno on
//   the node board.

import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NodeId } from "../../src/base/ids.ts";
import { MsgKind, OpKind, OpStatus } from "../../src/base/kinds.ts";
import type { DurabilityOptions } from "../../src/base/durability.ts";
import { defaultReplicaConfig } from "../../src/core/types.ts";
import type { FrameHandler, Transport, TransportStats } from "../../src/transport/transport.ts";
import { FrameBuilder } from "../../src/wire/frame-builder.ts";
import { FrameDecoder } from "../../src/wire/frame-decoder.ts";
import type { ShardInit } from "../../src/worker/messages.ts";
import { createNodeBoard, NodeBoard } from "../../src/worker/node-board.ts";
import { Shard } from "../../src/worker/shard.ts";
import { recoverAndOpen } from "../../src/worker/shard-durability.ts";
import type { ShardJournal } from "../../src/worker/shard-journal.ts";
import { appendText, textHandler } from "../lib/key-bytes.ts";

const clusterId = 9;
const keyBytesMax = 16;
const valueBytesMax = 64;
const frameBytesMax = 4096;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "hermes-shard-journal-"));
  dirs.push(dir);
  return dir;
}

/** Records each frame handed over, and whether the journal had unsynced records at that moment. */
class RecordingTransport implements Transport {
  readonly kind = "sim" as const;
  readonly address = "fake";
  readonly frameBytesMax = frameBytesMax;
  readonly sent: { to: NodeId; frame: Uint8Array; syncsBefore: number; bufferedBefore: number }[] = [];
  readonly incoming: { from: NodeId; frame: Uint8Array }[] = [];
  journal: ShardJournal | null = null;
  connect(): void {}
  disconnect(): void {}
  send(peer: NodeId, frame: Uint8Array): boolean {
    const log = this.journal?.log;
    this.sent.push({
      to: peer,
      frame: frame.slice(),
      syncsBefore: log?.stats.syncs ?? 0,
      bufferedBefore: log?.bufferedBytes ?? 0,
    });
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

interface Harness {
  shard: Shard;
  transport: RecordingTransport;
  journal: ShardJournal;
  board: NodeBoard;
  recoveredKeys: number;
  now: { ms: number };
}

function durability(dataDir: string, mode: DurabilityOptions["mode"], fsyncIntervalMs = 100): DurabilityOptions {
  return {
    mode,
    dataDir,
    fsyncIntervalMs,
    snapshotIntervalMs: 0,
    snapshotLogBytesMax: 1 << 30,
    snapshotStepBytes: 64 * 1024,
  };
}

/** A shard of node 0 recovered from `options.dataDir`, a member of `members` with a long lease. */
function harness(options: DurabilityOptions, members: NodeId[]): Harness {
  const init: ShardInit = {
    type: "init",
    nodeId: 0,
    shardIndex: 0,
    clusterId,
    transport: { kind: "sim", host: "", port: 0, frameBytesMax },
    replica: { ...defaultReplicaConfig, self: 0, valueBytesMax },
    keyBytesMax,
    board: createNodeBoard(1),
    opsInFlightMax: 1024,
    numaNode: -1,
    bench: null,
    durability: options,
  };
  const transport = new RecordingTransport();
  const now = { ms: 1000 };
  const shard = new Shard(init, transport, { clock: () => now.ms });
  const recovery = recoverAndOpen(shard.replica, 0, options, { keyBytesMax, valueBytesMax }, now.ms);
  shard.attachJournal(recovery.journal);
  transport.journal = recovery.journal;
  shard.finishJoin();
  shard.setMembership(
    1,
    members.map((id) => ({ id, address: `peer-${id}` })),
  );
  shard.setLease(now.ms + 600_000);
  const board = new NodeBoard(init.board, 0, "sim");
  board.setView(1, members);
  board.setLeaseUntil(now.ms + 600_000);
  board.setDurabilityMode(options.mode); // as the node does at start
  return { shard, transport, journal: recovery.journal, board, recoveredKeys: recovery.keys, now };
}

const encoder = new TextEncoder();
const text = new TextDecoder();

function messagesOf(frame: Uint8Array): { kind: MsgKind; key: string; version: number }[] {
  const decoder = new FrameDecoder({ clusterId, shardIndex: 0, frameBytesMax, keyBytesMax, valueBytesMax });
  const out: { kind: MsgKind; key: string; version: number }[] = [];
  decoder.decode(
    frame,
    textHandler((_from, kind, key, version) => {
      out.push({ kind, key, version });
    }),
  );
  return out;
}

/** A frame from peer `from` to node 0 with one message. */
function frameFrom(
  from: NodeId,
  kind: MsgKind,
  key: string,
  version: number,
  writer: NodeId,
  value: string | null,
): Uint8Array {
  const builder = new FrameBuilder({
    clusterId,
    sender: from,
    peer: 0,
    shardIndex: 0,
    frameBytesMax,
    keyBytesMax,
    valueBytesMax,
  });
  builder.senderEpoch = 1;
  expect(
    appendText(builder, 0, kind, key, version, writer, 1, false, value === null ? null : encoder.encode(value)),
  ).toBe(true);
  return builder.finish().slice();
}

/** Submit a local op and run a turn; the result if answered. */
async function submit(
  h: Harness,
  kind: OpKind,
  key: string,
  value: string | null,
): Promise<{ status: OpStatus; value: string | null } | null> {
  const result = h.shard.submitLocal(kind, key, value === null ? null : encoder.encode(value), 0, 0, 0, h.now.ms);
  h.now.ms += 1;
  h.shard.turn(h.now.ms);
  if (result instanceof Promise) {
    let answered: { status: OpStatus; value: string | null } | null = null;
    void result.then((r) => (answered = { status: r.status, value: r.value === null ? null : text.decode(r.value) }));
    await Promise.resolve();
    await Promise.resolve();
    return answered;
  }
  return { status: result.status, value: result.value === null ? null : text.decode(result.value) };
}

describe("shard journal (fsync)", () => {
  test("a turn of writes is one fdatasync, done before the turn's first frame leaves", () => {
    const h = harness(durability(tempDir(), "fsync"), [0, 1]);
    const writes = 20;
    for (let i = 0; i < writes; i++)
      h.shard.submitLocal(OpKind.Write, `k${i}`, encoder.encode(`value-${i}`), 0, 0, 0, h.now.ms);
    // Submitted, logged into the buffer, nothing sent and nothing synced yet.
    expect(h.transport.sent.length).toBe(0);
    expect(h.journal.log.stats.records).toBe(writes);
    const syncsBefore = h.journal.log.stats.syncs;
    h.now.ms += 1;
    h.shard.turn(h.now.ms);
    expect(h.transport.sent.length).toBeGreaterThan(0);
    expect(h.journal.log.stats.syncs).toBe(syncsBefore + 1);
    for (const s of h.transport.sent) {
      expect(s.bufferedBefore).toBe(0);
      expect(s.syncsBefore).toBe(syncsBefore + 1);
    }
    const invs = h.transport.sent.flatMap((s) => messagesOf(s.frame)).filter((m) => m.kind === MsgKind.Inv);
    expect(invs.length).toBe(writes);
  });

  test("an INV adopted from a peer is on disk before the frame with its ACK leaves", () => {
    const h = harness(durability(tempDir(), "fsync"), [0, 1]);
    const syncsBefore = h.journal.log.stats.syncs;
    h.transport.incoming.push({ from: 1, frame: frameFrom(1, MsgKind.Inv, "remote", 2, 1, "from-peer") });
    h.now.ms += 1;
    h.shard.turn(h.now.ms);
    const acks = h.transport.sent.filter((s) => messagesOf(s.frame).some((m) => m.kind === MsgKind.Ack));
    expect(acks.length).toBe(1);
    expect(acks[0]!.syncsBefore).toBe(syncsBefore + 1);
    expect(acks[0]!.bufferedBefore).toBe(0);
  });

  test("a member alone answers a write only once it is on disk; a restart on the dir recovers it Valid", async () => {
    const dir = tempDir();
    const h = harness(durability(dir, "fsync"), [0]);
    const syncsBefore = h.journal.log.stats.syncs;
    const answer = await submit(h, OpKind.Write, "solo", "kept");
    expect(answer?.status).toBe(OpStatus.Ok);
    // Synced during the answer; what is buffered since is the key's Valid record, which needs no sync.
    expect(h.journal.log.stats.syncs).toBe(syncsBefore + 1);
    expect(h.journal.log.stats.records).toBe(2);
    const deleted = await submit(h, OpKind.Delete, "gone", null);
    expect(deleted?.status).toBe(OpStatus.Ok);
    // No clean stop: the files are read as a crash left them.
    const again = harness(durability(dir, "fsync"), [0]);
    expect(again.recoveredKeys).toBe(2);
    expect(await submit(again, OpKind.Read, "solo", null)).toEqual({ status: OpStatus.Ok, value: "kept" });
    // The delete's Valid record was still in the buffer at the "crash": the key comes back Invalid
    // with its timestamp, and is replayed (alone, it commits at once) after the message-loss timeout.
    const read = again.shard.submitLocal(OpKind.Read, "gone", null, 0, 0, 0, again.now.ms);
    expect(read).toBeInstanceOf(Promise);
    again.now.ms += defaultReplicaConfig.mltMs + 1;
    again.shard.turn(again.now.ms);
    again.now.ms += 1;
    again.shard.turn(again.now.ms);
    const answer2 = await read;
    expect({ status: answer2.status, value: answer2.value }).toEqual({ status: OpStatus.Ok, value: null });
  });
});

describe("shard journal (async)", () => {
  test("frames leave without waiting for the disk; the log is synced once the interval has passed", () => {
    const h = harness(durability(tempDir(), "async", 50), [0, 1]);
    const syncsBefore = h.journal.log.stats.syncs;
    h.shard.submitLocal(OpKind.Write, "a", encoder.encode("1"), 0, 0, 0, h.now.ms);
    h.now.ms += 1;
    h.shard.turn(h.now.ms);
    expect(h.transport.sent.length).toBe(1);
    // The interval counts from the last sync (none yet: from time 0), so this turn synced once.
    const syncsAfterFirst = h.journal.log.stats.syncs;
    expect(syncsAfterFirst).toBe(syncsBefore + 1);
    const writesBefore = h.journal.log.stats.writes;
    h.shard.submitLocal(OpKind.Write, "b", encoder.encode("2"), 0, 0, 0, h.now.ms);
    h.now.ms += 1;
    h.shard.turn(h.now.ms);
    // Sent at once, not synced (within the interval), but written to the kernel first: a crash of
    // the process alone loses nothing.
    expect(h.transport.sent.length).toBe(2);
    expect(h.transport.sent[1]!.bufferedBefore).toBe(0);
    expect(h.journal.log.stats.writes).toBeGreaterThan(writesBefore);
    expect(h.journal.log.stats.syncs).toBe(syncsAfterFirst);
    h.now.ms += 60;
    h.shard.turn(h.now.ms);
    expect(h.journal.log.stats.syncs).toBe(syncsAfterFirst + 1);
  });
});

describe("shard snapshots", () => {
  test("taken by log size, a step per turn: the covered segments go, and a restart recovers every key from snapshot + log", async () => {
    const dir = tempDir();
    const options = { ...durability(dir, "fsync"), snapshotLogBytesMax: 8 * 1024, snapshotStepBytes: 1024 };
    const h = harness(options, [0]);
    const keys = 300;
    const values = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < keys; i++) {
        const value = `r${round}-v${i}`;
        expect((await submit(h, OpKind.Write, `key-${i}`, value))?.status).toBe(OpStatus.Ok);
        values.set(`key-${i}`, value);
      }
    }
    // A snapshot in progress when the writes stopped is finished by the turns that follow.
    for (let i = 0; i < 100; i++) {
      h.now.ms += 1;
      h.shard.turn(h.now.ms);
    }
    const stats = h.journal.stats();
    expect(stats.snapshots).toBeGreaterThanOrEqual(2);
    expect(stats.snapshotStepMsMax).toBeGreaterThan(0);
    const files = readdirSync(join(dir, "shard-0"));
    const snapshots = files.filter((f) => f.endsWith(".snap"));
    const segments = files.filter((f) => f.endsWith(".log")).sort();
    // Only the newest snapshot is kept, with no segment older than the one it starts at.
    expect(snapshots.length).toBe(1);
    expect(segments.every((f) => f >= snapshots[0]!.replace(".snap", ".log"))).toBe(true);
    const again = harness(options, [0]);
    expect(again.recoveredKeys).toBe(keys);
    for (const [key, value] of values)
      expect(await submit(again, OpKind.Read, key, null)).toEqual({ status: OpStatus.Ok, value });
  });
});

describe("shard snapshots by interval", () => {
  test("a log that grew is snapshotted once the interval since the last one has passed; an unchanged one is not", async () => {
    const dir = tempDir();
    const options = { ...durability(dir, "fsync"), snapshotIntervalMs: 1000 };
    const h = harness(options, [0]);
    const turns = (n: number): void => {
      for (let i = 0; i < n; i++) {
        h.now.ms += 1;
        h.shard.turn(h.now.ms);
      }
    };
    // Nothing logged: no snapshot however long it waits.
    h.now.ms += 5000;
    turns(5);
    expect(h.journal.stats().snapshots).toBe(0);
    // Logged, and the interval since the journal started has passed: one at once.
    expect((await submit(h, OpKind.Write, "k1", "v1"))?.status).toBe(OpStatus.Ok);
    turns(5);
    expect(h.journal.stats().snapshots).toBe(1);
    // Logged again within the interval of that one: none yet; after it: one more.
    expect((await submit(h, OpKind.Write, "k2", "v2"))?.status).toBe(OpStatus.Ok);
    turns(5);
    expect(h.journal.stats().snapshots).toBe(1);
    h.now.ms += 1000;
    turns(5);
    expect(h.journal.stats().snapshots).toBe(2);
    expect(readdirSync(join(dir, "shard-0")).filter((f) => f.endsWith(".snap")).length).toBe(1);
    // Nothing new since: later intervals take none.
    h.now.ms += 3000;
    turns(5);
    expect(h.journal.stats().snapshots).toBe(2);
  });
});

/** A tmpfs of `bytes` mounted by this test (root only); null when it cannot mount one. */
function mountTmpfs(bytes: number): { dir: string; unmount: () => void } | null {
  const dir = tempDir();
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir]);
  if (mount.status !== 0) return null;
  return {
    dir,
    unmount: () => {
      spawnSync("umount", ["-l", dir]);
    },
  };
}

describe("shard journal on a full disk", () => {
  const canMount = process.getuid?.() === 0;
  test.skipIf(!canMount)(
    "ENOSPC: no frame leaves any more, updates are refused, reads are still answered, the board says why",
    async () => {
      const tmpfs = mountTmpfs(64 * 1024);
      expect(tmpfs).not.toBeNull();
      try {
        const h = harness(durability(tmpfs!.dir, "fsync"), [0]);
        expect(await submit(h, OpKind.Write, "before", "ok")).toEqual({ status: OpStatus.Ok, value: null });
        // Fill the disk: values of 64 bytes, about 100 bytes a record, until the log fails.
        let last: { status: OpStatus; value: string | null } | null = null;
        let writes = 0;
        for (; writes < 5000; writes++) {
          last = await submit(h, OpKind.Write, `fill-${writes % 50}`, "x".repeat(valueBytesMax));
          if (h.journal.failed) break;
        }
        expect(h.journal.failed).toBe(true);
        expect(h.journal.failure?.code).toBe("ENOSPC");
        // The write whose sync failed was not reported done.
        expect(last?.status).not.toBe(OpStatus.Ok);
        expect(h.board.diskFailure).toBe("ENOSPC");
        expect(h.board.status().durability).toEqual({ mode: "fsync", diskFailure: "ENOSPC", acceptingUpdates: false });
        // Updates: refused before anything is written.
        const keysBefore = h.shard.replica.keyCount;
        expect(await submit(h, OpKind.Write, "after", "no")).toEqual({ status: OpStatus.Unavailable, value: null });
        expect(await submit(h, OpKind.Incr, "counter", null)).toEqual({ status: OpStatus.Unavailable, value: null });
        expect(h.shard.replica.keyCount).toBe(keysBefore);
        // Reads: still answered.
        expect(await submit(h, OpKind.Read, "before", null)).toEqual({ status: OpStatus.Ok, value: "ok" });
        const stats = h.shard.stats({ node: null, cpu: null, pinned: false }).durability!;
        expect(stats.failure?.code).toBe("ENOSPC");
        expect(stats.updatesRefused).toBe(2);
      } finally {
        tmpfs?.unmount();
      }
    },
  );

  test.skipIf(!canMount)("with a peer: after the failure no frame leaves at all (ACKs included)", async () => {
    const tmpfs = mountTmpfs(64 * 1024);
    expect(tmpfs).not.toBeNull();
    try {
      const h = harness(durability(tmpfs!.dir, "fsync"), [0, 1]);
      let version = 2;
      while (!h.journal.failed && version < 20_000) {
        h.transport.incoming.push({
          from: 1,
          frame: frameFrom(1, MsgKind.Inv, `p${version % 40}`, version, 1, "y".repeat(valueBytesMax)),
        });
        h.now.ms += 1;
        h.shard.turn(h.now.ms);
        version += 2;
      }
      expect(h.journal.failed).toBe(true);
      const sentAtFailure = h.transport.sent.length;
      // Every frame that did leave was after a sync of everything before it.
      for (const s of h.transport.sent) expect(s.bufferedBefore).toBe(0);
      for (let i = 0; i < 10; i++) {
        h.transport.incoming.push({ from: 1, frame: frameFrom(1, MsgKind.Inv, "late", version + 2 * i, 1, "z") });
        h.now.ms += 1;
        h.shard.turn(h.now.ms);
      }
      expect(h.transport.sent.length).toBe(sentAtFailure);
      expect(h.journal.framesWithheld).toBeGreaterThan(0);
    } finally {
      tmpfs?.unmount();
    }
  });
});
