// N replicas in one process (`hermes-kv local`): one HermesNode each, an in-process RM, and one
// HTTP server per replica. A replica can be stopped (it stops renewing its lease, like a crashed
// process; the RM removes it once the lease has expired) and started again (it registers in a new
// epoch, loads a live replica's state, then serves). A started replica joins through a Rejoiner,
// as a `hermes-kv node` does, so that it would join again if it ever lost its lease.

import { OpStatus } from "../base/kinds.ts";
import type { NodeId } from "../base/ids.ts";
import { createHttpHandler } from "../http/app.ts";
import { LocalRm, type LocalRmOptions } from "../membership/local.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import type { KvBackend, NodeStatus, OpRequest, OpResult } from "../base/kv-backend.ts";
import { HermesNode, httpBodyBytesMax, nodeDefaults, type NodeOptions } from "../node/node.ts";
import { NotReadyError } from "../node/not-ready-error.ts";
import { Rejoiner } from "../node/rejoiner.ts";
import type { SnapshotEntry } from "../base/snapshot-entry.ts";

export interface LocalClusterOptions {
  replicas: number;
  host: string;
  /** Replica i serves HTTP on httpPort + i (0: OS-assigned ports). */
  httpPort: number;
  shards: number;
  transport: TransportKind;
  rm: Partial<LocalRmOptions>;
  node: Partial<NodeOptions>;
  log: (line: string) => void;
}

const stoppedResult: OpResult = { status: OpStatus.Unavailable, value: null, version: 0, writer: 0 };

/**
 * A joiner asks every live replica for a shard, and asks again after a pause while none is ready
 * (none has installed the epoch that added the joiner yet), this many times before it gives up:
 * 200 rounds at least 10 ms apart, 2 s or more; a new epoch reaches every replica in milliseconds.
 */
const sourceRoundsMax = 200;
const sourceRoundPauseMs = 10;

/** The HTTP server's view of one replica: the live node, or 503 while it is stopped. */
class ReplicaBackend implements KvBackend {
  node: HermesNode | null = null;
  /** The Rejoiner of a replica started again (startReplica), from its join until it stops. */
  rejoiner: Rejoiner | null = null;
  readonly id: NodeId;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  constructor(id: NodeId, keyBytesMax: number, valueBytesMax: number) {
    this.id = id;
    this.keyBytesMax = keyBytesMax;
    this.valueBytesMax = valueBytesMax;
  }
  submit(request: OpRequest): Promise<OpResult> {
    return this.node === null ? Promise.resolve(stoppedResult) : this.node.submit(request);
  }
  status(): NodeStatus {
    return (
      this.node?.status() ?? { nodeId: this.id, epoch: 0, members: [], serving: false, hasState: false, leaseRemainingMs: 0, transport: "stopped", shards: [] }
    );
  }
  metrics(): string {
    return this.node?.metrics() ?? "# replica stopped\n";
  }
}

export class LocalCluster {
  readonly options: LocalClusterOptions;
  readonly rm: LocalRm;
  readonly backends: ReplicaBackend[] = [];
  readonly servers: ReturnType<typeof Bun.serve>[] = [];
  #closed = false;

