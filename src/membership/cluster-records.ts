// The failure detector's records in etcd, beside the member keys, as a pure table (no I/O, no
// clock) updated from the same snapshots and watch events as MemberTable:
//
//   /<prefix>/<cluster>/suspects/<id>    JSON [ids]: the members <id> cannot hear. Under <id>'s own
//                                        lease, so the suspicions of a dead node vanish with it.
//   /<prefix>/<cluster>/evictions/<id>   JSON EvictionRecord: <id>'s registration under `lease` was
//                                        evicted. No lease: it outlives both the decider and the
//                                        evicted registration, so a survivor that sees the member
//                                        key go knows that it went by eviction (see etcd-eviction.ts).
//                                        Overwritten by the next eviction of <id>.
//   /<prefix>/<cluster>/candidates/<id>  JSON MemberInfo of an evicted node waiting to rejoin, under a
//                                        lease of its own: members exchange heartbeats with it so that
//                                        it can tell when it reaches them all again.
//
// Every value is checked: an unusable one counts as absent, on every node alike.

import { nodeIdMax, type NodeId } from "../base/ids.ts";
import type { EtcdEvent, EtcdKv } from "./etcd-client.ts";
import type { EvictionReason } from "./eviction-rule.ts";
import { memberInfoBytesMax, memberInfoProblem } from "./etcd-view.ts";
import type { MemberInfo } from "./membership.ts";

/** Largest suspects or eviction record we accept. */
export const recordBytesMax = 16 << 10;

const idPattern = /^(0|[1-9][0-9]{0,9})$/;

/** The keys of one cluster. `cluster` is "/<prefix>/<cluster>/". */
export class ClusterKeys {
  readonly members: string;
  readonly suspects: string;
  readonly evictions: string;
  readonly candidates: string;

  constructor(readonly cluster: string) {
    if (!cluster.startsWith("/") || !cluster.endsWith("/"))
      throw new RangeError("a cluster prefix starts and ends with '/'");
    this.members = `${cluster}members/`;
    this.suspects = `${cluster}suspects/`;
    this.evictions = `${cluster}evictions/`;
    this.candidates = `${cluster}candidates/`;
  }

  member(id: NodeId): string {
    return this.members + id;
  }
  suspectsOf(id: NodeId): string {
    return this.suspects + id;
  }
  evictionOf(id: NodeId): string {
    return this.evictions + id;
  }
  candidate(id: NodeId): string {
    return this.candidates + id;
  }
}

/** What a decider writes when it evicts a registration. */
export interface EvictionRecord {
  member: NodeId;
  /** The lease of the evicted registration (decimal string). */
  lease: string;
  /** That lease's TTL as etcd granted it: survivors wait this (plus the drift margin) after its end. */
  ttlMs: number;
  /** The membership revision (epoch in etcd) the decision was made on. */
  epoch: number;
  by: NodeId;
  reason: EvictionReason;
  suspectedBy: NodeId[];
}

export function encodeSuspects(ids: readonly NodeId[]): string {
  return JSON.stringify([...new Set(ids)].sort((a, b) => a - b));
}

function isNodeId(v: unknown): v is NodeId {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= nodeIdMax;
}

/** The ids of a suspects record, or null when the value is unusable. */
export function parseSuspects(value: string): NodeId[] | null {
  if (value.length > recordBytesMax) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || !parsed.every(isNodeId)) return null;
  return [...new Set(parsed as NodeId[])].sort((a, b) => a - b);
}

export function encodeEviction(record: EvictionRecord): string {
  return JSON.stringify({
    member: record.member,
    lease: record.lease,
    ttlMs: record.ttlMs,
    epoch: record.epoch,
    by: record.by,
    reason: record.reason,
    suspectedBy: record.suspectedBy,
  });
}

export function parseEviction(value: string): EvictionRecord | null {
  if (value.length > recordBytesMax) return null;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  if (!isNodeId(v.member) || !isNodeId(v.by)) return null;
  if (typeof v.lease !== "string" || !/^[1-9][0-9]*$/.test(v.lease)) return null;
  if (typeof v.ttlMs !== "number" || !Number.isSafeInteger(v.ttlMs) || v.ttlMs <= 0) return null;
  if (typeof v.epoch !== "number" || !Number.isSafeInteger(v.epoch) || v.epoch < 0) return null;
  if (v.reason !== "majority" && v.reason !== "links") return null;
  if (!Array.isArray(v.suspectedBy) || !v.suspectedBy.every(isNodeId)) return null;
  return {
    member: v.member,
    lease: v.lease,
    ttlMs: v.ttlMs,
    epoch: v.epoch,
    by: v.by,
    reason: v.reason,
    suspectedBy: [...(v.suspectedBy as NodeId[])],
  };
}

export interface SuspectsRecord {
  suspects: NodeId[];
  /** The author's lease: the record counts only while that is the author's current registration. */
  lease: string;
  /** When it was written: a suspicion counts only against a registration older than it. */
  modRevision: number;
}

