// A cluster started with --cluster-key-file, as an operator runs one (3 node processes, real etcd,
// TCP), under a recorded client load, attacked from outside:
// - a forger who reaches the transport ports but lacks the key connects as a member (TCP hello "I am
//   node 1") and sends INVs for the clients' keys with a timestamp above any real one, once with a
//   tag under another key and once untagged: every frame is dropped, counted by reason in /metrics
//   (exactly as many as were sent), and no forged value is ever read;
// - a hostile node with the wrong key file joins through etcd: its peers cannot verify a frame of
//   it, it cannot load the state (the snapshot route refuses it), it never serves, and it is evicted;
// - the internal routes refuse requests without proof of the key (401, nothing handled): the
//   snapshot, and the test hooks, whose refused call leaves the node's transport untouched;
// - a member killed and restarted loads the state with its proof and serves again.
// The whole history, final reads from every node included, is linearizable.

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterKeyLabel, deriveClusterKey, parseClusterKey } from "../../src/base/cluster-key.ts";
import { MsgKind } from "../../src/base/kinds.ts";
import { writeNewClusterKeyFile } from "../../src/cli/cluster-key-file.ts";
import { clusterIdOf } from "../../src/cli/node-command.ts";
import { internalProofHeader, InternalProofSigner } from "../../src/node/internal-proof.ts";
import { FrameBuilder } from "../../src/wire/frame-builder.ts";
import { FrameMac } from "../../src/wire/frame-mac.ts";
import { appendText } from "../lib/key-bytes.ts";
import { injectTcpFrames } from "../lib/tcp-inject.ts";
import {
  convergeAndReadAll,
  expectLinearizable,
  freePort,
  NodeProcess,
  ProcCluster,
  Recorder,
  request,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x5ec_0009);
const leaseMs = 1000;
/** Suspicion (one lease), settle, the hold of a TTL, plus slack for a loaded machine (peer-partition.test.ts). */
const evictionBoundMs = leaseMs + 500 + leaseMs * 1.1 + 5000;
const keys = ["sec-a", "sec-b", "sec-c"];
const counters = ["sec-n"];
/** Forged frames sent per kind (wrong key, untagged) to each node. */
const forgedFrames = 20;
/** Far above any version the load reaches. */
const forgedVersion = 2 ** 40;

const dir = mkdtempSync(join(tmpdir(), "hermes-kv-cluster-key-"));
const keyFile = join(dir, "cluster.key");
const wrongKeyFile = join(dir, "wrong.key");
writeNewClusterKeyFile(keyFile);
writeNewClusterKeyFile(wrongKeyFile);
const clusterKey = parseClusterKey(readFileSync(keyFile, "utf8"));
const wrongKey = parseClusterKey(readFileSync(wrongKeyFile, "utf8"));
const name = `sec${process.pid}`;

let cluster: ProcCluster | null = null;
let hostile: NodeProcess | null = null;
afterAll(async () => {
  await hostile?.stop();
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** A wire counter of node `url`'s /metrics (shard 0). */
async function wireCounter(url: string, counter: string): Promise<number> {
  const answer = await request(`${url}/metrics`, {}, 5000);
  if (answer.kind !== "response") throw new Error(`metrics of ${url}: ${answer.kind}`);
  const match = new RegExp(`^hermes_wire_${counter}_total\\{shard="0"\\} (\\d+)$`, "m").exec(answer.body);
  if (match === null) throw new Error(`no ${counter} in ${url}/metrics`);
  return Number(match[1]);
}

/** Frames claiming to come from `from` for `to`: INVs of every key at forgedVersion, under `key` (null: untagged). */
function forgedFramesFor(from: number, to: number, epoch: number, key: Uint8Array | null): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < forgedFrames; i++) {
    const b = new FrameBuilder({
      clusterId: clusterIdOf(name),
      sender: from,
      peer: to,
      shardIndex: 0,
      frameBytesMax: 60 * 1024,
      keyBytesMax: 1024,
      valueBytesMax: 32 * 1024,
      mac: key === null ? null : new FrameMac(deriveClusterKey(key, clusterKeyLabel.frameMac), from),
    });
    b.senderEpoch = epoch;
    for (const k of [...keys, ...counters])
      appendText(b, to, MsgKind.Inv, k, forgedVersion + i, from, epoch, false, new TextEncoder().encode(`forged-${i}`));
    frames.push(b.finish().slice());
  }
  return frames;
}

