// Bun Worker entry: one shard. Control messages arrive by postMessage; client ops and answers go
// through the SharedArrayBuffer rings given in `init`.

import { dropRuleTarget } from "../transport/drop-rule.ts";
import { createTransport, isNetworkTransportKind } from "../transport/factory.ts";
import type { FromShard, ShardInit, ToShard } from "./messages.ts";
import { placeThread, type Placement } from "./placement.ts";
import { Shard } from "./shard.ts";

declare const self: Worker;

let shard: Shard | null = null;
let placement: Placement = { node: null, cpu: null, pinned: false };
const early: ToShard[] = [];

function post(message: FromShard): void {
  self.postMessage(message);
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
  post({ type: "ready", shardIndex: init.shardIndex, address: transport.address });
  for (const message of early.splice(0)) handle(message);
  shard.run().then(
    () => post({ type: "stopped", shardIndex: init.shardIndex }),
    (error) => fatal(init.shardIndex, error),
  );
}

function fatal(shardIndex: number, error: unknown): void {
  // A broken invariant kills the worker; the node reports it and stops serving this shard.
  post({ type: "fatal", shardIndex, message: error instanceof Error ? `${error.name}: ${error.message}\n${error.stack}` : String(error) });
  process.exit(1);
}

/** Entries per snapshot chunk: bounds one postMessage and one pause of the shard loop. */
const snapshotChunkEntries = 4096;

async function exportSnapshot(source: Shard, requestId: number, epochMin: number, allowJoining: boolean): Promise<void> {
  // A joiner may load from this replica only once it holds the epoch that added the joiner: from
  // then on every commit needs the joiner's ACK, and everything committed before is here.
  if (source.replica.epoch < epochMin || !source.replica.isMember || (source.replica.joining && !allowJoining)) {
    post({ type: "snapshot-chunk", requestId, entries: [], done: true, notReady: `not ready: epoch ${source.replica.epoch} < ${epochMin}, member ${source.replica.isMember}, joining ${source.replica.joining}` });
    return;
  }
  for (const entries of source.replica.snapshot(snapshotChunkEntries)) {
    post({ type: "snapshot-chunk", requestId, entries, done: false, notReady: null });
    // Let the shard loop run between chunks: the source keeps serving during a transfer.
    await new Promise((resolve) => setImmediate(resolve));
  }
  post({ type: "snapshot-chunk", requestId, entries: [], done: true, notReady: null });
}

function handle(message: ToShard): void {
  if (message.type === "init") {
    start(message).catch((error) => fatal(message.shardIndex, error));
    return;
  }
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
      dropRuleTarget(shard.transport).setDropRule(peers.size === 0 ? null : (from, to) => peers.has(from) || peers.has(to));
      return;
    }
    case "snapshot-import":
      shard.importSnapshot(message.entries);
      return;
    case "join-finish":
      shard.finishJoin();
      return;
    case "snapshot-export":
      void exportSnapshot(shard, message.requestId, message.epochMin, message.allowJoining);
      return;
    case "stop":
      shard.stop();
      return;
  }
}

self.onmessage = (event: MessageEvent<ToShard>) => {
  try {
    handle(event.data);
  } catch (error) {
    fatal(shard?.init.shardIndex ?? -1, error);
  }
};
