// One seeded simulation from start to verdict. The same seed and options replay the same run.

import { Replica } from "../../src/core/replica.ts";
import type { Probe } from "../../src/core/types.ts";
import type { HistoryOp } from "../lib/history.ts";
import { checkLinearizable } from "../lib/linearizability.ts";
import { defaultOptions, type SimMode, type SimOptions } from "./options.ts";
import { Oracles } from "./oracles.ts";
import { Prng } from "../lib/prng.ts";
import { Simulation, SimViolation, type ReplicaFactory, type SimStats } from "./simulation.ts";
import { Workload } from "./workload.ts";

export interface SeedResult {
  seed: number;
  mode: SimMode;
  replicas: number;
  ops: number;
  ok: boolean;
  /** Linearizability search gave up on some key (not a violation, but reported). */
  linUnknown: boolean;
  oracle?: string;
  detail?: string;
  trace?: string[];
  simulatedMs: number;
  statusCounts: Map<string, number>;
  /** The client history (invocations and answers in simulated time): equal on a replay. */
  history: HistoryOp[];
  /** Restarts, lease losses, evictions and joins the run went through. */
  stats: SimStats;
  /** Command-line flags beyond seed, mode and replicas that the replay needs. */
  flags: string;
}

export const defaultReplicaFactory: ReplicaFactory = (config, outbox, completions, probe) =>
  new Replica(config, outbox, completions, probe);

/** After healing and settling, every live node serves again within this long (it rejoined). */
const rejoinBoundMs = 500;

export function runSeed(
  seed: number,
  overrides: Partial<SimOptions> = {},
  makeReplica: ReplicaFactory = defaultReplicaFactory,
): SeedResult {
  const random = new Prng(seed);
  const options = defaultOptions(seed, random, overrides);
  const oracles = new Oracles();
  // The probe feeds the oracles and lets the nemesis crash a node right after it issues an update.
  const probe: Probe = {
    issued: (self, key, version, writer, rmw, baseVersion, baseWriter) => {
      oracles.issued(self, key, version, writer, rmw, baseVersion, baseWriter);
      sim.afterIssue(self, key, rmw);
    },
    ackCounted: (...args) => oracles.ackCounted(...args),
    committed: (...args) => oracles.committed(...args),
    validated: (...args) => oracles.validated(...args),
  };
  const sim: Simulation = new Simulation(options, random, makeReplica, probe);
  const faultOps = Math.floor(options.ops * options.faultShare);
  const workload = new Workload(sim, () => {
    if (sim.faultsActive && workload.issued >= faultOps) {
      sim.heal();
      workload.healAtMs = sim.nowMs;
    }
  });
  oracles.attach(sim, workload.keys);
  sim.afterStep = () => oracles.checkStep();
  const result: SeedResult = {
    seed,
    mode: options.mode,
    replicas: options.replicas,
    ops: 0,
    ok: true,
    linUnknown: false,
    simulatedMs: 0,
    statusCounts: workload.statusCounts,
    history: [],
    stats: sim.stats,
    flags:
      (options.mergeRule === "cluster" ? "" : ` --merge-rule ${options.mergeRule}`) +
      (options.removalBound === "f" ? "" : ` --removal-bound ${options.removalBound}`) +
      (options.restartIdentity === "same" ? "" : ` --restart-identity ${options.restartIdentity}`),
  };
  const fail = (oracle: string, detail: string) => {
    result.ok = false;
    result.oracle = oracle;
    result.detail = detail;
    result.trace = sim.traceLines();
  };
  try {
    sim.start();
    if (options.crashes || options.partitions) sim.scheduleFaults();
    workload.start();
    // Bound: every op must be answered within its timeout once issued, so this is generous.
    const limitMs = 120_000;
    if (!sim.run(() => workload.quiescent, limitMs)) {
      fail(
        "liveness",
        `ops still unanswered at ${limitMs}ms simulated (issued ${workload.issued}, answered ${workload.answered})`,
      );
    } else if (
      !sim.run(() => sim.allServing(), Math.max(sim.nowMs, workload.healAtMs + options.settleMs) + rejoinBoundMs)
    ) {
      const out = sim.nodes.filter((n) => !n.crashed && !sim.allServingNode(n)).map((n) => n.id);
      fail(
        "rejoin-liveness",
        `after healing, nodes [${out}] still do not serve ${rejoinBoundMs}ms after the settle time`,
      );
    } else {
      oracles.checkRmwSemantics();
    }
  } catch (error) {
    if (!(error instanceof SimViolation)) {
      // An assertion inside the core is a violation too: report it with the seed and trace.
      fail("assertion", error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    } else {
      fail(error.oracle, error.message);
    }
  }
  result.simulatedMs = sim.nowMs;
  result.ops = workload.issued;
  result.history = workload.history.ops();
  if (result.ok) {
    const lin = checkLinearizable(result.history, { statesMax: options.linStatesMax });
    if (lin.ok === false) {
      fail("linearizability", `key ${lin.key}: ${lin.message}\n${lin.witness.join("\n")}`);
    } else if (lin.ok === "unknown") {
      result.linUnknown = true;
    }
  }
  return result;
}

export function formatFailure(result: SeedResult): string {
  const lines = [
    `VIOLATION seed=${result.seed} mode=${result.mode} replicas=${result.replicas} oracle=${result.oracle}`,
    `  ${result.detail}`,
    `  last events before the violation:`,
    ...(result.trace ?? []).map((line) => `    ${line}`),
    `  replay: bun test/sim/main.ts --seed ${result.seed} --seeds 1 --mode ${result.mode} --replicas ${result.replicas}${result.flags}`,
  ];
  return lines.join("\n");
}
