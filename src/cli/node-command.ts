// `hermes-kv node`: one node of a real cluster, with etcd as the reliable membership service.
//
// Life of a node: it starts empty and joining (it ACKs INVs but serves nothing); it registers in
// etcd under a lease it keeps alive; then it loads every shard from a serving member over HTTP
// (GET /v1/internal/snapshot/{shard}) and only then serves. The very first node of a cluster has
// nothing to load: it bootstraps and records that in etcd (`initialized`), so that a later empty
// node can never mistake a cluster with data for a new one (src/node/etcd-join.ts). A node that
// loses its lease has been (or is about to be) removed, and others may commit without it: it stops
// serving at once, keeps its data and joins again, merging on load (src/node/rejoiner.ts).
// A member that its peers cannot hear, though it keeps its lease, is suspected (src/node/
// peer-detector.ts) and evicted through etcd when the suspicions call for it (src/membership/
// eviction-rule.ts); it stops serving, and registers again once it reaches every member.

import { nodeIdMax, writerIdOf, type NodeId } from "../base/ids.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import { consolePathPrefix, registerConsoleRoutes } from "../console/routes.ts";
import { createControlApp } from "../http/app.ts";
import { EtcdClient } from "../membership/etcd-client.ts";
import { createEtcdMembership, defaultKeyPrefix, type EtcdMembership } from "../membership/etcd.ts";
import { claimIncarnation, incarnationKey } from "../membership/etcd-incarnation.ts";
import { recordNode } from "../membership/etcd-nodes.ts";
import type { StatusExtras } from "../base/kv-backend.ts";
import { renderDetectorMetrics } from "../node/metrics.ts";
import { PeerDetector } from "../node/peer-detector.ts";
import { etcdJoinAttempt, internalStatusPath } from "../node/etcd-join.ts";
import { InternalProofSigner, InternalProofVerifier } from "../node/internal-proof.ts";
import { requireInternalProof } from "./internal-proof-guard.ts";
import { HermesNode, nodeDefaults, type NodeOptions } from "../node/node.ts";
import { Rejoiner } from "../node/rejoiner.ts";
import { snapshotEpochMinParam } from "../node/snapshot-codec.ts";
import { parseHostPort } from "../transport/net-address.ts";
import type { EtcdSecurity } from "../membership/etcd-auth.ts";
import { etcdFlagSpecs, etcdFlagsUsage, etcdSecurityOf } from "./etcd-flags.ts";
import { expectPositionals, parseArgs, parseIntegerFlag, UsageError, type ParsedFlags } from "./args.ts";
import { FatalError } from "./fatal-error.ts";
import { readClusterKeyFile } from "./cluster-key-file.ts";
import { clusterKeyLabel, deriveClusterKey } from "../base/cluster-key.ts";
import { resolveTransport } from "./transport-choice.ts";
import { exposureProblem } from "./exposure-check.ts";
import {
  loadServerSecurity,
  peerHttpOf,
  reloadAuthOnSighup,
  serverSecurityHelp,
  serverSecuritySpecs,
  type ServerSecurity,
} from "./server-security.ts";
import {
  durabilityFlagSpecs,
  durabilityUsage,
  openDataDir,
  parseDurabilityFlags,
  recoveryLines,
} from "./durability-flags.ts";
import type { DurabilityOptions } from "../base/durability.ts";

/** --lease-ms: default and bounds. etcd leases are whole seconds. */
const leaseMsDefault = 2000;
const leaseMsMin = 1000;
const leaseMsMax = 600_000;
/** --suspect-ms: bounds (0 turns the detector off; the default is the lease TTL, see nodeUsage). */
const suspectMsMin = 200;
const suspectMsMax = leaseMsMax;
/** Heartbeats per suspicion timeout (etcd's default: 10 heartbeats per election timeout), within these bounds. */
const heartbeatsPerSuspicion = 10;
const heartbeatMsMin = 10;
const heartbeatMsMax = 100;
/** Heartbeat intervals the eviction rule's answer must hold before the decider acts (both ends' suspicions are in). */
const settleHeartbeats = 2;
/** etcd's lessor looks for expired leases every 500 ms: a crashed node's key goes up to this late. */
const etcdExpiryCheckMs = 500;
/** --shards: upper bound. */
const shardsMax = 64;
/** Bound on one request to etcd for the cluster's `initialized` key. */
const etcdRequestTimeoutMs = 2000;

