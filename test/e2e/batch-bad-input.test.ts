// Malformed binary batches (application/vnd.hermes-kv.batch) against a real 3-replica LocalCluster
// with W=2 (keys on both shards): hundreds of requests over real sockets, each holding valid
// updates (puts of fresh keys, a delete and an incr of seeded keys) followed by one defect. Every
// one must be refused whole with its 400 or 413 JSON error, and afterwards no fresh key exists on
// any replica, the seeded data is unchanged everywhere (value and ETag), every replica is up, and
// a new write (a binary batch) still replicates.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { nodeDefaults } from "../../src/node/node.ts";
import { batchBinaryType } from "../../src/http/batch-binary.ts";
import { type BinaryBatchOp, encodeBinaryBatch } from "../../src/http/batch-binary-client.ts";
import { batchBodyBytesMax, batchOpsMax } from "../../src/http/routes-batch.ts";
import { errorCode, prng, request, startCluster, testSeed, type TestCluster } from "./harness.ts";

const seed = testSeed(0xbad_ba7c);
const replicas = 3;
const shards = 2;
const keyBytesMax = nodeDefaults.keyBytesMax;
const valueBytesMax = nodeDefaults.valueBytesMax;
const encoder = new TextEncoder();

let tc: TestCluster;
let urls: string[];
/** key -> "status etag value" as written before the malformed batches. */
const seeded = new Map<string, string>();

async function snapshot(url: string, key: string): Promise<string> {
  const answer = await request(`${url}/v1/kv/${key}`);
  return answer.kind === "response"
    ? `${answer.status} ${answer.etag} ${answer.status === 200 ? answer.body : ""}`
    : answer.kind;
}

beforeAll(async () => {
  tc = await startCluster(replicas, { shards });
  urls = Array.from({ length: replicas }, (_, i) => tc.cluster.url(i));
  // Enough keys that both shards hold some (key-shard.ts spreads them by hash).
  for (let i = 0; i < 8; i++) {
    const answer = await request(`${urls[i % replicas]}/v1/kv/seed-${i}`, { method: "PUT", body: `seed value ${i}` });
    expect(answer.kind === "response" && answer.status).toBe(200);
  }
  const incr = await request(`${urls[1]}/v1/kv/seed-n/incr?by=9`, { method: "POST" });
  expect(incr.kind === "response" && incr.status).toBe(200);
  for (const key of [...Array.from({ length: 8 }, (_, i) => `seed-${i}`), "seed-n"])
    seeded.set(key, await snapshot(urls[0]!, key));
}, 60_000);

afterAll(async () => {
  await tc?.cluster.close();
});

interface BadBatch {
  label: string;
  body: Uint8Array;
  status: 400 | 413;
  /** Fresh keys the batch's valid ops would have created. */
  fresh: string[];
}

/** Bytes appended to a body (little-endian helpers for hand-made defects). */
const u16 = (n: number): number[] => [n & 0xff, n >>> 8];
const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A valid batch of `ops`, with its op count raised by `extraOps` for the defect appended after it. */
function validPrefix(ops: BinaryBatchOp[], extraOps: number): Uint8Array {
  const body = encodeBinaryBatch(ops);
  new DataView(body.buffer).setUint32(4, ops.length + extraOps, true);
  return body;
}

/** One op's bytes: code, key, then `rest`. */
function opBytes(code: number, key: Uint8Array, rest: number[] = []): number[] {
  return [code, ...u16(key.length), ...key, ...rest];
}

