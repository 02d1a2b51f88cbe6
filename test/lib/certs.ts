// Certificates for the TLS tests, made with openssl (Debian's) in a fresh temporary directory:
// a CA, a server certificate for 127.0.0.1 and localhost signed by it, a client certificate signed
// by it, and a second, unrelated CA with a client certificate of its own (what mutual TLS must refuse).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  /** Paths of PEM files. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCaCert: string;
  otherClientCert: string;
  otherClientKey: string;
  /** PEM text of a file above. */
  pem(path: string): string;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  const result = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${result.stderr.toString()}`);
}

/** P-256 keys: as good as RSA for a test, and made in milliseconds. */
const keyArgs = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    "req",
    "-x509",
    ...keyArgs,
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
  ]);
}

function makeLeaf(dir: string, ca: string, name: string, ext: string): void {
  openssl(dir, ["req", ...keyArgs, "-nodes", "-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.crt`,
  ]);
}

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "hermes-kv-certs-"));
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeLeaf(dir, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  makeLeaf(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
  makeLeaf(dir, "other-ca", "other-client", "extendedKeyUsage=clientAuth\n");
  const at = (file: string) => join(dir, file);
  return {
    dir,
    caCert: at("ca.crt"),
    serverCert: at("server.crt"),
    serverKey: at("server.key"),
    clientCert: at("client.crt"),
    clientKey: at("client.key"),
    otherCaCert: at("other-ca.crt"),
    otherClientCert: at("other-client.crt"),
    otherClientKey: at("other-client.key"),
    pem: (path) => readFileSync(path, "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
