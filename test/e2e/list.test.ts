// GET /v1/kv?prefix= on a real 3-replica cluster (W=2 shard workers per replica, so pages of both
// shards are merged), while concurrent clients on the other replicas write, delete, CAS, create
// and increment keys of the prefix (unique values). The guarantee tested is the documented one:
// each listed key's value was the key's linearizable value at some moment during the list request,
// and a key of the page's range that is neither listed nor pending was absent at some moment
// during the request; the list as a whole is not a snapshot. So each list answer is recorded in
// the history as one read per key of its range, over the request's interval, and the whole history
// (the clients' ops, the lists' reads, a final read of every key on every replica) must be
// linearizable. Paging with a small limit crosses shards and pages. No timing assertions.

import { afterEach, expect, test } from "bun:test";
import { shardOf } from "../../src/worker/key-shard.ts";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  request,
  startSteadyCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { runWorkload } from "./workload.ts";

const replicas = 3;
const shards = 2;
const seed = testSeed(0x11_57_0012);
const listerClient = 900;

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

interface ListBody {
  keys: { key: string; etag: string; value?: string }[];
  more: boolean;
  next?: string;
  pending?: string[];
}

/** Page through `prefix` on `url` once, recording every key of `keys` that each page covers as a read. */
async function listAllRecorded(
  url: string,
  prefix: string,
  keys: readonly string[],
  limit: number,
  recorder: Recorder,
): Promise<{ pages: number; listed: number; pending: number; absent: number }> {
  const stats = { pages: 0, listed: 0, pending: 0, absent: 0 };
  let after: string | null = null;
  for (;;) {
    const query = `prefix=${encodeURIComponent(prefix)}&limit=${limit}&values=1${after === null ? "" : `&after=${encodeURIComponent(after)}`}`;
    const call = performance.now();
    const answer = await request(`${url}/v1/kv?${query}`);
    const ret = performance.now();
    if (answer.kind !== "response" || answer.status !== 200) {
      recorder.note(`list on ${url}: ${answer.kind === "response" ? `${answer.status} ${answer.body}` : answer.kind}`);
      return stats;
    }
    const body = JSON.parse(answer.body) as ListBody;
    stats.pages++;
    // Keys come in byte order (ASCII here, so string order), and pages in order.
    const listed = body.keys.map((k) => k.key);
    expect(listed).toEqual([...listed].sort());
    if (after !== null) for (const key of listed) expect(key > after).toBe(true);
    if (body.more) expect(typeof body.next).toBe("string");
    const values = new Map(body.keys.map((k) => [k.key, Buffer.from(k.value ?? "", "base64").toString("utf8")]));
    const pending = new Set(body.pending ?? []);
    for (const key of keys) {
      if (after !== null && key <= after) continue;
      if (body.more && key > body.next!) continue;
      if (pending.has(key)) {
        stats.pending++;
        continue; // not read: the list names it for a GET
      }
      const value = values.get(key) ?? null;
      if (value === null) stats.absent++;
      else stats.listed++;
      const id = recorder.history.invoke(listerClient, key, { type: "read" }, call);
      recorder.history.ok(id, { type: "read", value }, ret);
    }
    if (!body.more) return stats;
    after = body.next!;
  }
}