export const nodeUsage = `usage: hermes-kv node --id ID --http HOST:PORT --listen HOST:PORT --etcd URL[,URL...]
                     [--cluster NAME] [--shards W] [--transport auto|tcp|udp|rdma] [--lease-ms MS]
                     [--cluster-key-file FILE]
                     [--data-dir DIR [--durability fsync|async] [--fsync-interval-ms MS]]

Runs one node of a hermes-kv cluster. Membership, leases and transport addresses go through etcd
(its v3 JSON gateway): the node holds an etcd lease and serves only while that lease is surely valid.

  --id ID          this node's id, 0..${nodeIdMax}, unique in the cluster. A node restarted under its
                   id starts empty and claims a new incarnation of it in etcd, which goes into its
                   writes' timestamps (and ETags), so it never reissues a timestamp of an earlier process
  --http HOST:PORT client HTTP API and the web console at /ui (also used by rejoining nodes to load state)
  --listen HOST:PORT replica-to-replica transport; worker i uses PORT+i
  --etcd URLS      etcd client URLs, comma-separated (e.g. http://127.0.0.1:2379)
${etcdFlagsUsage}
  --cluster NAME   cluster name, the etcd key prefix /${defaultKeyPrefix}/NAME/ (default "default")
  --shards W       Hermes workers (threads); every node of a cluster must use the same W (default 1)
  --transport T    auto|tcp|udp|rdma (default auto: rdma if a device is present, else tcp)
  --lease-ms MS    etcd lease TTL, whole seconds (default ${leaseMsDefault}): the time a failed node's
                   replicas wait before writes resume without it
  --suspect-ms MS  failure detection beyond the lease (default: the lease TTL; 0 turns it off): a
                   member its peers cannot hear for MS (while it keeps its lease) is suspected, and
                   evicted through etcd when the suspicions call for it; writes then resume after
                   about MS + one lease TTL (README "Failure model")
${serverSecurityHelp}
  --cluster-key-file FILE  the cluster key (hermes-kv keygen FILE; the same file on every node, mode
                   600): every replica frame carries a MAC under it and frames without a valid one
                   are dropped; state transfer and the other internal routes answer only requests
                   that prove the key. Without it, anyone who reaches --listen or --http can forge
                   replica traffic or download the data (README "The cluster key")
  --insecure       start even though --http or --listen is not a loopback address and TLS, the
                   auth file or the cluster key is missing (without it the node refuses, as
                   Redis's protected mode does)
${durabilityUsage}
  --test-hooks     enable POST /v1/test/drop (drop transport traffic to/from given nodes) and
                   POST /v1/test/etcd (cut this node off from etcd), for partition tests

On a network (README "Running securely"):
  hermes-kv node --id 0 --http 10.0.0.1:8443 --listen 10.0.0.1:7000 --etcd https://10.0.0.9:2379 \\
    --tls-cert node0.crt --tls-key node0.key --tls-ca ca.crt --auth-file tokens \\
    --cluster-key-file cluster.key`;

const specs = {
  id: { kind: "string" },
  http: { kind: "string" },
  listen: { kind: "string" },
  etcd: { kind: "string" },
  ...etcdFlagSpecs,
  cluster: { kind: "string" },
  shards: { kind: "string" },
  transport: { kind: "string" },
  "lease-ms": { kind: "string" },
  "suspect-ms": { kind: "string" },
  "test-hooks": { kind: "boolean" },
  ...serverSecuritySpecs,
  "cluster-key-file": { kind: "string" },
  insecure: { kind: "boolean" },
  ...durabilityFlagSpecs,
  help: { kind: "boolean", short: "h" },
} as const;

