// The Rejoiner (src/node/rejoiner.ts) under the in-process RM (LocalRm), with a node that records
// what it is told and join attempts scripted per test: when a node joins, when it stops serving
// after a lease loss, when a join runs again, and that stop() ends it all. Every test asserts on
// the exact sequence of calls, so a Rejoiner that skipped a step or added one fails it.

import { afterEach, expect, test } from "bun:test";
import { LocalRm } from "../../src/membership/local.ts";
import type { MemberInfo, Membership, MembershipView } from "../../src/membership/membership.ts";
import { Rejoiner, type JoinRun, type MembershipEvents, type RejoinerOptions } from "../../src/node/rejoiner.ts";

/** Short leases, so that a node that stops renewing is removed within about 100 ms. */
const rmTiming = { leaseMs: 60, renewEveryMs: 10, removalMarginMs: 10 } as const;
const retryDelayMs = 5;
/** Bound on every wait of these tests. */
const waitMsMax = 3000;
const joinerId = 0;
const watcherId = 1;

function memberInfo(id: number): MemberInfo {
  return { id, http: `127.0.0.1:${18_000 + id}`, transport: "tcp", shardAddresses: [`127.0.0.1:${19_000 + id}`] };
}

/** Polls `probe` until it holds; fails the test saying what it waited for after waitMsMax. */
async function waitFor(what: string, probe: () => boolean): Promise<void> {
  const deadline = performance.now() + waitMsMax;
  while (!probe()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/** The node as the Rejoiner drives it: it records every call, and the attempts record theirs. */
class RecordingNode {
  readonly options = { nodeId: joinerId };
  /** The composition root called beginJoin before starting the Rejoiner. */
  joining = true;
  readonly calls: string[] = [];
  rejoinKeepingState(): void {
    this.joining = true;
    this.calls.push("rejoinKeepingState");
  }
}

/**
 * The joiner's seat in a LocalRm. LocalRm tells only current members about a change, so a second
 * member (the watcher) relays every view, the joiner's own removal included. Views arrive a moment
 * after the change, as from etcd's watch, so that register() has handed over the new lease by the
 * time the view that shows it is heard.
 */
class Seat implements MembershipEvents {
  readonly rm = new LocalRm({ ...rmTiming, log: () => {} });
  readonly #watcher: Membership;
  #handle: Membership | null = null;

  constructor(joinerRegistered: boolean) {
    const infos = joinerRegistered ? [memberInfo(joinerId), memberInfo(watcherId)] : [memberInfo(watcherId)];
    const handles = this.rm.registerAll(infos);
    this.#watcher = handles[handles.length - 1]!;
    if (joinerRegistered) this.#handle = handles[0]!;
  }
  view(): MembershipView {
    return this.rm.view();
  }
  leaseUntilMs(): number {
    return this.#handle?.leaseUntilMs() ?? 0;
  }
  onChange(listener: (view: MembershipView) => void): void {
    this.#watcher.onChange((view) => queueMicrotask(() => listener(view)));
  }
  /** Stop renewing, as a node cut off from the RM: its lease runs out and the RM removes it. */
  async loseLease(): Promise<void> {
    await this.#handle!.close();
    this.#handle = null;
    await this.rm.waitRemoved(joinerId);
    await Bun.sleep(0); // the view without us is delivered
  }
  /** The RM takes the node (back): a new registration, in a new epoch. */
  async register(): Promise<void> {
    this.#handle = this.rm.register(memberInfo(joinerId));
    await Bun.sleep(0);
  }
}

type Step = "load" | "wait" | "throw";

/** A held attempt: it finishes with `step` when the test releases it. */
interface Hold {
  release(step: Step): void;
}

/** Join attempts that follow a script: each takes the next step, then `fallback` once it is used up. */
class ScriptedAttempts {
  readonly runs: JoinRun[] = [];
  readonly #node: RecordingNode;
  readonly #script: (Step | Promise<Step>)[] = [];
  fallback: Step = "load";
  count = 0;

  constructor(node: RecordingNode) {
    this.#node = node;
  }
  then(...steps: Step[]): this {
    this.#script.push(...steps);
    return this;
  }
  /** The next attempt holds until released. */
  hold(): Hold {
    let release!: (step: Step) => void;
    this.#script.push(new Promise<Step>((resolve) => (release = resolve)));
    return { release };
  }
  readonly attempt = async (run: JoinRun): Promise<boolean> => {
    this.count++;
    this.runs.push(run);
    this.#node.calls.push("attempt");
    const step = await (this.#script.shift() ?? this.fallback);
    this.#node.calls.push(`attempt ${step}`);
    if (step === "throw") throw new Error("the source reset the connection");
    if (step === "wait") return false;
    this.#node.joining = false; // what HermesNode.loadFrom does once every shard is loaded
    return true;
  };
}

interface Setup {
  node: RecordingNode;
  seat: Seat;
  attempts: ScriptedAttempts;
  rejoiner: Rejoiner;
  logs: string[];
}

let current: Setup | null = null;
afterEach(() => {
  current?.rejoiner.stop();
  current?.seat.rm.close();
  current = null;
});

function setup(options: { registered?: boolean; rejoiner?: Partial<RejoinerOptions> } = {}): Setup {
  const node = new RecordingNode();
  const seat = new Seat(options.registered ?? true);
  const attempts = new ScriptedAttempts(node);
  const logs: string[] = [];
  const rejoiner = new Rejoiner({
    node,
    membership: seat,
    attempt: attempts.attempt,
    log: (line) => logs.push(line),
    retryDelayMs,
    ...options.rejoiner,
  });
  current = { node, seat, attempts, rejoiner, logs };
  return current;
}

test("a join after start: one attempt loads the state, then the node serves and nothing else runs", async () => {
  const { node, attempts, rejoiner } = setup();
  expect(rejoiner.state).toBe("idle");
  rejoiner.start();
  expect(rejoiner.state).toBe("joining");
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual(["attempt", "attempt load"]);
  expect(node.joining).toBe(false);
  await Bun.sleep(30);
  expect(attempts.count).toBe(1);
  expect(() => rejoiner.start()).toThrow("starts once");
});

test("a join after start waits until the node is in the view with a lease", async () => {
  const { node, seat, attempts, rejoiner } = setup({ registered: false });
  rejoiner.start();
  await Bun.sleep(30);
  expect(attempts.count).toBe(0);
  expect(rejoiner.state).toBe("joining");
  await seat.register();
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual(["attempt", "attempt load"]);
});

test("a lease loss: the node stops serving at once, waits, and joins again when taken back", async () => {
  const { node, seat, attempts, rejoiner, logs } = setup();
  rejoiner.start();
  expect(await rejoiner.settled()).toBe("joined");

  await seat.loseLease();
  expect(rejoiner.state).toBe("out");
  // Answered at once (rejoinKeepingState), not at the next join: others may now commit without us.
  expect(node.calls).toEqual(["attempt", "attempt load", "rejoinKeepingState"]);
  expect(node.joining).toBe(true);
  expect(logs.filter((line) => line.includes("lost the membership"))).toHaveLength(1);
  // No attempt while out of the view.
  await Bun.sleep(30);
  expect(attempts.count).toBe(1);

  await seat.register();
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual(["attempt", "attempt load", "rejoinKeepingState", "attempt", "attempt load"]);
  expect(node.joining).toBe(false);
});

test("a lease lost during a join: the join runs again, after the node answered what it held", async () => {
  const { node, seat, attempts, rejoiner } = setup();
  const first = attempts.hold();
  rejoiner.start();
  await waitFor("the first attempt", () => attempts.count === 1);

  await seat.loseLease();
  // A joining node serves nothing: nothing to answer yet, and the first run goes on.
  expect(node.calls).toEqual(["attempt"]);
  expect(rejoiner.state).toBe("joining");
  await seat.register();
  expect(rejoiner.state).toBe("joining");

  // The first run loads what may miss commits made while we were out: it must not count.
  first.release("load");
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual(["attempt", "attempt load", "rejoinKeepingState", "attempt", "attempt load"]);
  expect(attempts.runs[1]).not.toBe(attempts.runs[0]);
});

test("a lease lost during a join that ends before the node is taken back: out, then a new join", async () => {
  const { node, seat, attempts, rejoiner } = setup();
  const first = attempts.hold();
  rejoiner.start();
  await waitFor("the first attempt", () => node.calls.length === 1);
  await seat.loseLease();
  first.release("load");
  expect(await rejoiner.settled()).toBe("out");
  expect(node.calls).toEqual(["attempt", "attempt load", "rejoinKeepingState"]);
  expect(node.joining).toBe(true);

  await seat.register();
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual(["attempt", "attempt load", "rejoinKeepingState", "attempt", "attempt load"]);
});

test("a failed join attempt is retried in the same run, and reported once", async () => {
  const { node, attempts, rejoiner, logs } = setup();
  attempts.then("throw", "wait", "throw");
  rejoiner.start();
  expect(await rejoiner.settled()).toBe("joined");
  expect(node.calls).toEqual([
    "attempt",
    "attempt throw",
    "attempt",
    "attempt wait",
    "attempt",
    "attempt throw",
    "attempt",
    "attempt load",
  ]);
  expect(new Set(attempts.runs).size).toBe(1);
  // Reports are throttled: two failures within joinReportEveryMs make one line.
  expect(
    logs.filter((line) => line.includes("join attempt failed, retrying: the source reset the connection")),
  ).toHaveLength(1);
});

test("with failedAttemptsMax, a run gives up: the Rejoiner fails and keeps the error", async () => {
  const { node, attempts, rejoiner } = setup({ rejoiner: { failedAttemptsMax: 2 } });
  attempts.fallback = "throw";
  rejoiner.start();
  expect(await rejoiner.settled()).toBe("failed");
  expect((rejoiner.failure as Error).message).toBe("the source reset the connection");
  expect(node.calls).toEqual(["attempt", "attempt throw", "attempt", "attempt throw"]);
  await Bun.sleep(30);
  expect(attempts.count).toBe(2);
});

test("stop during a join: the run ends after its current attempt and nothing more happens", async () => {
  const { node, attempts, rejoiner } = setup();
  attempts.fallback = "wait"; // no source yet
  rejoiner.start();
  await waitFor("a few attempts", () => attempts.count >= 3);
  rejoiner.stop();
  expect(await rejoiner.settled()).toBe("stopped");
  const made = attempts.count;
  await Bun.sleep(30);
  expect(attempts.count).toBe(made);
  expect(node.calls.filter((call) => call !== "attempt" && call !== "attempt wait")).toEqual([]);
});

test("a stopped Rejoiner ignores the membership: a lease loss of a stopping node calls nothing", async () => {
  const { node, seat, rejoiner } = setup();
  rejoiner.start();
  expect(await rejoiner.settled()).toBe("joined");
  rejoiner.stop();
  await seat.loseLease();
  expect(rejoiner.state).toBe("stopped");
  expect(node.calls).toEqual(["attempt", "attempt load"]);
});

test("stop during a held attempt after a lease loss: the join does not run again", async () => {
  const { node, seat, attempts, rejoiner } = setup();
  const first = attempts.hold();
  rejoiner.start();
  await waitFor("the first attempt", () => attempts.count === 1);
  await seat.loseLease();
  await seat.register();
  rejoiner.stop();
  first.release("load");
  expect(await rejoiner.settled()).toBe("stopped");
  expect(node.calls).toEqual(["attempt", "attempt load"]);
  await Bun.sleep(30);
  expect(attempts.count).toBe(1);
});
