// GET /v1/watch on a real 3-replica cluster (W=2 shard workers per replica, so changes of both
// shards reach a stream over the feed between workers):
// - a watcher on replica 0 sees the final value of every key written, deleted, CASed, created and
//   incremented by concurrent clients on replicas 1 and 2; per key its events never go back
//   (ETags non-decreasing); and each event, recorded as a read of its key over [the watch's start,
//   its arrival], keeps the whole history (clients' ops and final reads included) linearizable;
// - a watcher whose client stops reading is closed with `event: overflow` (never buffered without
//   bound), and the node's watcher count in /metrics goes back to 0;
// - a watcher of a replica that stops (the local cluster's admin stop, as if it crashed) gets
//   `event: unavailable` and its stream ends.
// No timing assertions.

import { afterEach, expect, test } from "bun:test";
import { connect } from "node:net";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  eventually,
  expectLinearizable,
  request,
  snapshotKey,
  startCluster,
  startSteadyCluster,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { runWorkload } from "./workload.ts";

const replicas = 3;
const shards = 2;
const seed = testSeed(0x3a7c_0012);
const watcherClient = 800;

let current: TestCluster | null = null;
afterEach(async () => {
  await current?.cluster.close();
  current = null;
});

interface SseEvent {
  event: string;
  id: string | null;
  data: { key?: string; etag?: string; value?: string; reason?: string };
  at: number;
}

/** A watch stream read into `events` as it arrives, until it ends or `close()`. */
function openWatch(url: string): { events: SseEvent[]; ended: Promise<number>; close: () => void } {
  const events: SseEvent[] = [];
  const abort = new AbortController();
  const ended = (async (): Promise<number> => {
    const response = await fetch(url, { signal: abort.signal });
    if (response.status !== 200) return response.status;
    expect(response.headers.get("content-type")).toStartWith("text/event-stream");
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const chunk of response.body!) {
        buffered += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          let event = "message";
          let id: string | null = null;
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data !== "") events.push({ event, id, data: JSON.parse(data), at: performance.now() });
        }
      }
    } catch (error) {
      if ((error as Error).name !== "AbortError") throw error;
    }
    return 200;
  })();
  return { events, ended, close: () => abort.abort() };
}

function compareEtags(a: string, b: string): number {
  const [av, aw] = a.replaceAll('"', "").split(".").map(Number) as [number, number];
  const [bv, bw] = b.replaceAll('"', "").split(".").map(Number) as [number, number];
  return av !== bv ? av - bv : aw - bw;
}

async function watcherCount(url: string): Promise<number> {
  const answer = await request(`${url}/metrics`);
  if (answer.kind !== "response") return -1;
  let sum = 0;
  for (const line of answer.body.split("\n"))
    if (line.startsWith("hermes_watchers{")) sum += Number(line.split(" ")[1]);
  return sum;
}

test(`a watcher sees every key's final value, in ETag order per key, linearizably (W=${shards}, seed ${seed})`, async () => {
  current = await startSteadyCluster(shards);
  const { cluster, log } = current;
  const urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  const registerKeys = Array.from({ length: 12 }, (_, i) => `w/r${String(i).padStart(2, "0")}`);
  const counterKeys = ["w/c0", "w/c1"];
  const allKeys = [...registerKeys, ...counterKeys];
  const recorder = new Recorder();
  // Keys that exist before the watch starts: the stream begins with their current values.
  const seeder = new Client(50, 1, (i) => urls[i]!, recorder);
  for (const key of registerKeys.slice(0, 4)) expect(await seeder.put(key, `seed-${key}`)).toBe("ok");
  const watchStart = performance.now();
  const watch = openWatch(`${urls[0]}/v1/watch?prefix=${encodeURIComponent("w/")}`);
  const other = openWatch(`${urls[0]}/v1/watch?prefix=${encodeURIComponent("elsewhere/")}&from=now`);
  expect(await eventually(async () => watch.events.some((e) => e.event === "synced"), 100, 50)).toBe(true);
  const initial = watch.events.filter((e) => e.event === "put").map((e) => e.data.key);
  expect(initial.sort()).toEqual(registerKeys.slice(0, 4));

  const clients = Array.from({ length: 6 }, (_, id) => new Client(id, 1 + (id % 2), (i) => urls[i]!, recorder));
  await runWorkload({ clients, recorder, registerKeys, counterKeys, seed, opsMin: 2000, opsMax: 2000 });
  const { converged, answers } = await convergeAndReadAll(urls, allKeys, recorder, 100);
  expect(converged, `replicas disagree: ${JSON.stringify([...answers])}`).toBe(true);

  // Every key's last event is its final state on the replica (value and ETag; absent: a delete or no event).
  const finalOf = async (key: string): Promise<string> => snapshotKey(urls[0]!, key);
  const lastEventOf = (key: string): string => {
    const mine = watch.events.filter((e) => e.data.key === key && (e.event === "put" || e.event === "delete"));
    const last = mine.at(-1);
    if (last === undefined || last.event === "delete") return "absent";
    return `200 ${last.data.etag} ${JSON.stringify(Buffer.from(last.data.value!, "base64").toString("utf8"))}`;
  };
  const caughtUp = await eventually(
    async () => {
      for (const key of allKeys) {
        const final = await finalOf(key);
        const expected = final.startsWith("404") ? "absent" : final;
        if (lastEventOf(key) !== expected) return false;
      }
      return true;
    },
    100,
    50,
  );
  const mismatches = [];
  for (const key of allKeys) mismatches.push(`${key}: last event ${lastEventOf(key)}, final ${await finalOf(key)}`);
  expect(caughtUp, mismatches.join("\n")).toBe(true);

  // Per key, events never go back in time; each is a value the key held during the watch.
  let changes = 0;
  for (const key of allKeys) {
    const mine = watch.events.filter((e) => e.data.key === key && (e.event === "put" || e.event === "delete"));
    for (let i = 1; i < mine.length; i++)
      expect(compareEtags(mine[i - 1]!.data.etag!, mine[i]!.data.etag!), `${key} went back`).toBeLessThanOrEqual(0);
    for (const e of mine) {
      changes++;
      const value = e.event === "delete" ? null : Buffer.from(e.data.value!, "base64").toString("utf8");
      const id = recorder.history.invoke(watcherClient, key, { type: "read" }, watchStart);
      recorder.history.ok(id, { type: "read", value }, e.at);
    }
  }
  expect(watch.events.filter((e) => e.event === "overflow" || e.event === "unavailable")).toEqual([]);
  expect(other.events.map((e) => e.event)).toEqual(["synced"]);
  expect(await watcherCount(urls[0]!)).toBe(2);
  watch.close();
  other.close();
  await Promise.all([watch.ended, other.ended]);
  expect(await eventually(async () => (await watcherCount(urls[0]!)) === 0, 100, 50)).toBe(true);
  console.error(`e2e watch: ${changes} changes seen; ${recorder.tally}`);
  expect(changes).toBeGreaterThan(100);
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
}, 180_000);

