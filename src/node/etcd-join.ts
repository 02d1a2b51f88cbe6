// How a `hermes-kv node` loads the cluster's state when it joins: the attempt its Rejoiner runs.
//
// From a serving member if there is one: it holds every committed write. If none serves (e.g.
// every member lost its lease while etcd was down), merge the state of every node of the cluster
// that kept some (higher ts wins), members or not: etcd removes any member whose lease expired, so
// the view may have shrunk to nodes that missed the latest commits while a node removed since, alive
// and holding its state, has the only copy (the simulator's --merge-rule view, core seed 7). The
// nodes come from etcd's persistent node keys (src/membership/etcd-nodes.ts); each must answer that
// it does not serve, so a node that cannot be asked holds the merge back. The very first node of
// a new cluster has nothing to load: it bootstraps and marks the cluster initialized in etcd, so
// that an empty node never mistakes a cluster with data for a new one.

import { plainPeerHttp, type PeerHttp } from "../base/peer-http.ts";
import type { EtcdClient } from "../membership/etcd-client.ts";
import { knownNodes, nodesPrefix } from "../membership/etcd-nodes.ts";
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
  /** The cluster's name: its node keys list every node, members or not. */
  cluster: string;
  log: (line: string) => void;
  /** How to reach the members' HTTP ports (https and the certificates when they serve TLS); default plain http. */
  peerHttp?: PeerHttp;
  /** Proves the cluster key to the members' internal routes (--cluster-key-file); null: no key. */
  proof?: InternalProofSigner | null;
}

/** What a joining node asks a peer when no member serves: its id, whether it serves, whether it kept state. */
export const internalStatusPath = "/v1/internal/status";

export function etcdJoinAttempt(options: EtcdJoinOptions): JoinAttempt {
  const { node, membership, etcd, initializedKey, cluster, log } = options;
  const peer = options.peerHttp ?? plainPeerHttp;
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
          fetchSnapshot(node, peer, source.http, index, epochMin, false, onChunk, proof),
        );
        log(
          `hermes-kv node ${self}: joined from node ${source.id}: ${entries} entries in ${(performance.now() - run.startedMs).toFixed(0)} ms`,
        );
        return true;
      } catch (error) {
        run.report(`cannot load from node ${source.id} yet: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    // No member serves: merge what every node that kept its state has, members or not (a member's
    // address is its current one; a node out of the view is asked at the address it last recorded).
    const peers = new Map<number, string>();
    for (const known of await knownNodes(etcd, cluster)) if (known.id !== self) peers.set(known.id, known.http);
    for (const member of others) peers.set(member.id, member.http);
    const merged = await mergeFromKeptState(node, peer, proof, [...peers], nodesPrefix(cluster), run.report);
    if (merged !== null) {
      log(
        `hermes-kv node ${self}: no member was serving; rejoined by merging kept state (${merged} entries) in ${(performance.now() - run.startedMs).toFixed(0)} ms`,
      );
      return true;
    }
    return false;
  };
}

/**
 * Load every shard from each of `peers` (node id, HTTP address) that kept its state (it answers
 * while joining), plus our own kept state. Only when every other node positively says it does not
 * serve: if one serves, it holds every committed write, and if one cannot be asked, it may hold
 * the only copy of one (null: try again later; `report` says who). Null too when nobody, us
 * included, holds state.
 */
async function mergeFromKeptState(
  node: HermesNode,
  peer: PeerHttp,
  proof: InternalProofSigner | null,
  peers: [number, string][],
  nodeKeys: string,
  report: (line: string) => void,
): Promise<number | null> {
  const sources: string[] = [];
  for (const [id, http] of peers) {
    let status: { serving?: boolean; hasState?: boolean; nodeId?: number };
    try {
      // The internal route, not /v1/status: it takes the cluster proof where /v1/status would want
      // a client token (--auth-file), which nodes do not hold.
      const response = await getInternal(
        peer,
        proof,
        http,
        internalStatusPath,
        AbortSignal.timeout(peerStatusTimeoutMs),
      );
      status = (await response.json()) as { serving?: boolean; hasState?: boolean; nodeId?: number };
    } catch {
      status = {};
    }
    if (status.nodeId !== id) {
      // Down, cut off, or its address now belongs to another process: it may be alive elsewhere
      // with the only copy of a commit.
      report(
        `no member serves, and node ${id} cannot be asked at ${http} whether it kept state; waiting (if it is gone for good, delete ${nodeKeys}${id} in etcd)`,
      );
      return null;
    }
    if (status.serving !== false) {
      report(`node ${id} (${http}) serves or did not say it does not; waiting to load from it`);
      return null;
    }
    if (status.hasState === true) sources.push(http);
  }
  if (sources.length === 0 && !node.hasState) {
    report(
      "no member serves and no node kept its state; waiting (if every replica was lost, delete the cluster's initialized key in etcd to start empty)",
    );
    return null;
  }
  // Every member that kept state contributes: a write committed while some were out is at least
  // in the state of those that were in.
  return node.loadFrom(async (index, epochMin, onChunk) => {
    let count = 0;
    for (const http of sources) count += await fetchSnapshot(node, peer, http, index, epochMin, true, onChunk, proof);
    return count;
  }, true);
}

/** Stream one shard of `http`'s replica into `onChunk`; `kept`: also from a joining member that kept its state. */
async function fetchSnapshot(
  node: HermesNode,
  peer: PeerHttp,
  http: string,
  index: number,
  epochMin: number,
  kept: boolean,
  onChunk: (records: Uint8Array) => void,
  proof: InternalProofSigner | null,
): Promise<number> {
  const response = await getInternal(
    peer,
    proof,
    http,
    `/v1/internal/snapshot/${index}?${snapshotEpochMinParam}=${epochMin}${kept ? "&kept=1" : ""}`,
  );
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

/** GET an internal route of the node at `http` (host:port): over its scheme and TLS, with the cluster key's proof when there is one. */
function getInternal(
  peer: PeerHttp,
  proof: InternalProofSigner | null,
  http: string,
  pathAndQuery: string,
  signal?: AbortSignal,
): Promise<Response> {
  const url = `${peer.scheme}://${http}${pathAndQuery}`;
  return fetch(url, {
    headers: proof === null ? {} : proof.headers("GET", url),
    ...(signal === undefined ? {} : { signal }),
    ...(peer.tls === undefined ? {} : { tls: peer.tls }),
  });
}
