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

import { monotonicMs } from "../base/clock.ts";
import type { NodeId } from "../base/ids.ts";
import type { MemberInfo, Membership, MembershipView } from "./membership.ts";
import { EtcdClient, EtcdError, type EtcdKv } from "./etcd-client.ts";
import { encodeMemberInfo, MemberTable } from "./etcd-view.ts";

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
  private readonly memberKey: string;
  private readonly memberValue: string;
  private readonly requestedTtlS: number;
  private readonly requestTimeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly listeners: Array<(view: MembershipView) => void> = [];
  private readonly stop = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly recentLeases: string[] = [];
  private readonly stats: EtcdMembershipCounters = { viewChanges: 0, leaseLosses: 0, keepaliveFailures: 0, rejoins: 0, watchRestarts: 0 };
  private lease: Lease | null = null;
  /** What leaseUntilMs() returns: the deadline while we hold a lease AND our key is in the view. */
  private effectiveLeaseUntilMs = 0;
  private grantedTtlS = 0;
  private watchAbort: AbortController | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(private readonly options: EtcdMembershipOptions) {
    if (!clusterPattern.test(options.cluster)) throw new RangeError(`cluster name must match ${clusterPattern}, got ${JSON.stringify(options.cluster)}`);
    const keyPrefix = options.keyPrefix ?? defaultKeyPrefix;
    if (!clusterPattern.test(keyPrefix)) throw new RangeError(`keyPrefix must match ${clusterPattern}`);
    if (!Number.isSafeInteger(options.leaseTtlMs) || options.leaseTtlMs < 1000 || options.leaseTtlMs % 1000 !== 0) {
      throw new RangeError(`leaseTtlMs must be a whole number of seconds (etcd's unit), got ${options.leaseTtlMs}`);
    }
    if (options.driftMarginMs !== undefined && !(options.driftMarginMs >= 0 && options.driftMarginMs < options.leaseTtlMs)) {
      throw new RangeError("driftMarginMs must be in [0, leaseTtlMs)");
    }
    this.requestedTtlS = options.leaseTtlMs / 1000;
    this.memberValue = encodeMemberInfo(options.self);
    const membersPrefix = `/${keyPrefix}/${options.cluster}/members/`;
    this.memberKey = membersPrefix + options.self.id;
    const logger = options.log ?? ((line: string) => console.error(line));
    const tag = `membership[${options.cluster}/${options.self.id}]`;
    this.log = (line) => logger(`${tag} ${line}`);
    this.table = new MemberTable(membersPrefix, (key, problem) => this.log(`ignoring member key ${key}: ${problem}`));
    this.requestTimeoutMs = options.requestTimeoutMs ?? Math.min(2000, options.leaseTtlMs / 3);
    this.client = new EtcdClient(options.endpoints, { requestTimeoutMs: this.requestTimeoutMs });
  }

  // --- Membership ---

  view(): MembershipView {
    return this.table.view();
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
    return { ...this.stats };
  }

  grantedTtlMs(): number {
    return this.grantedTtlS * 1000;
  }

  simulatePartition(on: boolean): void {
    this.client.partitioned = on;
    if (on) this.watchAbort?.abort();
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
        if (err instanceof DuplicateMemberError || this.closed) throw err;
        if (monotonicMs() - startedAt + backoffMs > startTimeoutMs) {
          throw new Error(`could not register with etcd (${this.options.endpoints.join(", ")}) within ${startTimeoutMs} ms: ${errorMessage(err)}`);
        }
        if (err instanceof StaleRegistrationError) continue;
        await sleep(backoffMs, this.stop.signal);
        backoffMs = Math.min(2 * backoffMs, retryBackoffMaxMs);
      }
    }
    this.loops.push(this.watchLoop(), this.leaseLoop());
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
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
    this.log("closed");
  }

  // --- views and the effective lease ---

  private refreshLease(): void {
    const lease = this.lease;
    this.effectiveLeaseUntilMs = lease !== null && this.table.leaseOf(this.options.self.id) === lease.id ? lease.deadlineMs : 0;
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

  /** Reports new views in order; drops the lease when a view no longer holds our key under it. */
  private publish(views: readonly MembershipView[]): void {
    for (const view of views) {
      this.stats.viewChanges++;
      const lease = this.lease;
      if (lease !== null && lease.registered && this.table.leaseOf(this.options.self.id) !== lease.id) {
        // Removed from the membership while we believed we held the lease (key deleted, lease
        // revoked by someone else). One notification carries both the view and the loss.
        this.dropLease(lease, "our member key left the membership", false);
      }
      this.refreshLease();
      this.log(`${describe(view)} lease=${this.effectiveLeaseUntilMs > 0 ? "held" : "none"}`);
      this.notify(view);
    }
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
    this.log(`lease ${lease.id} lost: ${reason}; serving stops, rejoining`);
    if (notify && wasServing) this.notify(this.table.view());
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
    const lease: Lease = { id: grant.id, ttlMs, deadlineMs: sentAt + ttlMs - this.marginMs(ttlMs), registered: false, abort: new AbortController() };
    if (this.closed) {
      await this.revokeQuietly(grant.id);
      throw new Error("closed");
    }
    // Installed before the put so that a watch event carrying our key already counts as ours.
    this.lease = lease;
    let result;
    try {
      result = await this.client.registerWithLease(this.memberKey, this.memberValue, lease.id, this.table.membersPrefix, {
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
    const view = this.table.applySnapshot(result.revision, result.kvs);
    if (view !== null) {
      this.publish([view]);
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
      if (now >= lease.deadlineMs) return `no successful keepalive before the deadline${failing ? " (etcd unreachable)" : ""}`;
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
        await this.joinOnce();
        this.stats.rejoins++;
        this.log(`rejoined with lease ${this.lease?.id ?? "?"}`);
        return;
      } catch (err) {
        if (this.closed) return;
        if (!reported || err instanceof DuplicateMemberError) this.log(`rejoin failed (retrying): ${errorMessage(err)}`);
        reported = true;
        // At once: the stale registration is gone (bounded: each one found is revoked).
        if (err instanceof StaleRegistrationError) continue;
        await sleep(backoffMs, this.stop.signal);
        backoffMs = Math.min(2 * backoffMs, retryBackoffMaxMs);
      }
    }
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
        for await (const message of this.client.watch(this.table.membersPrefix, this.table.revision + 1, controller.signal)) {
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
          if (message.events.length > 0) this.publish(this.table.applyEvents(message.events));
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
