// The RDMA address codec and GID choice (src/transport/rdma-address.ts), without a device.

import { describe, expect, test } from "bun:test";
import { gidFromHex, type GidEntry } from "../../ffi/ibverbs/verbs.ts";
import { AssertionError } from "../../src/base/assert.ts";
import {
  chooseGid,
  formatRdmaAddress,
  parseRdmaAddress,
  randomQkey,
  rdmaLidMax,
  rdmaQkeyMax,
  rdmaQpnMax,
  type RdmaAddress,
} from "../../src/transport/rdma-address.ts";

const gidHex = "00000000000000000000ffff7f000001";
const gid = gidFromHex(gidHex);

describe("rdma address codec", () => {
  test("formats the documented text and parses it back", () => {
    const text = formatRdmaAddress({ qpn: 17, gid, qkey: 0x12345678, lid: 0 });
    expect(text).toBe(`rdma:17:${gidHex}:305419896:0`);
    const back = parseRdmaAddress(text);
    expect(back).toEqual({ qpn: 17, gid, qkey: 0x12345678, lid: 0 });
  });

  test("the extremes of every field round-trip", () => {
    const cases: RdmaAddress[] = [
      { qpn: 1, gid: new Uint8Array(16), qkey: 0, lid: 0 },
      { qpn: rdmaQpnMax, gid: new Uint8Array(16).fill(0xff), qkey: rdmaQkeyMax, lid: rdmaLidMax },
      { qpn: 0x123456, gid: gidFromHex("fe800000000000000002c90300000001"), qkey: 1, lid: 7 },
    ];
    for (const a of cases) {
      const back = parseRdmaAddress(formatRdmaAddress(a));
      expect(back.qpn).toBe(a.qpn);
      expect([...back.gid]).toEqual([...a.gid]);
      expect(back.qkey).toBe(a.qkey);
      expect(back.lid).toBe(a.lid);
    }
  });

  test("anything that is not exactly a published address is a RangeError", () => {
    for (const bad of [
      "",
      "127.0.0.1:7001",
      "rdma:17:00000000000000000000ffff7f00001:1:0", // 31 hex digits
      "rdma:17:00000000000000000000ffff7f0000011:1:0", // 33 hex digits
      "rdma:17:00000000000000000000FFFF7f000001:1:0", // upper case: not what we publish
      "rdma:17:0000:0000:0000:0000:0000:ffff:7f00:0001:1:0", // colon-separated GID
      "rdma:0:00000000000000000000ffff7f000001:1:0", // qpn 0
      "rdma:16777216:00000000000000000000ffff7f000001:1:0", // qpn > 24 bits
      "rdma:17:00000000000000000000ffff7f000001:2147483648:0", // privileged qkey
      "rdma:17:00000000000000000000ffff7f000001:1:65536", // lid > 16 bits
      "rdma:-1:00000000000000000000ffff7f000001:1:0",
      "rdma:17:00000000000000000000ffff7f000001:1", // lid missing
      "rdma:17:00000000000000000000ffff7f000001:1:0:9", // a field too many
      " rdma:17:00000000000000000000ffff7f000001:1:0",
      "rdma:17:00000000000000000000ffff7f000001:1:0\n",
      "RDMA:17:00000000000000000000ffff7f000001:1:0",
      "rdma:1e3:00000000000000000000ffff7f000001:1:0",
    ]) {
      expect(() => parseRdmaAddress(bad), bad).toThrow(RangeError);
    }
  });

  test("formatting an address no endpoint can have is a broken invariant", () => {
    const good: RdmaAddress = { qpn: 17, gid, qkey: 1, lid: 0 };
    for (const bad of [
      { ...good, qpn: 0 },
      { ...good, qpn: rdmaQpnMax + 1 },
      { ...good, qpn: 1.5 },
      { ...good, qkey: rdmaQkeyMax + 1 },
      { ...good, qkey: -1 },
      { ...good, lid: rdmaLidMax + 1 },
      { ...good, gid: new Uint8Array(15) },
    ]) {
      expect(() => formatRdmaAddress(bad)).toThrow(AssertionError);
    }
  });

  test("a random qkey is never a controlled one, and differs between endpoints", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const q = randomQkey();
      expect(Number.isInteger(q) && q >= 0 && q <= rdmaQkeyMax).toBe(true);
      seen.add(q);
    }
    // 1000 draws from 2^31 values: a repeat is astronomically unlikely unless the source is broken.
    expect(seen.size).toBeGreaterThan(990);
  });
});

describe("GID choice", () => {
  const e = (index: number, hex: string, type: GidEntry["type"]): GidEntry => ({ index, gid: gidFromHex(hex), type });
  const link = e(0, "fe800000000000000000000000000001", "roce-v2");
  const v4 = e(1, "00000000000000000000ffff0a000001", "roce-v2");
  const v1 = e(2, "00000000000000000000ffff0a000001", "roce-v1");
  const ib = e(0, "fe800000000000000002c90300000001", "ib");

  test("RoCE v2 over IPv4, then RoCE v2, then the first entry", () => {
    expect(chooseGid([link, v1, v4])).toBe(v4);
    expect(chooseGid([v1, link])).toBe(link);
    expect(chooseGid([v1, ib])).toBe(v1);
    expect(chooseGid([ib])).toBe(ib);
    expect(chooseGid([])).toBeNull();
  });
});
