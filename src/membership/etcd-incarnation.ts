// A node process's incarnation, from etcd: the number that, with its node id, makes the writer id of
// its Hermes timestamps (src/base/ids.ts). A process restarted under its old `--id` starts empty and
// knows nothing of what its previous process issued; with a new incarnation it cannot issue a
// timestamp (key, version, writer) that the previous one issued with another value.
//
// The counter is one key per node id, /<prefix>/<cluster>/incarnations/<id>, holding the last
// incarnation claimed in decimal. A claim reads it and writes it + 1 in a transaction that holds only
// if the key is unchanged since the read (its mod revision; absent: created by this claim, as 0), so
// two processes of one id that start at once still get two numbers. The key has no lease: it must
// outlive every process of its node id. A claim happens once per process, before its replicas exist.

import { incarnationMax } from "../base/ids.ts";
import type { NodeId } from "../base/ids.ts";
import type { EtcdClient } from "./etcd-client.ts";
import { defaultKeyPrefix } from "./etcd.ts";

/** Claims retried after losing a race to another process of the same node id, before giving up. */
export const incarnationClaimAttemptsMax = 16;

export function incarnationKey(cluster: string, id: NodeId, keyPrefix = defaultKeyPrefix): string {
  return `/${keyPrefix}/${cluster}/incarnations/${id}`;
}

/** Thrown when the counter cannot be claimed: its value is not ours, or too many races were lost. */
export class IncarnationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IncarnationError";
  }
}

/**
 * Claims the next incarnation of the node id whose counter is `key`: 0 for the first process ever,
 * then 1, 2, ... Throws IncarnationError on a counter that is not a valid incarnation or is used up,
 * and passes etcd's own errors (unreachable, timeout) through.
 */
export async function claimIncarnation(etcd: EtcdClient, key: string): Promise<number> {
  for (let attempt = 0; attempt < incarnationClaimAttemptsMax; attempt++) {
    const { kvs } = await etcd.range(key);
    const current = kvs[0];
    let next = 0;
    if (current !== undefined) {
      if (!/^(0|[1-9][0-9]{0,9})$/.test(current.value) || Number(current.value) > incarnationMax)
        throw new IncarnationError(
          `${key} holds ${JSON.stringify(current.value)}, not an incarnation 0..${incarnationMax}`,
        );
      next = Number(current.value) + 1;
      if (next > incarnationMax)
        throw new IncarnationError(`${key}: every incarnation 0..${incarnationMax} of this node id was used`);
    }
    // Absent: the key must still be absent (create revision 0). Present: unchanged since the read.
    const compare =
      current === undefined
        ? { key, target: "CREATE" as const, result: "EQUAL" as const, revision: 0 }
        : { key, target: "MOD" as const, result: "EQUAL" as const, revision: current.modRevision };
    const { succeeded } = await etcd.txn([compare], [{ key, value: String(next) }]);
    if (succeeded) return next;
  }
  throw new IncarnationError(
    `${key}: lost ${incarnationClaimAttemptsMax} claims in a row to other processes of this node id`,
  );
}