test("a watcher that stops reading is closed with event: overflow, not buffered without bound", async () => {
  current = await startSteadyCluster(shards);
  const urls = Array.from({ length: replicas }, (_, i) => current!.cluster.url(i));
  const { hostname, port } = new URL(urls[0]!);
  const recorder = new Recorder();
  // A raw connection whose reads are paused: the kernel's buffers fill, then the stream's.
  const socket = connect({ host: hostname, port: Number(port) });
  const received: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => received.push(chunk));
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write(`GET /v1/watch?prefix=big%2F&from=now HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  expect(await eventually(async () => (await watcherCount(urls[0]!)) === 1, 100, 50)).toBe(true);
  socket.pause();
  // 30 KiB values, unique, written on another replica until the stream is closed (bounded).
  const writer = new Client(1, 1, (i) => urls[i]!, recorder);
  const filler = "x".repeat(30 * 1024);
  let written = 0;
  for (; written < 2000 && (written % 50 !== 0 || (await watcherCount(urls[0]!)) > 0); written++)
    expect(await writer.put(`big/${written % 20}`, `${written}-${filler}`)).toBe("ok");
  expect(await eventually(async () => (await watcherCount(urls[0]!)) === 0, 100, 50)).toBe(true);
  socket.resume();
  await new Promise<void>((resolve) => {
    socket.once("end", () => resolve());
    socket.once("close", () => resolve());
  });
  const text = Buffer.concat(received).toString("utf8");
  console.error(`e2e overflow: closed after ${written} writes of 30 KiB, ${text.length} bytes reached the client`);
  expect(text).toContain("event: overflow");
  // The overflow is the stream's last event.
  expect(text.slice(text.lastIndexOf("event: ")).startsWith("event: overflow")).toBe(true);
  const { converged } = await convergeAndReadAll(urls, ["big/0", "big/1"], recorder, 100);
  expect(converged).toBe(true);
  expectLinearizable(recorder.check());
}, 180_000);

test("a replica that stops closes its watch streams with event: unavailable", async () => {
  current = await startCluster(replicas, { shards });
  const { cluster, log } = current;
  const urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  const recorder = new Recorder();
  const client = new Client(1, 0, (i) => urls[i]!, recorder);
  expect(await client.put("s/a", "before-stop")).toBe("ok");
  // Short leases (a stopped replica must leave the membership soon) can lapse for a moment on a
  // loaded machine, which also ends a stream with `unavailable`: open until one is synced and open.
  let watch = openWatch(`${urls[1]}/v1/watch?prefix=${encodeURIComponent("s/")}`);
  for (let attempt = 0; attempt < 20; attempt++) {
    const synced = await eventually(
      async () => watch.events.some((e) => e.event === "synced") || Bun.peek.status(watch.ended) === "fulfilled",
      100,
      50,
    );
    if (synced && Bun.peek.status(watch.ended) === "pending") break;
    watch.close();
    await Bun.sleep(200);
    watch = openWatch(`${urls[1]}/v1/watch?prefix=${encodeURIComponent("s/")}`);
  }
  expect(watch.events.some((e) => e.event === "synced")).toBe(true);
  expect(watch.events.filter((e) => e.event === "put").map((e) => e.data.key)).toEqual(["s/a"]);
  expect(await cluster.stopReplica(1)).toBe(true);
  await watch.ended;
  const last = watch.events.at(-1)!;
  expect(last.event).toBe("unavailable");
  expect(typeof last.data.reason).toBe("string");
  // The others go on; new watches on the stopped replica are refused (503) until it is back.
  expect(await client.put("s/a", "after-stop")).toBe("ok");
  const refused = await request(`${urls[1]}/v1/watch?prefix=s%2F`);
  expect(refused.kind === "response" && refused.status).toBe(503);
  const { converged } = await convergeAndReadAll([urls[0]!, urls[2]!], ["s/a"], recorder, 100);
  expect(converged).toBe(true);
  expectLinearizable(recorder.check(), log);
}, 120_000);
