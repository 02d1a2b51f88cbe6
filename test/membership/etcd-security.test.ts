// The gateway client against a real etcd (Debian's etcd-server) that requires TLS with client
// certificates (--client-cert-auth, certificates made here with openssl) and has authentication on
// (a root user and a "hermes" user whose role is granted one prefix), with simple tokens that etcd
// forgets after 1 s of disuse (--auth-token-ttl 1), so that token expiry really happens.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EtcdClient, EtcdError } from "../../src/membership/etcd-client.ts";
import type { EtcdSecurity } from "../../src/membership/etcd-auth.ts";
import { makeTestCerts, type TestCerts } from "../lib/etcd-certs.ts";
import { startEtcd, type EtcdServer } from "../lib/etcd.ts";
import { changeEtcdPassword, enableEtcdAuth } from "../lib/etcd-users.ts";

const prefix = "/hermes-kv/sec/";
const rootPassword = "root-secret-1";
const password = "hermes-secret-1";
/** etcd's simple-token TTL here; waiting three of them surely outlives a token nobody uses. */
const tokenTtlS = 1;
const tokenForgottenMs = 3000 * tokenTtlS;
/** Per test: the expiry tests wait for etcd to forget tokens. */
const testTimeoutMs = 30_000;

let certs: TestCerts;
let etcd: EtcdServer;
let tls: NonNullable<EtcdSecurity["tls"]>;

beforeAll(async () => {
  certs = makeTestCerts();
  tls = {
    ca: certs.pem(certs.caFile),
    cert: certs.pem(certs.clientCertFile),
    key: certs.pem(certs.clientKeyFile),
  };
  etcd = await startEtcd({
    tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCaFile: certs.caFile, health: tls },
    extraArgs: ["--auth-token", "simple", "--auth-token-ttl", String(tokenTtlS)],
  });
  await enableEtcdAuth(etcd.clientUrl, tls, { rootPassword, user: "hermes", password, prefix });
});

afterAll(async () => {
  await etcd?.cleanup();
  certs?.cleanup();
});

function client(security: EtcdSecurity): EtcdClient {
  return new EtcdClient([etcd.clientUrl], { requestTimeoutMs: 3000, security });
}

async function failure(promise: Promise<unknown>): Promise<EtcdError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(EtcdError);
    return error as EtcdError;
  }
  throw new Error("expected the call to fail");
}

