// Figures of issue 11 (durability), each set measured in one run so that ratios compare like with
// like on this shared, noisy machine. Measures; asserts nothing.
//
//   bun bench/durability.ts engine [rounds] [seconds]   hermes-kv bench, none / async / fsync alternating,
//                                                       at 5 % and 100 % updates (3 replicas, 1 worker)
//   bun bench/durability.ts recovery [keys...]          one shard's recovery from its log, a snapshot
//                                                       of it (the pause per loop turn), recovery from
//                                                       the snapshot (default 100000 and 1000000 keys)
//
// The load average is printed with every set: compare ratios of one set, not figures across sets.

import { mkdtempSync, rmSync, statSync, readdirSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Replica } from "../src/core/replica.ts";
import { defaultReplicaConfig, type Completions, type Outbox } from "../src/core/types.ts";
import type { DurabilityOptions } from "../src/base/durability.ts";
import { snapshotStepBytesDefault } from "../src/base/durability.ts";
import { recoverAndOpen } from "../src/worker/shard-durability.ts";

const repoRoot = join(import.meta.dir, "..");
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

// --- engine --------------------------------------------------------------------------------------

interface EngineRun {
  mode: string;
  writePerMille: number;
  mreqs: number;
  updatesPerS: number;
  writeP50Us: number;
  writeP99Us: number;
  updatesPerFsync: number | null;
}

