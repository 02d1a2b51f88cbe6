// `bun run sim --seeds N [--seed S] [--ops M] [--replicas R] [--mode core|shard|both]`: seeded
// simulations of Hermes, either of the core alone or of the real shard loop and frame codec.
// The last line is `seeds=N ops=M violations=V`; exit 1 on a violation, with its seed, mode and trace.

import { simModes, type SimMode, type SimOptions } from "./options.ts";
import { formatFailure, runSeed } from "./run-seed.ts";

const usage = `usage: bun run sim [--seeds N] [--seed S] [--ops M] [--replicas R] [--mode core|shard|both]
                   [--merge-rule view|cluster] [--removal-bound f|none] [--restart-identity fresh|same] [--quiet]
  --seeds N     run N seeds (default 100), starting at --seed
  --seed S      first seed (default 1); with --seeds 1 it replays exactly that run
  --ops M       client ops per seed (default 400)
  --replicas R  replicas per cluster (default: 3, 5 and 7 in turn by seed)
  --mode M      core: the Replica alone, protocol messages on the simulated network (default, fast)
                shard: per node the real Shard loop (turn), the frame codec over SimTransport and
                       the op rings; real encoded frames on the simulated network
                both: every seed in core mode, then in shard mode
  --merge-rule  which kept state a join merges when no member serves: cluster (default, as
                src/node/etcd-join.ts: every node that kept state, members or not) or view (the
                other members of the joiner's view only, as it did before: loses acknowledged updates)
  --removal-bound  f (default: the RM keeps at most f nodes faulty) or none (etcd: any member
                whose lease surely expired goes)
  --restart-identity  same (default, as hermes-kv: a restarted process comes back under its old
                node id with a new incarnation in its timestamps' writer id) or fresh (under a
                node id never used before)
  --quiet       no progress lines
Prints progress every second and ends with: seeds=N ops=M violations=V
(with --mode both, one line per mode before it, and ops counts both modes).`;

interface Args {
  seeds: number;
  seed: number;
  ops?: number;
  replicas?: number;
  modes: readonly SimMode[];
  quiet: boolean;
  mergeRule?: "view" | "cluster";
  removalBound?: "f" | "none";
  restartIdentity?: "fresh" | "same";
}

function fail(message: string): never {
  console.error(`sim: ${message}\n${usage}`);
  process.exit(64);
}

function parse(argv: string[]): Args {
  const out: Args = { seeds: 100, seed: 1, modes: ["core"], quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === "--help" || flag === "-h") {
      console.log(usage);
      process.exit(0);
    }
    if (flag === "--quiet") {
      out.quiet = true;
      continue;
    }
    if (flag === "--merge-rule") {
      const rule = argv[++i];
      if (rule !== "view" && rule !== "cluster") fail("--merge-rule must be view or cluster");
      out.mergeRule = rule;
      continue;
    }
    if (flag === "--removal-bound") {
      const bound = argv[++i];
      if (bound !== "f" && bound !== "none") fail("--removal-bound must be f or none");
      out.removalBound = bound;
      continue;
    }
    if (flag === "--restart-identity") {
      const identity = argv[++i];
      if (identity !== "fresh" && identity !== "same") fail("--restart-identity must be fresh or same");
      out.restartIdentity = identity;
      continue;
    }
    if (flag === "--mode") {
      const mode = argv[++i];
      if (mode === "both") out.modes = simModes;
      else if (mode === "core" || mode === "shard") out.modes = [mode];
      else fail("--mode must be core, shard or both");
      continue;
    }
    const value = Number(argv[++i]);
    if (!Number.isSafeInteger(value) || value < 0) fail(`${flag} needs a non-negative integer`);
    if (flag === "--seeds") out.seeds = value;
    else if (flag === "--seed") out.seed = value;
    else if (flag === "--ops") out.ops = value;
    else if (flag === "--replicas") {
      if (value < 1 || value > 31) fail("--replicas must be 1..31");
      out.replicas = value;
    } else {
      fail(`unknown flag ${flag}`);
    }
  }
  return out;
}

const args = parse(process.argv.slice(2));
let totalOps = 0;
let violations = 0;
const started = performance.now();
for (const mode of args.modes) {
  let modeOps = 0;
  let linUnknown = 0;
  const explored = { restarts: 0, leaseLosses: 0, evictions: 0, joinsEmpty: 0, joinsKeepingState: 0, joinsByMerge: 0 };
  let lastReport = performance.now();
  const modeStarted = performance.now();
  for (let i = 0; i < args.seeds && violations === 0; i++) {
    const seed = args.seed + i;
    const overrides: Partial<SimOptions> & { mode: SimMode } = { mode };
    if (args.mergeRule !== undefined) overrides.mergeRule = args.mergeRule;
    if (args.removalBound !== undefined) overrides.removalBound = args.removalBound;
    if (args.restartIdentity !== undefined) overrides.restartIdentity = args.restartIdentity;
    if (args.ops !== undefined) overrides.ops = args.ops;
    if (args.replicas !== undefined) overrides.replicas = args.replicas;
    const result = runSeed(seed, overrides);
    modeOps += result.ops;
    for (const k of Object.keys(explored) as (keyof typeof explored)[]) explored[k] += result.stats[k];
    if (result.linUnknown) linUnknown++;
    if (!result.ok) {
      violations++;
      console.log(formatFailure(result));
    }
    if (!args.quiet && performance.now() - lastReport > 1000) {
      lastReport = performance.now();
      console.log(
        `  ${mode}: ${i + 1}/${args.seeds} seeds, ${modeOps} ops, ${((performance.now() - modeStarted) / 1000).toFixed(1)}s`,
      );
    }
  }
  totalOps += modeOps;
  const e = explored;
  console.log(
    `explored (${mode}): ${e.leaseLosses} lease losses and evictions (${e.evictions} evictions), ${e.restarts} restarts; joins: ${e.joinsEmpty} empty, ${e.joinsKeepingState} keeping state, ${e.joinsByMerge} by merge`,
  );
  if (linUnknown > 0)
    console.log(
      `note: ${mode} mode: the linearizability search hit its bound on ${linUnknown} seed(s) (counted as checked-unknown, not violations)`,
    );
  if (args.modes.length > 1) {
    console.log(
      `mode=${mode} seeds=${violations > 0 ? "stopped" : args.seeds} ops=${modeOps} violations=${violations} ${((performance.now() - modeStarted) / 1000).toFixed(1)}s`,
    );
  }
  if (violations > 0) break;
}
if (!args.quiet) console.log(`  ${((performance.now() - started) / 1000).toFixed(1)}s in all`);
const seedsRun = violations > 0 ? undefined : args.seeds;
console.log(`seeds=${seedsRun ?? "stopped"} ops=${totalOps} violations=${violations}`);
process.exit(violations > 0 ? 1 : 0);
