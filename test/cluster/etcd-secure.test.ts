// A cluster of real `hermes-kv node` processes whose membership goes through an etcd that requires
// TLS with client certificates (--client-cert-auth; certificates made by openssl here) and has
// authentication on: a root user, and a "hermes" user whose role is granted only this cluster's
// prefix. etcd's tokens are JWTs that expire 2 s after they are issued, however much they are used,
// so every node that talks to etcd after that meets an expired token and must renew it. (Simple
// tokens, forgotten after --auth-token-ttl of disuse, are exercised in test/membership/etcd-security.test.ts.)
//
// Asserted:
// - the nodes form membership through it and serve a linearizable history while one node is
//   SIGKILLed and restarted (removal, suspicions, re-registration and state transfer all go
//   through etcd), and the survivors renewed expired tokens on the way (/metrics): with
//   --suspect-ms below the lease they surely publish a suspicion of the killed node before its
//   lease ends, and that put comes more than a token's lifetime after they authenticated;
// - a node with a wrong password, without a client certificate, with one from another CA, or
//   without the CA of etcd's certificate is refused at start: exit 1, one line saying why, and no
//   member key written.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EtcdClient } from "../../src/membership/etcd-client.ts";
import type { EtcdTls } from "../../src/membership/etcd-auth.ts";
import { makeTestCerts, type TestCerts } from "../lib/etcd-certs.ts";
import { enableEtcdAuth } from "../lib/etcd-users.ts";
import {
  ProcCluster,
  Recorder,
  ackedUpdates,
  convergeAndReadAll,
  expectLinearizable,
  freePort,
  repoRoot,
  request,
  startLoad,
  testSeed,
  waitFor,
} from "./helpers.ts";

const seed = testSeed(0x5ec_e7cd);
const leaseMs = 3000;
/** Below the lease, so that the survivors suspect the killed node (a put to etcd) before its lease expires. */
const suspectMs = 1500;
const victim = 2;
const keys = ["sec-a", "sec-b", "sec-c"];
const counters = ["sec-ctr"];
const password = "hermes-cluster-secret";
/** Lifetime of etcd's JWT tokens, from issue. */
const tokenTtlS = 2;
const clusterName = `sec${process.pid}`;

let certs: TestCerts;
let dir: string;
let tls: EtcdTls;
let cluster: ProcCluster | null = null;

beforeAll(() => {
  certs = makeTestCerts();
  dir = mkdtempSync(join(tmpdir(), "hermes-etcd-secure-"));
  writeFileSync(join(dir, "password"), `${password}\n`);
  writeFileSync(join(dir, "wrong-password"), "not-the-password\n");
  tls = { ca: certs.pem(certs.caFile), cert: certs.pem(certs.clientCertFile), key: certs.pem(certs.clientKeyFile) };
});