const log = (line: string) => console.error(line);

interface NodeCommandOptions {
  id: NodeId;
  http: { host: string; port: number };
  listen: { host: string; port: number };
  endpoints: string[];
  /** TLS and credentials for etcd; undefined for plain etcd. */
  etcdSecurity: EtcdSecurity | undefined;
  cluster: string;
  shards: number;
  leaseMs: number;
  /** 0: no failure detection beyond leases. */
  suspectMs: number;
  transport: TransportKind;
  testHooks: boolean;
  /** The cluster key (--cluster-key-file), or null: replica traffic and internal routes unauthenticated. */
  clusterKey: Uint8Array | null;
  /** null: --durability none. */
  durability: DurabilityOptions | null;
}

export async function runNodeCommand(argv: readonly string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, specs);
  if (flags.help) {
    console.log(nodeUsage);
    return 0;
  }
  expectPositionals(positionals, 0, 0, "");
  const options = nodeCommandOptions(flags);
  const { id, http, endpoints, cluster } = options;
  const problem = exposureProblem({
    addresses: [
      { flag: "--http", host: http.host },
      { flag: "--listen", host: options.listen.host },
    ],
    tls: flags["tls-cert"] !== undefined,
    authFile: flags["auth-file"] !== undefined,
    clusterKeyFile: flags["cluster-key-file"] !== undefined,
    insecure: flags.insecure,
  });
  if (problem !== null) throw new FatalError(problem);
  const security = await loadServerSecurity(flags);
  // The data dir is locked and identified before any worker opens a file in it.
  let dataDir: ReturnType<typeof openDataDir> | null = null;
  if (options.durability !== null) {
    try {
      dataDir = openDataDir(options.durability.dataDir, cluster, id, options.shards);
    } catch (error) {
      throw new FatalError(error instanceof Error ? error.message : String(error));
    }
  }
  const etcd = new EtcdClient(endpoints, {
    requestTimeoutMs: etcdRequestTimeoutMs,
    ...(options.etcdSecurity === undefined ? {} : { security: options.etcdSecurity }),
  });
  const incarnation = await claimNodeIncarnation(etcd, options);
  log(`hermes-kv node ${id}: incarnation ${incarnation} (writer id ${writerIdOf(incarnation, id)})`);
  const proofKey =
    options.clusterKey === null ? null : deriveClusterKey(options.clusterKey, clusterKeyLabel.internalHttp);
  const proofVerifier = proofKey === null ? null : new InternalProofVerifier(proofKey);
  let node: HermesNode;
  try {
    node = await HermesNode.start(nodeOptionsOf(options, incarnation));
  } catch (error) {
    dataDir?.close();
    // A corrupt file or a refusing disk at recovery: the message names the file (and offset).
    throw new FatalError(`cannot start: ${error instanceof Error ? error.message : String(error)}`);
  }
  for (const line of recoveryLines(node, `hermes-kv node ${id}`)) log(line);
  node.beginJoin();
  let membership: EtcdMembership | null = null;
  let detector: PeerDetector | null = null;
  // The detector's view is part of /v1/status and /metrics: the node passes it to its workers.
  node.setStatusExtras(() => detectorStatus(membership, detector));
  node.setExtraMetrics(
    () =>
      etcdMetrics(membership) +
      (detector === null ? "" : renderDetectorMetrics(detector.counters, node.status())) +
      (proofVerifier?.metrics() ?? ""),
  );
  try {
    await serveNode(node, http, options.testHooks, () => membership, security, proofVerifier);
    // From the moment the workers serve: a SIGHUP before this would end the process (its default action).
    if (security.authFile !== null) reloadAuthOnSighup(security.authFile, (tokens) => node.setAuthTokens(tokens), log);
    // Listed as a node of the cluster, member or not: a join that finds no member serving asks
    // every listed node for its kept state (src/node/etcd-join.ts).
    await recordNode(etcd, cluster, { id, http: `${http.host}:${http.port}` });
  } catch (error) {
    await node.close();
    throw new FatalError(error instanceof Error ? error.message : String(error));
  }
  try {
    const heartbeatMs = heartbeatMsOf(options.suspectMs);
    membership = await createEtcdMembership({
      endpoints,
      ...(options.etcdSecurity === undefined ? {} : { security: options.etcdSecurity }),
      cluster,
      self: node.memberInfo(),
      leaseTtlMs: options.leaseMs,
      log,
      ...(options.suspectMs === 0
        ? {}
        : {
            detector: {
              settleMs: settleHeartbeats * heartbeatMs,
              // A crashed node is left to its lease (see EtcdDetectorOptions.silentTargetGraceMs).
              silentTargetGraceMs:
                Math.max(0, options.leaseMs - options.suspectMs) + etcdExpiryCheckMs + settleHeartbeats * heartbeatMs,
              reachesMembers: (sinceMs: number) => detector?.reachesMembers(sinceMs) ?? false,
            },
          }),
    });
  } catch (error) {
    await node.close();
    throw new FatalError(
      `cannot join through etcd ${endpoints.join(",")}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const initializedKey = `/${defaultKeyPrefix}/${cluster}/initialized`;
  node.attachMembership(membership);
  if (options.suspectMs > 0) {
    const m = membership;
    detector = new PeerDetector({
      self: id,
      suspectMs: options.suspectMs,
      heartbeatMs: heartbeatMsOf(options.suspectMs),
      lastHeardMs: (peer) => node.lastHeardMs(peer),
      lastFreshMs: (peer) => node.lastFreshMs(peer),
      membership: m,
      setProbes: (candidates) => node.setProbes(candidates),
      log,
    });
    detector.start();
  }
  // Joins now, and again after every lease loss (keeping the data, merged on load).
  const rejoiner = new Rejoiner({
    node,
    membership,
    attempt: etcdJoinAttempt({
      node,
      membership,
      etcd,
      initializedKey,
      cluster,
      log,
      peerHttp: peerHttpOf(security.tls),
      proof: proofKey === null ? null : new InternalProofSigner(proofKey),
    }),
    log,
  });
  rejoiner.start();
  console.log(
    `node ${id} up: ${security.tls === null ? "http" : "https"}://${http.host}:${http.port} transport ${options.transport} ${node.memberInfo().shardAddresses.join(",")} cluster ${cluster}`,
  );

  await untilSignalled(() => {
    rejoiner.stop();
    detector?.stop();
    log(`hermes-kv node ${id}: stopping`);
    return node.close().then(() => dataDir?.close());
  });
  return 0;
}

