// The etcd-backed reliable membership: one etcd lease and one member key per node, the view from a
// watch of the members prefix (see etcd-view.ts for how epochs are derived), and a lease deadline
// computed locally and conservatively.
//
// Safety argument for the lease (why a node that etcd removes has already stopped serving):
// a keepalive request sent at local time s makes etcd expire the lease no earlier than
// (its receipt time >= s) + TTL. The node serves only until s + TTL - driftMargin, measured on its
// own monotonic clock, so it stops first as long as the two clocks' rates differ by less than the
// margin over one TTL. etcd revokes expired leases by itself (a removal is a watch event), and a
// new etcd leader extends every lease, which only moves removal later. So a member disappears from
// everyone's view only after its own deadline has passed.
//
// Liveness: keepalives every TTL/3, retried every TTL/10 while failing; once the deadline passes
// (or etcd says the lease is gone, or our key vanished) the lease is dropped: leaseUntilMs() is 0,
// listeners hear it once, and the node rejoins with a fresh lease and key, which makes a new epoch.
// While etcd is unreachable the view stays as it was (never a second membership) and the lease runs out.
//
// Failure detection beyond leases (options.detector; etcd-eviction.ts has the rule's execution and
// the safety argument): the node publishes whom it cannot hear under its own lease, an Evictor
// evicts by the rule of eviction-rule.ts, a view that removes a member by eviction is held until
// that member's lease has surely expired, and an evicted node stops serving at once and registers
// again only once it hears every member (a candidacy: members exchange heartbeats with candidates).
// The watch covers the whole cluster prefix, so member keys and these records arrive in one order.

import { monotonicMs } from "../base/clock.ts";
import type { NodeId } from "../base/ids.ts";
import type { MemberInfo, Membership, MembershipView } from "./membership.ts";
import { EtcdClient, EtcdError, type EtcdEvent, type EtcdKv } from "./etcd-client.ts";
import type { EtcdSecurity } from "./etcd-auth.ts";
import { encodeMemberInfo, MemberTable } from "./etcd-view.ts";
import { ClusterKeys, ClusterRecords, encodeSuspects, parseEviction, type EvictionRecord } from "./cluster-records.ts";
import { Evictor } from "./etcd-eviction.ts";
import type { EvictionDecision } from "./eviction-rule.ts";

export const defaultKeyPrefix = "hermes-kv";
/** Fraction of the granted TTL subtracted from every deadline when no driftMarginMs is given. */
export const driftMarginFraction = 0.1;
/** Keepalives per TTL while healthy. */
export const keepalivesPerTtl = 3;
/** Keepalive retries per TTL while failing. */
export const keepaliveRetriesPerTtl = 10;
/** Backoff bounds for rejoining and for reopening the watch. */
export const retryBackoffMinMs = 50;
export const retryBackoffMaxMs = 1000;
/** Lease ids we granted and remember, to recognise our own stale registration (bounded ring). */
export const recentLeasesMax = 8;
/** Listeners per membership (a node has a handful: engine, HTTP status, metrics). */
export const listenersMax = 64;
/** How often the Evictor looks at the state, and a candidate at whether it reaches every member. */
export const detectorTickMs = 50;
/** A candidate counts frames only from this long after it saw its key go (its shards learn the view by message). */
export const candidacySlackMs = 250;

const clusterPattern = /^[A-Za-z0-9._-]{1,64}$/;

export interface EtcdMembershipOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]; tried in turn on failures. */
  endpoints: string[];
  /** Cluster name: members of one cluster share the key prefix /<keyPrefix>/<cluster>/members/. */
  cluster: string;
  self: MemberInfo;
  /** Requested lease TTL, in whole seconds (etcd's unit). etcd may grant more (its minimum is 1.5 election timeouts). */
  leaseTtlMs: number;
  /** Top-level key prefix; default "hermes-kv". */
  keyPrefix?: string;
  /** Subtracted from every lease deadline; default driftMarginFraction of the granted TTL. */
  driftMarginMs?: number;
  /** Bound for one etcd request (keepalives are also bounded by the lease deadline); default TTL/3, at most 2 s. */
  requestTimeoutMs?: number;
  /** How long startup keeps retrying an unreachable etcd before failing; default 10 s. */
  startTimeoutMs?: number;
  /** Bound for the lease revoke in close(); default 1 s. */
  closeTimeoutMs?: number;
  /** Where the one-line logs go; default stderr. */
  log?: (line: string) => void;
  /** Failure detection beyond leases; off when absent (no suspicions published, no evictions). */
  detector?: EtcdDetectorOptions;
  /** TLS material and an etcd user (etcd-auth.ts); none by default. */
  security?: EtcdSecurity;
}

