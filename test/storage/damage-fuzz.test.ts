// "Never silently wrong", as a property over random damage. A shard of 1-3 log segments (and, half
// the time, a snapshot before them) gets one random injury: a flipped byte, a cut, random garbage
// or zeros appended, a zeroed range, or a file (segment or snapshot) deleted. Recovery must then
// either throw a CorruptionError naming a file of the shard, or hand over exactly a prefix of what
// was written (snapshot entries first, then the log in order). It may only lose records when the
// injury hit the last segment, or when the whole last segment is gone (which no checksum can see:
// a known limit). A second recovery of the same directory must agree with the first. Files live on
// /dev/shm: many rounds, no fsync cost; the bytes and the code paths are the same as on a disk.

import { afterAll, expect, test } from "bun:test";
import { readFileSync, readdirSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptionError } from "../../src/storage/errors.ts";
import { recoverShard } from "../../src/storage/recovery.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { SnapshotWriter } from "../../src/storage/snapshot-file.ts";
import { below, prng, testSeed } from "../lib/prng.ts";
import { appendEntry, collectInto, entry, freshDir, limits, memoryRoot, removeDir, type Entry } from "./helpers.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

const encoder = new TextEncoder();
const rounds = 300;

function recover(d: string): Entry[] | CorruptionError {
  const out: Entry[] = [];
  try {
    recoverShard(d, collectInto(out));
  } catch (error) {
    if (error instanceof CorruptionError) return error;
    throw error;
  }
  return out;
}

test(`${rounds} random injuries: a CorruptionError or an exact prefix of what was written, never anything else`, () => {
  const seed = testSeed(1105);
  const random = prng(seed);
  const outcomes = { corruption: 0, whole: 0, shortened: 0 };
  for (let round = 0; round < rounds; round++) {
    const d = freshDir("fuzz", memoryRoot);
    dirs.push(d);
    const written: Entry[] = [];
    const log = ShardLog.open(d, 1, limits);
    let n = 0;
    const add = (count: number): void => {
      for (let i = 0; i < count; i++) {
        written.push(entry(n++, `r${round}`));
        appendEntry(log, written.at(-1)!);
      }
    };
    add(1 + below(random, 20));
    if (random() < 0.5) {
      // A snapshot of everything so far, then more log.
      const coversBefore = log.rotate();
      const writer = SnapshotWriter.begin(d, coversBefore, limits);
      for (const e of written) {
        const key = encoder.encode(e.key);
        const value = e.value === null ? null : encoder.encode(e.value);
        writer.add(key, 0, key.length, e.version, e.writer, e.valid, e.rmw, value, 0, value?.length ?? 0);
      }
      writer.finish();
    }
    for (let s = below(random, 3); s > 0; s--) {
      log.rotate();
      add(1 + below(random, 20));
    }
    log.close();

    const files = readdirSync(d).sort();
    const victim = join(d, files[below(random, files.length)]!);
    const lastSegment = join(d, files.filter((f) => f.endsWith(".log")).at(-1)!);
    const bytes = readFileSync(victim);
    const injury = below(random, 6);
    let touchesOnlyLastTail = false;
    if (injury === 0 && bytes.length > 0) {
      const at = below(random, bytes.length);
      bytes[at]! ^= 1 + below(random, 255);
      writeFileSync(victim, bytes);
    } else if (injury === 1) {
      writeFileSync(victim, bytes.subarray(0, below(random, bytes.length + 1)));
      touchesOnlyLastTail = victim === lastSegment;
    } else if (injury === 2) {
      const garbage = Uint8Array.from({ length: 1 + below(random, 200) }, () => below(random, 256));
      writeFileSync(victim, Buffer.concat([bytes, garbage]));
      touchesOnlyLastTail = victim === lastSegment;
    } else if (injury === 3) {
      writeFileSync(victim, Buffer.concat([bytes, new Uint8Array(1 + below(random, 4096))]));
      touchesOnlyLastTail = victim === lastSegment;
    } else if (injury === 4 && bytes.length > 0) {
      const from = below(random, bytes.length);
      bytes.fill(0, from, Math.min(bytes.length, from + 1 + below(random, 64)));
      writeFileSync(victim, bytes);
    } else {
      unlinkSync(victim);
    }

    const first = recover(d);
    const second = recover(d);
    const context = `seed ${seed} round ${round}: injury ${injury} to ${victim}`;
    if (first instanceof CorruptionError) {
      outcomes.corruption++;
      expect(second, context).toBeInstanceOf(CorruptionError);
      expect(first.file.startsWith(`${d}/`), context).toBe(true);
      expect(first.message, context).toContain(`corrupt data in ${first.file} at byte offset ${first.offset}`);
      continue;
    }
    // Not an error: exactly a prefix of what was written, and the same again.
    expect(first, context).toEqual(written.slice(0, first.length));
    expect(second, context).toEqual(first);
    if (first.length === written.length) outcomes.whole++;
    else {
      outcomes.shortened++;
      // Records may only go missing from the end of the last segment (a cut or an injury there),
      // or when a whole trailing segment went away.
      const lastGone = !readdirSync(d).includes(lastSegment.split("/").at(-1)!);
      expect(touchesOnlyLastTail || victim === lastSegment || lastGone, context).toBe(true);
    }
  }
  // The injuries must exercise all three outcomes, or the property proves little.
  expect(outcomes.corruption).toBeGreaterThan(0);
  expect(outcomes.whole).toBeGreaterThan(0);
  expect(outcomes.shortened).toBeGreaterThan(0);
}, 120_000);
