// Bun Worker entry: one shard. Control messages arrive by postMessage. Once told to (http-start),
// the worker also serves the node's HTTP API on the node's port: ops for its shard go straight into
// its replica, ops for other shards over the rings between workers (see worker-backend.ts).

import { dropRuleTarget } from "../transport/drop-rule.ts";
import { createTransport, isNetworkTransportKind } from "../transport/factory.ts";
import { HttpMetrics } from "../http/metrics.ts";
import { ControlClient } from "./control-client.ts";
import { authGuardOf, serveHttp, type HttpServer } from "./http-server.ts";
import type { AuthGuard } from "../http/auth-guard.ts";
import type { FromShard, HttpStart, ShardInit, ToShard } from "./messages.ts";
import { placeThread, type Placement } from "./placement.ts";
import { Shard } from "./shard.ts";
import { WorkerBackend } from "./worker-backend.ts";
import { BrowseService } from "./browse-service.ts";
import { SnapshotCursor } from "../core/replica.ts";
import { recordBytes } from "../core/snapshot-records.ts";
import { recoverAndOpen } from "./shard-durability.ts";
import { CorruptionError, DiskError } from "../storage/errors.ts";
import { monotonicMs } from "../base/clock.ts";

declare const self: Worker;

let shard: Shard | null = null;
let placement: Placement = { node: null, cpu: null, pinned: false };
const early: ToShard[] = [];
const control = new ControlClient(post);
let http: {
  server: HttpServer;
  metrics: HttpMetrics;
  backend: WorkerBackend;
  guard: AuthGuard | null;
  browse: BrowseService;
} | null = null;

function post(message: FromShard, transfer: ArrayBuffer[] = []): void {
  self.postMessage(message, transfer);
}

function startHttp(source: Shard, start: HttpStart): void {
  if (start.peerRings !== null) source.connectPeers(start.peerRings);
  const metrics = new HttpMetrics();
  const browse = new BrowseService(source, start.watchFeed, start.browsePorts);
  source.attachPart(browse);
  const backend = new WorkerBackend(source, control, browse);
  let server: HttpServer;
  const guard = authGuardOf(start);
  try {
    server = serveHttp(start, backend, control, metrics, guard);
  } catch (error) {
    // An operating error, not a broken invariant: the node says why and does not serve.
    post({
      type: "http-failed",
      shardIndex: source.init.shardIndex,
      message: error instanceof Error ? error.message : String(error),
    });
    return;
  }
  http = { server, metrics, backend, guard, browse };
  post({ type: "http-ready", shardIndex: source.init.shardIndex, port: server.port!, metricsBuffer: metrics.buffer });
}

async function stopHttp(shardIndex: number): Promise<void> {
  // Watch streams never end by themselves: end them first, or the graceful stop would wait forever.
  http?.browse.close("this node is shutting down");
  // Graceful: requests in flight (every op was answered when the shard stopped) finish first.
  await http?.server.stop();
  post({ type: "http-stopped", shardIndex });
}

async function start(init: ShardInit): Promise<void> {
  placement = placeThread(init.numaNode);
  const kind = init.transport.kind;
  if (!isNetworkTransportKind(kind)) throw new Error(`transport ${kind} cannot run in a worker`);
  const transport = await createTransport(kind, {
    host: init.transport.host,
    port: init.transport.port,
    self: init.nodeId,
    frameBytesMax: init.transport.frameBytesMax,
    numaNode: placement.node,
  });
  shard = new Shard(init, transport);
  shard.board.setShardPlacement(init.shardIndex, placement.node, placement.cpu);
  // With a data dir: the replica is loaded from disk before the node may join (a CorruptionError
  // or DiskError here is fatal: the node stops and names the file and offset).
  const recovery =
    init.durability === undefined
      ? null
      : recoverAndOpen(
          shard.replica,
          init.shardIndex,
          init.durability,
          { keyBytesMax: init.keyBytesMax, valueBytesMax: init.replica.valueBytesMax },
          monotonicMs(),
        );
  if (recovery !== null) shard.attachJournal(recovery.journal);
  post({
    type: "ready",
    shardIndex: init.shardIndex,
    address: transport.address,
    ...(recovery === null
      ? {}
      : {
          recovered: {
            keys: recovery.keys,
            snapshotEntries: recovery.result.snapshotEntries,
            logRecords: recovery.result.logRecords,
            bytesDropped: recovery.result.bytesDropped,
            tailNote: recovery.result.tailNote,
            ms: recovery.ms,
          },
        }),
  });
  for (const message of early.splice(0)) handle(message);
  shard.run().then(
    () => post({ type: "stopped", shardIndex: init.shardIndex }),
    (error) => fatal(init.shardIndex, error),
  );
}