describe("etcd over TLS with client certificates and a user", () => {
  test(
    "the right certificate and user: put, range and a watch that streams events over TLS",
    async () => {
      const c = client({ tls, credentials: { user: "hermes", password } });
      const stop = new AbortController();
      const revision = await c.put(`${prefix}w/0`, "tls-watch-0");
      const seen: string[] = [];
      const watching = (async () => {
        for await (const message of c.watch(`${prefix}w/`, revision + 1, stop.signal)) {
          for (const event of message.events) seen.push(event.kv.value);
          if (seen.length >= 3) return;
        }
      })();
      for (let i = 1; i <= 3; i++) await c.put(`${prefix}w/${i}`, `tls-watch-${i}`);
      await Promise.race([
        watching,
        Bun.sleep(10_000).then(() => {
          throw new Error(`watch saw only ${JSON.stringify(seen)}`);
        }),
      ]);
      stop.abort();
      expect(seen).toEqual(["tls-watch-1", "tls-watch-2", "tls-watch-3"]);
      const read = await c.range(`${prefix}w/`, { prefix: true });
      expect(read.kvs.map((kv) => kv.value)).toEqual(["tls-watch-0", "tls-watch-1", "tls-watch-2", "tls-watch-3"]);
      expect(c.authCounters().authentications).toBe(1);
    },
    testTimeoutMs,
  );

  test(
    "no client certificate, or one from another CA: refused, kind access, saying why",
    async () => {
      const credentials = { user: "hermes", password };
      for (const security of [
        { tls: { ca: tls.ca }, credentials },
        { tls: { ca: tls.ca, cert: certs.pem(certs.wrongCertFile), key: certs.pem(certs.wrongKeyFile) }, credentials },
      ]) {
        const err = await failure(client(security).put(`${prefix}x`, "never-written-1"));
        expect(err.kind).toBe("access");
        expect(err.message).toContain("refused the TLS handshake");
        expect(err.message).toContain("--etcd-cert");
      }
    },
    testTimeoutMs,
  );

  test(
    "a server certificate from a CA we were not given: refused, kind access, naming --etcd-cacert",
    async () => {
      for (const ca of [undefined, certs.pem(certs.otherCaFile)]) {
        const security: EtcdSecurity = { tls: { cert: tls.cert!, key: tls.key!, ...(ca === undefined ? {} : { ca }) } };
        const err = await failure(client(security).range(`${prefix}x`));
        expect(err.kind).toBe("access");
        expect(err.message).toContain("--etcd-cacert");
      }
    },
    testTimeoutMs,
  );

  test(
    "no user, a wrong password, a key outside the role's prefix: refused, kind access, nothing written",
    async () => {
      const noUser = await failure(client({ tls }).put(`${prefix}nouser`, "never-written-2"));
      expect(noUser.kind).toBe("access");
      expect(noUser.message).toContain("--etcd-user");
      const wrong = await failure(client({ tls, credentials: { user: "hermes", password: "wrong" } }).range(prefix));
      expect(wrong.kind).toBe("access");
      expect(wrong.message).toContain('etcd refused user "hermes"');
      expect(wrong.message).toContain("authentication failed");
      const good = client({ tls, credentials: { user: "hermes", password } });
      const outside = await failure(good.put("/elsewhere/x", "never-written-3"));
      expect(outside.kind).toBe("access");
      expect(outside.message).toContain("permission denied");
      expect((await good.range(`${prefix}nouser`)).kvs).toEqual([]);
    },
    testTimeoutMs,
  );

  test(
    "an expired token is renewed once and the request retried, for unary calls and for a watch",
    async () => {
      const c = client({ tls, credentials: { user: "hermes", password } });
      await c.put(`${prefix}ttl/0`, "ttl-0");
      expect(c.authCounters()).toEqual({ authentications: 1, tokenRefreshes: 0 });
      // Unused, the token is forgotten by etcd; the next call is refused once, then retried.
      await Bun.sleep(tokenForgottenMs);
      const revision = await c.put(`${prefix}ttl/1`, "ttl-1");
      expect(c.authCounters()).toEqual({ authentications: 2, tokenRefreshes: 1 });
      // A watch is authorized when it is created: after expiry etcd cancels it, the client renews and reopens.
      await Bun.sleep(tokenForgottenMs);
      const stop = new AbortController();
      const seen: string[] = [];
      for await (const message of c.watch(`${prefix}ttl/`, revision, stop.signal)) {
        expect(message.canceled).toBe(false);
        for (const event of message.events) seen.push(event.kv.value);
        if (seen.length > 0) break;
      }
      stop.abort();
      expect(seen).toEqual(["ttl-1"]);
      expect(c.authCounters()).toEqual({ authentications: 3, tokenRefreshes: 2 });
    },
    testTimeoutMs,
  );

  test(
    "concurrent calls that find the same stale token share one authentication",
    async () => {
      const c = client({ tls, credentials: { user: "hermes", password } });
      await c.range(prefix);
      await Bun.sleep(tokenForgottenMs);
      const values = Array.from({ length: 8 }, (_, i) => `shared-refresh-${i}`);
      await Promise.all(values.map((v, i) => c.put(`${prefix}many/${i}`, v)));
      expect(c.authCounters()).toEqual({ authentications: 2, tokenRefreshes: 8 });
      expect((await c.range(`${prefix}many/`, { prefix: true })).kvs.map((kv) => kv.value)).toEqual(values);
    },
    testTimeoutMs,
  );

  test(
    "a password changed under the client: one re-authentication fails and the call ends, no loop",
    async () => {
      const c = client({ tls, credentials: { user: "hermes", password } });
      await c.put(`${prefix}pw/0`, "pw-0");
      // etcd forgets the user's tokens when the password changes.
      await changeEtcdPassword(etcd.clientUrl, tls, rootPassword, "hermes", "hermes-secret-2");
      const err = await failure(c.put(`${prefix}pw/1`, "never-written-4"));
      expect(err.kind).toBe("access");
      expect(err.message).toContain("authentication failed");
      expect(c.authCounters()).toEqual({ authentications: 1, tokenRefreshes: 1 });
      const renewed = client({ tls, credentials: { user: "hermes", password: "hermes-secret-2" } });
      expect((await renewed.range(`${prefix}pw/`, { prefix: true })).kvs.map((kv) => kv.value)).toEqual(["pw-0"]);
      await changeEtcdPassword(etcd.clientUrl, tls, rootPassword, "hermes", password);
    },
    testTimeoutMs,
  );

  test(
    "a password rotated in etcd and where the client rereads it (its file): the renewal uses the new one",
    async () => {
      let stored = password;
      const c = client({ tls, credentials: { user: "hermes", password, reread: () => stored } });
      await c.put(`${prefix}rot/0`, "rot-0");
      await changeEtcdPassword(etcd.clientUrl, tls, rootPassword, "hermes", "hermes-secret-3");
      stored = "hermes-secret-3";
      await c.put(`${prefix}rot/1`, "rot-1");
      expect(c.authCounters()).toEqual({ authentications: 2, tokenRefreshes: 1 });
      expect((await c.range(`${prefix}rot/`, { prefix: true })).kvs.map((kv) => kv.value)).toEqual(["rot-0", "rot-1"]);
      await changeEtcdPassword(etcd.clientUrl, tls, rootPassword, "hermes", password);
    },
    testTimeoutMs,
  );
});