async function engineRun(mode: string, writePerMille: number, seconds: number): Promise<EngineRun> {
  const dir = mode === "none" ? null : mkdtempSync(join(tmpdir(), "hermes-bench-durability-"));
  try {
    const args = ["src/main.ts", "bench", "-M", "3", "-W", "1", "-w", String(writePerMille), "-d", String(seconds)];
    args.push("-k", "100000", "--transport", "tcp");
    if (dir !== null) args.push("--data-dir", dir, "--durability", mode);
    const proc = Bun.spawn([process.execPath, ...args], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
    const out = await new Response(proc.stdout).text();
    if ((await proc.exited) !== 0) throw new Error(`bench ${mode} failed: ${await new Response(proc.stderr).text()}`);
    const field = (name: string): number => Number(new RegExp(`${name}=([0-9.]+)`).exec(out)?.[1] ?? "NaN");
    const done = /done: (\d+) ops in ([0-9.]+) s \(reads \d+, updates (\d+)/.exec(out);
    const perFsync = /\(([0-9.]+) updates per fdatasync/.exec(out);
    return {
      mode,
      writePerMille,
      mreqs: field("throughput_mreqs"),
      updatesPerS: done === null ? NaN : Number(done[3]) / Number(done[2]),
      writeP50Us: field("write_p50_us"),
      writeP99Us: field("write_p99_us"),
      updatesPerFsync: perFsync === null ? null : Number(perFsync[1]),
    };
  } finally {
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  }
}

async function engine(rounds: number, seconds: number): Promise<void> {
  const modes = ["none", "async", "fsync"];
  for (const writePerMille of [50, 1000]) {
    console.log(
      `\n## hermes-kv bench -M 3 -W 1 -w ${writePerMille} -d ${seconds}: ${rounds} rounds, modes alternating`,
    );
    console.log(`load before: ${load()}`);
    const runs: EngineRun[] = [];
    for (let round = 0; round < rounds; round++)
      for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) {
        const run = await engineRun(mode, writePerMille, seconds);
        runs.push(run);
        console.log(
          `  ${mode.padEnd(5)} ${run.mreqs.toFixed(4)} Mreq/s, ${run.updatesPerS.toFixed(0)} updates/s, write p50 ${run.writeP50Us} us p99 ${run.writeP99Us} us` +
            (run.updatesPerFsync === null ? "" : `, ${run.updatesPerFsync} updates per fdatasync`),
        );
      }
    console.log(`load after: ${load()}`);
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const of = (mode: string) => runs.filter((r) => r.mode === mode);
    const none = median(of("none").map((r) => r.updatesPerS));
    console.log("| mode | Mreq/s (median) | updates/s (median) | vs none | write p50 / p99 (us, median) |");
    console.log("|---|---|---|---|---|");
    for (const mode of modes) {
      const rs = of(mode);
      const ups = median(rs.map((r) => r.updatesPerS));
      console.log(
        `| ${mode} | ${median(rs.map((r) => r.mreqs)).toFixed(4)} | ${ups.toFixed(0)} | ${(ups / none).toFixed(2)} | ${median(rs.map((r) => r.writeP50Us))} / ${median(rs.map((r) => r.writeP99Us))} |`,
      );
    }
  }
}

// --- recovery and snapshots ------------------------------------------------------------------------

const noOutbox: Outbox = { send() {} };
const noCompletions: Completions = { complete() {} };
const keyBytes = 9;
const valueBytes = 32;
const keyOf = (i: number): string => `k${i.toString().padStart(keyBytes - 1, "0")}`;

function newReplica(keys: number): Replica {
  return new Replica(
    { ...defaultReplicaConfig, self: 0, keysMax: keys + 1024, valueBytesMax: 1024 },
    noOutbox,
    noCompletions,
  );
}

function options(dataDir: string): DurabilityOptions {
  return {
    mode: "fsync",
    dataDir,
    fsyncIntervalMs: 100,
    snapshotIntervalMs: 0,
    snapshotLogBytesMax: Number.MAX_SAFE_INTEGER,
    snapshotStepBytes: snapshotStepBytesDefault,
  };
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) total += statSync(join(dir, name)).size;
  return total;
}

async function recovery(sizes: number[]): Promise<void> {
  const limits = { keyBytesMax: 1024, valueBytesMax: 1024 };
  const value = new Uint8Array(valueBytes).fill(0x61);
  const encoder = new TextEncoder();
  for (const keys of sizes) {
    const dir = mkdtempSync(join(tmpdir(), "hermes-bench-recovery-"));
    try {
      console.log(`\n## ${keys} keys (${keyBytes}-byte keys, ${valueBytes}-byte values); load ${load()}`);
      // Write the log as a node does: each key's install, then its Valid mark, synced per 1000 keys.
      const writer = newReplica(keys);
      const opened = recoverAndOpen(writer, 0, options(dir), limits, 0);
      const log = opened.journal.log;
      let began = performance.now();
      for (let i = 0; i < keys; i++) {
        const key = encoder.encode(keyOf(i));
        log.append(key, 0, key.length, 2, 0, false, false, value, 0, value.length);
        log.append(key, 0, key.length, 2, 0, true, false, value, 0, value.length);
        if (i % 1000 === 999) log.sync();
      }
      log.close();
      const shardDir = join(dir, "shard-0");
      console.log(
        `log written: ${(dirBytes(shardDir) / 1e6).toFixed(1)} MB in ${(performance.now() - began).toFixed(0)} ms`,
      );

      // Recovery from the log alone.
      const fromLog = newReplica(keys);
      const recovered = recoverAndOpen(fromLog, 0, options(dir), limits, 0);
      console.log(
        `recovery from the log: ${recovered.keys} keys from ${recovered.result.logRecords} records in ${recovered.ms.toFixed(0)} ms`,
      );

      // A snapshot of the recovered replica, one step per "loop turn", as the shard takes it.
      fromLog.finishJoin(0);
      const snapshots = recovered.snapshots;
      began = performance.now();
      snapshots.start(0);
      let steps = 0;
      while (snapshots.inProgress) {
        snapshots.step(0);
        steps++;
      }
      const totalMs = performance.now() - began;
      recovered.journal.close();
      console.log(
        `snapshot: ${steps} steps of ${snapshotStepBytesDefault / 1024} KiB in ${totalMs.toFixed(0)} ms; longest step (the loop's pause) ${snapshots.stepMsMax.toFixed(2)} ms, ` +
          `of which the last step's fdatasync + rename + deletes ${snapshots.finishMsLast.toFixed(2)} ms; files now ${(dirBytes(shardDir) / 1e6).toFixed(1)} MB`,
      );

      // Recovery from the snapshot (the log segments it covers are gone).
      const fromSnapshot = newReplica(keys);
      const again = recoverAndOpen(fromSnapshot, 0, options(dir), limits, 0);
      again.journal.close();
      console.log(
        `recovery from the snapshot: ${again.keys} keys (${again.result.snapshotEntries} entries, ${again.result.logRecords} log records) in ${again.ms.toFixed(0)} ms`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

const [what, ...rest] = process.argv.slice(2);
if (what === "engine") await engine(Number(rest[0] ?? 3), Number(rest[1] ?? 5));
else if (what === "recovery") await recovery(rest.length > 0 ? rest.map(Number) : [100_000, 1_000_000]);
else {
  console.error("usage: bun bench/durability.ts engine [rounds] [seconds] | recovery [keys...]");
  process.exit(64);
}
