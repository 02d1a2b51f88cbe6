// What securing etcd costs a node, per request (mitata): one linearizable range and one put through
// the gateway client (src/membership/etcd-client.ts), in one run, against three real etcds started
// here (Debian's etcd-server): plain http; https with --client-cert-auth; and https with
// --client-cert-auth and authentication on (a user's token checked on every request). A node makes
// a few such requests per lease TTL (keepalives, suspicions, joins), so this is about startup and
// failover latency, not the data path. Prints mitata's table and the ratios; asserts nothing.
//
//   bun bench/etcd-security.bench.ts

import { bench, run, summary } from "mitata";
import { EtcdClient } from "../src/membership/etcd-client.ts";
import type { EtcdSecurity } from "../src/membership/etcd-auth.ts";
import { makeTestCerts } from "../test/lib/etcd-certs.ts";
import { startEtcd, type EtcdServer } from "../test/lib/etcd.ts";
import { enableEtcdAuth } from "../test/lib/etcd-users.ts";

const certs = makeTestCerts();
const tls = { ca: certs.pem(certs.caFile), cert: certs.pem(certs.clientCertFile), key: certs.pem(certs.clientKeyFile) };
const etcdTls = {
  certFile: certs.serverCertFile,
  keyFile: certs.serverKeyFile,
  clientCaFile: certs.caFile,
  health: tls,
};
const servers: EtcdServer[] = [];

try {
  const plain = await startEtcd();
  servers.push(plain);
  const mtls = await startEtcd({ tls: etcdTls });
  servers.push(mtls);
  const authed = await startEtcd({ tls: etcdTls });
  servers.push(authed);
  await enableEtcdAuth(authed.clientUrl, tls, {
    rootPassword: "bench-root",
    user: "hermes",
    password: "bench-user",
    prefix: "/bench/",
  });
  const setups: [string, EtcdServer, EtcdSecurity | undefined][] = [
    ["http", plain, undefined],
    ["https + client cert", mtls, { tls }],
    ["https + client cert + user", authed, { tls, credentials: { user: "hermes", password: "bench-user" } }],
  ];
  let sequence = 0;
  for (const op of ["range", "put"] as const) {
    summary(() => {
      for (const [name, server, security] of setups) {
        const client = new EtcdClient([server.clientUrl], {
          requestTimeoutMs: 5000,
          ...(security === undefined ? {} : { security }),
        });
        bench(`${op} ${name}`, async () => {
          if (op === "range") await client.range("/bench/key");
          else await client.put("/bench/key", `v${sequence++}`);
        });
      }
    });
  }
  const load = await Bun.file("/proc/loadavg").text();
  console.log(`load average before: ${load.trim()}`);
  await run({ colors: false });
  console.log(`load average after: ${(await Bun.file("/proc/loadavg").text()).trim()}`);
} finally {
  for (const server of servers) await server.cleanup();
  certs.cleanup();
}