function badBatches(random: () => number, count: number): BadBatch[] {
  const int = (n: number): number => Math.floor(random() * n);
  const out: BadBatch[] = [];
  for (let i = 0; i < count; i++) {
    const fresh = Array.from({ length: 1 + int(6) }, (_, j) => `fresh-${i}-${j}`);
    const ops: BinaryBatchOp[] = fresh.map((key) => ({ op: "put", key, value: encoder.encode(`v ${key}`) }));
    ops.push({ op: "delete", key: `seed-${int(8)}` }, { op: "incr", key: "seed-n", by: 1 + int(100) });
    for (let k = ops.length - 1; k > 0; k--) {
      const j = int(k + 1);
      [ops[k], ops[j]] = [ops[j]!, ops[k]!];
    }
    const k = encoder.encode(`k${i}`);
    const defects: (() => Omit<BadBatch, "fresh">)[] = [
      () => {
        // Cut inside the last op: its key, etag, value or by.
        const whole = encodeBinaryBatch([
          ...ops,
          { op: "cas", key: "seed-0", etag: '"7.1"', value: new Uint8Array(9) },
        ]);
        const last = encodeBinaryBatch([{ op: "cas", key: "seed-0", etag: '"7.1"', value: new Uint8Array(9) }]);
        return { label: "truncated", body: whole.subarray(0, whole.length - 1 - int(last.length - 9)), status: 400 };
      },
      () => ({ label: "unknown op", body: concat(validPrefix(ops, 1), opBytes(6 + int(250), k)), status: 400 }),
      () => ({ label: "empty key", body: concat(validPrefix(ops, 1), opBytes(0, new Uint8Array(0))), status: 400 }),
      () => ({
        label: "control character in key",
        body: concat(validPrefix(ops, 1), opBytes(4, Uint8Array.of(0x61, int(0x20), 0x62))),
        status: 400,
      }),
      () => ({ label: "key '..'", body: concat(validPrefix(ops, 1), opBytes(0, encoder.encode(".."))), status: 400 }),
      () => ({
        label: "key not UTF-8",
        body: concat(validPrefix(ops, 1), opBytes(0, Uint8Array.of(0x6b, 0xc0 + int(2)))),
        status: 400,
      }),
      () => ({
        label: "key too long",
        body: concat(validPrefix(ops, 1), opBytes(0, new Uint8Array(keyBytesMax + 1 + int(100)).fill(0x6b))),
        status: 413,
      }),
      () => {
        const length = valueBytesMax + 1 + int(1000);
        return {
          label: "value too large",
          body: concat(validPrefix(ops, 1), opBytes(1, k, u32(length)), new Uint8Array(length)),
          status: 413,
        };
      },
      () => ({
        label: "cas on version 0",
        body: concat(validPrefix(ops, 1), opBytes(2, k, [...u32(0), ...u32(0), ...u32(1), ...u32(0)])),
        status: 400,
      }),
      () => ({
        label: "incr by 2^53",
        body: concat(validPrefix(ops, 1), opBytes(5, k, [...u32(0), ...u32(0x20_0000)])),
        status: 400,
      }),
      () => ({ label: "more ops counted than sent", body: validPrefix(ops, 1 + int(5)), status: 400 }),
      () => ({ label: "bytes after the last op", body: concat(validPrefix(ops, 0), [int(256)]), status: 400 }),
      () => ({ label: "more than batchOpsMax ops", body: validPrefix(ops, batchOpsMax), status: 413 }),
      () => {
        const body = validPrefix(ops, 0);
        body[3] = 2 + int(250);
        return { label: "another format version", body, status: 400 };
      },
      () => ({
        label: "body over batchBodyBytesMax",
        body: concat(validPrefix(ops, 0), new Uint8Array(batchBodyBytesMax)),
        status: 413,
      }),
    ];
    out.push({ ...defects[int(defects.length)]!(), fresh });
  }
  return out;
}

test(`hundreds of bad binary batches on 3 replicas (W=${shards}) are refused whole and write nothing (seed ${seed})`, async () => {
  const batches = badBatches(prng(seed), 300);
  const wrong: string[] = [];
  const labels = new Set<string>();
  for (const [i, batch] of batches.entries()) {
    labels.add(batch.label);
    const answer = await request(`${urls[i % replicas]}/v1/batch`, {
      method: "POST",
      headers: { "content-type": batchBinaryType },
      body: batch.body,
    });
    const code = batch.status === 413 ? "too_large" : "invalid_input";
    if (answer.kind !== "response") wrong.push(`${batch.label}: ${answer.kind}`);
    else if (
      answer.status !== batch.status ||
      answer.contentType !== "application/json; charset=utf-8" ||
      errorCode(answer.body) !== code
    )
      wrong.push(`${batch.label}: ${answer.status} ${answer.body.slice(0, 200)}`);
  }
  expect(wrong).toEqual([]);
  // Every kind of defect was sent.
  expect(labels.size).toBe(15);

  // Nothing was written: no fresh key anywhere, the seeded keys as they were, on every replica.
  for (const url of urls) {
    const health = await request(`${url}/health`);
    expect(health.kind === "response" && health.status).toBe(200);
    for (const [key, expected] of seeded) expect(await snapshot(url, key), `${key} on ${url}`).toBe(expected);
  }
  const freshKeys = batches.flatMap((b) => b.fresh);
  for (const [i, key] of freshKeys.entries()) {
    const answer = await request(`${urls[i % replicas]}/v1/kv/${key}`);
    expect(answer.kind === "response" && answer.status, key).toBe(404);
  }

  // And the replicas still take a binary batch, which replicates.
  const probe = "probe-after-bad-binary";
  const ok = await request(`${urls[2]}/v1/batch`, {
    method: "POST",
    headers: { "content-type": batchBinaryType },
    body: encodeBinaryBatch([{ op: "put", key: probe, value: encoder.encode(probe) }]),
  });
  expect(ok.kind === "response" && ok.status).toBe(200);
  for (const url of urls) expect(await snapshot(url, probe)).toEndWith(` ${probe}`);
}, 120_000);
