// How a `hermes-kv node` loads the cluster's state when it joins: the attempt its Rejoiner runs.
//
// From a serving member if there is one: it holds every committed write. If none serves (e.g.
// every member lost its lease while etcd was down), merge the state of every member that kept some
// (higher ts wins): each write committed while they were members is there. The very first node of
// a new cluster has nothing to load: it bootstraps and marks the cluster initialized in etcd, so
// that an empty node never mistakes a cluster with data for a new one.

import type { EtcdClient } from "../membership/etcd-client.ts";
import type { HermesNode } from "./node.ts";
import type { JoinAttempt, MembershipEvents } from "./rejoiner.ts";
import { SnapshotRecordSplitter, snapshotEpochMinParam } from "./snapshot-codec.ts";
import type { InternalProofSigner } from "./internal-proof.ts";

/** Bound on asking a peer whether it serves; a peer that does not answer in time counts as "cannot tell". */
export const peerStatusTimeoutMs = 2000;

export interface EtcdJoinOptions {
  node: HermesNode;
  membership: MembershipEvents;
  etcd: EtcdClient;
  /** The etcd key whose presence says the cluster was bootstrapped (it has data). */
  initializedKey: string;
  log: (line: string) => void;
  /** Proves the cluster key to the members' internal routes (--cluster-key-file); null: no key. */
  proof?: InternalProofSigner | null;
}

export function etcdJoinAttempt(options: EtcdJoinOptions): JoinAttempt {
  const { node, membership, etcd, initializedKey, log } = options;
  const proof = options.proof ?? null;
  const self = node.options.nodeId;
  return async (run) => {
    const others = membership.view().members.filter((m) => m.id !== self);
    const initialized = (await etcd.range(initializedKey)).kvs.length > 0;
    if (!initialized) {
      // The lowest id bootstraps; the others wait for it and then load from it.
      if (!others.every((m) => m.id > self) || node.hasState) return false;
      await node.loadFrom(async () => 0);
      await etcd.put(initializedKey, new Date().toISOString());
      log(`hermes-kv node ${self}: bootstrapped a new cluster`);
      return true;
    }
    for (const source of others) {
      try {
        const entries = await node.loadFrom((index, epochMin, onChunk) =>
          fetchSnapshot(node, source.http, index, epochMin, false, onChunk, proof),
        );
        log(
          `hermes-kv node ${self}: joined from node ${source.id}: ${entries} entries in ${(performance.now() - run.startedMs).toFixed(0)} ms`,
        );
        return true;
      } catch (error) {
        run.report(`cannot load from node ${source.id} yet: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    // Nobody serves: merge what every member that kept its state has.
    const merged = await mergeFromKeptState(
      node,
      others.map((m) => m.http),
      proof,
    );
    if (merged !== null) {
      log(
        `hermes-kv node ${self}: no member was serving; rejoined by merging kept state (${merged} entries) in ${(performance.now() - run.startedMs).toFixed(0)} ms`,
      );
      return true;
    }
    run.report(
      `no member serves and none kept its state; waiting (if every replica was lost, delete ${initializedKey} in etcd to start empty)`,
    );
    return false;
  };
}

/**
 * Load every shard from each of `peers` that kept its state (it answers while joining), plus our
 * own kept state. Only when every other member positively says it does not serve: if one serves,
 * or cannot be asked, it may hold writes committed while we were out, so we must load from it
 * instead (null: try again later). Null too when nobody, us included, holds state.
 */
async function mergeFromKeptState(
  node: HermesNode,
  peers: string[],
  proof: InternalProofSigner | null,
): Promise<number | null> {
  const sources: string[] = [];
  for (const http of peers) {
    let status: { serving?: boolean; hasState?: boolean };
    try {
      const response = await fetch(`http://${http}/v1/status`, { signal: AbortSignal.timeout(peerStatusTimeoutMs) });
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
  return node.loadFrom(async (index, epochMin, onChunk) => {
    let count = 0;
    for (const http of sources) count += await fetchSnapshot(node, http, index, epochMin, true, onChunk, proof);
    return count;
  });
}

/** Stream one shard of `http`'s replica into `onChunk`; `kept`: also from a joining member that kept its state. */
async function fetchSnapshot(
  node: HermesNode,
  http: string,
  index: number,
  epochMin: number,
  kept: boolean,
  onChunk: (records: Uint8Array) => void,
  proof: InternalProofSigner | null,
): Promise<number> {
  const url = `http://${http}/v1/internal/snapshot/${index}?${snapshotEpochMinParam}=${epochMin}${kept ? "&kept=1" : ""}`;
  const response = await fetch(url, { headers: proof === null ? {} : proof.headers("GET", url) });
  if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status} ${await response.text()}`);
  // Whole records go to the replica as bytes; it installs them in place.
  const splitter = new SnapshotRecordSplitter(node.keyBytesMax, node.valueBytesMax);
  for await (const chunk of response.body) {
    const records = splitter.push(chunk as Uint8Array);
    if (records.length > 0) onChunk(records);
  }
  splitter.finish();
  return splitter.records;
}