function fatal(shardIndex: number, error: unknown): void {
  // A broken invariant kills the worker; the node reports it and stops serving this shard.
  post({
    type: "fatal",
    shardIndex,
    // A disk's refusal or a corrupt file is an operating error: its message names the file (and the
    // offset), a stack would only hide it.
    message:
      error instanceof CorruptionError || error instanceof DiskError
        ? `${error.name}: ${error.message}`
        : error instanceof Error
          ? `${error.name}: ${error.message}\n${error.stack}`
          : String(error),
  });
  process.exit(1);
}

/**
 * Bytes per snapshot chunk: bounds one postMessage and one pause of the shard loop. A chunk also
 * holds the largest record (the replica asserts it), so it is at least that big.
 */
const snapshotChunkBytes = 1 << 20;

async function exportSnapshot(
  source: Shard,
  requestId: number,
  epochMin: number,
  allowJoining: boolean,
): Promise<void> {
  // A joiner may load from this replica only once it holds the epoch that added the joiner: from
  // then on every commit needs the joiner's ACK, and everything committed before is here. Kept
  // state (allowJoining, asked only when no member serves) goes out from a joining replica whatever
  // its epoch or membership: nothing commits while none serves, and a node removed from the view
  // (which never sees the joiner's epoch) may hold the only copy of a commit.
  const keptState = allowJoining && source.replica.joining;
  if (!keptState && (source.replica.epoch < epochMin || !source.replica.isMember || source.replica.joining)) {
    post({
      type: "snapshot-chunk",
      requestId,
      records: new Uint8Array(0),
      entries: 0,
      done: true,
      notReady: `not ready: epoch ${source.replica.epoch} < ${epochMin}, member ${source.replica.isMember}, joining ${source.replica.joining}`,
    });
    return;
  }
  // Records go from the replica's slabs into a fresh buffer that is handed over to the main thread
  // (transferred, not copied): no per-key object on the way.
  const chunkBytes = Math.max(
    snapshotChunkBytes,
    recordBytes(source.init.keyBytesMax, source.init.replica.valueBytesMax),
  );
  const cursor = new SnapshotCursor();
  while (!cursor.done) {
    const chunk = new Uint8Array(chunkBytes);
    const before = cursor.records;
    const bytes = source.replica.snapshotRecords(cursor, chunk);
    if (bytes > 0)
      post(
        {
          type: "snapshot-chunk",
          requestId,
          records: chunk.subarray(0, bytes),
          entries: cursor.records - before,
          done: false,
          notReady: null,
        },
        [chunk.buffer],
      );
    // Let the shard loop run between chunks: the source keeps serving during a transfer.
    await new Promise((resolve) => setImmediate(resolve));
  }
  post({ type: "snapshot-chunk", requestId, records: new Uint8Array(0), entries: 0, done: true, notReady: null });
}

function handle(message: ToShard): void {
  if (message.type === "init") {
    start(message).catch((error) => fatal(message.shardIndex, error));
    return;
  }
  if (control.onMessage(message)) return;
  if (shard === null) {
    early.push(message);
    return;
  }
  switch (message.type) {
    case "membership":
      shard.setMembership(message.epoch, message.members);
      return;
    case "lease":
      shard.setLease(message.untilMs);
      return;
    case "probes":
      shard.setProbes(message.peers);
      return;
    case "stats":
      post({ type: "stats", requestId: message.requestId, stats: shard.stats(placement) });
      return;
    case "bench-start":
      shard.bench?.start();
      return;
    case "join-begin":
      shard.replica.beginJoin();
      return;
    case "drop": {
      const peers = new Set(message.peers);
      dropRuleTarget(shard.transport).setDropRule(
        peers.size === 0 ? null : (from, to) => peers.has(from) || peers.has(to),
      );
      return;
    }
    case "snapshot-import":
      shard.importSnapshot(message.records, message.fromKeptState);
      return;
    case "join-finish":
      shard.finishJoin();
      return;
    case "snapshot-export":
      void exportSnapshot(shard, message.requestId, message.epochMin, message.allowJoining);
      return;
    case "http-start":
      startHttp(shard, message);
      return;
    case "auth-tokens":
      http?.guard?.setTokens(message.tokens);
      return;
    case "http-metrics-buffers":
      http?.metrics.shareWith(message.buffers, shard.init.shardIndex);
      return;
    case "status-extras":
      http?.backend.setStatusExtras(message.extras, message.atMs);
      return;
    case "peer-failed":
      shard.peerFailed(message.shardIndex);
      return;
    case "http-stop":
      void stopHttp(shard.init.shardIndex);
      return;
    case "stop":
      // The HTTP server stays up (answering 503: the node is closed) until http-stop.
      http?.browse.close("this node is stopping");
      shard.stop();
      return;
    case "control-head":
    case "control-body":
    case "control-end":
    case "node-metrics":
      return; // taken by the control client above
  }
}

self.onmessage = (event: MessageEvent<ToShard>) => {
  try {
    handle(event.data);
  } catch (error) {
    fatal(shard?.init.shardIndex ?? -1, error);
  }
};