afterAll(async () => {
  await cluster?.close();
  certs?.cleanup();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

function etcdArgs(o: { cert?: "right" | "wrong" | "none"; cacert?: boolean; passwordFile?: string } = {}): string[] {
  const args = ["--etcd-user", "hermes", "--etcd-password-file", o.passwordFile ?? join(dir, "password")];
  if (o.cacert !== false) args.push("--etcd-cacert", certs.caFile);
  if ((o.cert ?? "right") === "right")
    args.push("--etcd-cert", certs.clientCertFile, "--etcd-key", certs.clientKeyFile);
  if (o.cert === "wrong") args.push("--etcd-cert", certs.wrongCertFile, "--etcd-key", certs.wrongKeyFile);
  return args;
}

async function metric(url: string, name: string): Promise<number> {
  const answer = await request(`${url}/metrics`, {}, 3000);
  const body = answer.kind === "response" ? answer.body : "";
  const match = new RegExp(`^${name} (\\d+)$`, "m").exec(body);
  return match === null ? -1 : Number(match[1]);
}

test(`nodes form membership through etcd with client certificates and a user, and survive token expiry (seed ${seed})`, async () => {
  cluster = await ProcCluster.start({
    nodes: 3,
    leaseMs,
    cluster: clusterName,
    etcd: {
      tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCaFile: certs.caFile, health: tls },
      extraArgs: [
        "--auth-token",
        `jwt,pub-key=${certs.jwtPublicKeyFile},priv-key=${certs.jwtPrivateKeyFile},sign-method=RS256,ttl=${tokenTtlS}s`,
      ],
    },
    prepareEtcd: (etcd) =>
      enableEtcdAuth(etcd.clientUrl, tls, {
        rootPassword: "root-cluster-secret",
        user: "hermes",
        password,
        prefix: `/hermes-kv/${clusterName}/`,
      }),
    nodeArgs: [...etcdArgs(), "--suspect-ms", String(suspectMs)],
  });
  const c = cluster;
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
    opsMax: 30_000,
  });
  try {
    await waitFor("100 acknowledged updates", () => ackedUpdates(recorder, () => true).length >= 100, 30_000);
    // Every node's token is past its lifetime after this (they were issued before the load began).
    await Bun.sleep(1500 * tokenTtlS);
    const killedAt = performance.now();
    await c.node(victim).kill();
    await c.waitMembers([0, 1], 20_000);
    await waitFor(
      "30 acknowledged updates without the killed node",
      () => ackedUpdates(recorder, (r) => r.call > killedAt && r.node !== victim).length >= 30,
      20_000,
    );
    await c.node(victim).spawn();
    await c.node(victim).waitHealthy(30_000);
    await c.waitMembers([0, 1, 2], 20_000);
    const rejoinedAt = performance.now();
    await waitFor(
      "20 acknowledged updates on the restarted node",
      () => ackedUpdates(recorder, (r) => r.node === victim && r.call > rejoinedAt).length >= 20,
      30_000,
    );
    stopLoad = true;
    await load.done;

    const refreshes = await Promise.all(urls.map((u) => metric(u, "hermes_membership_etcd_token_refreshes_total")));
    const authentications = await Promise.all(
      urls.map((u) => metric(u, "hermes_membership_etcd_authentications_total")),
    );
    console.error(
      `cluster etcd-secure: token refreshes per node ${JSON.stringify(refreshes)}, authentications ${JSON.stringify(authentications)}; ` +
        `${recorder.history.invokedCount} ops; ${recorder.tallyText()}`,
    );
    for (const n of authentications) expect(n).toBeGreaterThanOrEqual(1);
    // The survivors' suspicion of the killed node went to etcd with an expired token, renewed once.
    expect(refreshes[0]!).toBeGreaterThanOrEqual(1);
    expect(refreshes[1]!).toBeGreaterThanOrEqual(1);

    const { converged, answers } = await convergeAndReadAll(urls, [...keys, ...counters], recorder, 1000);
    expect(converged, `nodes disagree: ${JSON.stringify([...answers])}\n${c.logs()}`).toBe(true);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), () => c.logs());
  } catch (error) {
    console.error(c.logs(80));
    throw error;
  } finally {
    stopLoad = true;
    await load.done;
  }
}, 180_000);

test("a wrong password, no client certificate, a wrong one, or no CA for etcd's certificate: refused at start in one line", async () => {
  const c = cluster;
  if (c === null) throw new Error("the cluster test did not start the cluster");
  const cases: { id: number; args: string[]; says: string }[] = [
    { id: 5, args: etcdArgs({ passwordFile: join(dir, "wrong-password") }), says: 'etcd refused user "hermes"' },
    { id: 6, args: etcdArgs({ cert: "none" }), says: "refused the TLS handshake" },
    { id: 7, args: etcdArgs({ cert: "wrong" }), says: "refused the TLS handshake" },
    { id: 8, args: etcdArgs({ cacert: false }), says: "cannot verify etcd's server certificate" },
  ];
  const outcomes = await Promise.all(
    cases.map(async ({ id, args }) => {
      const proc = Bun.spawn(
        [process.execPath, "src/main.ts", "node", "--id", String(id), "--cluster", clusterName, "--transport", "tcp"]
          .concat(["--http", `127.0.0.1:${await freePort()}`, "--listen", `127.0.0.1:${await freePort()}`])
          .concat(["--etcd", c.etcd.clientUrl, ...args]),
        { cwd: repoRoot, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
      );
      const killer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
      const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
      clearTimeout(killer);
      return { code, stderr };
    }),
  );
  for (let i = 0; i < cases.length; i++) {
    const { code, stderr } = outcomes[i]!;
    const lines = stderr.trim().split("\n");
    expect(code, stderr).toBe(1);
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]!, stderr).toContain(cases[i]!.says);
    if (i > 0) expect(lines[0]!, stderr).not.toContain("refused user");
    expect(lines[0]!, stderr).toStartWith("hermes-kv node: cannot join through etcd");
    console.error(`refused node ${cases[i]!.id}: ${lines[0]}`);
  }
  const members = await new EtcdClient([c.etcd.clientUrl], {
    requestTimeoutMs: 3000,
    security: { tls, credentials: { user: "hermes", password } },
  }).range(`/hermes-kv/${clusterName}/members/`, { prefix: true });
  expect(members.kvs.map((kv) => kv.key.split("/").pop())).toEqual(["0", "1", "2"]);
}, 90_000);
