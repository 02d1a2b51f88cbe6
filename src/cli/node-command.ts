// `hermes-kv node`: one node of a real cluster, with etcd as the reliable membership service.
//
// Life of a node: it starts empty and joining (it ACKs INVs but serves nothing); it registers in
// etcd under a lease it keeps alive; then it loads every shard from a serving member over HTTP
// (GET /v1/internal/snapshot/{shard}) and only then serves. The very first node of a cluster has
// nothing to load: it bootstraps and records that in etcd (`initialized`), so that a later empty
// node can never mistake a cluster with data for a new one. A node that loses its lease has been
// (or is about to be) removed, and others may commit without it: it wipes its state and joins again.

import { nodeIdMax, type NodeId } from "../base/ids.ts";
import { createApp } from "../http/app.ts";
import { EtcdClient } from "../membership/etcd-client.ts";
import { createEtcdMembership, defaultKeyPrefix, type EtcdMembership } from "../membership/etcd.ts";
import type { MembershipView } from "../membership/membership.ts";
import type { KvBackend } from "../node/backend.ts";
import { HermesNode, httpBodyBytesMax, nodeDefaults } from "../node/node.ts";
import { encodeSnapshotEntries, SnapshotDecoder } from "../node/snapshot-codec.ts";
import { parseHostPort } from "../transport/net-address.ts";
import { expectPositionals, parseArgs, parseIntegerFlag, UsageError } from "./args.ts";
import { FatalError } from "./fatal-error.ts";
import { resolveTransport } from "./transport-choice.ts";
import type { SnapshotEntry } from "../base/snapshot-entry.ts";

export const nodeUsage = `usage: hermes-kv node --id ID --http HOST:PORT --listen HOST:PORT --etcd URL[,URL...]
                     [--cluster NAME] [--shards W] [--transport auto|tcp|udp|rdma] [--lease-ms MS]

Runs one node of a hermes-kv cluster. Membership, leases and transport addresses go through etcd
(its v3 JSON gateway): the node holds an etcd lease and serves only while that lease is surely valid.

  --id ID          this node's id, 0..${nodeIdMax}, unique in the cluster
  --http HOST:PORT client HTTP API (also used by rejoining nodes to load state)
  --listen HOST:PORT replica-to-replica transport; worker i uses PORT+i
  --etcd URLS      etcd client URLs, comma-separated (e.g. http://127.0.0.1:2379)
  --cluster NAME   cluster name, the etcd key prefix /${defaultKeyPrefix}/NAME/ (default "default")
  --shards W       Hermes workers (threads); every node of a cluster must use the same W (default 1)
  --transport T    auto|tcp|udp|rdma (default auto: rdma if a device is present, else tcp)
  --lease-ms MS    etcd lease TTL, whole seconds (default 2000): the time a failed node's
                   replicas wait before writes resume without it
  --test-hooks     enable POST /v1/test/drop (drop transport traffic to/from given nodes) and
                   POST /v1/test/etcd (cut this node off from etcd), for partition tests`;

const specs = {
  id: { kind: "string" },
  http: { kind: "string" },
  listen: { kind: "string" },
  etcd: { kind: "string" },
  cluster: { kind: "string" },
  shards: { kind: "string" },
  transport: { kind: "string" },
  "lease-ms": { kind: "string" },
  "test-hooks": { kind: "boolean" },
  help: { kind: "boolean", short: "h" },
} as const;

const log = (line: string) => console.error(line);

