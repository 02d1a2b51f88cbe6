// Turns on etcd's authentication for a test, through the JSON gateway (Debian's etcd-server has no
// etcdctl): a root user with the root role (etcd requires it before auth/enable), and a user whose
// role is granted read-write on one key prefix only, as an operator would set up hermes-kv.

import { encodeBase64, prefixRangeEnd } from "../../src/membership/etcd-client.ts";
import type { EtcdTls } from "../../src/membership/etcd-auth.ts";

export interface EtcdUserSetup {
  rootPassword: string;
  user: string;
  password: string;
  /** The user's role gets READWRITE on every key with this prefix. */
  prefix: string;
}

async function gateway(url: string, tls: EtcdTls | undefined, path: string, body: object, token = ""): Promise<any> {
  const init: RequestInit & { tls?: EtcdTls } = {
    method: "POST",
    headers: token === "" ? {} : { authorization: token },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  };
  if (tls !== undefined) init.tls = tls;
  const response = await fetch(url + path, init);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`etcd ${path}: HTTP ${response.status}: ${text}`);
  return JSON.parse(text);
}

/** Adds root and `setup.user` with a role on `setup.prefix`, then enables authentication. */
export async function enableEtcdAuth(url: string, tls: EtcdTls | undefined, setup: EtcdUserSetup): Promise<void> {
  const role = `${setup.user}-role`;
  await gateway(url, tls, "/v3/auth/user/add", { name: "root", password: setup.rootPassword });
  await gateway(url, tls, "/v3/auth/role/add", { name: "root" });
  await gateway(url, tls, "/v3/auth/user/grant", { user: "root", role: "root" });
  await gateway(url, tls, "/v3/auth/user/add", { name: setup.user, password: setup.password });
  await gateway(url, tls, "/v3/auth/role/add", { name: role });
  await gateway(url, tls, "/v3/auth/role/grant", {
    name: role,
    perm: {
      permType: "READWRITE",
      key: encodeBase64(setup.prefix),
      range_end: Buffer.from(prefixRangeEnd(setup.prefix), "latin1").toString("base64"),
    },
  });
  await gateway(url, tls, "/v3/auth/user/grant", { user: setup.user, role });
  await gateway(url, tls, "/v3/auth/enable", {});
}

/** Changes a user's password as root (etcd then forgets the user's simple tokens). */
export async function changeEtcdPassword(
  url: string,
  tls: EtcdTls | undefined,
  rootPassword: string,
  user: string,
  password: string,
): Promise<void> {
  const { token } = await gateway(url, tls, "/v3/auth/authenticate", { name: "root", password: rootPassword });
  await gateway(url, tls, "/v3/auth/user/changepw", { name: user, password }, token);
}