export interface EtcdDetectorOptions {
  /** How long the eviction rule's answer must hold before the decider acts. */
  settleMs: number;
  /**
   * How long instead when the target publishes no suspicion itself (it may have crashed): etcd
   * removes a crashed node within a TTL of its last keepalive plus its own lease-check period,
   * without the hold an eviction costs. Its suspicion started suspectMs after its last frame, so:
   * max(0, TTL - suspectMs) + etcdExpiryCheckMs and a little.
   */
  silentTargetGraceMs: number;
  /**
   * After this node was evicted: true once it has heard every member (every shard) since
   * `sinceMs` and recently (members answer a candidate's heartbeats only while they hear it, so
   * this means both directions work). It registers again only then.
   */
  reachesMembers: (sinceMs: number) => boolean;
}

/** The failure detector as this node sees it in etcd, for /v1/status. */
export interface EtcdDetectorStatus {
  /** Members whose published suspicions name this node (current records only). */
  suspectedBy: NodeId[];
  /** True while this node, evicted, waits to reach every member before registering again. */
  candidate: boolean;
  /** A recorded eviction whose lease is still to be revoked, or null. */
  pending: { member: NodeId; lease: string } | null;
  /** Views that remove a member by eviction, held until its lease has surely expired. */
  holding: { epoch: number; removed: NodeId[]; releaseInMs: number }[];
  /** The last eviction recorded in etcd that this node saw, or null. */
  lastEviction: EvictionRecord | null;
  /** The rule's answer at this node's last look (whoever the decider), or null. */
  decision: EvictionDecision | null;
}

/** Counters for /metrics (monotonic). */
export interface EtcdMembershipCounters {
  /** Views reported (each one a new epoch). */
  viewChanges: number;
  /** Times the lease was dropped (deadline passed, expired in etcd, key removed). */
  leaseLosses: number;
  /** Keepalive requests that failed (network, timeout, etcd error). */
  keepaliveFailures: number;
  /** Successful re-registrations after a lease loss. */
  rejoins: number;
  /** Times the watch stream was reopened. */
  watchRestarts: number;
  /** Evictions this node carried out (as the decider). */
  evictionsDecided: number;
  /** Times this node learned that it was evicted. */
  evictionsOfSelf: number;
  /** Views held until an evicted member's lease had surely expired. */
  evictionHolds: number;
  /** Writes of this node's suspects record. */
  suspicionPublishes: number;
  /** Authentications of the etcd user (0 without one): the first, then one per stale token. */
  etcdAuthentications: number;
  /** Requests etcd refused for a stale token and that were retried with a fresh one. */
  etcdTokenRefreshes: number;
}

export interface EtcdMembership extends Membership {
  counters(): Readonly<EtcdMembershipCounters>;
  /** The lease TTL etcd granted, in ms (may exceed the requested one). */
  grantedTtlMs(): number;
  /**
   * Test hook: behave as if etcd were unreachable from this node (every request fails, the watch
   * drops) until called with false. etcd itself keeps running for the other nodes.
   */
  simulatePartition(on: boolean): void;
  /** The members this node cannot hear: published (under its lease) when the set changes. */
  publishSuspects(ids: readonly NodeId[]): void;
  /** Evicted nodes waiting to rejoin: members exchange heartbeats with them. */
  candidates(): MemberInfo[];
  detectorStatus(): EtcdDetectorStatus;
}

/** Startup failed because another lease holds our member key. */
export class DuplicateMemberError extends Error {
  constructor(
    readonly id: NodeId,
    readonly key: string,
    readonly existingLease: string,
    ttlS: number,
  ) {
    super(
      `member id ${id} is already registered (etcd key ${key}, lease ${existingLease}): another node runs with this id, ` +
        `or a previous instance's lease has not expired yet (it expires within ${ttlS} s of that instance's last keepalive)`,
    );
    this.name = "DuplicateMemberError";
  }
}

/** Our own earlier registration was still in etcd and has just been revoked: retry at once. */
class StaleRegistrationError extends Error {}

interface Lease {
  id: string;
  ttlMs: number;
  /** monotonicMs() until which we may serve; only ever moves forward. */
  deadlineMs: number;
  /** True once our key is known to be attached to this lease. */
  registered: boolean;
  /** Aborted when the lease is dropped: wakes the keepalive loop and cancels its request. */
  abort: AbortController;
}

