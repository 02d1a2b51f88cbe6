// Runs a throwaway single-member etcd on 127.0.0.1 (free ports, temporary data dir) for manual
// cluster runs, e.g. `hermes-kv node ... --etcd <url>`. Prints the client URL on stdout, then
// waits; Ctrl-C or SIGTERM stops etcd and removes its data dir.
//   bun scripts/etcd-test-server.ts

import { startEtcd } from "../test/lib/etcd.ts";

const server = await startEtcd();
console.log(server.clientUrl);
console.error(`etcd-test-server: pid ${server.pid()}, data ${server.dataDir}; Ctrl-C to stop`);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.cleanup();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
// Keep the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
