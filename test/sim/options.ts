// Simulation parameters. Times are simulated milliseconds. Fault rates are drawn per seed so that a
// swarm of seeds covers calm and hostile networks alike (TigerBeetle's swarm testing).

import type { Prng } from "../lib/prng.ts";

/** core: the Replica alone, messages on the network. shard: the real worker loop and codec per node, frames on the network. */
export type SimMode = "core" | "shard";
export const simModes: readonly SimMode[] = ["core", "shard"];

export interface SimOptions {
  seed: number;
  mode: SimMode;
  replicas: number;
  /** Client ops to issue in total (the run then drains). */
  ops: number;
  clientsPerNode: number;
  /** Clients wait up to this long between ops: short runs stress concurrency, long runs span many
   *  fault and membership cycles (removal takes a lease time, so a short run sees few). */
  thinkMsMax: number;
  registerKeys: number;
  counterKeys: number;

  tickMs: number;
  retransmitMs: number;
  mltMs: number;
  opTimeoutMs: number;
  leaseMs: number;
  leaseRenewEveryMs: number;
  /** The RM removes an unreachable member this long after its last lease ended. */
  removalMarginMs: number;

  /** Fault phase: the share of ops issued while faults are injected (the rest is the healing phase). */
  faultShare: number;
  lossRate: number;
  duplicateRate: number;
  /** Chance that a message takes a long, reordering delay. */
  slowRate: number;
  /** Mean time between injected faults (partitions, isolations, crashes). */
  faultEveryMs: number;
  crashes: boolean;
  partitions: boolean;
  /** Chance that a node crashes right after it issues an update (a targeted nemesis: the moment
   *  when a crash leaves INVs half-delivered and pending ACK sets across an epoch change). */
  crashAfterIssueRate: number;
  /** The same when the update is an RMW racing another node's pending RMW on the same key. */
  crashInRmwRaceRate: number;

  /** Chance that a node cut off from the RM and its peers right after it issues an RMW (its INVs
   *  half delivered, its ACKs lost): the majority removes it and may commit the RMW by replay while
   *  it is out; then it comes back (the double increment of commit 42499e8). */
  isolateAfterRmwRate: number;

  // Rejoin (test/sim/rejoin.ts) and the membership service (test/sim/rm.ts).
  /** Chance that a crashed node restarts, empty, after restartDelayMs and joins again. */
  restartRate: number;
  restartDelayMsMax: number;
  /**
   * "same" (the default, what hermes-kv does): a restarted (empty) process comes back under its old
   * node id with the next incarnation, so its timestamps carry a new writer id (src/base/ids.ts).
   * Before writer ids had an incarnation, it could issue a timestamp (key, version, id) that its
   * previous process issued with another value and never committed, and a replica holding that old
   * INV took the new update for the same one (core seed 4990). "fresh": under a node id never used
   * before (the old id is retired), as a cluster that never reuses ids would.
   */
  restartIdentity: "fresh" | "same";
  /** "f": the RM removes a member only while at most f nodes are faulty (crashed, removed or
   *  empty); "none": as etcd, whenever a lease has surely expired (all members may go). */
  removalBound: "f" | "none";
  /**
   * Which kept state a join merges when no member serves. "cluster" (the default, what
   * src/node/etcd-join.ts does): every live node of the cluster that kept state, members or not,
   * once none serves. "view" (what etcd-join did before): every other member of the joiner's view
   * that kept state; with etcd's unbounded removals it loses acknowledged updates, since a node
   * removed earlier may hold the only committed copy (--merge-rule view --removal-bound none: seed 7
   * in core mode).
   */
  mergeRule: "view" | "cluster";
  /** A node notices its lost lease up to this long after the deadline (the RM may remove it first). */
  leaseLossNoticeMsMax: number;
  /** A join attempt that found no source waits this long before the next. */
  joinRetryMs: number;
  /** Entries per snapshot chunk (a source yields between chunks, so traffic interleaves). */
  snapshotChunkEntries: number;
  /** The failure detector and the eviction rule (src/membership/eviction-rule.ts). */
  detector: boolean;
  /** A member suspects a peer it has not heard for this long. */
  suspicionMs: number;
  /** The rule's answer must hold this long before the RM evicts. */
  evictionSettleMs: number;

