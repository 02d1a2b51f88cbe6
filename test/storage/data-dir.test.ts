// The data dir with real processes: a second process (Bun.spawn) cannot open a dir this one holds,
// and is told the holder's pid; a holder killed with SIGKILL leaves no stale lock (the kernel drops
// a flock with its process). The identity written on first use refuses another cluster's or node's
// start with a message naming both, and an unknown format; the same identity opens again.

import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDir, DataDirIdentityError, DataDirLockedError } from "../../src/storage/data-dir.ts";
import { freshDir, removeDir } from "./helpers.ts";

const dirs: string[] = [];
function dir(label: string): string {
  const d = freshDir(label);
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach(removeDir));

const childScript = join(import.meta.dir, "child.ts");

/** Starts `child.ts lock` and returns once it printed its first line. */
async function lockInChild(d: string, cluster: string, node: number) {
  const child = Bun.spawn([process.execPath, childScript, "lock", d, cluster, String(node)], { stdout: "pipe" });
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  return { child, line: text.trim() };
}

function errorOf(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error, the data dir opened");
}

describe("data dir", () => {
  test("a second process cannot open a held dir, and learns the holder's pid", async () => {
    const d = dir("lock");
    const held = DataDir.open(d, { cluster: "c1", node: 1 });
    try {
      const { child, line } = await lockInChild(d, "c1", 1);
      expect(await child.exited).toBe(3);
      expect(line).toBe(
        `DataDirLockedError: data dir ${d} is in use by another process (pid ${process.pid}): one process per data dir`,
      );
    } finally {
      held.close();
    }
    // Released: a new open in another process now succeeds.
    const { child, line } = await lockInChild(d, "c1", 1);
    try {
      expect(line).toBe("held");
    } finally {
      child.kill("SIGKILL");
      await child.exited;
    }
  });

  test("a holder killed with SIGKILL leaves no stale lock", async () => {
    const d = dir("killed");
    const { child, line } = await lockInChild(d, "c1", 2);
    try {
      expect(line).toBe("held");
      expect(errorOf(() => DataDir.open(d, { cluster: "c1", node: 2 }))).toBeInstanceOf(DataDirLockedError);
    } finally {
      child.kill("SIGKILL");
      await child.exited;
    }
    expect(readFileSync(join(d, "LOCK"), "utf8").trim()).toBe(String(child.pid)); // the file stays, the lock does not
    const reopened = DataDir.open(d, { cluster: "c1", node: 2 });
    expect(readFileSync(join(d, "LOCK"), "utf8").trim()).toBe(String(process.pid));
    reopened.close();
  });

  test("the identity is written once; another cluster or node is refused with both named", () => {
    const d = dir("identity");
    DataDir.open(d, { cluster: "alpha", node: 3 }).close();
    expect(JSON.parse(readFileSync(join(d, "IDENTITY"), "utf8"))).toEqual({ format: 1, cluster: "alpha", node: 3 });

    const otherCluster = errorOf(() => DataDir.open(d, { cluster: "beta", node: 3 }));
    expect(otherCluster).toBeInstanceOf(DataDirIdentityError);
    expect(otherCluster.message).toBe(
      `data dir ${d} belongs to cluster "alpha" node 3, not to cluster "beta" node 3 (this node): refusing to start on it`,
    );
    const otherNode = errorOf(() => DataDir.open(d, { cluster: "alpha", node: 4 }));
    expect(otherNode.message).toContain(`belongs to cluster "alpha" node 3, not to cluster "alpha" node 4`);

    // A refused open holds no lock: the right identity opens at once.
    const ok = DataDir.open(d, { cluster: "alpha", node: 3 });
    expect(ok.identity).toEqual({ cluster: "alpha", node: 3 });
    ok.close();
  });

  test("an unknown format or a damaged identity file is refused", () => {
    const d = dir("format");
    DataDir.open(d, { cluster: "alpha", node: 0 }).close();
    writeFileSync(join(d, "IDENTITY"), JSON.stringify({ format: 99, cluster: "alpha", node: 0 }));
    expect(errorOf(() => DataDir.open(d, { cluster: "alpha", node: 0 })).message).toContain(
      "has storage format 99; this build reads format 1",
    );
    writeFileSync(join(d, "IDENTITY"), "{not json");
    expect(errorOf(() => DataDir.open(d, { cluster: "alpha", node: 0 })).message).toContain("is not valid JSON");
  });

  test("shard dirs are created once and found again; missing parents of the data dir are created", () => {
    const d = join(dir("shards"), "nested", "data");
    const dataDir = DataDir.open(d, { cluster: "alpha", node: 0 });
    const shard = dataDir.shardDir(2);
    expect(shard).toBe(join(d, "shard-2"));
    expect(dataDir.shardDir(2)).toBe(shard);
    expect(() => dataDir.shardDir(-1)).toThrow(RangeError);
    expect(JSON.parse(readFileSync(join(d, "IDENTITY"), "utf8")).cluster).toBe("alpha");
    dataDir.close();
  });
});