  private constructor(options: LocalClusterOptions) {
    this.options = options;
    this.rm = new LocalRm({ log: options.log, ...options.rm });
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = new LocalCluster(options);
    try {
      await cluster.#start();
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  async #start(): Promise<void> {
    const o = this.options;
    const keyBytesMax = o.node.keyBytesMax ?? nodeDefaults.keyBytesMax;
    const valueBytesMax = o.node.valueBytesMax ?? nodeDefaults.valueBytesMax;
    for (let id = 0; id < o.replicas; id++) {
      const backend = new ReplicaBackend(id, keyBytesMax, valueBytesMax);
      this.backends.push(backend);
      this.servers.push(this.#serve(backend, o.httpPort === 0 ? 0 : o.httpPort + id));
    }
    const nodes = await Promise.all(this.backends.map((backend) => this.#startNode(backend.id)));
    const handles = this.rm.registerAll(nodes.map((n) => n.memberInfo()));
    nodes.forEach((node, id) => {
      node.attachMembership(handles[id]!);
      this.backends[id]!.node = node;
    });
  }

  #startNode(id: NodeId): Promise<HermesNode> {
    const o = this.options;
    return HermesNode.start({
      nodeId: id,
      clusterId: nodeDefaults.clusterId,
      shards: o.shards,
      transport: o.transport,
      host: o.host,
      basePort: 0,
      httpAddress: this.httpAddress(id),
      keyBytesMax: nodeDefaults.keyBytesMax,
      valueBytesMax: nodeDefaults.valueBytesMax,
      frameBytesMax: nodeDefaults.frameBytesMax,
      opsInFlightMaxPerShard: nodeDefaults.opsInFlightMaxPerShard,
      replica: {},
      numa: true,
      bench: null,
      ...o.node,
    });
  }

  httpAddress(id: NodeId): string {
    const server = this.servers[id];
    return `${this.options.host}:${server?.port ?? 0}`;
  }

  url(id: NodeId): string {
    return `http://${this.httpAddress(id)}`;
  }

  nodes(): (HermesNode | null)[] {
    return this.backends.map((b) => b.node);
  }

  #serve(backend: ReplicaBackend, port: number): ReturnType<typeof Bun.serve> {
    const { app, fetch } = createHttpHandler(backend);
    // Admin routes exist only in the local cluster: they stop and start replicas of this process.
    // They go on the app itself, so unknown routes keep the app's JSON 404/405 answers.
    app.post("/v1/admin/stop", async (c) => {
      const done = await this.stopReplica(backend.id);
      return c.json({ replica: backend.id, stopped: done });
    });
    app.post("/v1/admin/start", async (c) => {
      const entries = await this.startReplica(backend.id);
      return c.json({ replica: backend.id, started: entries !== null, keysLoaded: entries ?? 0 });
    });
    return Bun.serve({ hostname: this.options.host, port, fetch, maxRequestBodySize: httpBodyBytesMax });
  }

  /** Stop a replica as if it crashed: it answers 503 and the RM removes it when its lease expires. */
  async stopReplica(id: NodeId): Promise<boolean> {
    const backend = this.backends[id]!;
    const node = backend.node;
    if (node === null) return false;
    backend.node = null;
    backend.rejoiner?.stop();
    backend.rejoiner = null;
    await node.close();
    this.options.log(`hermes-kv local: replica ${id} stopped`);
    return true;
  }

  /**
   * Start a stopped replica: it waits until the RM has removed its old incarnation, registers in a
   * new epoch, loads the state of a live replica shard by shard, and only then serves.
   * Returns the number of entries loaded, or null if it was running.
   */
  async startReplica(id: NodeId): Promise<number | null> {
    const backend = this.backends[id]!;
    if (backend.node !== null) return null;
    await this.rm.waitRemoved(id);
    const node = await this.#startNode(id);
    node.beginJoin();
    const membership = this.rm.register(node.memberInfo());
    node.attachMembership(membership);
    let entries = 0;
    const rejoiner = new Rejoiner({
      node,
      membership,
      attempt: async (run) => {
        entries = await node.loadFrom((index, epochMin, onChunk) => this.#exportFromLive(id, index, epochMin, onChunk));
        this.options.log(`hermes-kv local: replica ${id} rejoined: ${entries} entries loaded in ${(performance.now() - run.startedMs).toFixed(0)} ms`);
        return true;
      },
      log: this.options.log,
      // #exportFromLive already waited for a ready source: when it fails, so does this start.
      failedAttemptsMax: 1,
    });
    backend.rejoiner = rejoiner;
    rejoiner.start();
    const state = await rejoiner.settled();
    if (state !== "joined") {
      if (backend.rejoiner === rejoiner) backend.rejoiner = null;
      await node.close();
      throw rejoiner.failure ?? new Error(`replica ${id}: stopped while it joined (${state})`);
    }
    backend.node = node;
    return entries;
  }

  /**
   * Ask live replicas in turn until one is ready to be a source (it has installed epochMin). Only
   * "not ready" is waited out: any other error is a real failure and ends the start.
   */
  async #exportFromLive(joiner: NodeId, index: number, epochMin: number, onChunk: (entries: SnapshotEntry[]) => void): Promise<number> {
    for (let round = 0; round < sourceRoundsMax; round++) {
      for (const backend of this.backends) {
        const source = backend.node;
        if (backend.id === joiner || source === null || source.joining) continue;
        try {
          return await source.exportShard(index, epochMin, onChunk);
        } catch (error) {
          if (!(error instanceof NotReadyError)) throw error;
        }
      }
      await Bun.sleep(sourceRoundPauseMs);
    }
    throw new Error(`replica ${joiner}: no live replica could give shard ${index}`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A replica that is starting again closes its own node once its join has stopped.
    for (const backend of this.backends) backend.rejoiner?.stop();
    for (const server of this.servers) server.stop(true);
    await Promise.all(this.backends.map((b) => b.node?.close()));
    this.rm.close();
  }
}
