// Certificates for the etcd security tests (etcd-specific: client certificates without a Common Name,
// JWT keys), made with openssl (Debian's openssl package) in a temporary directory:
// a CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by it, and a
// "wrong" client certificate from another CA that nothing trusts.
//
// The client certificates have no Common Name: with --client-cert-auth and authentication both on,
// etcd's JSON gateway refuses a client certificate that has one (it cannot map it to a user through
// the gateway). The server certificate has the clientAuth usage too, because etcd's gateway dials
// etcd's own gRPC port with it.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  /** Paths of PEM files. */
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  wrongCertFile: string;
  wrongKeyFile: string;
  /** The CA that signed the wrong client certificate (trusted by nothing). */
  otherCaFile: string;
  /** An RSA key pair for etcd's JWT tokens (--auth-token jwt,pub-key=…,priv-key=…). */
  jwtPrivateKeyFile: string;
  jwtPublicKeyFile: string;
  /** File contents, for fetch's `tls` option. */
  pem(path: string): string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  const proc = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${proc.stderr.toString()}`);
}

function makeCa(dir: string, name: string): void {
  openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-subj",
      `/CN=hermes-kv test ${name}`,
    ]),
    dir,
  );
}

function makeLeaf(dir: string, name: string, ca: string, subject: string, altName: string): void {
  openssl(
    ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ]),
    dir,
  );
  writeFileSync(
    join(dir, `${name}.ext`),
    `subjectAltName=${altName}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n`,
  );
  openssl(
    ["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial"].concat([
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    ]),
    dir,
  );
}

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "hermes-certs-"));
  try {
    makeCa(dir, "ca");
    makeCa(dir, "other-ca");
    makeLeaf(dir, "server", "ca", "/CN=127.0.0.1", "IP:127.0.0.1");
    makeLeaf(dir, "client", "ca", "/O=hermes-kv test client", "DNS:hermes-kv-client");
    makeLeaf(dir, "wrong", "other-ca", "/O=hermes-kv test intruder", "DNS:hermes-kv-intruder");
    openssl(["genrsa", "-out", "jwt.key", "2048"], dir);
    openssl(["rsa", "-in", "jwt.key", "-pubout", "-out", "jwt.pub"], dir);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const at = (f: string) => join(dir, f);
  return {
    dir,
    caFile: at("ca.crt"),
    serverCertFile: at("server.crt"),
    serverKeyFile: at("server.key"),
    clientCertFile: at("client.crt"),
    clientKeyFile: at("client.key"),
    wrongCertFile: at("wrong.crt"),
    wrongKeyFile: at("wrong.key"),
    otherCaFile: at("other-ca.crt"),
    jwtPrivateKeyFile: at("jwt.key"),
    jwtPublicKeyFile: at("jwt.pub"),
    pem: (path) => readFileSync(path, "utf8"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
