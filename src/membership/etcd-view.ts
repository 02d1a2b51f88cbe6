// The membership as read from etcd: a pure table of member keys, updated from snapshots and watch
// events, that derives views. No I/O and no clock, so it is unit-tested on its own.
//
// Epochs. Every node must give the same epoch to the same membership. The epoch of a view is the
// etcd revision of the last change under the members prefix, which every node can know exactly:
//  - a watch event carries the revision of its change (mod_revision, also for deletes);
//  - the registration transaction puts our own key and reads the prefix in one revision R, so the
//    set it reads is the set at R, and R is a change to the prefix (our put).
// A plain range at the current revision would NOT do: its header revision may count changes to
// other keys, and deletes leave no trace in a range, so two nodes could label one set differently.
// Views only move forward: a snapshot or event at or below the table's revision is ignored.
// etcd never splits the events of one revision over two watch responses (without `fragment`), so
// grouping a response's events by revision yields exactly one view per revision, the same on every node.

import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { TransportKind } from "../base/transport-kind.ts";
import type { MemberInfo, MembershipView } from "./membership.ts";
import type { EtcdEvent, EtcdKv } from "./etcd-client.ts";

/** Largest member record we accept (JSON); addresses of a few dozen shards fit easily. */
export const memberInfoBytesMax = 16 << 10;
/** Shards per member we accept in a record. */
export const shardAddressesMax = 1024;

const transportKinds: readonly TransportKind[] = ["udp", "tcp", "rdma", "sim"];
const idPattern = /^(0|[1-9][0-9]{0,9})$/;

export interface MemberEntry {
  info: MemberInfo;
  /** etcd lease id (decimal string) the key is attached to. */
  lease: string;
  /** The revision that created the key: identifies this registration (a rejoin creates it anew). */
  createRevision: number;
}

/** Checks a decoded member record; returns the reason it is unusable, or null. */
export function memberInfoProblem(value: unknown): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not an object";
  const v = value as Record<string, unknown>;
  if (typeof v.id !== "number" || !Number.isInteger(v.id) || v.id < 0 || v.id > nodeIdMax)
    return `id must be an integer in 0..${nodeIdMax}`;
  if (typeof v.http !== "string" || v.http === "") return "http must be a non-empty string";
  if (typeof v.transport !== "string" || !transportKinds.includes(v.transport as TransportKind))
    return "unknown transport";
  if (
    !Array.isArray(v.shardAddresses) ||
    v.shardAddresses.length === 0 ||
    v.shardAddresses.length > shardAddressesMax
  ) {
    return `shardAddresses must hold 1..${shardAddressesMax} addresses`;
  }
  if (!v.shardAddresses.every((a) => typeof a === "string" && a !== ""))
    return "shardAddresses must be non-empty strings";
  return null;
}

/** The JSON stored for a member; only the contract's fields, in a fixed order. */
export function encodeMemberInfo(info: MemberInfo): string {
  const problem = memberInfoProblem(info);
  if (problem !== null) throw new RangeError(`invalid MemberInfo: ${problem}`);
  const json = JSON.stringify({
    id: info.id,
    http: info.http,
    transport: info.transport,
    shardAddresses: info.shardAddresses,
  });
  if (Buffer.byteLength(json) > memberInfoBytesMax)
    throw new RangeError(`MemberInfo is larger than ${memberInfoBytesMax} bytes`);
  return json;
}

function freezeInfo(info: MemberInfo): MemberInfo {
  return Object.freeze({
    id: info.id,
    http: info.http,
    transport: info.transport,
    shardAddresses: Object.freeze([...info.shardAddresses]) as string[],
  });
}

export class MemberTable {
  /** Revision of the last change applied; the epoch of view(). */
  private revisionValue = 0;
  private readonly entries = new Map<NodeId, MemberEntry>();
  private current: MembershipView = Object.freeze({ epoch: 0, members: Object.freeze([]) as unknown as MemberInfo[] });

  /**
   * @param membersPrefix e.g. "/hermes-kv/c1/members/"; keys below it are "<prefix><id>".
   * @param onInvalid told about every key or value that is ignored (the same on every node).
   */
  constructor(
    readonly membersPrefix: string,
    private readonly onInvalid: (key: string, problem: string) => void = () => {},
  ) {
    if (!membersPrefix.endsWith("/")) throw new RangeError("membersPrefix must end with '/'");
  }

  get revision(): number {
    return this.revisionValue;
  }

