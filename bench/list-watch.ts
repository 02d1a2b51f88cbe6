// Listings and watch streams (issue 12), measured against a local cluster run as its own process
// (`hermes-kv local`, 3 replicas, tcp), so that this client does not share its event loop.
// Measures; asserts nothing but that the answers are complete. Prints ratios measured in the same
// run, with the load average.
//
//   bun bench/list-watch.ts                        W=1; LISTW_SHARDS=2 for two workers per replica
//
// 1. List: 10,000 keys (64-byte values) under one prefix. The time of one GET /v1/kv?prefix=
//    &values=1&limit=10000, and of paging with limit=1000, against the time of 10,000 GETs of the
//    same keys from one client over one keep-alive connection (sequential), and from 16 concurrent
//    clients. Target: the list under 1/10 of the 10,000 GETs.
// 2. Watch: a prefix watch on replica 0 while writers on replicas 1 and 2 update 200 keys at about
//    1,000 updates/s for 10 s (paced, unique values). Per update: the delay from its writer's 200
//    (the commit happened before) to the event on the stream, and from its invocation (an upper
//    bound of the commit-to-event delay); p50/p99/max. Checks that the last event of every key is
//    its last acknowledged value. Target: p99 under 50 ms.

import { cpus, loadavg } from "node:os";

const shards = Number(process.env.LISTW_SHARDS ?? 1);
const listKeys = 10_000;
const watchKeys = 200;
const watchRatePerS = 1000;
const watchSeconds = 10;
const root = new URL("..", import.meta.url).pathname;

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function freeBase(): Promise<number> {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    const taken = await Promise.all(
      [0, 1, 2].map((i) =>
        new Promise<boolean>((resolve) => {
          const s = Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } });
          s.stop(true);
          resolve(false);
        }).catch(() => true),
      ),
    );
    if (!taken.some(Boolean)) return base;
  }
}

