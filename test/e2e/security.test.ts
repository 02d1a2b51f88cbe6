// A secured 3-replica LocalCluster: HTTPS with mutual TLS (certificates made by openssl for this
// run, test/lib/certs.ts) and client tokens with roles. Real sockets, real TLS handshakes, curl.
// - a mixed workload over HTTPS with a write token is linearizable, while another client keeps
//   trying updates of the same keys with no token, a wrong token and a read token: every one is
//   refused (401/403), and the history (which leaves them out) shows that none took effect;
// - the main thread's routes (admin, metrics), forwarded by the workers, are tried with no token,
//   a wrong token and each role;
// - curl with --cacert and the client certificate gets through; without --cacert it refuses the
//   server, and the server refuses a client with no certificate or one from another CA.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type { LocalCluster } from "../../src/cli/local-cluster.ts";
import { parseAuthFile } from "../../src/http/auth-file.ts";
import { checkLinearizable } from "../lib/linearizability.ts";
import { makeTestCerts, type TestCerts } from "../lib/certs.ts";
import {
  Client,
  Recorder,
  convergeAndReadAll,
  expectLinearizable,
  request,
  setRequestCredentials,
  startCluster,
  steadyRm,
  testSeed,
  type TestCluster,
} from "./harness.ts";
import { runWorkload } from "./workload.ts";

const seed = testSeed(0x5ec_0001);
const replicas = 3;
const tokens = {
  read: "e2e-read-token-7c2f9a41",
  write: "e2e-write-token-1b8e6d03",
  admin: "e2e-admin-token-94a0c5e7",
} as const;
const wrongToken = "e2e-wrong-token-00000000";
const registerKeys = ["sec-a", "sec-b", "sec-c"] as const;
const counterKeys = ["sec-ctr"] as const;

let certs: TestCerts;
let tc: TestCluster;
let cluster: LocalCluster;
let urls: string[];

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  certs = makeTestCerts();
  const parsed = parseAuthFile(`${tokens.read} read r\n${tokens.write} write w\n${tokens.admin} admin a\n`);
  if (!parsed.ok) throw new Error(parsed.error);
  tc = await startCluster(replicas, {
    rm: steadyRm,
    security: {
      tls: { cert: certs.pem(certs.serverCert), key: certs.pem(certs.serverKey), ca: certs.pem(certs.caCert) },
      auth: { tokens: parsed.entries, metricsPublic: false },
    },
  });
  cluster = tc.cluster;
  urls = Array.from({ length: replicas }, (_, i) => cluster.url(i));
  setRequestCredentials({
    headers: bearer(tokens.write),
    tls: { ca: certs.pem(certs.caCert), cert: certs.pem(certs.clientCert), key: certs.pem(certs.clientKey) },
  });
}, 60_000);

afterAll(async () => {
  setRequestCredentials({});
  await cluster?.close();
  certs?.remove();
});

test("replicas serve https:// only", () => {
  for (const url of urls) expect(url).toStartWith("https://127.0.0.1:");
});

test(`a workload over HTTPS with a write token is linearizable; updates with no, a wrong or a read token change nothing (seed ${seed})`, async () => {
  const recorder = new Recorder();
  const clients = Array.from({ length: 6 }, (_, id) => new Client(id, id % replicas, (i) => urls[i]!, recorder));
  let running = true;
  const refused = new Map<string, number>();
  // Unique values, never recorded: if one took effect, a recorded read would return a value that no
  // recorded write wrote, which no linearization explains.
  const intruder = (async () => {
    let n = 0;
    while (running) {
      for (const [label, headers, want] of [
        ["none", {}, 401],
        ["wrong", bearer(wrongToken), 401],
        ["read", bearer(tokens.read), 403],
      ] as const) {
        const key = registerKeys[n % registerKeys.length]!;
        const url = urls[n % replicas]!;
        const value = `intruder-${label}-${n++}`;
        for (const init of [
          { method: "PUT", body: value },
          { method: "DELETE" },
          { method: "PUT", body: value, headers: { "if-none-match": "*" } },
        ] as { method: string; body?: string; headers?: Record<string, string> }[]) {
          const answer = await request(`${url}/v1/kv/${key}`, {
            ...init,
            headers: { ...init.headers, authorization: "authorization" in headers ? headers.authorization : "" },
          });
          const got = answer.kind === "response" ? answer.status : answer.kind;
          refused.set(`${label} ${init.method} -> ${got}`, (refused.get(`${label} ${init.method} -> ${got}`) ?? 0) + 1);
          expect(got).toBe(want);
        }
        const incr = await request(`${url}/v1/kv/${counterKeys[0]}/incr?by=1000`, {
          method: "POST",
          headers: { authorization: "authorization" in headers ? headers.authorization : "" },
        });
        expect(incr.kind === "response" && incr.status).toBe(want);
      }
    }
  })();
  await runWorkload({ clients, recorder, registerKeys, counterKeys, seed, opsMin: 300, opsMax: 3000 });
  running = false;
  await intruder;
  const { converged } = await convergeAndReadAll(urls, [...registerKeys, ...counterKeys], recorder, 100);
  expect(converged).toBe(true);
  expect(recorder.unexpected).toEqual([]);
  expect(recorder.tally.get("read:200")).toBeGreaterThan(0);
  expect(recorder.tally.get("write:200")).toBeGreaterThan(0);
  expect([...refused.keys()].sort()).toEqual(
    ["none", "wrong", "read"]
      .flatMap((who) => ["DELETE", "PUT"].map((m) => `${who} ${m} -> ${who === "read" ? 403 : 401}`))
      .sort(),
  );
  expectLinearizable(checkLinearizable(recorder.ops()), tc.log);
}, 120_000);