  view(): MembershipView {
    return this.current;
  }

  /** The lease the member's key is attached to, or null when the member is absent. */
  leaseOf(id: NodeId): string | null {
    return this.entries.get(id)?.lease ?? null;
  }

  /** The current registrations (etcd's membership as of `revision`), ascending by id. */
  registrations(): { id: NodeId; lease: string; createRevision: number }[] {
    return [...this.entries.values()]
      .map((e) => ({ id: e.info.id, lease: e.lease, createRevision: e.createRevision }))
      .sort((a, b) => a.id - b.id);
  }

  /**
   * Replaces the table with the set read at `revision`, which must be the revision of a change under
   * the prefix (one of the kvs was written at it). Returns the new view, or null when the table is
   * already at or past `revision`.
   */
  applySnapshot(revision: number, kvs: readonly EtcdKv[]): MembershipView | null {
    if (!Number.isSafeInteger(revision) || revision < 1) throw new RangeError(`snapshot revision ${revision}`);
    if (revision <= this.revisionValue) return null;
    let changedAtRevision = false;
    for (const kv of kvs) {
      if (kv.modRevision > revision)
        throw new Error(`snapshot at ${revision} holds key ${kv.key} modified at ${kv.modRevision}`);
      if (kv.modRevision === revision) changedAtRevision = true;
    }
    // Without a change at `revision` the epoch would not be the revision of the last change.
    if (!changedAtRevision) throw new Error(`snapshot at ${revision} has no key modified at that revision`);
    this.entries.clear();
    for (const kv of kvs) this.put(kv);
    return this.commit(revision);
  }

  /**
   * Applies watch events (in revision order, as etcd sends them) and returns one view per revision
   * that is newer than the table's.
   */
  applyEvents(events: readonly EtcdEvent[]): MembershipView[] {
    const views: MembershipView[] = [];
    let pending = 0;
    for (const event of events) {
      const rev = event.kv.modRevision;
      if (!Number.isSafeInteger(rev) || rev < 1) throw new Error(`watch event without a revision for ${event.kv.key}`);
      if (rev <= this.revisionValue) continue;
      if (pending !== 0 && rev !== pending) {
        if (rev < pending) throw new Error(`watch events out of order: ${rev} after ${pending}`);
        views.push(this.commit(pending));
      }
      pending = rev;
      if (event.type === "put") this.put(event.kv);
      else this.delete(event.kv.key);
    }
    if (pending !== 0) views.push(this.commit(pending));
    return views;
  }

  private parseId(key: string): NodeId | null {
    if (!key.startsWith(this.membersPrefix)) {
      this.onInvalid(key, "outside the members prefix");
      return null;
    }
    const tail = key.slice(this.membersPrefix.length);
    const id = idPattern.test(tail) ? Number(tail) : -1;
    if (id < 0 || id > nodeIdMax) {
      this.onInvalid(key, `key does not end with a node id in 0..${nodeIdMax}`);
      return null;
    }
    return id;
  }

  private put(kv: EtcdKv): void {
    const id = this.parseId(kv.key);
    if (id === null) return;
    // An unusable value counts as an absent member, on every node alike.
    this.entries.delete(id);
    if (Buffer.byteLength(kv.value) > memberInfoBytesMax) {
      this.onInvalid(kv.key, `value larger than ${memberInfoBytesMax} bytes`);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(kv.value);
    } catch {
      this.onInvalid(kv.key, "value is not JSON");
      return;
    }
    const problem = memberInfoProblem(parsed);
    if (problem !== null) {
      this.onInvalid(kv.key, problem);
      return;
    }
    const info = parsed as MemberInfo;
    if (info.id !== id) {
      this.onInvalid(kv.key, `record id ${info.id} differs from the key's`);
      return;
    }
    this.entries.set(id, { info: freezeInfo(info), lease: kv.lease, createRevision: kv.createRevision });
  }

  private delete(key: string): void {
    const id = this.parseId(key);
    if (id !== null) this.entries.delete(id);
  }

  private commit(revision: number): MembershipView {
    if (revision <= this.revisionValue) throw new Error(`epoch must grow: ${revision} after ${this.revisionValue}`);
    this.revisionValue = revision;
    const members = [...this.entries.values()].map((e) => e.info).sort((a, b) => a.id - b.id);
    this.current = Object.freeze({ epoch: revision, members: Object.freeze(members) as MemberInfo[] });
    return this.current;
  }
}