export async function runNodeCommand(argv: readonly string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, specs);
  if (flags.help) {
    console.log(nodeUsage);
    return 0;
  }
  expectPositionals(positionals, 0, 0, "");
  for (const required of ["id", "http", "listen", "etcd"] as const) {
    if (flags[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const id = parseIntegerFlag("--id", flags.id!, 0, nodeIdMax);
  const http = parseHostPortFlag("--http", flags.http!);
  const listen = parseHostPortFlag("--listen", flags.listen!);
  const endpoints = flags.etcd!.split(",").filter((u) => u.length > 0);
  const cluster = flags.cluster ?? "default";
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cluster)) throw new UsageError("--cluster must be 1-64 of A-Z a-z 0-9 . _ -");
  const shards = flags.shards === undefined ? 1 : parseIntegerFlag("--shards", flags.shards, 1, 64);
  const leaseMs = flags["lease-ms"] === undefined ? 2000 : parseIntegerFlag("--lease-ms", flags["lease-ms"], 1000, 600_000);
  if (leaseMs % 1000 !== 0) throw new UsageError("--lease-ms must be whole seconds (etcd leases are in seconds)");
  const transport = resolveTransport(flags.transport ?? "auto", log);

  const node = await HermesNode.start({
    nodeId: id,
    clusterId: clusterIdOf(cluster),
    shards,
    transport,
    host: listen.host,
    basePort: listen.port,
    httpAddress: `${http.host}:${http.port}`,
    keyBytesMax: nodeDefaults.keyBytesMax,
    valueBytesMax: nodeDefaults.valueBytesMax,
    frameBytesMax: nodeDefaults.frameBytesMax,
    opsInFlightMaxPerShard: nodeDefaults.opsInFlightMaxPerShard,
    replica: {},
    numa: true,
    bench: null,
  });
  node.beginJoin();
  let membership: EtcdMembership | null = null;
  const backend: KvBackend = {
    submit: (request) => node.submit(request),
    status: () => node.status(),
    metrics: () => node.metrics() + etcdMetrics(membership),
    keyBytesMax: node.keyBytesMax,
    valueBytesMax: node.valueBytesMax,
  };
  const server = serveNode(node, backend, http, flags["test-hooks"], () => membership);
  try {
    membership = await createEtcdMembership({ endpoints, cluster, self: node.memberInfo(), leaseTtlMs: leaseMs, log });
  } catch (error) {
    server.stop(true);
    await node.close();
    throw new FatalError(`cannot join through etcd ${endpoints.join(",")}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const etcd = new EtcdClient(endpoints, { requestTimeoutMs: 2000 });
  const initializedKey = `/${defaultKeyPrefix}/${cluster}/initialized`;
  node.attachMembership(membership);

  // Lease lost or removed: stop serving at once, then join again (keeping the data, merged on
  // load) once the membership takes us back.
  let needsRejoin = false;
  let joinRunning: Promise<void> | null = null;
  const stopping = { now: false };
  const inViewWithLease = () => membership!.view().members.some((m) => m.id === id) && membership!.leaseUntilMs() > 0;
  const startJoin = () => {
    joinRunning ??= joinCluster(node, membership!, etcd, initializedKey, stopping).finally(() => {
      joinRunning = null;
      // The lease was lost while this join loaded: what it loaded may miss commits made without
      // us, so join again (and answer whatever arrived meanwhile).
      if (needsRejoin && !stopping.now) {
        node.rejoinKeepingState();
        if (inViewWithLease()) {
          needsRejoin = false;
          startJoin();
        }
      }
    });
  };
  membership.onChange((view: MembershipView) => {
    const inView = view.members.some((m) => m.id === id);
    if (!inView || membership!.leaseUntilMs() === 0) {
      // Stop at once: from now on others may commit without us (even our own pending updates, by
      // replay), so every client op we hold is answered now and none is retried later.
      if (!needsRejoin && !node.joining) {
        log(`hermes-kv node ${id}: lost the membership (epoch ${view.epoch}): stops serving, will rejoin`);
        node.rejoinKeepingState();
      }
      needsRejoin = true;
      return;
    }
    if (needsRejoin && joinRunning === null) {
      needsRejoin = false;
      startJoin();
    }
  });
  startJoin();
  console.log(`node ${id} up: http://${http.host}:${http.port} transport ${transport} ${node.memberInfo().shardAddresses.join(",")} cluster ${cluster}`);

  await new Promise<void>((resolve) => {
    const stop = () => {
      if (stopping.now) return;
      stopping.now = true;
      log(`hermes-kv node ${id}: stopping`);
      server.stop(true);
      void node.close().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  return 0;
}

/**
 * Load state, then serve. From a serving member if there is one (it holds every committed write).
 * If none serves (e.g. every member lost its lease while etcd was down), merge the state of every
 * member that kept some (higher ts wins): each write committed while they were members is there.
 * The very first node of a new cluster has nothing to load: it bootstraps and marks the cluster
 * initialized in etcd, so that an empty node never mistakes a cluster with data for a new one.
 */
async function joinCluster(node: HermesNode, membership: EtcdMembership, etcd: EtcdClient, initializedKey: string, stopping: { now: boolean }): Promise<void> {
  const self = node.options.nodeId;
  const started = performance.now();
  let reported = 0;
  const report = (line: string) => {
    if (performance.now() - reported < 5000) return;
    reported = performance.now();
    log(`hermes-kv node ${self}: ${line}`);
  };
  while (!stopping.now) {
    try {
      if (await joinAttempt()) return;
    } catch (error) {
      // A source that loses its own lease mid-stream resets the connection: try again. Loading
      // again is harmless: entries merge by timestamp.
      report(`join attempt failed, retrying: ${error instanceof Error ? error.message : String(error)}`);
    }
    await Bun.sleep(100);
  }

  /** One try; true when this node serves again. */
  async function joinAttempt(): Promise<boolean> {
    const view = membership.view();
    if (view.members.some((m) => m.id === self) && membership.leaseUntilMs() > 0) {
      const initialized = (await etcd.range(initializedKey)).kvs.length > 0;
      const others = view.members.filter((m) => m.id !== self);
      if (!initialized) {
        if (others.every((m) => m.id > self) && !node.hasState) {
          await node.loadFrom(async () => 0);
          await etcd.put(initializedKey, new Date().toISOString());
          log(`hermes-kv node ${self}: bootstrapped a new cluster`);
          return true;
        }
      } else {
        for (const source of others) {
          try {
            const entries = await node.loadFrom((index, minEpoch, onChunk) => fetchSnapshot(source.http, index, minEpoch, false, node, onChunk));
            log(`hermes-kv node ${self}: joined from node ${source.id}: ${entries} entries in ${(performance.now() - started).toFixed(0)} ms`);
            return true;
          } catch (error) {
            report(`cannot load from node ${source.id} yet: ${error instanceof Error ? error.message : String(error)}`);
          }
        }
        // Nobody serves: merge what every member that kept its state has.
        const merged = await mergeFromKeptState(node, others.map((m) => m.http));
        if (merged !== null) {
          log(`hermes-kv node ${self}: no member was serving; rejoined by merging kept state (${merged} entries) in ${(performance.now() - started).toFixed(0)} ms`);
          return true;
        }
        report(`no member serves and none kept its state; waiting (if every replica was lost, delete ${initializedKey} in etcd to start empty)`);
      }
    }
    return false;
  }
}

/**
 * Load every shard from each of `peers` that kept its state (it answers while joining), plus our
 * own kept state. Only when every other member positively says it does not serve: if one serves,
 * or cannot be asked, it may hold writes committed while we were out, so we must load from it
 * instead (null: try again later). Null too when nobody, us included, holds state.
 */
async function mergeFromKeptState(node: HermesNode, peers: string[]): Promise<number | null> {
  const sources: string[] = [];
  for (const http of peers) {
    let status: { serving?: boolean; hasState?: boolean };
    try {
      const response = await fetch(`http://${http}/v1/status`, { signal: AbortSignal.timeout(2000) });
      status = (await response.json()) as { serving?: boolean; hasState?: boolean };
    } catch {
      return null; // cannot tell whether it serves
    }
    if (status.serving !== false) return null;
    if (status.hasState === true) sources.push(http);
  }
  if (sources.length === 0 && !node.hasState) return null;
  // Every member that kept state contributes: a write committed while some were out is at least
  // in the state of those that were in.
  return node.loadFrom(async (index, minEpoch, onChunk) => {
    let count = 0;
    for (const http of sources) count += await fetchSnapshot(http, index, minEpoch, true, node, onChunk);
    return count;
  });
}

/** Stream one shard of `http`'s replica into `onChunk`. */
async function fetchSnapshot(http: string, index: number, minEpoch: number, kept: boolean, node: HermesNode, onChunk: (entries: SnapshotEntry[]) => void): Promise<number> {
  const response = await fetch(`http://${http}/v1/internal/snapshot/${index}?minEpoch=${minEpoch}${kept ? "&kept=1" : ""}`);
  if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status} ${await response.text()}`);
  const decoder = new SnapshotDecoder(node.keyBytesMax, node.valueBytesMax);
  let count = 0;
  for await (const chunk of response.body) {
    const entries = decoder.push(chunk as Uint8Array);
    count += entries.length;
    if (entries.length > 0) onChunk(entries);
  }
  decoder.finish();
  return count;
}

function serveNode(
  node: HermesNode,
  backend: KvBackend,
  http: { host: string; port: number },
  testHooks: boolean,
  getMembership: () => EtcdMembership | null,
) {
  // Extra routes go on the app itself, so unknown routes keep the app's JSON 404/405 answers.
  const app = createApp(backend);
  app.get("/v1/internal/snapshot/:shard", async (c) => {
    const index = Number(c.req.param("shard"));
    const minEpoch = Number(c.req.query("minEpoch") ?? "0");
    if (!Number.isInteger(index) || index < 0 || index >= node.shards.length || !Number.isSafeInteger(minEpoch)) {
      return c.json({ error: { code: "invalid", message: "bad shard or minEpoch" } }, 400);
    }
    // A joining node gives its kept state only when asked for it (merge of kept states).
    const kept = c.req.query("kept") === "1";
    if (node.joining && !(kept && node.hasState)) return c.json({ error: { code: "unavailable", message: "this node is joining" } }, 503);
    // Start the export first so that "not ready" (epoch below minEpoch) is a clean 503.
    const chunks: Uint8Array[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: Error | null = null;
    const done = node
      .exportShard(
        index,
        minEpoch,
        (entries) => {
          chunks.push(encodeSnapshotEntries(entries));
          wake?.();
        },
        kept,
      )
      .then(
        () => (finished = true),
        (error: Error) => (failure = error),
      )
      .finally(() => wake?.());
    await Promise.race([done, Bun.sleep(0)]);
    if (failure !== null) return c.json({ error: { code: "unavailable", message: (failure as Error).message } }, 503);
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (chunks.length === 0 && !finished && failure === null) await new Promise<void>((resolve) => (wake = resolve));
        if (chunks.length > 0) controller.enqueue(chunks.shift()!);
        else if (failure !== null) controller.error(failure);
        else controller.close();
      },
    });
    return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
  });
  if (testHooks) {
    app.post("/v1/test/drop", async (c) => {
      const body = (await c.req.json().catch(() => null)) as { peers?: unknown } | null;
      const peers = Array.isArray(body?.peers) ? body!.peers.filter((p): p is number => Number.isInteger(p)) : null;
      if (peers === null) return c.json({ error: { code: "invalid", message: 'body must be {"peers": [ids]}' } }, 400);
      node.setDropPeers(peers);
      return c.json({ dropping: peers });
    });
    // Cut this node off from etcd too (with /v1/test/drop: a full partition of this node).
    app.post("/v1/test/etcd", async (c) => {
      const body = (await c.req.json().catch(() => null)) as { partitioned?: unknown } | null;
      if (typeof body?.partitioned !== "boolean") return c.json({ error: { code: "invalid", message: 'body must be {"partitioned": true|false}' } }, 400);
      const membership = getMembership();
      if (membership === null) return c.json({ error: { code: "unavailable", message: "not registered yet" } }, 503);
      membership.simulatePartition(body.partitioned);
      return c.json({ etcdPartitioned: body.partitioned });
    });
  }
  return Bun.serve({ hostname: http.host, port: http.port, fetch: app.fetch, maxRequestBodySize: httpBodyBytesMax });
}

function etcdMetrics(membership: EtcdMembership | null): string {
  if (membership === null) return "";
  const c = membership.counters() as unknown as Record<string, number>;
  return Object.entries(c)
    .map(([name, value]) => {
      const metric = `hermes_membership_${name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase()}_total`;
      return `# HELP ${metric} etcd membership counter ${name}.\n# TYPE ${metric} counter\n${metric} ${value}`;
    })
    .join("\n") + "\n";
}

function parseHostPortFlag(flag: string, text: string): { host: string; port: number } {
  try {
    return parseHostPort(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Frames carry a 32-bit cluster id derived from the name: another cluster's frames are dropped. */
function clusterIdOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export type { NodeId };