const base = await freeBase();
const proc = Bun.spawn(
  [
    `${root}node_modules/.bin/bun`,
    `${root}src/main.ts`,
    "local",
    "--replicas",
    "3",
    "--http-port",
    String(base),
    "--shards",
    String(shards),
    "--transport",
    "tcp",
  ],
  { stdout: "pipe", stderr: "inherit" },
);
const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${base + i}`);
try {
  for (let i = 0; ; i++) {
    const ok = await fetch(`${urls[2]}/health`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (i > 300) throw new Error("the cluster did not start");
    await Bun.sleep(100);
  }
  console.log(`list-watch: 3 replicas x ${shards} workers, tcp, ${cpus().length} cores, load ${load()}`);

  // ---- 1. list against GETs ------------------------------------------------------------------
  const value = (i: number): string => Buffer.from(`value-${i}-`.padEnd(64, "x")).toString("base64");
  const keyOf = (i: number): string => `list/${String(i).padStart(5, "0")}`;
  for (let at = 0; at < listKeys; at += 1000) {
    const ops = Array.from({ length: 1000 }, (_, j) => ({ op: "put", key: keyOf(at + j), value: value(at + j) }));
    const r = await fetch(`${urls[1]}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ops }),
    });
    const body = (await r.json()) as { results: { status: number }[] };
    if (body.results.some((x) => x.status !== 200)) throw new Error("a load write failed");
  }
  const url = urls[0]!;
  // Warm both paths once.
  await (await fetch(`${url}/v1/kv?prefix=list%2F&limit=100&values=1`)).text();
  for (let i = 0; i < 200; i++) await (await fetch(`${url}/v1/kv/${encodeURIComponent(keyOf(i))}`)).arrayBuffer();

  const timeList = async (limit: number): Promise<number> => {
    const t0 = performance.now();
    let after: string | null = null;
    let count = 0;
    for (;;) {
      const q: string = `prefix=list%2F&values=1&limit=${limit}${after === null ? "" : `&after=${encodeURIComponent(after)}`}`;
      const body = (await (await fetch(`${url}/v1/kv?${q}`)).json()) as {
        keys: unknown[];
        more: boolean;
        next?: string;
      };
      count += body.keys.length;
      if (!body.more) break;
      after = body.next!;
    }
    const ms = performance.now() - t0;
    if (count !== listKeys) throw new Error(`listed ${count} keys, expected ${listKeys}`);
    return ms;
  };
  const timeGets = async (clients: number): Promise<number> => {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = next++; i < listKeys; i = next++) {
          const r = await fetch(`${url}/v1/kv/${encodeURIComponent(keyOf(i))}`);
          await r.arrayBuffer();
          if (r.status !== 200) throw new Error(`GET ${keyOf(i)}: ${r.status}`);
        }
      }),
    );
    return performance.now() - t0;
  };
  for (let round = 1; round <= 2; round++) {
    const list1 = await timeList(10_000);
    const list1000 = await timeList(1000);
    const getsSeq = await timeGets(1);
    const gets16 = await timeGets(16);
    console.log(
      `round ${round}: list 10,000 keys with values: one request ${list1.toFixed(0)} ms, pages of 1000 ${list1000.toFixed(0)} ms; ` +
        `10,000 GETs: sequential ${getsSeq.toFixed(0)} ms, 16 clients ${gets16.toFixed(0)} ms; ` +
        `ratio list/GETs: ${(list1 / getsSeq).toFixed(3)} (one request, sequential GETs), ` +
        `${(list1000 / gets16).toFixed(3)} (pages of 1000, 16 GET clients); load ${load()}`,
    );
  }

  // ---- 2. watch delay under 1,000 updates/s -----------------------------------------------------
  const wkey = (i: number): string => `wl/${String(i).padStart(3, "0")}`;
  const sent = new Map<string, { invokedMs: number; ackedMs: number }>();
  const lastAcked = new Map<string, string>();
  const lastEvent = new Map<string, string>();
  const ackDelays: number[] = [];
  const invokeDelays: number[] = [];
  const pendingEvents = new Map<string, number>();
  const abort = new AbortController();
  const stream = await fetch(`${url}/v1/watch?prefix=wl%2F&from=now`, { signal: abort.signal });
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const chunk of stream.body!) {
        const at = performance.now();
        buffered += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data === undefined || !block.startsWith("event: put")) continue;
          const e = JSON.parse(data) as { key: string; value: string };
          const v = Buffer.from(e.value, "base64").toString("utf8");
          lastEvent.set(e.key, v);
          const s = sent.get(v);
          if (s === undefined) pendingEvents.set(v, at);
          else {
            invokeDelays.push(at - s.invokedMs);
            if (s.ackedMs > 0) ackDelays.push(at - s.ackedMs);
            else pendingEvents.set(v, at);
          }
        }
      }
    } catch {
      // aborted at the end
    }
  })();
  const writers = 16;
  const total = watchRatePerS * watchSeconds;
  const t0 = performance.now();
  let issued = 0;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (;;) {
        const n = issued++;
        if (n >= total) return;
        // Paced: update n is due at t0 + n ms.
        const due = t0 + (n * 1000) / watchRatePerS;
        const wait = due - performance.now();
        if (wait > 0) await Bun.sleep(wait);
        const key = wkey(n % watchKeys);
        const v = `u${n}`;
        const entry = { invokedMs: performance.now(), ackedMs: 0 };
        sent.set(v, entry);
        const r = await fetch(`${urls[1 + (w % 2)]}/v1/kv/${encodeURIComponent(key)}`, { method: "PUT", body: v });
        await r.arrayBuffer();
        entry.ackedMs = performance.now();
        if (r.status !== 200) throw new Error(`PUT ${key}: ${r.status}`);
        // Writers of one key can race; the last acknowledged is the one with the highest n among the acked.
        const prev = lastAcked.get(key);
        if (prev === undefined || Number(prev.slice(1)) < n) lastAcked.set(key, v);
        const early = pendingEvents.get(v);
        if (early !== undefined) {
          pendingEvents.delete(v);
          ackDelays.push(early - entry.ackedMs);
        }
      }
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  await Bun.sleep(500);
  abort.abort();
  await reading;
  // A key's final value: what a GET answers now (concurrent writers of one key may commit out of issue order).
  let finalOk = 0;
  for (let i = 0; i < watchKeys; i++) {
    const key = wkey(i);
    const final = await (await fetch(`${url}/v1/kv/${encodeURIComponent(key)}`)).text();
    if (lastEvent.get(key) === final) finalOk++;
  }
  ackDelays.sort((a, b) => a - b);
  invokeDelays.sort((a, b) => a - b);
  const fmt = (xs: number[]): string =>
    `p50 ${quantile(xs, 0.5).toFixed(1)} ms, p99 ${quantile(xs, 0.99).toFixed(1)} ms, max ${xs.at(-1)!.toFixed(1)} ms`;
  console.log(
    `watch: ${total} updates in ${elapsedS.toFixed(1)} s (${(total / elapsedS).toFixed(0)}/s) over ${watchKeys} keys, ` +
      `${invokeDelays.length} events seen; keys whose last event is their final value: ${finalOk}/${watchKeys}`,
  );
  console.log(`watch delay from the writer's 200 to the event: ${fmt(ackDelays)}`);
  console.log(
    `watch delay from the write's invocation to the event (upper bound of commit-to-event): ${fmt(invokeDelays)}`,
  );
  console.log(`load ${load()}`);
} finally {
  proc.kill("SIGINT");
  await proc.exited;
}
