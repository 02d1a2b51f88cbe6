// Three `hermes-kv node` processes with a real etcd, secured: HTTPS with mutual TLS (certificates
// made by openssl for this run) and an auth file. Members load state from each other over HTTPS,
// verifying the CA and showing their own certificate; clients carry a client certificate and a
// write token. A node is SIGKILLed under load and restarted: it loads the current data over HTTPS
// and serves it. Every op is recorded; the history, with final reads of every key on every node, is
// linearizable. Throughout, updates with a read token are refused and change nothing.

import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCerts, type TestCerts } from "../lib/certs.ts";
import {
  ProcCluster,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  request,
  setRequestCredentials,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x5ec_c105);
const leaseMs = 1000;
const victim = 2;
const keys = ["sec-a", "sec-b", "sec-c"];
const counters = ["sec-ctr"];
const writeToken = "cluster-write-token-3e9a0c71";
const readToken = "cluster-read-token-b24f8d16";

let cluster: ProcCluster | null = null;
let certs: TestCerts | null = null;
afterAll(async () => {
  setRequestCredentials({});
  await cluster?.close();
  certs?.remove();
}, 30_000);

test(`a secured cluster: joins and a restart load state over mutual TLS; the history is linearizable (seed ${seed})`, async () => {
  certs = makeTestCerts();
  const tokens = join(certs.dir, "tokens");
  writeFileSync(tokens, `${writeToken} write load\n${readToken} read viewer\n`);
  setRequestCredentials({
    headers: { authorization: `Bearer ${writeToken}` },
    tls: { ca: certs.pem(certs.caCert), cert: certs.pem(certs.clientCert), key: certs.pem(certs.clientKey) },
  });
  cluster = await ProcCluster.start({
    nodes: 3,
    leaseMs,
    nodeArgs: [
      "--tls-cert",
      certs.serverCert,
      "--tls-key",
      certs.serverKey,
      "--tls-ca",
      certs.caCert,
      "--auth-file",
      tokens,
    ],
  });
  const c = cluster;
  const urls = c.urls();
  for (const url of urls) expect(url).toStartWith("https://");
  const recorder = new Recorder();
  let stop = false;
  const load = startLoad({ urls, recorder, keys, counters, clientsPerNode: 2, seed, stop: () => stop, opsMax: 30_000 });
  // Updates with a read token, unique values never recorded: if one took effect, a recorded read
  // would return a value no recorded write wrote.
  let refusals = 0;
  const intruder = (async () => {
    for (let n = 0; !stop; n++) {
      const answer = await request(`${urls[n % 3]}/v1/kv/${keys[n % keys.length]}`, {
        method: "PUT",
        body: `read-token-write-${n}`,
        headers: { authorization: `Bearer ${readToken}` },
      });
      if (answer.kind === "response") {
        expect(answer.status).toBe(403);
        refusals++;
      }
      await Bun.sleep(5);
    }
  })();
  try {
    await waitFor("100 acknowledged updates", () => ackedUpdates(recorder, () => true).length >= 100, 30_000);
    await c.node(victim).kill();
    await c.waitMembers([0, 1], 15_000, [0, 1]);
    const restartedAt = performance.now();
    await c.node(victim).spawn();
    await c.node(victim).waitHealthy(30_000);
    await c.waitMembers([0, 1, 2], 15_000);
    await waitFor(
      "20 acknowledged updates on the restarted node",
      () => ackedUpdates(recorder, (r) => r.node === victim && r.call > restartedAt).length >= 20,
      30_000,
    );
    stop = true;
    await load.done;
    await intruder;
    expect(refusals).toBeGreaterThan(0);
    const { converged, answers, finalReads } = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 1000);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    for (const key of [...keys, ...counters]) expect(answers.get(key)![victim]).toBe(answers.get(key)![0]);
    expect(finalReads.every((r) => r.outcome === "ok")).toBe(true);
    expect(c.logs(1000)).toContain(`hermes-kv node ${victim}: joined from node`);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  } finally {
    stop = true;
    await load.done;
    await intruder.catch(() => {});
  }
}, 120_000);
