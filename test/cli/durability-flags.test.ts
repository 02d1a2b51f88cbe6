// --data-dir, --durability and --fsync-interval-ms: what each combination means, and a clear usage
// error (nothing written, no dir created) for every bad one.

import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../src/cli/args.ts";
import { openDataDir, parseDurabilityFlags } from "../../src/cli/durability-flags.ts";
import { fsyncIntervalMsDefault } from "../../src/base/durability.ts";

describe("durability flags", () => {
  test("none without a data dir; fsync by default with one; async with its interval", () => {
    expect(parseDurabilityFlags({})).toBeNull();
    expect(parseDurabilityFlags({ durability: "none" })).toBeNull();
    expect(parseDurabilityFlags({ "data-dir": "/d" })).toMatchObject({
      mode: "fsync",
      dataDir: "/d",
      fsyncIntervalMs: fsyncIntervalMsDefault,
    });
    expect(parseDurabilityFlags({ "data-dir": "/d", durability: "async", "fsync-interval-ms": "250" })).toMatchObject({
      mode: "async",
      fsyncIntervalMs: 250,
    });
  });

  test.each([
    [{ durability: "always" }, "--durability must be one of none|fsync|async"],
    [{ durability: "fsync" }, "--durability fsync needs --data-dir"],
    [{ durability: "async" }, "--durability async needs --data-dir"],
    [{ "data-dir": "/d", durability: "none" }, "nothing would be kept there"],
    [{ "data-dir": "/d", "fsync-interval-ms": "50" }, "applies to --durability async only"],
    [{ "data-dir": "/d", durability: "async", "fsync-interval-ms": "0" }, "--fsync-interval-ms"],
    [{ "data-dir": "/d", durability: "async", "fsync-interval-ms": "1e3" }, "--fsync-interval-ms"],
  ] as const)("%j is refused: %s", (flags, message) => {
    expect(() => parseDurabilityFlags(flags)).toThrow(UsageError);
    expect(() => parseDurabilityFlags(flags)).toThrow(message);
  });

  test("a data dir written with another shard count is refused (keys are placed by it); the lock is released", () => {
    const dir = mkdtempSync(join(tmpdir(), "hermes-durability-flags-"));
    try {
      mkdirSync(join(dir, "shard-0"));
      mkdirSync(join(dir, "shard-1"));
      expect(() => openDataDir(dir, "c", 0, 1)).toThrow("holds 2 shard dirs (shard-0, shard-1) but --shards is 1");
      // Refused without keeping the lock: the right shard count opens it.
      const ok = openDataDir(dir, "c", 0, 2);
      ok.close();
      expect(existsSync(join(dir, "IDENTITY"))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
