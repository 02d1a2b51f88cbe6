// Incarnations claimed through a real etcd (src/membership/etcd-incarnation.ts): every process of a
// node id gets a number no other process of that id got, also when many claim at once, so their
// timestamps' writer ids (src/base/ids.ts) never collide.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startEtcd, type EtcdServer } from "../lib/etcd.ts";
import { EtcdClient } from "../../src/membership/etcd-client.ts";
import {
  claimIncarnation,
  IncarnationError,
  incarnationKey,
  incarnationClaimAttemptsMax,
} from "../../src/membership/etcd-incarnation.ts";
import { incarnationMax } from "../../src/base/ids.ts";

let etcd: EtcdServer;
let client: EtcdClient;

beforeAll(async () => {
  etcd = await startEtcd();
  client = new EtcdClient([etcd.clientUrl], { requestTimeoutMs: 2000 });
});

afterAll(async () => {
  await etcd?.cleanup();
});

describe("claimIncarnation", () => {
  test("the first process of a node id gets 0, each later one the next; ids and clusters count apart", async () => {
    const key = incarnationKey("inc-a", 3);
    expect(key).toBe("/hermes-kv/inc-a/incarnations/3");
    expect(await claimIncarnation(client, key)).toBe(0);
    expect(await claimIncarnation(client, key)).toBe(1);
    expect(await claimIncarnation(client, key)).toBe(2);
    expect(await claimIncarnation(client, incarnationKey("inc-a", 4))).toBe(0);
    expect(await claimIncarnation(client, incarnationKey("inc-b", 3))).toBe(0);
    expect((await client.range(key)).kvs.map((kv) => [kv.value, kv.lease])).toEqual([["2", "0"]]);
  });

  test("processes claiming at once all get different numbers (the transaction loses no increment)", async () => {
    const key = incarnationKey("inc-race", 0);
    // Fewer claimants than the retry bound, so that each one wins within its attempts.
    const claimants = incarnationClaimAttemptsMax - 1;
    const clients = Array.from(
      { length: claimants },
      () => new EtcdClient([etcd.clientUrl], { requestTimeoutMs: 5000 }),
    );
    const got = await Promise.all(clients.map((c) => claimIncarnation(c, key)));
    expect([...got].sort((a, b) => a - b)).toEqual(Array.from({ length: claimants }, (_, i) => i));
    expect((await client.range(key)).kvs[0]!.value).toBe(String(claimants - 1));
  });

  test("a counter that is not an incarnation, or is used up, is refused and left as it is", async () => {
    const key = incarnationKey("inc-bad", 1);
    for (const bad of ["x", "-1", "01", "1.5", String(incarnationMax + 1)]) {
      await client.put(key, bad);
      await expect(claimIncarnation(client, key)).rejects.toThrow(IncarnationError);
      expect((await client.range(key)).kvs[0]!.value).toBe(bad);
    }
    await client.put(key, String(incarnationMax));
    await expect(claimIncarnation(client, key)).rejects.toThrow("was used");
    expect((await client.range(key)).kvs[0]!.value).toBe(String(incarnationMax));
    await client.put(key, String(incarnationMax - 1));
    expect(await claimIncarnation(client, key)).toBe(incarnationMax);
  });
});