export class ClusterRecords {
  readonly #suspects = new Map<NodeId, SuspectsRecord>();
  readonly #evictions = new Map<NodeId, EvictionRecord>();
  readonly #candidates = new Map<NodeId, MemberInfo>();
  /** Highest mod revision of any suspects / eviction record seen (for the eviction transaction's guard). */
  #suspectsRevision = 0;
  #evictionsRevision = 0;
  /** Events at or below the last snapshot's revision are already in it. */
  #snapshotRevision = 0;
  /** Highest revision applied, snapshot or event. */
  #revision = 0;

  constructor(
    readonly keys: ClusterKeys,
    private readonly onInvalid: (key: string, problem: string) => void = () => {},
  ) {}

  /** True for a key this table keeps (suspects, evictions, candidates). */
  owns(key: string): boolean {
    return (
      key.startsWith(this.keys.suspects) || key.startsWith(this.keys.evictions) || key.startsWith(this.keys.candidates)
    );
  }

  get revision(): number {
    return this.#revision;
  }
  get suspectsRevision(): number {
    return this.#suspectsRevision;
  }
  get evictionsRevision(): number {
    return this.#evictionsRevision;
  }

  /** Replaces the table with the records read at `revision`; ignored when the table is already past it. */
  applySnapshot(revision: number, kvs: readonly EtcdKv[]): boolean {
    if (revision <= this.#revision) return false;
    this.#suspects.clear();
    this.#evictions.clear();
    this.#candidates.clear();
    for (const kv of kvs) if (this.owns(kv.key)) this.#put(kv);
    this.#snapshotRevision = revision;
    this.#revision = revision;
    return true;
  }

  /** Applies one watch event (in revision order); returns whether it changed anything. */
  applyEvent(event: EtcdEvent): boolean {
    const rev = event.kv.modRevision;
    if (!this.owns(event.kv.key) || rev <= this.#snapshotRevision) return false;
    this.#revision = Math.max(this.#revision, rev);
    if (event.type === "put") this.#put(event.kv);
    else this.#delete(event.kv.key);
    return true;
  }

  /** Live suspects records by author. */
  suspicions(): ReadonlyMap<NodeId, SuspectsRecord> {
    return this.#suspects;
  }

  evictionOf(id: NodeId): EvictionRecord | null {
    return this.#evictions.get(id) ?? null;
  }

  evictions(): ReadonlyMap<NodeId, EvictionRecord> {
    return this.#evictions;
  }

  candidates(): MemberInfo[] {
    return [...this.#candidates.values()].sort((a, b) => a.id - b.id);
  }

  #idOf(key: string, prefix: string): NodeId | null {
    const tail = key.slice(prefix.length);
    const id = idPattern.test(tail) ? Number(tail) : -1;
    if (id < 0 || id > nodeIdMax) {
      this.onInvalid(key, `key does not end with a node id in 0..${nodeIdMax}`);
      return null;
    }
    return id;
  }

  #put(kv: EtcdKv): void {
    const { keys } = this;
    if (kv.key.startsWith(keys.suspects)) {
      this.#suspectsRevision = Math.max(this.#suspectsRevision, kv.modRevision);
      const id = this.#idOf(kv.key, keys.suspects);
      if (id === null) return;
      const suspects = parseSuspects(kv.value);
      if (suspects === null) {
        this.#suspects.delete(id);
        this.onInvalid(kv.key, "not a JSON array of node ids");
        return;
      }
      this.#suspects.set(id, { suspects, lease: kv.lease, modRevision: kv.modRevision });
    } else if (kv.key.startsWith(keys.evictions)) {
      this.#evictionsRevision = Math.max(this.#evictionsRevision, kv.modRevision);
      const id = this.#idOf(kv.key, keys.evictions);
      if (id === null) return;
      const record = parseEviction(kv.value);
      if (record === null || record.member !== id) {
        this.#evictions.delete(id);
        this.onInvalid(kv.key, "not an eviction record of this member");
        return;
      }
      this.#evictions.set(id, record);
    } else if (kv.key.startsWith(keys.candidates)) {
      const id = this.#idOf(kv.key, keys.candidates);
      if (id === null) return;
      this.#candidates.delete(id);
      if (Buffer.byteLength(kv.value) > memberInfoBytesMax) return this.onInvalid(kv.key, "value too large");
      let parsed: unknown;
      try {
        parsed = JSON.parse(kv.value);
      } catch {
        return this.onInvalid(kv.key, "value is not JSON");
      }
      const problem = memberInfoProblem(parsed);
      if (problem !== null || (parsed as MemberInfo).id !== id)
        return this.onInvalid(kv.key, problem ?? "record id differs from the key's");
      const info = parsed as MemberInfo;
      this.#candidates.set(id, {
        id: info.id,
        http: info.http,
        transport: info.transport,
        shardAddresses: [...info.shardAddresses],
      });
    }
  }

  #delete(key: string): void {
    const { keys } = this;
    if (key.startsWith(keys.suspects)) {
      const id = this.#idOf(key, keys.suspects);
      if (id !== null) this.#suspects.delete(id);
    } else if (key.startsWith(keys.evictions)) {
      const id = this.#idOf(key, keys.evictions);
      if (id !== null) this.#evictions.delete(id);
    } else if (key.startsWith(keys.candidates)) {
      const id = this.#idOf(key, keys.candidates);
      if (id !== null) this.#candidates.delete(id);
    }
  }
}
