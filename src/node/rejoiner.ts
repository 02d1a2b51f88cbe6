// When a node joins and joins again: the small state machine every node runs beside its membership.
//
// Why a node rejoins: once it is out of the view, or has no lease, the others may commit without
// it, even its own pending updates (by replay). So it stops serving at once and answers every
// client op it holds. None may be retried when it comes back, or an increment could happen twice
// (the fix of commit 42499e8). It keeps its data and joins again once the membership takes it
// back; the load merges by timestamp. A join during which the lease was lost runs again: what it
// loaded may miss commits made without us.
//
// What a join loads, and from where, is the caller's: it gives one attempt (an etcd node loads from
// a serving member, or merges kept state when none serves; `local` loads from a live replica of the
// same process). The Rejoiner decides when an attempt runs, retries it, and stops.

import { assert } from "../base/assert.ts";
import type { NodeId } from "../base/ids.ts";
import type { Membership, MembershipView } from "../membership/membership.ts";

/** Pause between two attempts of one join (after a failure, or while not in the view with a lease). */
export const joinRetryDelayMs = 100;
/** At most one line about a waiting or failing join per this long, so an outage does not flood the log. */
export const joinReportEveryMs = 5000;

/** What the Rejoiner needs of the node; HermesNode has it. */
export interface RejoiningNode {
  readonly options: { readonly nodeId: NodeId };
  /** True from beginJoin or rejoinKeepingState until a load finishes. */
  readonly joining: boolean;
  /** Stop serving now and answer every client op held, keeping the data (HermesNode.rejoinKeepingState). */
  rejoinKeepingState(): void;
}

/** The membership as the Rejoiner follows it: the view, the lease and change events. */
export type MembershipEvents = Pick<Membership, "view" | "leaseUntilMs" | "onChange">;

/** One join run, as its attempts see it. */
export interface JoinRun {
  /** performance.now() when the run began, to report how long the join took. */
  readonly startedMs: number;
  /** Log why the join waits or retries, at most once per joinReportEveryMs. */
  report(line: string): void;
}

/**
 * One try at loading the cluster's state into the node, made only while the node is in the view
 * with a lease. Resolves true once the node serves again, false to try again after a pause. A throw
 * is retried too: a source that loses its own lease mid-stream resets the connection, and loading
 * again is harmless (entries merge by timestamp).
 */
export type JoinAttempt = (run: JoinRun) => Promise<boolean>;

export interface RejoinerOptions {
  node: RejoiningNode;
  membership: MembershipEvents;
  attempt: JoinAttempt;
  log: (line: string) => void;
  /** Default joinRetryDelayMs. */
  retryDelayMs?: number;
  /** Failed (thrown) attempts after which a join run gives up and the Rejoiner fails; default never. */
  failedAttemptsMax?: number;
}

/**
 * idle: not started. joining: a join run is under way. joined: the last run loaded the state and
 * nothing was lost since. out: the lease was lost; waiting for the membership to take the node
 * back. stopped: stop() was called. failed: a run gave up after failedAttemptsMax (see `failure`).
 */
export type RejoinState = "idle" | "joining" | "joined" | "out" | "stopped" | "failed";

export class Rejoiner {
  readonly #node: RejoiningNode;
  readonly #membership: MembershipEvents;
  readonly #attempt: JoinAttempt;
  readonly #log: (line: string) => void;
  readonly #retryDelayMs: number;
  readonly #failedAttemptsMax: number;
  /** The node left the view or lost its lease since its last join began: it must join (again). */
  #rejoinNeeded = false;
  /** The join run under way, or null. */
  #run: Promise<void> | null = null;
  #started = false;
  #stopped = false;
  #failure: unknown = null;

