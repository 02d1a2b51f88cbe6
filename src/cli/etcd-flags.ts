// The flags that secure a node's connection to etcd: TLS (--etcd-cacert, --etcd-cert, --etcd-key)
// and a user (--etcd-user, with the password from --etcd-password-file or HERMES_KV_ETCD_PASSWORD).
//
// The password is never a flag value: command lines are visible to every local user in
// /proc/PID/cmdline and `ps`, and end up in shell history. So `--etcd-user name:password` (etcdctl's
// form) is refused rather than split. Files are read once, at start, and checked here so that a
// wrong path or a file that is not PEM is a usage error with nothing started.

import { readFileSync, statSync } from "node:fs";
import type { EtcdCredentials, EtcdSecurity, EtcdTls } from "../membership/etcd-auth.ts";
import { UsageError } from "./args.ts";

/** The environment variable that may hold the etcd user's password. */
export const etcdPasswordEnv = "HERMES_KV_ETCD_PASSWORD";
/** Largest password file accepted (etcd sets no limit; a bigger file is surely the wrong one). */
export const etcdPasswordFileBytesMax = 4096;
/** Largest PEM file accepted (a CA bundle of a few hundred certificates fits). */
export const pemFileBytesMax = 1 << 20;

export const etcdFlagSpecs = {
  "etcd-cacert": { kind: "string" },
  "etcd-cert": { kind: "string" },
  "etcd-key": { kind: "string" },
  "etcd-user": { kind: "string" },
  "etcd-password-file": { kind: "string" },
} as const;

export interface EtcdFlagValues {
  "etcd-cacert": string | undefined;
  "etcd-cert": string | undefined;
  "etcd-key": string | undefined;
  "etcd-user": string | undefined;
  "etcd-password-file": string | undefined;
}

export const etcdFlagsUsage = `  --etcd-cacert FILE  CA bundle (PEM) that signed etcd's server certificate (default: system CAs);
                   needs https:// URLs in --etcd
  --etcd-cert FILE --etcd-key FILE
                   client certificate and key (PEM) for etcd's --client-cert-auth; with etcd
                   authentication on too, the certificate must have no Common Name (etcd's gateway
                   refuses one)
  --etcd-user NAME etcd user (etcd authentication); its role needs read-write on /hermes-kv/NAME/
                   (see --cluster). The password comes from --etcd-password-file FILE (its first
                   line, read again whenever etcd wants a new token) or else ${etcdPasswordEnv},
                   never from the command line`;

function readBounded(flag: string, path: string, bytesMax: number): string {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new UsageError(`${flag}: not a regular file: ${path}`);
    size = stat.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`${flag}: cannot read ${path}: ${(error as { code?: string }).code ?? String(error)}`);
  }
  if (size > bytesMax) throw new UsageError(`${flag}: ${path} is ${size} bytes, more than ${bytesMax}`);
  return readFileSync(path, "utf8");
}

const pemCertificate = /-----BEGIN CERTIFICATE-----/;
const pemPrivateKey = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

function readPem(flag: string, path: string, what: RegExp): string {
  const text = readBounded(flag, path, pemFileBytesMax);
  if (!what.test(text))
    throw new UsageError(`${flag}: ${path} holds no PEM ${what === pemCertificate ? "certificate" : "private key"}`);
  return text;
}

function tlsOf(flags: EtcdFlagValues, endpoints: readonly string[]): EtcdTls | undefined {
  const cacert = flags["etcd-cacert"];
  const cert = flags["etcd-cert"];
  const key = flags["etcd-key"];
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--etcd-cert and --etcd-key go together");
  if (cacert === undefined && cert === undefined) return undefined;
  const plain = endpoints.find((e) => !e.startsWith("https://"));
  if (plain !== undefined) throw new UsageError(`--etcd-cacert/--etcd-cert need https:// etcd URLs, got ${plain}`);
  const tls: EtcdTls = {};
  if (cacert !== undefined) tls.ca = readPem("--etcd-cacert", cacert, pemCertificate);
  if (cert !== undefined && key !== undefined) {
    tls.cert = readPem("--etcd-cert", cert, pemCertificate);
    tls.key = readPem("--etcd-key", key, pemPrivateKey);
  }
  return tls;
}

/** The first line: `echo secret > file` leaves a newline that is not part of the password. */
function readPasswordFile(file: string): string {
  return readBounded("--etcd-password-file", file, etcdPasswordFileBytesMax).split(/\r?\n/, 1)[0]!;
}

function credentialsOf(
  user: string,
  flags: EtcdFlagValues,
  env: Readonly<Record<string, string | undefined>>,
): EtcdCredentials {
  const file = flags["etcd-password-file"];
  let password: string;
  let source: string;
  if (file !== undefined) {
    password = readPasswordFile(file);
    source = file;
  } else if (env[etcdPasswordEnv] !== undefined) {
    password = env[etcdPasswordEnv]!;
    source = etcdPasswordEnv;
  } else {
    throw new UsageError(`--etcd-user needs a password: --etcd-password-file FILE or ${etcdPasswordEnv}`);
  }
  if (password === "") throw new UsageError(`the etcd password from ${source} is empty`);
  // A file is read again before each authentication: a rotated password needs no restart.
  return file === undefined ? { user, password } : { user, password, reread: () => readPasswordFile(file) };
}

/**
 * The TLS material and credentials the flags ask for (files read now), or undefined for plain
 * etcd. `endpoints` are the --etcd URLs; `env` is where the password variable is looked up.
 */
export function etcdSecurityOf(
  flags: EtcdFlagValues,
  endpoints: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): EtcdSecurity | undefined {
  const security: EtcdSecurity = {};
  const tls = tlsOf(flags, endpoints);
  if (tls !== undefined) security.tls = tls;
  const user = flags["etcd-user"];
  if (user === undefined) {
    if (flags["etcd-password-file"] !== undefined) throw new UsageError("--etcd-password-file needs --etcd-user");
  } else {
    if (user.includes(":"))
      throw new UsageError(
        `--etcd-user takes a name only: give the password with --etcd-password-file or ${etcdPasswordEnv}, never on the command line`,
      );
    if (!/^[\x21-\x7e]{1,128}$/.test(user))
      throw new UsageError("--etcd-user must be 1-128 printable ASCII characters");
    security.credentials = credentialsOf(user, flags, env);
  }
  return security.tls === undefined && security.credentials === undefined ? undefined : security;
}
