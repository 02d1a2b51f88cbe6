// Whole-cluster crash rounds for the durability tests and bench (test/cluster/durable-crash.test.ts,
// bench/durable-crash.ts): load, SIGKILL every node at once, restart every node on its data dir.

import {
  ackedUpdates,
  request,
  startLoad,
  waitFor,
  type NodeProcess,
  type ProcCluster,
  type Recorder,
} from "./helpers.ts";

/** Spawns of one node while its killed instance's etcd lease has not expired yet (it refuses to start then). */
const spawnAttemptsMax = 20;
const spawnRetryPauseMs = 500;

/**
 * Restart a SIGKILLed node. Its etcd member key outlives it by up to a lease TTL, and the node
 * refuses to start while it is there ("already registered"): spawn again after a pause until it
 * starts. Any other start-up failure is thrown at once.
 */
export async function spawnOnceLeaseGone(node: NodeProcess): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await node.spawn();
      return;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (!message.includes("is already registered") || attempt >= spawnAttemptsMax) throw error;
    }
    await Bun.sleep(spawnRetryPauseMs);
  }
}

/** The version in an ETag `"version.writer"`; 0 for none (a key never written). */
export function etagVersion(etag: string | null): number {
  if (etag === null) return 0;
  const match = /^"(\d+)\.\d+"$/.exec(etag);
  if (match === null) throw new Error(`not an ETag of this store: ${etag}`);
  return Number(match[1]);
}

export interface CrashRoundOptions {
  keys: readonly string[];
  counters: readonly string[];
  seed: number;
  /** Client ids of this round's load start here (unique values across rounds). */
  clientIdBase: number;
  /** The load runs until this many more updates were acknowledged... */
  ackedBeforeKill: number;
  /** ...and this much longer, then every node is SIGKILLed at once. */
  killDelayMs: number;
  clientsPerNode?: number;
}

export interface CrashRoundResult {
  /** Updates acknowledged during this round's load (all before the kill: the nodes were dead after). */
  acked: number;
  /** Per key, the highest version an acknowledged update of this round produced. */
  ackedVersionMax: Map<string, number>;
  /** Per key, the version node 0 answers once every node serves again. */
  versionAfter: Map<string, number>;
  /** From the first restart to every node serving with all three members. */
  restartMs: number;
}

export async function crashRound(c: ProcCluster, recorder: Recorder, o: CrashRoundOptions): Promise<CrashRoundResult> {
  const urls = c.urls();
  const ackedBefore = ackedUpdates(recorder, () => true).length;
  const startedAt = performance.now();
  let stop = false;
  const load = startLoad({
    urls,
    recorder,
    keys: o.keys,
    counters: o.counters,
    clientsPerNode: o.clientsPerNode ?? 3,
    seed: o.seed,
    clientIdBase: o.clientIdBase,
    stop: () => stop,
    opsMax: Number.MAX_SAFE_INTEGER,
    refusedIsUnknown: true,
  });
  try {
    await waitFor(
      `${o.ackedBeforeKill} acknowledged updates before the crash`,
      () => ackedUpdates(recorder, () => true).length >= ackedBefore + o.ackedBeforeKill,
      60_000,
    );
    await Bun.sleep(o.killDelayMs);
    await Promise.all(c.nodes.map((n) => n.kill()));
  } finally {
    stop = true;
    await load.done;
  }
  const acked = ackedUpdates(recorder, (r) => r.call >= startedAt);
  const ackedVersionMax = new Map<string, number>();
  for (const r of acked) {
    const version = etagVersion(r.etag ?? null);
    ackedVersionMax.set(r.key, Math.max(ackedVersionMax.get(r.key) ?? 0, version));
  }
  const restartedAt = performance.now();
  await Promise.all(c.nodes.map((n) => spawnOnceLeaseGone(n)));
  await Promise.all(c.nodes.map((n) => n.waitHealthy(60_000)));
  await c.waitMembers(
    c.nodes.map((n) => n.id),
    30_000,
  );
  const restartMs = performance.now() - restartedAt;
  const versionAfter = new Map<string, number>();
  for (const key of [...o.keys, ...o.counters]) {
    const answer = await request(`${urls[0]}/v1/kv/${encodeURIComponent(key)}`);
    if (answer.kind !== "response" || (answer.status !== 200 && answer.status !== 404))
      throw new Error(`reading ${key} after the restart: ${JSON.stringify(answer)}`);
    versionAfter.set(key, etagVersion(answer.etag));
  }
  return { acked: acked.length, ackedVersionMax, versionAfter, restartMs };
}
