// What the client commands present to a secured node: a bearer token (--token, else
// $HERMES_KV_TOKEN) and, for https:// endpoints, the CA to trust (--cacert) and a client
// certificate for mutual TLS (--cert with --key). The token is sent as "Authorization: Bearer";
// it is never printed. The environment variable keeps it out of the process list and shell history.

import { readFile } from "node:fs/promises";
import { UsageError } from "./args.ts";

export const tokenEnv = "HERMES_KV_TOKEN";

export const clientCredentialFlags = {
  token: { kind: "string" },
  cacert: { kind: "string" },
  cert: { kind: "string" },
  key: { kind: "string" },
} as const;

export const clientCredentialHelp = `  --token T          send "Authorization: Bearer T" (default: $${tokenEnv}; prefer it: a flag is
                     visible in the process list)
  --cacert FILE      trust the CA certificates in FILE (PEM) for an https:// endpoint
  --cert FILE, --key FILE   client certificate and key (PEM) for mutual TLS`;

export interface ClientCredentials {
  /** Headers for every request (Authorization), possibly none. */
  headers: Record<string, string>;
  /** Bun fetch's TLS options, or undefined (system CAs, no client certificate). */
  tls: { ca?: string; cert?: string; key?: string } | undefined;
}

/** Tokens are what the node's auth file accepts: printable ASCII without spaces. */
const tokenPattern = /^[\x21-\x7e]+$/;

export async function loadClientCredentials(
  flags: Readonly<Record<string, string | boolean | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
  endpoint: string,
): Promise<ClientCredentials> {
  const flag = (name: string): string | undefined => (typeof flags[name] === "string" ? flags[name] : undefined);
  const token = flag("token") ?? (env[tokenEnv] === "" ? undefined : env[tokenEnv]);
  if (token !== undefined && !tokenPattern.test(token))
    throw new UsageError(`the token (--token or $${tokenEnv}) must be printable ASCII without spaces`);
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const cacert = flag("cacert");
  const cert = flag("cert");
  const key = flag("key");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --key go together");
  if (cacert === undefined && cert === undefined) return { headers, tls: undefined };
  if (!endpoint.startsWith("https://")) throw new UsageError("--cacert, --cert and --key need an https:// endpoint");
  const tls: { ca?: string; cert?: string; key?: string } = {};
  if (cacert !== undefined) tls.ca = await readPem("--cacert", cacert);
  if (cert !== undefined && key !== undefined) {
    tls.cert = await readPem("--cert", cert);
    tls.key = await readPem("--key", key);
  }
  return { headers, tls };
}

async function readPem(flag: string, path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`${flag} ${path}: cannot read it: ${(error as Error).message}`);
  }
  if (!text.includes("-----BEGIN ")) throw new UsageError(`${flag} ${path}: not a PEM file`);
  return text;
}
