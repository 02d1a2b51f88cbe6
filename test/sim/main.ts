// `bun run sim --seeds N [--seed S] [--ops M] [--replicas R]`: seeded simulations of the Hermes core.
// The last line is `seeds=N ops=M violations=V`; exit 1 on a violation, with its seed and trace.

import { formatFailure, runSeed } from "./run-seed.ts";

const usage = `usage: bun run sim [--seeds N] [--seed S] [--ops M] [--replicas R] [--quiet]
  --seeds N     run N seeds (default 100), starting at --seed
  --seed S      first seed (default 1); with --seeds 1 it replays exactly that run
  --ops M       client ops per seed (default 400)
  --replicas R  replicas per cluster (default: 3, 5 and 7 in turn by seed)
Prints progress every second and ends with: seeds=N ops=M violations=V`;

function parse(argv: string[]): { seeds: number; seed: number; ops?: number; replicas?: number } {
  const out: { seeds: number; seed: number; ops?: number; replicas?: number } = { seeds: 100, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === "--help" || flag === "-h") {
      console.log(usage);
      process.exit(0);
    }
    const value = Number(argv[++i]);
    if (!Number.isSafeInteger(value) || value < 0) {
      console.error(`sim: ${flag} needs a non-negative integer\n${usage}`);
      process.exit(64);
    }
    if (flag === "--seeds") out.seeds = value;
    else if (flag === "--seed") out.seed = value;
    else if (flag === "--ops") out.ops = value;
    else if (flag === "--replicas") {
      if (value < 1 || value > 31) {
        console.error("sim: --replicas must be 1..31");
        process.exit(64);
      }
      out.replicas = value;
    } else {
      console.error(`sim: unknown flag ${flag}\n${usage}`);
      process.exit(64);
    }
  }
  return out;
}

const args = parse(process.argv.slice(2));
let totalOps = 0;
let violations = 0;
let linUnknown = 0;
let lastReport = performance.now();
const started = performance.now();
for (let i = 0; i < args.seeds; i++) {
  const seed = args.seed + i;
  const overrides: { ops?: number; replicas?: number } = {};
  if (args.ops !== undefined) overrides.ops = args.ops;
  if (args.replicas !== undefined) overrides.replicas = args.replicas;
  const result = runSeed(seed, overrides);
  totalOps += result.ops;
  if (result.linUnknown) linUnknown++;
  if (!result.ok) {
    violations++;
    console.log(formatFailure(result));
    break;
  }
  if (performance.now() - lastReport > 1000) {
    lastReport = performance.now();
    console.log(`  ${i + 1}/${args.seeds} seeds, ${totalOps} ops, ${((performance.now() - started) / 1000).toFixed(1)}s`);
  }
}
if (linUnknown > 0) console.log(`note: the linearizability search hit its bound on ${linUnknown} seed(s) (counted as checked-unknown, not violations)`);
const seedsRun = violations > 0 ? undefined : args.seeds;
console.log(`seeds=${seedsRun ?? "stopped"} ops=${totalOps} violations=${violations}`);
process.exit(violations > 0 ? 1 : 0);
