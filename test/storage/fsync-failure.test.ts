// A failed fdatasync after successful writes: the case behind "fsyncgate". An ext4 filesystem
// (no journal) on a loop device whose backing file lives on a 4 MiB tmpfs: writes land in the page
// cache and succeed, and the error only appears when writeback reaches the full backing store, so
// it surfaces from fdatasync (ENOSPC or EIO, depending on the kernel). The log must report it as a
// DiskError from fdatasync and poison itself: a retried sync never reports success.
//
// After a remount, recovery must return exactly a prefix of what was appended, every record whole.
// Measured here: it is not always every record an earlier sync covered. ext4 without a journal
// lost the tail of the last successfully synced batch when the next writeback failed (dmesg:
// "failed to convert unwritten extents to written extents -- potential data loss"): a failing disk
// can take acknowledged data with it, which is why the node must stop acknowledging at the first
// failure. The checksums turn that loss into a torn tail, never into wrong data.
//
// Everything (tmpfs, loop device, mounts) is made by the test and torn down in afterAll.
// Needs root, losetup and mkfs.ext4; skips otherwise.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DiskError } from "../../src/storage/errors.ts";
import { recoverShard } from "../../src/storage/recovery.ts";
import { segmentName } from "../../src/storage/shard-files.ts";
import { ShardLog } from "../../src/storage/shard-log.ts";
import { freshDir } from "./helpers.ts";

const backingBytes = 4 * 1024 * 1024;
const deviceBytes = 32 * 1024 * 1024;
const toolsMissing = ["losetup", "mkfs.ext4", "mount", "umount"].filter((tool) => Bun.which(tool) === null);
const skipReason =
  process.getuid?.() !== 0
    ? `not root (uid ${process.getuid?.()})`
    : toolsMissing.length > 0
      ? `no ${toolsMissing}`
      : "";

const root = freshDir("fsyncfail");
const backingMount = join(root, "backing");
const fsMount = join(root, "fs");
let loopDevice = "";
let tmpfsMounted = false;
let fsMounted = false;

function run(...args: string[]): string {
  const result = Bun.spawnSync(args);
  if (result.exitCode !== 0) throw new Error(`${args.join(" ")}: ${result.stderr.toString().trim()}`);
  return result.stdout.toString().trim();
}

beforeAll(() => {
  if (skipReason !== "") return;
  mkdirSync(backingMount);
  mkdirSync(fsMount);
  run("mount", "-t", "tmpfs", "-o", `size=${backingBytes}`, "tmpfs", backingMount);
  tmpfsMounted = true;
  run("truncate", "-s", String(deviceBytes), join(backingMount, "device"));
  loopDevice = run("losetup", "--find", "--show", join(backingMount, "device"));
  // No journal, few inodes: the empty filesystem takes little of the backing store.
  run("mkfs.ext4", "-q", "-F", "-O", "^has_journal,^resize_inode", "-N", "64", "-m", "0", loopDevice);
  run("mount", loopDevice, fsMount);
  fsMounted = true;
});

afterAll(() => {
  if (fsMounted && Bun.spawnSync(["umount", fsMount]).exitCode !== 0) Bun.spawnSync(["umount", "-l", fsMount]);
  if (loopDevice !== "") Bun.spawnSync(["losetup", "-d", loopDevice]);
  if (tmpfsMounted && Bun.spawnSync(["umount", backingMount]).exitCode !== 0)
    Bun.spawnSync(["umount", "-l", backingMount]);
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(skipReason !== "")(`fdatasync failure${skipReason === "" ? "" : ` (skipped: ${skipReason})`}`, () => {
  test("writes succeed, fdatasync fails: a DiskError from fdatasync, the log poisoned, synced records kept", () => {
    const dir = join(fsMount, "shard");
    mkdirSync(dir);
    const log = ShardLog.open(dir, 1, {
      keyBytesMax: 64,
      valueBytesMax: 8192,
      segmentBytesMax: 64 * 1024 * 1024,
      bufferBytes: 1024 * 1024,
    });
    const key = new TextEncoder().encode("fsync-key");
    const value = new Uint8Array(8000);
    let synced = 0;
    let appended = 0;
    let failure: DiskError | null = null;
    while (failure === null && appended < 10_000) {
      for (let i = 0; i < 64; i++) {
        value.fill(appended & 0xff);
        log.append(key, 0, key.length, ++appended, 1, true, false, value, 0, value.length);
      }
      try {
        log.sync();
        synced = appended;
      } catch (error) {
        if (!(error instanceof DiskError)) throw error;
        failure = error;
      }
    }
    expect(failure).not.toBeNull();
    expect(failure!.operation).toBe("fdatasync"); // the writes themselves all succeeded
    expect(["ENOSPC", "EIO"]).toContain(failure!.code);
    expect(failure!.path).toBe(join(dir, segmentName(1)));
    expect(synced).toBeGreaterThan(0);
    // Poisoned: a second fdatasync might now "succeed" on pages the kernel has dropped; the log never asks.
    expect(() => log.sync()).toThrow(failure!);
    expect(() => log.append(key, 0, key.length, ++appended, 1, true, false, null, 0, 0)).toThrow(failure!);
    log.close();

    // Remount read-only and read back: exactly a prefix of what was appended, each record whole.
    expect(Bun.spawnSync(["umount", fsMount]).exitCode).toBe(0);
    fsMounted = false;
    run("mount", "-o", "ro", loopDevice, fsMount);
    fsMounted = true;
    let back = 0;
    let wrong = 0;
    const result = recoverShard(
      dir,
      (record) => {
        const expected = back & 0xff;
        back++;
        if (record.version !== back || record.valueLength !== value.length) wrong++;
        else for (let i = 0; i < record.valueLength; i++) if (record.bytes[record.valueAt + i] !== expected) wrong++;
      },
      { readOnly: true },
    );
    expect(wrong).toBe(0);
    expect(back).toBeGreaterThan(0);
    expect(back).toBeLessThanOrEqual(appended);
    console.log(
      `fdatasync failed with ${failure!.code} after ${synced} records synced; read back after remount: ${back}` +
        (result.tailNote === null ? "" : `; ${result.tailNote}`),
    );
  });
});
