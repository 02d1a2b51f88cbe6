// Runs a throwaway single-member etcd on 127.0.0.1 (free ports, temporary data dir) for manual
// cluster runs, e.g. `hermes-kv node ... --etcd <url>`. Prints the client URL on stdout, then
// waits; Ctrl-C or SIGTERM stops etcd and removes its data dir.
//   bun scripts/etcd-test-server.ts
//   bun scripts/etcd-test-server.ts --secure
// --secure makes certificates with openssl (test/lib/etcd-certs.ts), starts etcd with TLS and
// --client-cert-auth, enables authentication with a user "hermes" granted /hermes-kv/, writes its
// password to a file, and prints the `hermes-kv node` flags that reach it (all removed on exit).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCerts, type TestCerts } from "../test/lib/etcd-certs.ts";
import { startEtcd, type EtcdServer } from "../test/lib/etcd.ts";
import { enableEtcdAuth } from "../test/lib/etcd-users.ts";

const secure = process.argv.includes("--secure");
let certs: TestCerts | null = null;
let server: EtcdServer;
if (secure) {
  certs = makeTestCerts();
  const tls = {
    ca: certs.pem(certs.caFile),
    cert: certs.pem(certs.clientCertFile),
    key: certs.pem(certs.clientKeyFile),
  };
  server = await startEtcd({
    tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCaFile: certs.caFile, health: tls },
  });
  const password = crypto.randomUUID();
  await enableEtcdAuth(server.clientUrl, tls, {
    rootPassword: crypto.randomUUID(),
    user: "hermes",
    password,
    prefix: "/hermes-kv/",
  });
  const passwordFile = join(certs.dir, "etcd-password");
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  console.log(server.clientUrl);
  console.error(
    `node flags: --etcd ${server.clientUrl} --etcd-cacert ${certs.caFile} --etcd-cert ${certs.clientCertFile} ` +
      `--etcd-key ${certs.clientKeyFile} --etcd-user hermes --etcd-password-file ${passwordFile}`,
  );
} else {
  server = await startEtcd();
  console.log(server.clientUrl);
}
console.error(`etcd-test-server: pid ${server.pid()}, data ${server.dataDir}; Ctrl-C to stop`);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.cleanup();
  certs?.cleanup();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
// Keep the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
