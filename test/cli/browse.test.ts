// `hermes-kv ls` and `hermes-kv watch` against a real 3-replica cluster (W=2): ls pages through
// every key of a prefix in byte order (with --values, --limit), and watch prints the current keys,
// `synced`, then one line per change made on another replica, and exits 3 when the node ends the
// stream. The writes go through a recorded client; the history is checked for linearizability.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { runBrowseCommand } from "../../src/cli/browse-client.ts";
import type { ClientIo } from "../../src/cli/client.ts";
import {
  Client,
  Recorder,
  eventually,
  expectLinearizable,
  startCluster,
  steadyRm,
  type TestCluster,
} from "../e2e/harness.ts";

let current: TestCluster;
const recorder = new Recorder();

beforeAll(async () => {
  // Leases that do not lapse on a loaded machine: a lapse would also end a stream with `unavailable`.
  current = await startCluster(3, { shards: 2, rm: steadyRm });
}, 60_000);

afterAll(async () => {
  await current.cluster.close();
}, 30_000);

function io(out: string[], err: string[]): ClientIo {
  const decoder = new TextDecoder();
  return {
    stdout: (data) => void out.push(typeof data === "string" ? data : decoder.decode(data)),
    stderr: (text) => void err.push(text),
    readStdin: async () => new Uint8Array(0),
    env: {},
  };
}

test("ls pages through a prefix in byte order, with values, up to --limit; bad flags are usage errors", async () => {
  const url = current.cluster.url(0);
  const writer = new Client(1, 1, (i) => current.cluster.url(i), recorder);
  const keys = Array.from({ length: 25 }, (_, i) => `ls/${String(i).padStart(2, "0")}`);
  for (const key of keys) expect(await writer.put(key, `value of ${key}`)).toBe("ok");
  expect(await writer.put("ls/bin", "\u0001\u0002")).toBe("ok");
  expect(await writer.put("lt/other", "not listed")).toBe("ok");
  const out: string[] = [];
  const err: string[] = [];
  expect(await runBrowseCommand(["ls", "ls/", "--values", "--endpoint", url], io(out, err))).toBe(0);
  const lines = out.join("").trimEnd().split("\n");
  expect(lines.map((l) => l.split("\t")[0])).toEqual([...keys, "ls/bin"]);
  expect(lines[0]).toBe(`ls/00\t"2.1"\tvalue of ls/00`);
  expect(lines.at(-1)).toBe(`ls/bin\t"2.1"\tbase64:AQI=`);
  out.length = 0;
  expect(await runBrowseCommand(["ls", "ls/", "--limit", "3", "--endpoint", url], io(out, err))).toBe(0);
  expect(out.join("")).toBe(`ls/00\t"2.1"\nls/01\t"2.1"\nls/02\t"2.1"\n`);
  expect(await runBrowseCommand(["ls", "ls/", "--limit", "0", "--endpoint", url], io(out, err))).toBe(64);
  expect(await runBrowseCommand(["ls", "a", "b", "--endpoint", url], io(out, err))).toBe(64);
  expect(err.join("")).toContain("--limit");
});

test("watch prints the current keys, synced, then live changes from another replica; exit 3 when the node ends it", async () => {
  const urls = [0, 1, 2].map((i) => current.cluster.url(i));
  const writer = new Client(2, 0, (i) => urls[i]!, recorder);
  expect(await writer.put("wc/a", "first")).toBe("ok");
  const out: string[] = [];
  const err: string[] = [];
  const exited = runBrowseCommand(["watch", "wc/", "--endpoint", urls[2]!], io(out, err));
  expect(await eventually(async () => out.join("").includes("synced\n"), 100, 50)).toBe(true);
  expect(await writer.put("wc/b", "second")).toBe("ok");
  expect(await writer.remove("wc/a")).toBe("ok");
  expect(await eventually(async () => out.join("").includes("delete\twc/a"), 100, 50)).toBe(true);
  expect(await current.cluster.stopReplica(2)).toBe(true);
  expect(await exited).toBe(3);
  expect(out.join("")).toBe(
    `put\twc/a\t"2.0"\tfirst\nsynced\nput\twc/b\t"2.0"\tsecond\ndelete\twc/a\t"4.0"\n` +
      out.join("").slice(out.join("").indexOf("unavailable")),
  );
  expect(out.join("")).toContain("unavailable\t");
  expectLinearizable(recorder.check());
}, 60_000);
