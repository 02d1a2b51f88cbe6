// The node's part of listings and watch streams (issue 12): the MessagePorts between its workers
// for listing pages (see src/worker/browse-links.ts), and the watch streams in /metrics.

import { watchersMax } from "../worker/watch-feed.ts";

/** ports[i]: worker i's port to each other worker (null for itself), or null with one worker. */
export function browsePortsOf(shards: number): ((MessagePort | null)[] | null)[] {
  if (shards === 1) return [null];
  const ports: (MessagePort | null)[][] = Array.from({ length: shards }, () => new Array(shards).fill(null));
  for (let a = 0; a < shards; a++)
    for (let b = a + 1; b < shards; b++) {
      const channel = new MessageChannel();
      ports[a]![b] = channel.port1;
      ports[b]![a] = channel.port2;
    }
  return ports;
}

/** Watch streams held by the node (counts: per worker, then the total), for /metrics. */
export function renderWatchMetrics(counts: Int32Array | null): string {
  if (counts === null) return "";
  const shards = counts.length - 1;
  const lines = [
    "# HELP hermes_watchers Watch streams (GET /v1/watch) this node holds, by the worker serving them.",
    "# TYPE hermes_watchers gauge",
  ];
  for (let shard = 0; shard < shards; shard++)
    lines.push(`hermes_watchers{shard="${shard}"} ${Atomics.load(counts, shard)}`);
  lines.push(
    "# HELP hermes_watchers_max Watch streams this node holds at most (watchersMax); more are answered 429.",
    "# TYPE hermes_watchers_max gauge",
    `hermes_watchers_max ${watchersMax}`,
    "",
  );
  return lines.join("\n");
}
