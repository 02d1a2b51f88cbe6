// A local cluster's incarnation counter, kept in a replica's data dir.
//
// `hermes-kv local` is its own membership service and counts each replica's processes in memory.
// With --data-dir a replica also outlives the whole process: its log may hold updates of the
// previous process that were never committed, under writer ids of that process's incarnations. A
// new process that counted from 0 again could reissue one of those timestamps with another value
// (the bug incarnations exist for, src/base/ids.ts). So with a data dir the count lives on disk,
// next to the data it protects, and is made durable before the replica may write anything.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { incarnationMax } from "../base/ids.ts";
import { writeFileDurably } from "../storage/shard-files.ts";

export const incarnationFileName = "INCARNATION";

/**
 * The incarnation this start of the replica whose data dir is `dir` must use: one more than the
 * last one recorded there (0 for a new dir), recorded before it is returned. Throws on a file that
 * is not a decimal count (someone else's file: refuse rather than guess).
 */
export function claimIncarnationIn(dir: string): number {
  const path = join(dir, incarnationFileName);
  let next = 0;
  if (existsSync(path)) {
    const text = readFileSync(path, "utf8").trim();
    if (!/^(0|[1-9][0-9]{0,9})$/.test(text))
      throw new Error(`${path} does not hold an incarnation count: ${JSON.stringify(text.slice(0, 40))}`);
    next = Number(text) + 1;
  }
  if (next > incarnationMax) throw new Error(`${path}: the replica's incarnations are used up (${incarnationMax})`);
  // On disk, whole, before any write under it.
  writeFileDurably(path, `${next}\n`);
  return next;
}
