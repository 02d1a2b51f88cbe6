// Disk full, on a real filesystem that fills up: a 256 KiB tmpfs mounted by the test itself (root
// only; unmounted in afterAll whatever happens). ENOSPC surfaces from sync as a DiskError with its
// code; the log is then poisoned: append, flush, sync and rotate all throw, even after space is
// freed, so nothing is ever reported durable again. Every record a successful sync covered is
// recovered afterwards. A snapshot that runs out of space throws too and leaves the old state.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DiskError } from "../../src/storage/errors.ts";
import { recoverShard } from "../../src/storage/recovery.ts";
import { segmentName } from "../../src/storage/shard-files.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { SnapshotWriter } from "../../src/storage/snapshot-file.ts";
import { appendEntry, collectInto, entry, freshDir, limits, type Entry } from "./helpers.ts";

const tmpfsBytes = 256 * 1024;
const mountPoint = freshDir("tmpfs");
let mounted = false;
let mountProblem = "";
/** Mounting needs root; without it the tests skip with that reason (as the netns tests do). */
const isRoot = process.getuid?.() === 0;

beforeAll(() => {
  if (!isRoot) return;
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${tmpfsBytes}`, "tmpfs", mountPoint]);
  if (mount.exitCode === 0) mounted = true;
  else mountProblem = `mount failed: ${mount.stderr.toString().trim()}`;
});

afterAll(() => {
  if (mounted) {
    const umount = Bun.spawnSync(["umount", mountPoint]);
    if (umount.exitCode !== 0) Bun.spawnSync(["umount", "-l", mountPoint]);
  }
  rmSync(mountPoint, { recursive: true, force: true });
});

function diskErrorOf(run: () => unknown): DiskError {
  try {
    run();
  } catch (error) {
    if (error instanceof DiskError) return error;
    throw error;
  }
  throw new Error("expected a DiskError, the call succeeded");
}

const value32 = "v".repeat(20);

describe.skipIf(!isRoot)(`disk full (tmpfs)${isRoot ? "" : ` (skipped: not root, uid ${process.getuid?.()})`}`, () => {
  test("ENOSPC surfaces as a DiskError, poisons the log, and every synced record survives", () => {
    if (!mounted) throw new Error(`this test needs a tmpfs it can mount: ${mountProblem}`);
    const d = join(mountPoint, "log");
    mkdirSync(d);
    const filler = join(mountPoint, "filler");
    writeFileSync(filler, new Uint8Array(64 * 1024));

    const log = ShardLog.open(d, 1, { ...limits, segmentBytesMax: 1024 * 1024 });
    const synced: Entry[] = [];
    const batch: Entry[] = [];
    let failure: DiskError | null = null;
    for (let i = 0; failure === null && i < 100_000; i++) {
      const e = { ...entry(i, "full"), key: `k${i}`, value: `${value32}${i}`.slice(-32) };
      appendEntry(log, e);
      batch.push(e);
      if (batch.length === 64) {
        failure = tryOrNull(() => log.sync(), batch, synced);
      }
    }
    expect(failure).not.toBeNull();
    expect(failure!.code).toBe("ENOSPC");
    expect(failure!.path).toBe(join(d, segmentName(1)));
    expect(log.failure).toBe(failure);
    expect(synced.length).toBeGreaterThan(0);

    // Poisoned: nothing reports success again, even with space freed.
    unlinkSync(filler);
    expect(diskErrorOf(() => appendEntry(log, entry(1, "late"))).code).toBe("ENOSPC");
    expect(diskErrorOf(() => log.flush()).code).toBe("ENOSPC");
    expect(diskErrorOf(() => log.sync()).code).toBe("ENOSPC");
    expect(diskErrorOf(() => log.rotate()).code).toBe("ENOSPC");
    log.close();

    // Everything a successful sync covered is on disk; the failed batch may be partly there, torn.
    const back: Entry[] = [];
    recoverShard(d, collectInto(back));
    expect(back.slice(0, synced.length)).toEqual(synced);
    expect(back.length).toBeLessThanOrEqual(synced.length + 64);
    rmSync(d, { recursive: true });
  });

  test("a snapshot that runs out of space throws a DiskError and leaves the log and old files as they were", () => {
    if (!mounted) throw new Error(`this test needs a tmpfs it can mount: ${mountProblem}`);
    const d = join(mountPoint, "snap");
    mkdirSync(d);
    const log = ShardLog.open(d, 1, limits);
    const written = [entry(1, "s"), entry(2, "s")];
    written.forEach((e) => appendEntry(log, e));
    const coversBefore = log.rotate();
    log.close();

    const writer = SnapshotWriter.begin(d, coversBefore, limits, 4096);
    const key = new TextEncoder().encode("k");
    const value = new Uint8Array(4000);
    const failure = diskErrorOf(() => {
      for (let i = 0; i < 1000; i++) writer.add(key, 0, 1, i, 1, true, false, value, 0, value.length);
      writer.finish();
    });
    expect(failure.code).toBe("ENOSPC");
    expect(() => writer.finish()).toThrow(DiskError);
    // Given up at once: the temp file is already gone; abort() is a no-op.
    expect(readdirSync(d).sort()).toEqual([segmentName(1), segmentName(2)]);
    writer.abort();
    const back: Entry[] = [];
    recoverShard(d, collectInto(back));
    expect(back).toEqual(written);
  });
});

/** Syncs; on success moves the batch to `synced` and returns null, on a DiskError returns it. */
function tryOrNull(sync: () => void, batch: Entry[], synced: Entry[]): DiskError | null {
  try {
    sync();
  } catch (error) {
    if (error instanceof DiskError) return error;
    throw error;
  }
  synced.push(...batch.splice(0));
  return null;
}