test("the main thread's routes with no token, a wrong token and each role", async () => {
  const url = urls[1]!;
  const cases: { path: string; method: string; needs: "admin" }[] = [
    { path: "/v1/admin/start", method: "POST", needs: "admin" },
    { path: "/v1/admin/stop", method: "POST", needs: "admin" },
    { path: "/metrics", method: "GET", needs: "admin" },
  ];
  for (const { path, method } of cases) {
    for (const [who, headers, want] of [
      ["none", { authorization: "" }, 401],
      ["wrong", bearer(wrongToken), 401],
      ["read", bearer(tokens.read), 403],
      ["write", bearer(tokens.write), 403],
    ] as const) {
      const answer = await request(`${url}${path}`, { method, headers });
      expect(answer.kind === "response" && [who, answer.status]).toEqual([who, want]);
    }
  }
  // Every refused stop left the replica serving.
  const health = await request(`${url}/health`);
  expect(health.kind === "response" && health.status).toBe(200);
  const start = await request(`${url}/v1/admin/start`, { method: "POST", headers: bearer(tokens.admin) });
  expect(start.kind === "response" && [start.status, JSON.parse(start.body).started]).toEqual([200, false]);
  const metrics = await request(`${url}/metrics`, { headers: bearer(tokens.admin) });
  expect(metrics.kind === "response" && metrics.status).toBe(200);
  // /health needs no token at all.
  const open = await request(`${url}/health`, { headers: { authorization: "" } });
  expect(open.kind === "response" && open.status).toBe(200);
});

function curl(args: string[]): { exitCode: number; stdout: string; stderr: string } {
  const result = Bun.spawnSync(["curl", "-sS", "--max-time", "20", ...args], { stdout: "pipe", stderr: "pipe" });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

test("curl with --cacert and the client certificate gets through; the handshake refuses the rest", () => {
  const url = `${urls[0]}/v1/status`;
  const clientCert = ["--cert", certs.clientCert, "--key", certs.clientKey];
  const token = ["-H", `Authorization: Bearer ${tokens.read}`];
  const ok = curl(["--cacert", certs.caCert, ...clientCert, ...token, "-w", "\n%{http_code}", url]);
  expect(ok.exitCode).toBe(0);
  expect(ok.stdout.split("\n").at(-1)).toBe("200");
  expect(JSON.parse(ok.stdout.split("\n")[0]!).nodeId).toBe(0);
  // Without --cacert curl cannot verify the server: exit 60 (peer certificate cannot be authenticated).
  expect(curl([...clientCert, ...token, url]).exitCode).toBe(60);
  // The server asks for a client certificate signed by its CA: none, or another CA's, is refused.
  for (const args of [[], ["--cert", certs.otherClientCert, "--key", certs.otherClientKey]]) {
    const refused = curl(["--cacert", certs.caCert, ...args, ...token, "-w", "%{http_code}", url]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stdout).not.toContain("200");
  }
});

test("fetch with another CA's client certificate gets no answer", async () => {
  setRequestCredentials({
    headers: bearer(tokens.read),
    tls: { ca: certs.pem(certs.caCert), cert: certs.pem(certs.otherClientCert), key: certs.pem(certs.otherClientKey) },
  });
  try {
    const answer = await request(`${urls[2]}/v1/kv/sec-a`);
    expect(answer.kind).toBe("network");
  } finally {
    setRequestCredentials({
      headers: bearer(tokens.write),
      tls: { ca: certs.pem(certs.caCert), cert: certs.pem(certs.clientCert), key: certs.pem(certs.clientKey) },
    });
  }
});