  /** After healing: ops invoked this long after the heal must finish within livenessMs. */
  settleMs: number;
  livenessMs: number;
  /** Bound on the linearizability search per key. */
  linStatesMax: number;

  // Shard mode only (drawn only in that mode, so the core mode's draws stay as they were).
  /** The transports' frame size: small ones hold a few messages and make the shard split frames. */
  frameBytesMax: number;
  /** Shard mode: every frame carries a MAC under a cluster key (src/wire/frame-mac.ts): even seeds. */
  frameMac: boolean;
  /** While faults are active, frames in flight per link beyond this are refused (no credit). */
  linkFramesMax: number;
  /** A shard's loop turns at most this long after a frame or request arrives. */
  loopDelayMsMax: number;
}

export function defaultOptions(seed: number, random: Prng, overrides: Partial<SimOptions> = {}): SimOptions {
  const replicas = overrides.replicas ?? [3, 5, 7][seed % 3]!;
  const mode = overrides.mode ?? "core";
  const leaseMs = 40;
  // Either side of the lease: whether a stuck follower replays before or after the RM removes a
  // crashed coordinator changes which epoch-change paths run.
  const mltMs = random.pick([25, 80, 300]);
  const base: SimOptions = {
    seed,
    replicas,
    ops: 400,
    clientsPerNode: 2,
    thinkMsMax: random.pick([2, 2, 10, 40]),
    registerKeys: 3,
    counterKeys: 1,
    tickMs: 1,
    retransmitMs: 5,
    mltMs,
    opTimeoutMs: 300,
    leaseMs,
    leaseRenewEveryMs: 10,
    removalMarginMs: 5,
    faultShare: 0.6,
    lossRate: random.pick([0, 0.01, 0.05, 0.15]),
    duplicateRate: random.pick([0, 0.02, 0.1]),
    slowRate: random.pick([0, 0.02, 0.1]),
    faultEveryMs: random.pick([20, 60, 200]),
    // Swarm testing: without crashes the fault budget goes to isolated nodes, which the RM then
    // removes while they are alive (the stale-read-without-lease scenario).
    crashes: random.chance(0.67),
    partitions: true,
    crashAfterIssueRate: random.pick([0, 0.005, 0.02]),
    crashInRmwRaceRate: random.pick([0.3, 0.6, 0.9]),
    isolateAfterRmwRate: random.pick([0, 0.05, 0.2]),
    restartRate: random.pick([0, 0.7, 1]),
    restartDelayMsMax: random.pick([30, 150, 400]),
    restartIdentity: "same",
    removalBound: "f",
    mergeRule: "cluster",
    // A late notice (HermesNode forwards the lease every 20 ms; its process may pause): until
    // then only the replica's own lease check keeps a removed node from serving stale reads.
    leaseLossNoticeMsMax: random.pick([1, 100, 300]),
    joinRetryMs: random.pick([2, 10]),
    snapshotChunkEntries: random.pick([1, 2, 64]),
    detector: random.chance(0.7),
    suspicionMs: random.pick([10, 25, 50]),
    evictionSettleMs: random.pick([0, 20]),
    settleMs: leaseMs * 2 + mltMs + 50,
    livenessMs: mltMs + 200,
    linStatesMax: 2_000_000,
    mode,
    frameBytesMax: 0,
    frameMac: false,
    linkFramesMax: Infinity,
    loopDelayMsMax: 0,
  };
  if (mode === "shard") {
    // 112 bytes hold two short messages (and the 16 bytes kept for a MAC tag), 256 about six; 60 KiB
    // is the node's default.
    base.frameBytesMax = random.pick([112, 256, 60 * 1024]);
    // By seed, not by a draw: the rest of a seed's scenario stays what it was without the MAC.
    base.frameMac = seed % 2 === 0;
    base.linkFramesMax = random.pick([2, 8, Infinity]);
    base.loopDelayMsMax = random.pick([0.01, 0.1, 0.5]);
  }
  return { ...base, ...overrides, seed, replicas, mode };
}