test(`each listed value is the key's linearizable value at some moment of the list request (W=${shards}, seed ${seed})`, async () => {
  current = await startSteadyCluster(shards);
  const { cluster, log } = current;
  const urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  // Register keys on both shards; counters too; and keys outside the prefix that must never be listed.
  const registerKeys = Array.from({ length: 16 }, (_, i) => `l/r${String(i).padStart(2, "0")}`);
  const counterKeys = ["l/c0", "l/c1"];
  expect(new Set(registerKeys.map((k) => shardOf(k, shards))).size).toBe(shards);
  const recorder = new Recorder();
  for (const outside of ["l", "k/x", "m/x"]) {
    const answer = await request(`${urls[1]}/v1/kv/${encodeURIComponent(outside)}`, { method: "PUT", body: "outside" });
    expect(answer.kind === "response" && answer.status).toBe(200);
  }
  // Writers on replicas 1 and 2 only; the lists go to replica 0.
  const clients = Array.from({ length: 6 }, (_, id) => new Client(id, 1 + (id % 2), (i) => urls[i]!, recorder));
  let writing = true;
  const workload = runWorkload({
    clients,
    recorder,
    registerKeys,
    counterKeys,
    seed,
    // The lists' reads count too: about half of these are the clients' ops.
    opsMin: 4000,
    opsMax: 4000,
  }).finally(() => {
    writing = false;
  });
  const totals = { lists: 0, pages: 0, listed: 0, pending: 0, absent: 0 };
  const allKeys = [...registerKeys, ...counterKeys].sort();
  while (writing) {
    const stats = await listAllRecorded(urls[0]!, "l/", allKeys, 5, recorder);
    totals.lists++;
    totals.pages += stats.pages;
    totals.listed += stats.listed;
    totals.pending += stats.pending;
    totals.absent += stats.absent;
  }
  await workload;
  const { converged, answers } = await convergeAndReadAll(urls, allKeys, recorder, 100);
  // A final full listing from every replica matches the GETs of every key.
  for (const url of urls) await listAllRecorded(url, "l/", allKeys, 1000, recorder);
  console.error(`e2e list: ${JSON.stringify(totals)}; ${recorder.tally}`);
  expect(recorder.unexpected).toEqual([]);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);
  expect(totals.lists).toBeGreaterThan(3);
  expect(totals.listed).toBeGreaterThan(50);
  expectLinearizable(recorder.check(), log);
}, 180_000);

test("a listing names every key of the prefix once, in byte order, across shards and pages; bad parameters are 400", async () => {
  current = await startSteadyCluster(shards);
  const url = current.cluster.url(0);
  // Multi-byte and odd keys: byte order of UTF-8 is code point order, not UTF-16 order.
  const keys = ["p/a", "p/b", "p/é", "p/\u{1F600}", "p/\uFFFD", "p/a/b", "p/A", "p/ ", "p/%", "p/+"];
  const recorder = new Recorder();
  const writer = new Client(1, 1, (i) => current!.cluster.url(i), recorder);
  for (const [i, key] of keys.entries()) expect(await writer.put(key, `v${i}`)).toBe("ok");
  expect(await writer.remove("p/b")).toBe("ok");
  const expected = keys.filter((k) => k !== "p/b").sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const limit of [1, 2, 3, 1000]) {
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 100; page++) {
      const answer = await request(
        `${url}/v1/kv?prefix=p%2F&limit=${limit}${after === null ? "" : `&after=${encodeURIComponent(after)}`}`,
      );
      expect(answer.kind === "response" && answer.status).toBe(200);
      const body = JSON.parse(answer.kind === "response" ? answer.body : "{}") as ListBody;
      expect(body.keys.length).toBeLessThanOrEqual(limit);
      seen.push(...body.keys.map((k) => k.key));
      if (!body.more) break;
      after = body.next!;
    }
    expect(seen).toEqual(expected);
  }
  for (const bad of [
    "limit=0",
    "limit=10001",
    "limit=x",
    "values=2",
    "prefix=%FF",
    "after=",
    "nope=1",
    "limit=1&limit=2",
  ]) {
    const answer = await request(`${url}/v1/kv?${bad}`);
    expect(answer.kind === "response" && answer.status, bad).toBe(400);
  }
  // Reads from the final state, for the history the rule asks of every multi-node test.
  const { converged } = await convergeAndReadAll(
    Array.from({ length: replicas }, (_, i) => current!.cluster.url(i)),
    keys,
    recorder,
    100,
  );
  expect(converged).toBe(true);
  expectLinearizable(recorder.check());
}, 120_000);
