// `--cluster-key-file FILE` (node, local) and `hermes-kv keygen FILE`: the cluster key on disk.
//
// The file holds 64 hex digits and a newline (src/base/cluster-key.ts). It is a secret that lets its
// holder forge replica traffic and download every key, so, as ssh does with private keys, a file that
// anyone but its owner may read or write is refused: a key that leaked is not a key.

import { openSync, closeSync, writeSync, readFileSync, statSync } from "node:fs";
import { formatClusterKey, generateClusterKey, parseClusterKey } from "../base/cluster-key.ts";
import { UsageError } from "./args.ts";
import { FatalError } from "./fatal-error.ts";

/** Permission bits that must be clear on a key file: group and others. */
const keyFileModeForbidden = 0o077;
/** The mode keygen creates key files with. */
export const keyFileMode = 0o600;

/** Reads and checks the key file named by `--cluster-key-file` (`flag`, for the message). */
export function readClusterKeyFile(path: string, flag = "--cluster-key-file"): Uint8Array {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`${flag} ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  if ((mode & keyFileModeForbidden) !== 0)
    throw new UsageError(
      `${flag} ${path}: mode ${(mode & 0o777).toString(8)} lets others read or write the key; chmod 600 it`,
    );
  try {
    return parseClusterKey(text);
  } catch (error) {
    throw new UsageError(`${flag} ${path}: ${(error as Error).message}`);
  }
}

/** Writes a new random key to `path` with mode 0600; never overwrites (FatalError if it exists). */
export function writeNewClusterKeyFile(path: string): void {
  let fd: number;
  try {
    // "wx": O_CREAT | O_EXCL, so an existing file (or a symlink planted there) is never followed or replaced.
    fd = openSync(path, "wx", keyFileMode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new FatalError(`${path} exists: refusing to overwrite a key (remove it first)`);
    throw new FatalError(`cannot create ${path}: ${code ?? String(error)}`);
  }
  try {
    writeSync(fd, formatClusterKey(generateClusterKey()));
  } finally {
    closeSync(fd);
  }
}