  constructor(options: RejoinerOptions) {
    this.#node = options.node;
    this.#membership = options.membership;
    this.#attempt = options.attempt;
    this.#log = options.log;
    this.#retryDelayMs = options.retryDelayMs ?? joinRetryDelayMs;
    this.#failedAttemptsMax = options.failedAttemptsMax ?? Number.POSITIVE_INFINITY;
    assert(this.#retryDelayMs >= 0, "a join retry delay is not negative");
    assert(this.#failedAttemptsMax >= 1, "a join run makes at least one attempt");
  }

  /** Follow the membership and run the first join. The node has begun joining (beginJoin). */
  start(): void {
    assert(!this.#started, "a Rejoiner starts once");
    assert(this.#node.joining, "the node joins before its Rejoiner starts (beginJoin)");
    this.#started = true;
    this.#membership.onChange((view) => this.#onView(view));
    this.#startJoin();
  }

  /** Start no more joins; a run under way ends after its current attempt (see settled()). */
  stop(): void {
    this.#stopped = true;
  }

  get state(): RejoinState {
    if (!this.#started) return "idle";
    if (this.#failure !== null) return "failed";
    if (this.#stopped) return "stopped";
    if (this.#run !== null) return "joining";
    return this.#rejoinNeeded ? "out" : "joined";
  }

  /** What the last attempt of a run that gave up threw (state "failed"), else null. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Resolves with the state once no join run is under way (any that follows a lost lease included). */
  async settled(): Promise<RejoinState> {
    while (this.#run !== null) await this.#run;
    return this.state;
  }

  #isMember(view: MembershipView): boolean {
    return view.members.some((m) => m.id === this.#node.options.nodeId);
  }

  #inViewWithLease(): boolean {
    return this.#isMember(this.#membership.view()) && this.#membership.leaseUntilMs() > 0;
  }

  #onView(view: MembershipView): void {
    if (this.#stopped) return;
    if (!this.#isMember(view) || this.#membership.leaseUntilMs() === 0) {
      // Stop at once: from now on others may commit without us (even our own pending updates, by
      // replay), so every client op we hold is answered now and none is retried later. A node that
      // is joining serves nothing and holds no op; its run sees #rejoinNeeded when it ends.
      if (!this.#rejoinNeeded && !this.#node.joining) {
        this.#log(
          `hermes-kv node ${this.#node.options.nodeId}: lost the membership (epoch ${view.epoch}): stops serving, will rejoin`,
        );
        this.#node.rejoinKeepingState();
      }
      this.#rejoinNeeded = true;
      return;
    }
    if (this.#rejoinNeeded && this.#run === null) {
      this.#rejoinNeeded = false;
      this.#startJoin();
    }
  }

  #startJoin(): void {
    this.#run ??= this.#join().finally(() => this.#afterJoin());
  }

  #afterJoin(): void {
    this.#run = null;
    // The lease was lost while this join loaded: what it loaded may miss commits made without us,
    // so join again (and answer whatever arrived meanwhile).
    if (this.#rejoinNeeded && !this.#stopped) {
      this.#node.rejoinKeepingState();
      if (this.#inViewWithLease()) {
        this.#rejoinNeeded = false;
        this.#startJoin();
      }
    }
  }

  /** Attempt until one loads the state, pausing in between; ends early on stop() or on giving up. */
  async #join(): Promise<void> {
    const run = this.#newRun();
    let failedAttempts = 0;
    while (!this.#stopped) {
      try {
        if (this.#inViewWithLease() && (await this.#attempt(run))) return;
      } catch (error) {
        failedAttempts++;
        if (failedAttempts >= this.#failedAttemptsMax) {
          this.#log(
            `hermes-kv node ${this.#node.options.nodeId}: join gave up after ${failedAttempts} failed attempts: ${messageOf(error)}`,
          );
          this.#failure = error;
          this.#stopped = true;
          return;
        }
        run.report(`join attempt failed, retrying: ${messageOf(error)}`);
      }
      await Bun.sleep(this.#retryDelayMs);
    }
  }

  #newRun(): JoinRun {
    let reportedAtMs = Number.NEGATIVE_INFINITY;
    return {
      startedMs: performance.now(),
      report: (line) => {
        if (performance.now() - reportedAtMs < joinReportEveryMs) return;
        reportedAtMs = performance.now();
        this.#log(`hermes-kv node ${this.#node.options.nodeId}: ${line}`);
      },
    };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
