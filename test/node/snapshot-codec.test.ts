// The snapshot stream between nodes: records written by a source replica from its slabs, split by
// the joiner's node into runs of whole records (checked against its limits) wherever the HTTP
// stream happens to cut them.

import { describe, expect, test } from "bun:test";
import { encodeSnapshotEntries, SnapshotDecoder, SnapshotRecordSplitter } from "../../src/node/snapshot-codec.ts";
import type { SnapshotEntry } from "../../src/base/snapshot-entry.ts";
import { Prng, testSeed } from "../lib/prng.ts";

const entries: SnapshotEntry[] = Array.from({ length: 200 }, (_, i) => ({
  key: `key-${i}-${"é".repeat(i % 5)}`,
  version: 2 ** 40 + i,
  writer: i % 32,
  rmw: i % 3 === 0,
  value: i % 7 === 0 ? null : new Uint8Array(i % 50).fill(i & 0xff),
  committed: i % 4 !== 0,
}));

describe("SnapshotRecordSplitter", () => {
  test("a stream cut anywhere comes out as runs of whole records, all of them, in order", () => {
    const bytes = encodeSnapshotEntries(entries);
    const random = new Prng(testSeed(11));
    for (let round = 0; round < 20; round++) {
      const splitter = new SnapshotRecordSplitter(1024, 1024);
      const runs: Uint8Array[] = [];
      for (let at = 0; at < bytes.length;) {
        const n = 1 + random.int(round % 2 === 0 ? 40 : 4000);
        const run = splitter.push(bytes.slice(at, at + n));
        // Each run decodes on its own: it holds whole records only.
        if (run.length > 0) runs.push(run.slice());
        at += n;
      }
      splitter.finish();
      expect(splitter.records).toBe(entries.length);
      const decoder = new SnapshotDecoder(1024, 1024);
      const back = runs.flatMap((run) => {
        const decoded = decoder.push(run);
        decoder.finish();
        return decoded;
      });
      expect(back).toEqual(entries);
    }
  });

  test("keys and values over the node's limits, and a stream ending inside a record, are refused", () => {
    const bytes = encodeSnapshotEntries(entries);
    expect(() => new SnapshotRecordSplitter(8, 1024).push(bytes)).toThrow("key length");
    expect(() => new SnapshotRecordSplitter(1024, 10).push(bytes)).toThrow("value length");
    const cut = new SnapshotRecordSplitter(1024, 1024);
    cut.push(bytes.subarray(0, bytes.length - 1));
    expect(() => cut.finish()).toThrow("stream ended inside a record");
  });
});