/** Resolves after `ms`, or at once when `signal` aborts; never leaves a timer behind. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function describe(view: MembershipView): string {
  return `epoch=${view.epoch} members=[${view.members.map((m) => m.id).join(",")}]`;
}

class EtcdMembershipImpl implements EtcdMembership {
  private readonly client: EtcdClient;
  private readonly table: MemberTable;
  private readonly keys: ClusterKeys;
  private readonly records: ClusterRecords;
  private readonly evictor: Evictor | null;
  /** What view() returns and listeners heard last: behind the table while a removal is held. */
  private published: MembershipView;
  /** Views not yet reported: each waits for its release time and for the ones before it. */
  private readonly held: { view: MembershipView; releaseAtMs: number; removed: NodeId[] }[] = [];
  private heldTimer: ReturnType<typeof setTimeout> | null = null;
  private detectorTimer: ReturnType<typeof setInterval> | null = null;
  /** Highest revision the watch (or a registration snapshot) delivered: the watch resumes after it. */
  private watchRevision = 0;
  /**
   * Set when this node learns it was evicted (the lease, when it learned, the lease's TTL); cleared
   * once it is registered again.
   */
  private evicted: { lease: string; atMs: number; ttlMs: number } | null = null;
  private suspectsWanted: NodeId[] = [];
  /** The suspects record as last written: its lease and value. */
  private suspectsWritten: { lease: string; value: string } | null = null;
  private suspectsWriting = false;
  /** The last registered lease we lost: an eviction record naming it means we were evicted. */
  private lostLease: string | null = null;
  private readonly memberKey: string;
  private readonly memberValue: string;
  private readonly requestedTtlS: number;
  private readonly requestTimeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly listeners: Array<(view: MembershipView) => void> = [];
  private readonly stop = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly recentLeases: string[] = [];
  private readonly stats: EtcdMembershipCounters = {
    viewChanges: 0,
    leaseLosses: 0,
    keepaliveFailures: 0,
    rejoins: 0,
    watchRestarts: 0,
    evictionsDecided: 0,
    evictionsOfSelf: 0,
    evictionHolds: 0,
    suspicionPublishes: 0,
    etcdAuthentications: 0,
    etcdTokenRefreshes: 0,
  };
  private lease: Lease | null = null;
  /** What leaseUntilMs() returns: the deadline while we hold a lease AND our key is in the view. */
  private effectiveLeaseUntilMs = 0;
  private grantedTtlS = 0;
  private watchAbort: AbortController | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(private readonly options: EtcdMembershipOptions) {
    if (!clusterPattern.test(options.cluster))
      throw new RangeError(`cluster name must match ${clusterPattern}, got ${JSON.stringify(options.cluster)}`);
    const keyPrefix = options.keyPrefix ?? defaultKeyPrefix;
    if (!clusterPattern.test(keyPrefix)) throw new RangeError(`keyPrefix must match ${clusterPattern}`);
    if (!Number.isSafeInteger(options.leaseTtlMs) || options.leaseTtlMs < 1000 || options.leaseTtlMs % 1000 !== 0) {
      throw new RangeError(`leaseTtlMs must be a whole number of seconds (etcd's unit), got ${options.leaseTtlMs}`);
    }
    if (
      options.driftMarginMs !== undefined &&
      !(options.driftMarginMs >= 0 && options.driftMarginMs < options.leaseTtlMs)
    ) {
      throw new RangeError("driftMarginMs must be in [0, leaseTtlMs)");
    }
    this.requestedTtlS = options.leaseTtlMs / 1000;
    this.memberValue = encodeMemberInfo(options.self);
    this.keys = new ClusterKeys(`/${keyPrefix}/${options.cluster}/`);
    this.memberKey = this.keys.member(options.self.id);
    const logger = options.log ?? ((line: string) => console.error(line));
    const tag = `membership[${options.cluster}/${options.self.id}]`;
    this.log = (line) => logger(`${tag} ${line}`);
    this.table = new MemberTable(this.keys.members, (key, problem) =>
      this.log(`ignoring member key ${key}: ${problem}`),
    );
    this.records = new ClusterRecords(this.keys, (key, problem) => this.log(`ignoring key ${key}: ${problem}`));
    this.published = this.table.view();
    this.requestTimeoutMs = options.requestTimeoutMs ?? Math.min(2000, options.leaseTtlMs / 3);
    this.client = new EtcdClient(options.endpoints, {
      requestTimeoutMs: this.requestTimeoutMs,
      ...(options.security === undefined ? {} : { security: options.security }),
    });
    const detector = options.detector;
    this.evictor =
      detector === undefined
        ? null
        : new Evictor({
            self: options.self.id,
            client: this.client,
            table: this.table,
            records: this.records,
            settleMs: detector.settleMs,
            silentTargetGraceMs: detector.silentTargetGraceMs,
            registered: () =>
              this.lease !== null && this.lease.registered && this.table.leaseOf(options.self.id) === this.lease.id,
            installing: () => this.held.length > 0,
            log: this.log,
            onEvicted: () => this.stats.evictionsDecided++,
          });
  }

  // --- Membership ---

  view(): MembershipView {
    return this.published;
  }

  leaseUntilMs(): number {
    return this.effectiveLeaseUntilMs;
  }

  onChange(listener: (view: MembershipView) => void): void {
    if (this.listeners.length >= listenersMax) throw new RangeError(`more than ${listenersMax} membership listeners`);
    this.listeners.push(listener);
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown();
    return this.closing;
  }

  counters(): Readonly<EtcdMembershipCounters> {
    const auth = this.client.authCounters();
    return { ...this.stats, etcdAuthentications: auth.authentications, etcdTokenRefreshes: auth.tokenRefreshes };
  }

  grantedTtlMs(): number {
    return this.grantedTtlS * 1000;
  }

  simulatePartition(on: boolean): void {
    this.client.partitioned = on;
    if (on) this.watchAbort?.abort();
  }

  publishSuspects(ids: readonly NodeId[]): void {
    this.suspectsWanted = [...ids];
    void this.writeSuspects();
  }

  candidates(): MemberInfo[] {
    const members = new Set(this.table.view().members.map((m) => m.id));
    return this.records.candidates().filter((c) => !members.has(c.id) && c.id !== this.options.self.id);
  }

  detectorStatus(): EtcdDetectorStatus {
    const self = this.options.self.id;
    const now = monotonicMs();
    const registrations = this.table.registrations();
    const leases = new Map(registrations.map((r) => [r.id, r]));
    const suspectedBy: NodeId[] = [];
    const selfCreated = leases.get(self)?.createRevision ?? Number.POSITIVE_INFINITY;
    for (const [author, record] of this.records.suspicions()) {
      if (
        leases.get(author)?.lease === record.lease &&
        record.modRevision > selfCreated &&
        record.suspects.includes(self)
      )
        suspectedBy.push(author);
    }
    let pending: EtcdDetectorStatus["pending"] = null;
    let lastEviction: EvictionRecord | null = null;
    for (const record of this.records.evictions().values()) {
      if (leases.get(record.member)?.lease === record.lease) pending = { member: record.member, lease: record.lease };
      if (lastEviction === null || record.epoch > lastEviction.epoch) lastEviction = record;
    }
    return {
      suspectedBy: suspectedBy.sort((a, b) => a - b),
      candidate: this.evicted !== null,
      pending,
      holding: this.held
        .filter((h) => h.removed.length > 0)
        .map((h) => ({
          epoch: h.view.epoch,
          removed: h.removed,
          releaseInMs: Math.max(0, Math.round(h.releaseAtMs - now)),
        })),
      lastEviction,
      decision: this.evictor?.lastDecision ?? null,
    };
  }

  /** Writes our suspects record when it differs from what etcd has under our current lease. */
  private async writeSuspects(): Promise<void> {
    if (this.suspectsWriting || this.closed || this.options.detector === undefined) return;
    this.suspectsWriting = true;
    try {
      for (;;) {
        const lease = this.lease;
        if (lease === null || !lease.registered) return;
        const value = encodeSuspects(this.suspectsWanted);
        const written = this.suspectsWritten;
        // A new lease starts with no record (the old one went with the old lease).
        if ((written?.lease === lease.id ? written.value : "[]") === value) return;
        await this.client.put(this.keys.suspectsOf(this.options.self.id), value, lease.id);
        this.suspectsWritten = { lease: lease.id, value };
        this.stats.suspicionPublishes++;
      }
    } catch (err) {
      // Retried by the next change or the detector tick (a failed put leaves suspectsWritten behind).
      if (!this.closed) this.log(`could not publish suspicions: ${errorMessage(err)}`);
    } finally {
      this.suspectsWriting = false;
    }
  }

  // --- lifecycle ---

  async start(): Promise<void> {
    const startTimeoutMs = this.options.startTimeoutMs ?? 10_000;
    const startedAt = monotonicMs();
    let backoffMs = retryBackoffMinMs;
    for (;;) {
      try {
        await this.joinOnce();
        break;
      } catch (err) {
        // Refused credentials or certificates stay refused: say so now rather than after startTimeoutMs.
        if (err instanceof DuplicateMemberError || this.closed) throw err;
        if (err instanceof EtcdError && err.kind === "access") throw err;
        if (monotonicMs() - startedAt + backoffMs > startTimeoutMs) {
          throw new Error(
            `could not register with etcd (${this.options.endpoints.join(", ")}) within ${startTimeoutMs} ms: ${errorMessage(err)}`,
          );
        }
        if (err instanceof StaleRegistrationError) continue;
        await sleep(backoffMs, this.stop.signal);
        backoffMs = Math.min(2 * backoffMs, retryBackoffMaxMs);
      }
    }
    this.loops.push(this.watchLoop(), this.leaseLoop());
    if (this.options.detector !== undefined)
      this.detectorTimer = setInterval(() => this.detectorTick(), detectorTickMs);
  }

  private detectorTick(): void {
    if (this.closed) return;
    this.evictor?.tick(monotonicMs());
    void this.writeSuspects();
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.detectorTimer !== null) clearInterval(this.detectorTimer);
    if (this.heldTimer !== null) clearTimeout(this.heldTimer);
    const lease = this.lease;
    this.lease = null;
    this.refreshLease();
    lease?.abort.abort();
    this.stop.abort();
    await Promise.allSettled(this.loops);
    if (lease !== null) {
      // Best effort: with etcd unreachable the lease simply expires after its TTL.
      try {
        await this.client.leaseRevoke(lease.id, { timeoutMs: this.options.closeTimeoutMs ?? 1000 });
      } catch (err) {
        this.log(`close: could not revoke lease ${lease.id}: ${errorMessage(err)}`);
      }
    }
    // A membership that never started (its start failed) says nothing more: the caller reports why, in one line.
    if (this.loops.length > 0) this.log("closed");
  }

  // --- views and the effective lease ---

  private refreshLease(): void {
    const lease = this.lease;
    this.effectiveLeaseUntilMs =
      lease !== null && this.table.leaseOf(this.options.self.id) === lease.id ? lease.deadlineMs : 0;
  }

  private notify(view: MembershipView): void {
    if (this.closed) return;
    for (const listener of this.listeners) {
      try {
        listener(view);
      } catch (err) {
        // A listener bug must not corrupt our loops; surface it as an uncaught error instead.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * Applies watch events in revision order, one revision at a time: the records of a revision
   * first, then its member keys (at most one view per revision). So when a member key goes, an
   * eviction record written before it is already known.
   */
  private applyEvents(events: readonly EtcdEvent[]): void {
    let i = 0;
    while (i < events.length) {
      const revision = events[i]!.kv.modRevision;
      let end = i;
      while (end < events.length && events[end]!.kv.modRevision === revision) end++;
      const group = events.slice(i, end);
      i = end;
      for (const event of group) this.records.applyEvent(event);
      const memberEvents = group.filter((e) => e.kv.key.startsWith(this.keys.members));
      if (memberEvents.length > 0) {
        const leasesBefore = this.leasesNow();
        for (const view of this.table.applyEvents(memberEvents)) this.receiveView(view, leasesBefore);
      }
      this.watchRevision = Math.max(this.watchRevision, revision);
    }
    this.checkEvicted();
  }

  private leasesNow(): Map<NodeId, string> {
    return new Map(this.table.registrations().map((r) => [r.id, r.lease]));
  }

  /**
   * A new view from etcd. Our own lease is dropped at once if our key left; the view itself is
   * reported in order, and only once every member it removes BY EVICTION has surely lost its lease
   * (etcd-eviction.ts has the argument): their lease's TTL plus the drift margin after now.
   */
  private receiveView(view: MembershipView, leasesBefore: ReadonlyMap<NodeId, string>): void {
    const self = this.options.self.id;
    const present = new Set(view.members.map((m) => m.id));
    const evicted: EvictionRecord[] = [];
    for (const [id, lease] of leasesBefore) {
      const record = this.records.evictionOf(id);
      if (!present.has(id) && id !== self && record !== null && record.lease === lease) evicted.push(record);
    }
    const holdMs = Math.max(0, ...evicted.map((r) => r.ttlMs + this.marginMs(r.ttlMs)));
    const held = holdMs > 0 || this.held.length > 0;
    const lease = this.lease;
    if (lease !== null && lease.registered && this.table.leaseOf(self) !== lease.id) {
      // Removed from the membership while we believed we held the lease (key deleted, lease
      // revoked by someone else). Unless the view waits, one notification carries both.
      this.dropLease(lease, "our member key left the membership", held);
    }
    this.refreshLease();
    if (holdMs > 0) {
      this.stats.evictionHolds++;
      this.log(
        `epoch ${view.epoch} removes evicted node(s) [${evicted.map((r) => r.member).join(",")}]: installing it in ${holdMs} ms, once their lease has surely expired`,
      );
    }
    this.held.push({ view, releaseAtMs: monotonicMs() + holdMs, removed: evicted.map((r) => r.member) });
    this.releaseHeld();
  }

  /** Reports every held view whose time has come, in order; re-arms the timer for the next. */
  private releaseHeld(): void {
    if (this.heldTimer !== null) clearTimeout(this.heldTimer);
    this.heldTimer = null;
    const now = monotonicMs();
    while (this.held.length > 0 && this.held[0]!.releaseAtMs <= now) {
      const { view } = this.held.shift()!;
      this.published = view;
      this.stats.viewChanges++;
      this.log(`${describe(view)} lease=${this.effectiveLeaseUntilMs > 0 ? "held" : "none"}`);
      this.notify(view);
    }
    if (this.held.length > 0 && !this.closed)
      this.heldTimer = setTimeout(() => this.releaseHeld(), this.held[0]!.releaseAtMs - now);
  }

  /** Our registration was evicted (a record names our current lease): stop serving now. */
  private checkEvicted(): void {
    const lease = this.lease;
    if (lease === null || !lease.registered) return;
    const record = this.records.evictionOf(this.options.self.id);
    if (record === null || record.lease !== lease.id) return;
    this.evicted = { lease: lease.id, atMs: monotonicMs(), ttlMs: record.ttlMs };
    this.stats.evictionsOfSelf++;
    this.log(
      `evicted by node ${record.by} (${record.reason}; suspected by [${record.suspectedBy.join(",")}]): serving stops now; registering again once this node reaches every member`,
    );
    this.dropLease(lease, "evicted", true);
  }

  /** Forgets `lease` (idempotent); listeners hear it unless the caller reports a view itself. */
  private dropLease(lease: Lease, reason: string, notify: boolean): void {
    if (this.lease !== lease) return;
    const wasServing = this.effectiveLeaseUntilMs > 0;
    this.lease = null;
    lease.abort.abort();
    this.refreshLease();
    // A lease that never carried our key (a failed registration) is not a loss anyone could see.
    if (!lease.registered && !wasServing) return;
    this.stats.leaseLosses++;
    this.lostLease = lease.id;
    this.log(`lease ${lease.id} lost: ${reason}; serving stops, rejoining`);
    // The view listeners have (a newer one may be held back), now without a lease.
    if (notify && wasServing) this.notify(this.published);
  }

  // --- joining ---

  private rememberLease(id: string): void {
    this.recentLeases.push(id);
    if (this.recentLeases.length > recentLeasesMax) this.recentLeases.shift();
  }

  private marginMs(ttlMs: number): number {
    return this.options.driftMarginMs ?? Math.ceil(ttlMs * driftMarginFraction);
  }

  /** Grants a lease and registers our key under it; on success the lease is held and the view includes us. */
  private async joinOnce(): Promise<void> {
    const signal = this.stop.signal;
    const sentAt = monotonicMs();
    const grant = await this.client.leaseGrant(this.requestedTtlS, { signal });
    this.rememberLease(grant.id);
    this.grantedTtlS = grant.ttlS;
    const ttlMs = grant.ttlS * 1000;
    const lease: Lease = {
      id: grant.id,
      ttlMs,
      deadlineMs: sentAt + ttlMs - this.marginMs(ttlMs),
      registered: false,
      abort: new AbortController(),
    };
    if (this.closed) {
      await this.revokeQuietly(grant.id);
      throw new Error("closed");
    }
    // Installed before the put so that a watch event carrying our key already counts as ours.
    this.lease = lease;
    let result;
    try {
      result = await this.client.registerWithLease(this.memberKey, this.memberValue, lease.id, this.keys.cluster, {
        signal,
        timeoutMs: Math.min(this.requestTimeoutMs, lease.deadlineMs - monotonicMs()),
      });
    } catch (err) {
      // The put may or may not have happened; revoking the lease settles it either way.
      this.dropLease(lease, `registration failed: ${errorMessage(err)}`, true);
      await this.revokeQuietly(lease.id);
      throw err;
    }
    if (!result.created) {
      this.lease = null;
      this.refreshLease();
      await this.revokeQuietly(lease.id);
      const existing = result.existing;
      if (existing !== null && this.recentLeases.includes(existing.lease)) {
        // Our own earlier registration (a lost reply, or etcd kept an old lease across a restart).
        // Retry at once only if it is surely gone now, so a failing etcd cannot make us spin.
        const message = `our previous registration under lease ${existing.lease} was still present`;
        if (await this.revokeQuietly(existing.lease)) throw new StaleRegistrationError(`${message}; revoked it`);
        throw new Error(`${message}; could not revoke it yet`);
      }
      throw new DuplicateMemberError(this.options.self.id, this.memberKey, existing?.lease ?? "?", grant.ttlS);
    }
    if (this.lease !== lease) throw new Error("lease dropped during registration");
    lease.registered = true;
    // The read covers the whole cluster prefix: member keys for the table, records for the detector.
    this.records.applySnapshot(result.revision, result.kvs);
    const leasesBefore = this.leasesNow();
    const view = this.table.applySnapshot(
      result.revision,
      result.kvs.filter((kv) => kv.key.startsWith(this.keys.members)),
    );
    this.watchRevision = Math.max(this.watchRevision, result.revision);
    if (view !== null) {
      this.receiveView(view, leasesBefore);
    } else if (this.table.leaseOf(this.options.self.id) !== lease.id) {
      // The watch already moved past our put and our key is gone again.
      this.dropLease(lease, "our member key left the membership", true);
      throw new Error("removed right after registering");
    }
    this.refreshLease();
  }

  /** Revokes a lease, ignoring failures; true when etcd no longer has it. */
  private async revokeQuietly(id: string): Promise<boolean> {
    try {
      await this.client.leaseRevoke(id);
      return true;
    } catch {
      // Unreachable etcd: the lease expires by itself after its TTL.
      return false;
    }
  }

  // --- the lease loop: keep alive, and rejoin after a loss ---

  private async leaseLoop(): Promise<void> {
    while (!this.closed) {
      const lease = this.lease;
      if (lease !== null) {
        const reason = await this.keepAlive(lease);
        if (this.closed) return;
        this.dropLease(lease, reason, true);
        await this.revokeQuietly(lease.id);
      }
      await this.rejoin();
    }
  }

  /** Renews `lease` until it is lost; returns why. */
  private async keepAlive(lease: Lease): Promise<string> {
    const intervalMs = lease.ttlMs / keepalivesPerTtl;
    const retryMs = lease.ttlMs / keepaliveRetriesPerTtl;
    let nextAtMs = monotonicMs() + intervalMs;
    let failing = false;
    for (;;) {
      if (this.closed) return "closed";
      if (this.lease !== lease) return "dropped";
      const now = monotonicMs();
      if (now >= lease.deadlineMs)
        return `no successful keepalive before the deadline${failing ? " (etcd unreachable)" : ""}`;
      if (now < nextAtMs) {
        await sleep(Math.min(nextAtMs, lease.deadlineMs) - now, lease.abort.signal);
        continue;
      }
      const sentAt = monotonicMs();
      try {
        // Never past the deadline: a later answer could not extend anything we may still use.
        const timeoutMs = Math.min(this.requestTimeoutMs, lease.deadlineMs - sentAt);
        const ttlS = await this.client.leaseKeepAlive(lease.id, { signal: lease.abort.signal, timeoutMs });
        if (ttlS <= 0) return "etcd reports the lease expired";
        const deadlineMs = sentAt + ttlS * 1000 - this.marginMs(lease.ttlMs);
        if (this.lease === lease && deadlineMs > lease.deadlineMs) {
          lease.deadlineMs = deadlineMs;
          this.refreshLease();
        }
        nextAtMs = sentAt + intervalMs;
        if (failing) {
          failing = false;
          this.log("keepalives succeed again");
          // The watch may be half-open after a network problem: reopen it from our revision.
          this.watchAbort?.abort();
        }
      } catch (err) {
        if (this.closed || this.lease !== lease) continue;
        this.stats.keepaliveFailures++;
        if (!failing) this.log(`keepalive failed: ${errorMessage(err)}`);
        failing = true;
        nextAtMs = monotonicMs() + retryMs;
      }
    }
  }

  private async rejoin(): Promise<void> {
    let backoffMs = retryBackoffMinMs;
    let reported = false;
    while (!this.closed) {
      try {
        if (this.options.detector !== undefined) {
          await this.noticeEviction();
          if (this.evicted !== null) await this.candidacy(this.evicted, this.options.detector);
        }
        await this.joinOnce();
        this.evicted = null;
        this.stats.rejoins++;
        this.log(`rejoined with lease ${this.lease?.id ?? "?"}`);
        return;
      } catch (err) {
        if (this.closed) return;
        if (!reported || err instanceof DuplicateMemberError)
          this.log(`rejoin failed (retrying): ${errorMessage(err)}`);
        reported = true;
        // At once: the stale registration is gone (bounded: each one found is revoked).
        if (err instanceof StaleRegistrationError) continue;
        await sleep(backoffMs, this.stop.signal);
        backoffMs = Math.min(2 * backoffMs, retryBackoffMaxMs);
      }
    }
  }

  // --- after an eviction: a candidacy before registering again ---

  /**
   * The lease may have been lost to an eviction before the watch showed us its record (a failed
   * keepalive after the revoke): ask etcd, so that we do not register straight back into a
   * membership whose members cannot hear us.
   */
  private async noticeEviction(): Promise<void> {
    if (this.evicted !== null) return;
    const { kvs } = await this.client.range(this.keys.evictionOf(this.options.self.id));
    const record = kvs.length > 0 ? parseEviction(kvs[0]!.value) : null;
    if (record !== null && record.lease === this.lostLease) {
      this.evicted = { lease: record.lease, atMs: monotonicMs(), ttlMs: record.ttlMs };
      this.stats.evictionsOfSelf++;
      this.log(
        `evicted by node ${record.by} (${record.reason}), learned after the lease was lost; registering again once this node reaches every member`,
      );
    }
  }

  /**
   * Registers a candidate key (our addresses, under a lease of its own) so that the members exchange
   * heartbeats with us, and waits until we reach every member again. Members send to a candidate
   * only while they hear it, so hearing them means both directions work. Only fresh frames count
   * (detector.reachesMembers): sent at our removal's epoch or later, so after the sender installed
   * our removal (until then it sent to us as a member), and never stale bytes from before.
   */
  private async candidacy(
    evicted: { lease: string; atMs: number; ttlMs: number },
    detector: EtcdDetectorOptions,
  ): Promise<void> {
    const self = this.options.self.id;
    // Our key goes when the lease is revoked (by us, after the drop, or by the decider); it has
    // surely gone one TTL after we stopped renewing, even if the watch cannot tell us.
    const waitUntilMs = evicted.atMs + evicted.ttlMs;
    while (!this.closed && this.table.leaseOf(self) === evicted.lease && monotonicMs() < waitUntilMs)
      await sleep(detectorTickMs, this.stop.signal);
    const heardSinceMs = monotonicMs() + candidacySlackMs;
    this.log(`candidate: waiting to exchange heartbeats with every member`);
    let lease: { id: string; renewAtMs: number; intervalMs: number } | null = null;
    let reported = false;
    try {
      while (!this.closed) {
        try {
          if (lease === null) {
            const grant = await this.client.leaseGrant(this.requestedTtlS, { signal: this.stop.signal });
            const intervalMs = (grant.ttlS * 1000) / keepalivesPerTtl;
            lease = { id: grant.id, renewAtMs: monotonicMs() + intervalMs, intervalMs };
            await this.client.put(this.keys.candidate(self), this.memberValue, grant.id, { signal: this.stop.signal });
          } else if (monotonicMs() >= lease.renewAtMs) {
            const ttlS = await this.client.leaseKeepAlive(lease.id, { signal: this.stop.signal });
            if (ttlS <= 0) lease = null;
            else lease.renewAtMs = monotonicMs() + lease.intervalMs;
          }
        } catch (err) {
          if (this.closed) return;
          if (!reported) this.log(`candidate: etcd request failed (retrying): ${errorMessage(err)}`);
          reported = true;
          if (lease !== null) await this.revokeQuietly(lease.id);
          lease = null;
        }
        if (monotonicMs() >= heardSinceMs && detector.reachesMembers(heardSinceMs)) break;
        await sleep(detectorTickMs, this.stop.signal);
      }
    } finally {
      if (lease !== null) await this.revokeQuietly(lease.id);
    }
    if (!this.closed) this.log("candidate: exchanges heartbeats with every member again; registering");
  }

  // --- the watch loop ---

  private async watchLoop(): Promise<void> {
    let backoffMs = retryBackoffMinMs;
    let reported = false;
    while (!this.closed) {
      const controller = new AbortController();
      const onStop = (): void => controller.abort();
      this.stop.signal.addEventListener("abort", onStop, { once: true });
      this.watchAbort = controller;
      try {
        for await (const message of this.client.watch(this.keys.cluster, this.watchRevision + 1, controller.signal)) {
          if (message.created) {
            backoffMs = retryBackoffMinMs;
            reported = false;
          }
          if (message.compactRevision > 0) {
            // Events we have not seen are gone; only a fresh registration (a snapshot at a new
            // revision) can resynchronise us. That happens only after being cut off for longer
            // than etcd's compaction retention, when our lease has long expired anyway.
            this.log(`watch: history compacted up to ${message.compactRevision}; rejoining to resynchronise`);
            if (this.lease !== null) this.dropLease(this.lease, "watch history compacted", true);
            break;
          }
          if (message.canceled) {
            this.log(`watch canceled by etcd: ${message.cancelReason}`);
            break;
          }
          if (message.events.length > 0) this.applyEvents(message.events);
        }
      } catch (err) {
        if (!this.closed && !controller.signal.aborted && !reported) {
          this.log(`watch failed (retrying): ${errorMessage(err)}`);
          reported = true;
        }
      } finally {
        this.stop.signal.removeEventListener("abort", onStop);
        if (this.watchAbort === controller) this.watchAbort = null;
      }
      if (this.closed) return;
      this.stats.watchRestarts++;
      await sleep(backoffMs, this.stop.signal);
      backoffMs = Math.min(2 * backoffMs, retryBackoffMaxMs);
    }
  }
}

/**
 * Joins the cluster through etcd: grants a lease, registers /<keyPrefix>/<cluster>/members/<id> =
 * JSON MemberInfo under it, keeps it alive and watches the members. Resolves once this node is in
 * the view with a lease. Rejects with DuplicateMemberError when the id is taken, or after
 * startTimeoutMs when etcd cannot be reached.
 */
export async function createEtcdMembership(options: EtcdMembershipOptions): Promise<EtcdMembership> {
  const membership = new EtcdMembershipImpl(options);
  try {
    await membership.start();
  } catch (err) {
    await membership.close();
    throw err;
  }
  return membership;
}

/** The etcd key a member registers under. */
export function memberKey(cluster: string, id: NodeId, keyPrefix = defaultKeyPrefix): string {
  return `/${keyPrefix}/${cluster}/members/${id}`;
}

export { EtcdError, type EtcdKv };
