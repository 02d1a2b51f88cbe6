// The etcd test harness (test/lib/etcd.ts) and the gateway client, against a real etcd.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { startEtcd, type EtcdServer } from "../lib/etcd.ts";
import { EtcdClient, EtcdError } from "../../src/membership/etcd-client.ts";

let etcd: EtcdServer;
let client: EtcdClient;

beforeAll(async () => {
  etcd = await startEtcd();
  client = new EtcdClient([etcd.clientUrl], { requestTimeoutMs: 2000 });
});

afterAll(async () => {
  await etcd?.cleanup();
});

describe("etcd gateway client", () => {
  test("put, range by key and by prefix, at a past revision, delete", async () => {
    const r1 = await client.put("/t/a/1", "one");
    const r2 = await client.put("/t/a/2", "two");
    expect(r2).toBe(r1 + 1);
    await client.put("/t/b", "other");
    const all = await client.range("/t/a/", { prefix: true });
    expect(all.kvs.map((kv) => [kv.key, kv.value, kv.modRevision])).toEqual([
      ["/t/a/1", "one", r1],
      ["/t/a/2", "two", r2],
    ]);
    const past = await client.range("/t/a/", { prefix: true, revision: r1 });
    expect(past.kvs.map((kv) => kv.key)).toEqual(["/t/a/1"]);
    const deleted = await client.deleteRange("/t/a/", { prefix: true });
    expect(deleted.deleted).toBe(2);
    expect((await client.range("/t/a/", { prefix: true })).kvs).toEqual([]);
  });

  test("lease grant, keepalive, revoke; a lease etcd does not know keeps alive to 0", async () => {
    const lease = await client.leaseGrant(1);
    expect(lease.ttlS).toBeGreaterThanOrEqual(1);
    expect(lease.id).toMatch(/^[0-9]+$/);
    expect(await client.leaseKeepAlive(lease.id)).toBe(lease.ttlS);
    expect(await client.leaseRevoke(lease.id)).toBe(true);
    expect(await client.leaseRevoke(lease.id)).toBe(false);
    expect(await client.leaseKeepAlive(lease.id)).toBe(0);
  });

  test("registerWithLease creates once and reports the holder afterwards", async () => {
    const l1 = await client.leaseGrant(5);
    const l2 = await client.leaseGrant(5);
    const first = await client.registerWithLease("/t/m/1", "v1", l1.id, "/t/m/");
    expect(first.created).toBe(true);
    if (!first.created) throw new Error("unreachable");
    expect(first.kvs.map((kv) => [kv.key, kv.lease, kv.modRevision])).toEqual([["/t/m/1", l1.id, first.revision]]);
    const second = await client.registerWithLease("/t/m/1", "v2", l2.id, "/t/m/");
    expect(second.created).toBe(false);
    if (second.created) throw new Error("unreachable");
    expect(second.existing?.lease).toBe(l1.id);
    expect(second.existing?.value).toBe("v1");
    // Revoking the lease deletes the key it carries.
    await client.leaseRevoke(l1.id);
    expect((await client.range("/t/m/1")).kvs).toEqual([]);
    await client.leaseRevoke(l2.id);
  });

  test("a watch streams the events after its start revision, with delete revisions", async () => {
    const start = await client.put("/t/w/1", "a");
    const controller = new AbortController();
    const seen: string[] = [];
    const stream = client.watch("/t/w/", start, controller.signal);
    // Leaving the loop with break closes the stream (the generator's finally cancels the body).
    const reading = (async () => {
      for await (const message of stream) {
        for (const e of message.events) seen.push(`${e.type} ${e.kv.key} ${e.kv.modRevision - start}`);
        if (seen.length >= 3) break;
      }
    })();
    await client.put("/t/w/2", "b");
    await client.deleteRange("/t/w/1");
    await reading;
    controller.abort();
    expect(seen).toEqual(["put /t/w/1 0", "put /t/w/2 1", "delete /t/w/1 2"]);
  });

  test("network failures are EtcdError(kind network)", async () => {
    const dead = new EtcdClient(["http://127.0.0.1:1"], { requestTimeoutMs: 500 });
    const err = await dead.range("/x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdError);
    expect((err as EtcdError).kind).toBe("network");
  });
});

describe("etcd test server", () => {
  test("stop and start keep the data and the address; cleanup removes everything", async () => {
    const server = await startEtcd();
    try {
      const c = new EtcdClient([server.clientUrl], { requestTimeoutMs: 2000 });
      await c.put("/persist", "yes");
      const pid = server.pid();
      expect(pid).not.toBeNull();
      await server.stop();
      expect(server.pid()).toBeNull();
      const down = await c.range("/persist").catch((e: unknown) => e);
      expect((down as EtcdError).kind).toBe("network");
      await server.start();
      expect(server.pid()).not.toBe(pid);
      expect((await c.range("/persist")).kvs.map((kv) => kv.value)).toEqual(["yes"]);
      await server.kill();
      expect(server.pid()).toBeNull();
      await server.start();
      expect((await c.range("/persist")).kvs.map((kv) => kv.value)).toEqual(["yes"]);
    } finally {
      await server.cleanup();
      await server.cleanup();
    }
    expect(existsSync(server.dataDir)).toBe(false);
  });
});
