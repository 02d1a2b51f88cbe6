// Crash a real writer with SIGKILL at random moments: a child process (child.ts write) recovers the
// shard, appends unique entries in synced batches (printing how many are durable after each sync),
// rotates segments and takes snapshots; the test kills it after a random number of syncs, 8 times
// in a row on the same directory. After every kill, recovery must return exactly a prefix of the
// child's sequence (entry 0, 1, 2, ... with nothing missing, repeated or altered), at least as long
// as the last count the child reported synced: no acknowledged entry is ever lost. (SIGKILL leaves
// written pages in the page cache, so this proves the crash path of the code, not of the disk.)

import { afterAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { recoverShard } from "../../src/storage/recovery.ts";
import { below, prng, testSeed } from "../lib/prng.ts";
import { collectInto, entry, freshDir, removeDir, type Entry } from "./helpers.ts";

const dir = freshDir("kill");
afterAll(() => removeDir(dir));
const kills = 8;

/** Runs the writer until it reported `syncsWanted` syncs, SIGKILLs it, and returns the last count it reported. */
async function writeThenKill(syncsWanted: number): Promise<number> {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "child.ts"), "write", dir], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let syncs = 0;
  let durable = -1;
  try {
    while (syncs < syncsWanted) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the writer exited early (code ${await child.exited}) after ${syncs} syncs`);
      pending += decoder.decode(value);
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const match = /^synced (\d+)$/.exec(line);
        if (match === null) throw new Error(`unexpected line from the writer: ${line}`);
        durable = Number(match[1]);
        syncs++;
      }
    }
  } finally {
    child.kill("SIGKILL");
    await child.exited;
  }
  return durable;
}

test(`SIGKILL a writer ${kills} times at random moments: recovery returns every synced entry, in order, exactly`, async () => {
  const random = prng(testSeed(4242));
  let previous = 0;
  for (let round = 0; round < kills; round++) {
    const durable = await writeThenKill(1 + below(random, 40));
    const back: Entry[] = [];
    recoverShard(dir, collectInto(back));
    expect(back.length).toBeGreaterThanOrEqual(durable);
    expect(back.length).toBeGreaterThan(previous);
    expect(back).toEqual(back.map((_, i) => entry(i, "kill")));
    previous = back.length;
  }
  // The kills landed while snapshots were being taken too, not only on plain appends.
  expect(readdirSync(dir).some((name) => name.endsWith(".snap"))).toBe(true);
}, 120_000);
