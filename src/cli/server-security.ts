// The security flags shared by `node` and `local`: HTTPS (--tls-cert, --tls-key, --tls-ca for
// mutual TLS), client tokens (--auth-file, --metrics-public), and the SIGHUP reload of the auth file.
// Files are read here, in the main thread, so that a wrong path or a bad file stops the command at
// start with one clear line; the workers get the PEM text and the token digests.

import { readFile, stat } from "node:fs/promises";
import { describeTokens, parseAuthFile, type TokenEntry } from "../http/auth-file.ts";
import type { AuthConfig } from "../http/auth-guard.ts";
import type { PeerHttp } from "../base/peer-http.ts";
import type { HttpTls } from "../worker/messages.ts";
import { UsageError } from "./args.ts";
import { FatalError } from "./fatal-error.ts";

export const serverSecuritySpecs = {
  "tls-cert": { kind: "string" },
  "tls-key": { kind: "string" },
  "tls-ca": { kind: "string" },
  "auth-file": { kind: "string" },
  "metrics-public": { kind: "boolean" },
} as const;

export const serverSecurityHelp = `  --tls-cert FILE  serve HTTPS with this certificate (PEM; the chain after it), with --tls-key
  --tls-key FILE   the certificate's private key (PEM)
  --tls-ca FILE    mutual TLS: require a client certificate signed by a CA in FILE (PEM); others are
                   refused in the handshake
  --auth-file FILE client tokens: one "TOKEN ROLE NAME" per line, ROLE read|write|admin, # comments
                   (README "Running securely"); requests then need "Authorization: Bearer TOKEN":
                   read: GET keys, /v1/status; write: also PUT, DELETE, incr, batch; admin: also
                   /v1/admin/* and /metrics. /health stays open. SIGHUP reloads the file (a bad
                   file keeps the tokens loaded before, and says why on stderr)
  --metrics-public /metrics without a token (with --auth-file)`;

export interface SecurityFlags {
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
  "tls-ca"?: string | undefined;
  "auth-file"?: string | undefined;
  "metrics-public": boolean;
}

export interface ServerSecurity {
  tls: HttpTls | null;
  auth: AuthConfig | null;
  /** The auth file's path (for the SIGHUP reload), or null. */
  authFile: string | null;
}

/** Check the flags' combinations and read the files they name; `warn` hears about files others can read. */
export async function loadServerSecurity(
  flags: SecurityFlags,
  warn: (line: string) => void = (line) => console.error(line),
): Promise<ServerSecurity> {
  const certPath = flags["tls-cert"];
  const keyPath = flags["tls-key"];
  const caPath = flags["tls-ca"];
  const authFile = flags["auth-file"] ?? null;
  if ((certPath === undefined) !== (keyPath === undefined))
    throw new UsageError("--tls-cert and --tls-key go together");
  if (caPath !== undefined && certPath === undefined)
    throw new UsageError("--tls-ca (client certificates) needs --tls-cert and --tls-key");
  if (flags["metrics-public"] && authFile === null)
    throw new UsageError("--metrics-public needs --auth-file (without it every route is open)");
  let tls: HttpTls | null = null;
  if (certPath !== undefined && keyPath !== undefined) {
    await warnIfShared("--tls-key", keyPath, warn).catch(() => {});
    tls = {
      cert: await readPem("--tls-cert", certPath, "CERTIFICATE"),
      key: await readPem("--tls-key", keyPath, "PRIVATE KEY"),
      ca: caPath === undefined ? null : await readPem("--tls-ca", caPath, "CERTIFICATE"),
    };
  }
  let auth: AuthConfig | null = null;
  if (authFile !== null) {
    const loaded = await readAuthFile(authFile);
    if (!loaded.ok) throw new FatalError(`--auth-file ${authFile}: ${loaded.error}`);
    await warnIfShared("--auth-file", authFile, warn);
    auth = { tokens: loaded.entries, metricsPublic: flags["metrics-public"] };
  }
  return { tls, auth, authFile };
}

/** Secrets readable by other users (as ssh warns of a private key): said once at start, not refused. */
async function warnIfShared(flag: string, path: string, warn: (line: string) => void): Promise<void> {
  const mode = (await stat(path)).mode;
  if ((mode & 0o077) !== 0)
    warn(
      `hermes-kv: warning: ${flag} ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
}

async function readPem(flag: string, path: string, label: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new FatalError(`${flag} ${path}: cannot read it: ${(error as Error).message}`);
  }
  if (!text.includes(`-----BEGIN `) || !text.includes(label))
    throw new FatalError(`${flag} ${path}: not a PEM file with a ${label}`);
  return text;
}

async function readAuthFile(path: string): Promise<{ ok: true; entries: TokenEntry[] } | { ok: false; error: string }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    return { ok: false, error: `cannot read it: ${(error as Error).message}` };
  }
  return parseAuthFile(text);
}

/**
 * On SIGHUP, read the auth file again and hand its tokens to `apply`. A file that cannot be read or
 * parsed changes nothing: the tokens loaded before stay, and stderr says why. Returns the remover.
 */
export function reloadAuthOnSighup(
  path: string,
  apply: (tokens: TokenEntry[]) => void,
  log: (line: string) => void,
): () => void {
  // A SIGHUP during a reload reads the file once more afterwards: the last signal always wins.
  let reloading = false;
  let again = false;
  const onHangup = (): void => {
    if (reloading) {
      again = true;
      return;
    }
    reloading = true;
    void readAuthFile(path)
      .then((loaded) => {
        if (!loaded.ok) {
          log(`hermes-kv: SIGHUP: --auth-file ${path} not reloaded, keeping the tokens loaded before: ${loaded.error}`);
          return;
        }
        apply(loaded.entries);
        log(`hermes-kv: SIGHUP: --auth-file ${path} reloaded: ${describeTokens(loaded.entries)}`);
      })
      .finally(() => {
        reloading = false;
        if (again) {
          again = false;
          onHangup();
        }
      });
  };
  process.on("SIGHUP", onHangup);
  return () => process.off("SIGHUP", onHangup);
}

/**
 * How this node reaches the other nodes' HTTP ports (state transfer, the console's member proxy):
 * over HTTPS when it serves HTTPS (a cluster's nodes share one setup), trusting the --tls-ca CA (else
 * the system's) and showing its own certificate, which mutual TLS requires.
 */
export function peerHttpOf(tls: HttpTls | null): PeerHttp {
  if (tls === null) return { scheme: "http" };
  return { scheme: "https", tls: tls.ca === null ? {} : { ca: tls.ca, cert: tls.cert, key: tls.key } };
}