/** Resolves once `stop` has run after the first SIGINT or SIGTERM (later signals are ignored). */
function untilSignalled(stop: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) return;
      stopping = true;
      void stop().then(resolve);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

function nodeCommandOptions(flags: ParsedFlags<typeof specs>): NodeCommandOptions {
  for (const required of ["id", "http", "listen", "etcd"] as const) {
    if (flags[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const id = parseIntegerFlag("--id", flags.id!, 0, nodeIdMax);
  const http = parseHostPortFlag("--http", flags.http!);
  const listen = parseHostPortFlag("--listen", flags.listen!);
  const endpoints = flags.etcd!.split(",").filter((u) => u.length > 0);
  const etcdSecurity = etcdSecurityOf(flags, endpoints, process.env);
  const cluster = flags.cluster ?? "default";
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cluster)) throw new UsageError("--cluster must be 1-64 of A-Z a-z 0-9 . _ -");
  const shards = flags.shards === undefined ? 1 : parseIntegerFlag("--shards", flags.shards, 1, shardsMax);
  const leaseMs =
    flags["lease-ms"] === undefined
      ? leaseMsDefault
      : parseIntegerFlag("--lease-ms", flags["lease-ms"], leaseMsMin, leaseMsMax);
  if (leaseMs % 1000 !== 0) throw new UsageError("--lease-ms must be whole seconds (etcd leases are in seconds)");
  const suspectMs =
    flags["suspect-ms"] === undefined
      ? leaseMs
      : parseIntegerFlag("--suspect-ms", flags["suspect-ms"], 0, suspectMsMax);
  if (suspectMs !== 0 && suspectMs < suspectMsMin)
    throw new UsageError(`--suspect-ms must be 0 (off) or at least ${suspectMsMin}`);
  // Before the transport choice, which may log: a bad key file is the only line printed.
  const clusterKey = flags["cluster-key-file"] === undefined ? null : readClusterKeyFile(flags["cluster-key-file"]);
  const transport = resolveTransport(flags.transport ?? "auto", log);
  return {
    id,
    http,
    listen,
    endpoints,
    etcdSecurity,
    cluster,
    shards,
    leaseMs,
    suspectMs,
    transport,
    testHooks: flags["test-hooks"],
    clusterKey,
    durability: parseDurabilityFlags(flags),
  };
}

/** The heartbeat interval for a suspicion timeout (0: no heartbeats). */
function heartbeatMsOf(suspectMs: number): number {
  if (suspectMs === 0) return 0;
  return Math.min(heartbeatMsMax, Math.max(heartbeatMsMin, Math.floor(suspectMs / heartbeatsPerSuspicion)));
}

/**
 * This process's incarnation of its node id, claimed in etcd before any replica exists: its
 * timestamps then never collide with those of an earlier process of the same id (src/base/ids.ts).
 */
async function claimNodeIncarnation(etcd: EtcdClient, options: NodeCommandOptions): Promise<number> {
  try {
    return await claimIncarnation(etcd, incarnationKey(options.cluster, options.id));
  } catch (error) {
    throw new FatalError(
      `cannot join through etcd ${options.endpoints.join(",")} (claiming an incarnation): ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

function nodeOptionsOf(options: NodeCommandOptions, incarnation: number): NodeOptions {
  return {
    nodeId: options.id,
    clusterId: clusterIdOf(options.cluster),
    shards: options.shards,
    transport: options.transport,
    host: options.listen.host,
    basePort: options.listen.port,
    httpAddress: `${options.http.host}:${options.http.port}`,
    keyBytesMax: nodeDefaults.keyBytesMax,
    valueBytesMax: nodeDefaults.valueBytesMax,
    frameBytesMax: nodeDefaults.frameBytesMax,
    opsInFlightMaxPerShard: nodeDefaults.opsInFlightMaxPerShard,
    replica: { incarnation },
    numa: true,
    bench: null,
    heartbeatMs: heartbeatMsOf(options.suspectMs),
    frameKey: options.clusterKey === null ? null : deriveClusterKey(options.clusterKey, clusterKeyLabel.frameMac),
    durability: options.durability,
  };
}

/**
 * The node's shard workers serve the HTTP API on `http`; the routes that need the main thread
 * (state transfer to a joining node, test hooks) are forwarded to it and answered here.
 */
function serveNode(
  node: HermesNode,
  http: { host: string; port: number },
  testHooks: boolean,
  getMembership: () => EtcdMembership | null,
  security: ServerSecurity,
  proofVerifier: InternalProofVerifier | null,
): Promise<number> {
  const app = createControlApp();
  // Every route here (state transfer, test hooks) first needs proof of the cluster key, when there is one.
  if (proofVerifier !== null) requireInternalProof(app, proofVerifier);
  app.get(internalStatusPath, (c) => {
    const status = node.status();
    return c.json({ nodeId: status.nodeId, serving: status.serving, hasState: status.hasState });
  });
  app.get("/v1/internal/snapshot/:shard", async (c) => {
    const index = Number(c.req.param("shard"));
    const epochMin = Number(c.req.query(snapshotEpochMinParam) ?? "0");
    if (!Number.isInteger(index) || index < 0 || index >= node.shards.length || !Number.isSafeInteger(epochMin)) {
      return c.json({ error: { code: "invalid", message: `bad shard or ${snapshotEpochMinParam}` } }, 400);
    }
    // A joining node gives its kept state only when asked for it (merge of kept states).
    const kept = c.req.query("kept") === "1";
    if (node.joining && !(kept && node.hasState))
      return c.json({ error: { code: "unavailable", message: "this node is joining" } }, 503);
    // Start the export first so that "not ready" (epoch below epochMin) is a clean 503.
    const chunks: Uint8Array[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: Error | null = null;
    const done = node
      .exportShard(
        index,
        epochMin,
        (records) => {
          // Records as the source replica wrote them from its slabs: streamed as they are.
          chunks.push(records);
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
        while (chunks.length === 0 && !finished && failure === null)
          await new Promise<void>((resolve) => (wake = resolve));
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
      if (typeof body?.partitioned !== "boolean")
        return c.json({ error: { code: "invalid", message: 'body must be {"partitioned": true|false}' } }, 400);
      const membership = getMembership();
      if (membership === null) return c.json({ error: { code: "unavailable", message: "not registered yet" } }, 503);
      membership.simulatePartition(body.partitioned);
      return c.json({ etcdPartitioned: body.partitioned });
    });
  }
  registerConsoleRoutes(app, {
    self: node.options.nodeId,
    view: () => node.view,
    memberHttp: peerHttpOf(security.tls),
  });
  const controlPathPrefixes = ["/v1/internal/", consolePathPrefix, ...(testHooks ? ["/v1/test/"] : [])];
  return node.serveHttp({
    host: http.host,
    port: http.port,
    controlPathPrefixes,
    control: (request) => app.fetch(request),
    tls: security.tls,
    auth: security.auth,
  });
}

/** The node's status with the failure detector's view added (when it runs). */
/** What the failure detector adds to /v1/status (null without one). */
function detectorStatus(membership: EtcdMembership | null, detector: PeerDetector | null): StatusExtras | null {
  if (membership === null || detector === null) return null;
  const d = membership.detectorStatus();
  const c = membership.counters();
  const last = d.lastEviction;
  return {
    suspects: [...detector.suspects],
    suspectedBy: d.suspectedBy,
    heardAgoMs: detector.heardAgoMs(),
    evictions: {
      decided: c.evictionsDecided,
      ofThisNode: c.evictionsOfSelf,
      candidate: d.candidate,
      pending: d.pending,
      holding: d.holding,
      last:
        last === null
          ? null
          : {
              member: last.member,
              lease: last.lease,
              by: last.by,
              reason: last.reason,
              suspectedBy: last.suspectedBy,
              epoch: last.epoch,
            },
      decision:
        d.decision === null
          ? null
          : {
              target: d.decision.target,
              decider: d.decision.decider,
              reason: d.decision.reason,
              suspectedBy: d.decision.suspectedBy,
            },
    },
  };
}

function etcdMetrics(membership: EtcdMembership | null): string {
  if (membership === null) return "";
  const c = membership.counters() as unknown as Record<string, number>;
  return (
    Object.entries(c)
      .map(([name, value]) => {
        const metric = `hermes_membership_${name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase()}_total`;
        return `# HELP ${metric} etcd membership counter ${name}.\n# TYPE ${metric} counter\n${metric} ${value}`;
      })
      .join("\n") + "\n"
  );
}

function parseHostPortFlag(flag: string, text: string): { host: string; port: number } {
  try {
    return parseHostPort(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Frames carry a 32-bit cluster id derived from the name: another cluster's frames are dropped. */
export function clusterIdOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export type { NodeId };
