// A node's data directory: who it belongs to, and that one process at a time uses it.
//
// Layout:
//   DIR/LOCK          held with flock(2) while a process uses the dir; holds that process's pid (for messages)
//   DIR/IDENTITY      JSON {format, cluster, node}, written on first use, checked on every later one
//   DIR/shard-N/      one directory per shard worker: log segments and snapshots (shard-files.ts)
//
// Why flock and not a LOCK file created with O_EXCL plus a stale-pid check: the kernel drops a
// flock the moment its process dies, SIGKILL and power loss included, so a crashed node never
// leaves a stale lock behind and nothing has to guess. A pid check guesses: after a reboot or in a
// container the dead node's pid is often reused by a live process (then the node refuses to start
// forever), and two starters that both judge a lock stale race to delete and recreate it. flock is
// advisory and per open file description, which is exactly what is needed here (two hermes-kv
// processes, or two opens in one process, exclude each other). Its one weakness, NFS, does not apply
// to a local data dir.
//
// The identity file stops a node from replaying another cluster's or another node's data: a data
// dir copied to the wrong machine, or --id typed wrong, must refuse to start rather than merge
// foreign keys into a cluster.

import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { diskError } from "./errors.ts";
import { tryLockExclusive } from "./flock.ts";
import { fsyncDir, writeFileDurably } from "./shard-files.ts";
import { storageFormatVersion } from "./snapshot-file.ts";

const lockName = "LOCK";
const identityName = "IDENTITY";

export interface DataDirIdentity {
  cluster: string;
  node: number;
}

/** Another process holds the dir's lock. */
export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly holder: string,
  ) {
    super(`data dir ${dir} is in use by another process (pid ${holder || "unknown"}): one process per data dir`);
    this.name = "DataDirLockedError";
  }
}

/** The dir was made by another cluster or node, or by an incompatible format. */
export class DataDirIdentityError extends Error {
  constructor(
    readonly dir: string,
    message: string,
  ) {
    super(message);
    this.name = "DataDirIdentityError";
  }
}

export class DataDir {
  readonly #lockFd: number;
  #closed = false;

  private constructor(
    readonly path: string,
    readonly identity: DataDirIdentity,
    lockFd: number,
  ) {
    this.#lockFd = lockFd;
  }

  /**
   * Creates the dir if needed, locks it, and checks (or, on first use, writes) its identity.
   * Throws DataDirLockedError, DataDirIdentityError, or DiskError; holds no lock after a throw.
   */
  static open(path: string, identity: DataDirIdentity): DataDir {
    let created: string | undefined;
    try {
      created = mkdirSync(path, { recursive: true });
    } catch (error) {
      throw diskError("mkdir", path, error);
    }
    // A new directory's entry is durable only once its parent is fsynced: every level mkdir created.
    if (created !== undefined) {
      for (let dir = resolve(path); dir !== dirname(resolve(created)); dir = dirname(dir)) fsyncDir(dirname(dir));
    }
    const lockFd = lock(path);
    try {
      checkOrWriteIdentity(path, identity);
    } catch (error) {
      closeSync(lockFd);
      throw error;
    }
    return new DataDir(path, identity, lockFd);
  }

  /** The directory of shard `shard`, created (and made durable) if missing. */
  shardDir(shard: number): string {
    if (!Number.isInteger(shard) || shard < 0) throw new RangeError(`shard ${shard}: must be an integer >= 0`);
    const dir = join(this.path, `shard-${shard}`);
    try {
      mkdirSync(dir);
      fsyncDir(this.path);
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw diskError("mkdir", dir, error);
    }
    return dir;
  }

  /** Releases the lock. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#lockFd);
  }
}

function lock(dir: string): number {
  const path = join(dir, lockName);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    throw diskError("open", path, error);
  }
  let taken: boolean;
  try {
    taken = tryLockExclusive(fd);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  if (!taken) {
    closeSync(fd);
    let holder = "";
    try {
      holder = readFileSync(path, "utf8").trim();
    } catch {
      // The pid is only for the message; the lock itself is what excludes.
    }
    throw new DataDirLockedError(dir, holder);
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (error) {
    closeSync(fd);
    throw diskError("write", path, error);
  }
  return fd;
}

function describe(identity: DataDirIdentity): string {
  return `cluster "${identity.cluster}" node ${identity.node}`;
}

function checkOrWriteIdentity(dir: string, wanted: DataDirIdentity): void {
  const path = join(dir, identityName);
  let text: string | null = null;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") throw diskError("read", path, error);
  }
  if (text === null) {
    writeIdentity(dir, wanted);
    return;
  }
  let found: { format?: unknown; cluster?: unknown; node?: unknown };
  try {
    found = JSON.parse(text) as typeof found;
  } catch {
    throw new DataDirIdentityError(dir, `data dir ${dir}: ${path} is not valid JSON; refusing to use the dir`);
  }
  if (found.format !== storageFormatVersion)
    throw new DataDirIdentityError(
      dir,
      `data dir ${dir} has storage format ${String(found.format)}; this build reads format ${storageFormatVersion}`,
    );
  if (typeof found.cluster !== "string" || typeof found.node !== "number")
    throw new DataDirIdentityError(dir, `data dir ${dir}: ${path} lacks a cluster name or node id`);
  const mine = { cluster: found.cluster, node: found.node };
  if (mine.cluster !== wanted.cluster || mine.node !== wanted.node)
    throw new DataDirIdentityError(
      dir,
      `data dir ${dir} belongs to ${describe(mine)}, not to ${describe(wanted)} (this node): refusing to start on it`,
    );
}

/** The identity is either absent or whole (writeFileDurably). */
function writeIdentity(dir: string, identity: DataDirIdentity): void {
  const text = JSON.stringify({ format: storageFormatVersion, cluster: identity.cluster, node: identity.node }) + "\n";
  writeFileDurably(join(dir, identityName), text);
}
