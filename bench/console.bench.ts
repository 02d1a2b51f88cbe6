// What the web console costs a node (mitata, one run, ratios): a local 3-replica cluster on
// 127.0.0.1, one HTTP client, requests one at a time:
//   - a GET of one key (the API's fast path in the shard worker: the reference);
//   - GET /v1/status straight from replica 1 (answered by its shard worker);
//   - GET /ui/members from replica 0 (forwarded by the worker to the main thread);
//   - GET /ui/member/1/status from replica 0 (forwarded, then fetched from replica 1 by the proxy);
//   - GET /ui (the page, forwarded);
//   - one whole poll of an open console tab: /ui/members, then status and metrics of 3 members.
//
//   bun bench/console.bench.ts

import { bench, group, run, summary } from "mitata";
import { LocalCluster } from "../src/cli/local-cluster.ts";

const cluster = await LocalCluster.start({
  replicas: 3,
  host: "127.0.0.1",
  httpPort: 0,
  shards: 1,
  transport: "tcp",
  rm: { leaseMs: 5000, renewEveryMs: 50, removalMarginMs: 50 },
  node: {},
  log: () => {},
});
const [a, b] = [cluster.url(0), cluster.url(1)];
await fetch(`${a}/v1/kv/bench-key`, { method: "PUT", body: "value-of-the-bench-key" });

async function get(url: string): Promise<void> {
  const answer = await fetch(url);
  if (answer.status !== 200) throw new Error(`${url}: ${answer.status}`);
  await answer.arrayBuffer();
}

summary(() => {
  group("one request at a time, 3 local replicas", () => {
    bench("GET /v1/kv/{key} (fast path, reference)", () => get(`${a}/v1/kv/bench-key`));
    bench("GET /v1/status of replica 1, direct", () => get(`${b}/v1/status`));
    bench("GET /ui/members (main thread)", () => get(`${a}/ui/members`));
    bench("GET /ui/member/1/status (main thread + proxy)", () => get(`${a}/ui/member/1/status`));
    bench("GET /ui (the page)", () => get(`${a}/ui`));
    bench("one console poll: members + 3 x (status, metrics)", async () => {
      await get(`${a}/ui/members`);
      await Promise.all(
        [0, 1, 2].flatMap((id) => [get(`${a}/ui/member/${id}/status`), get(`${a}/ui/member/${id}/metrics`)]),
      );
    });
  });
});

try {
  await run();
} finally {
  await cluster.close();
}