test(`a keyed cluster drops forged and foreign frames, refuses unproven internal calls, and stays linearizable (seed ${seed})`, async () => {
  const c = (cluster = await ProcCluster.start({
    nodes: 3,
    leaseMs,
    cluster: name,
    testHooks: true,
    nodeArgs: ["--cluster-key-file", keyFile],
  }));
  const urls = c.urls();
  const recorder = new Recorder();
  let stopLoad = false;
  const load = startLoad({
    urls,
    recorder,
    keys,
    counters,
    clientsPerNode: 2,
    seed,
    stop: () => stopLoad,
    opsMax: 60_000,
  });
  try {
    await Bun.sleep(500);

    // 1. A forger on the transport ports, without the key.
    const epoch = (await c.node(0).status())!.epoch;
    for (const node of c.nodes) {
      const from = node.id === 0 ? 1 : 0;
      const before = {
        badMac: await wireCounter(node.url, "dropped_bad_mac"),
        untagged: await wireCounter(node.url, "dropped_unauthenticated"),
      };
      await injectTcpFrames(node.listenPort, from, node.id, forgedFramesFor(from, node.id, epoch, wrongKey));
      await injectTcpFrames(node.listenPort, from, node.id, forgedFramesFor(from, node.id, epoch, null));
      await waitFor(
        `node ${node.id} to count the forged frames`,
        async () =>
          (await wireCounter(node.url, "dropped_bad_mac")) === before.badMac + forgedFrames &&
          (await wireCounter(node.url, "dropped_unauthenticated")) === before.untagged + forgedFrames,
        10_000,
      );
    }

    // 2. The internal routes without proof: 401, nothing handled.
    const snapshotUrl = `${urls[0]}/v1/internal/snapshot/0?minEpoch=0`;
    const bare = await request(snapshotUrl, {}, 5000);
    expect(bare.kind === "response" && bare.status).toBe(401);
    const wrongProof = new InternalProofSigner(deriveClusterKey(wrongKey, clusterKeyLabel.internalHttp));
    const forged = await request(snapshotUrl, { headers: wrongProof.headers("GET", snapshotUrl) }, 5000);
    expect(forged.kind === "response" && forged.status).toBe(401);
    // The status a joiner asks when no member serves: refused without proof, answered with it.
    const statusUrl = `${urls[2]}/v1/internal/status`;
    const bareStatus = await request(statusUrl, {}, 5000);
    expect(bareStatus.kind === "response" && bareStatus.status).toBe(401);
    const statusProof = new InternalProofSigner(deriveClusterKey(clusterKey, clusterKeyLabel.internalHttp));
    const provenStatus = await fetch(statusUrl, { headers: statusProof.headers("GET", statusUrl) });
    expect(provenStatus.status).toBe(200);
    expect(await provenStatus.json()).toEqual({ nodeId: 2, serving: true, hasState: expect.any(Boolean) });
    // The test hook that would cut node 1 off its peers: refused, so its transport is untouched.
    const dropUrl = `${urls[1]}/v1/test/drop`;
    const drop = await request(
      dropUrl,
      { method: "POST", body: JSON.stringify({ peers: [0, 2] }), headers: { "content-type": "application/json" } },
      5000,
    );
    expect(drop.kind === "response" && drop.status).toBe(401);
    // The same hook with the key's proof is handled (the helper signs when the node has a key file):
    // an empty drop list, which changes nothing.
    await c.node(1).drop([]);
    // Node 1 still takes its peers' frames (under the load, their count keeps growing).
    const acceptedAt1 = await wireCounter(urls[1]!, "frames_accepted");
    await waitFor(
      "node 1 to accept more frames from its peers",
      async () => (await wireCounter(urls[1]!, "frames_accepted")) > acceptedAt1 + 10,
      10_000,
    );
    // With the key's proof the snapshot streams (records of the clients' keys).
    const proof = new InternalProofSigner(deriveClusterKey(clusterKey, clusterKeyLabel.internalHttp));
    const proven = await fetch(snapshotUrl, { headers: { [internalProofHeader]: proof.proof("GET", snapshotUrl) } });
    expect(proven.status).toBe(200);
    expect((await proven.arrayBuffer()).byteLength).toBeGreaterThan(0);

    // 3. A hostile node with the wrong key file joins through etcd.
    hostile = new NodeProcess(3, await freePort(), await freePort(), {
      etcdUrl: c.etcd.clientUrl,
      cluster: name,
      leaseMs,
      shards: 1,
      testHooks: false,
      nodeArgs: ["--cluster-key-file", wrongKeyFile],
    });
    await hostile.spawn();
    await waitFor(
      "the hostile node's frames to be dropped by node 0",
      async () => (await wireCounter(urls[0]!, "dropped_bad_mac")) > forgedFrames * 2,
      evictionBoundMs,
    );
    // Evicted (or never let in): the members are the three keyed nodes, serving.
    await c.waitMembers([0, 1, 2], evictionBoundMs + 10_000);
    const hostileStatus = await hostile.status();
    expect(hostileStatus?.serving ?? false).toBe(false);
    expect(hostile.logTail(200)).toContain("401");
    await hostile.stop();

    // 4. A member restarted loads the state with its proof and serves.
    await c.node(2).kill();
    // Its key in etcd goes when its lease expires; only then may the same id register again.
    await c.waitMembers([0, 1], 20_000);
    await c.node(2).spawn();
    await c.node(2).waitHealthy(30_000);
    await c.waitMembers([0, 1, 2], 20_000);
    await Bun.sleep(500);
  } finally {
    stopLoad = true;
    await load.done;
  }
  const final = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 1000);
  expect(final.converged).toBe(true);
  for (const r of recorder.records) expect(r.value ?? "").not.toContain("forged");
  const ok = recorder.records.filter((r) => r.outcome === "ok").length;
  expect(ok).toBeGreaterThan(100);
  expectLinearizable(recorder.check(), () => c.logs());
}, 180_000);
