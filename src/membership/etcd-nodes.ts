// Every node of a cluster, members or not: /<prefix>/<cluster>/nodes/<id> holds the HTTP address of
// the last process of node <id>, written when it starts, with no lease. Member keys come and go with
// leases; these stay, so a node that joins when no member serves can still find the nodes that were
// removed but are alive and kept their state (src/node/etcd-join.ts merges theirs too: one of them
// may hold the only copy of a committed write).

import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { EtcdClient } from "./etcd-client.ts";
import { defaultKeyPrefix } from "./etcd.ts";

export interface KnownNode {
  id: NodeId;
  http: string;
}

export function nodesPrefix(cluster: string, keyPrefix = defaultKeyPrefix): string {
  return `/${keyPrefix}/${cluster}/nodes/`;
}

/** Records this process's HTTP address under its node id (replacing a previous process's). */
export async function recordNode(etcd: EtcdClient, cluster: string, node: KnownNode): Promise<void> {
  await etcd.put(`${nodesPrefix(cluster)}${node.id}`, JSON.stringify({ http: node.http }));
}

/** Every node recorded for `cluster`, by id. Keys or values that are not ours are skipped. */
export async function knownNodes(etcd: EtcdClient, cluster: string): Promise<KnownNode[]> {
  const prefix = nodesPrefix(cluster);
  const { kvs } = await etcd.range(prefix, { prefix: true });
  const nodes: KnownNode[] = [];
  for (const kv of kvs) {
    const tail = kv.key.slice(prefix.length);
    if (!/^(0|[1-9][0-9]?)$/.test(tail) || Number(tail) > nodeIdMax) continue;
    let http: unknown;
    try {
      http = (JSON.parse(kv.value) as { http?: unknown }).http;
    } catch {
      continue;
    }
    if (typeof http === "string" && http.length > 0) nodes.push({ id: Number(tail), http });
  }
  return nodes.sort((a, b) => a.id - b.id);
}
