// Prometheus text exposition of a node's state: membership, lease, per-shard protocol counters,
// transport and wire counters (dropped frames by reason), ops in flight.

import type { ShardStats } from "../worker/messages.ts";
import type { NodeStatus } from "../base/kv-backend.ts";

function line(
  out: string[],
  name: string,
  help: string,
  type: "gauge" | "counter",
  samples: [labels: string, value: number][],
): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  for (const [labels, value] of samples) out.push(`${name}${labels} ${Number.isFinite(value) ? value : 0}`);
}

export function renderMetrics(status: NodeStatus, shards: ShardStats[], membershipChanges: number): string {
  const out: string[] = [];
  line(out, "hermes_epoch", "Current membership epoch.", "gauge", [["", status.epoch]]);
  line(out, "hermes_members", "Members in the current view.", "gauge", [["", status.members.length]]);
  line(out, "hermes_serving", "1 when this node serves reads and writes (member with a valid lease).", "gauge", [
    ["", status.serving ? 1 : 0],
  ]);
  line(out, "hermes_lease_remaining_seconds", "Time left on this node's lease.", "gauge", [
    ["", status.leaseRemainingMs / 1000],
  ]);
  line(out, "hermes_membership_changes_total", "Membership views applied.", "counter", [["", membershipChanges]]);
  line(
    out,
    "hermes_ops_in_flight",
    "Client ops submitted to a shard and not yet answered.",
    "gauge",
    status.shards.map((s) => [`{shard="${s.index}"}`, s.opsInFlight]),
  );
  line(
    out,
    "hermes_keys",
    "Keys held by a shard (tombstones included).",
    "gauge",
    shards.map((s, i) => [`{shard="${i}"}`, s.keys]),
  );
  const counterNames = new Set<string>();
  for (const s of shards) for (const k of Object.keys(s.counters)) counterNames.add(k);
  for (const name of counterNames) {
    line(
      out,
      `hermes_${snake(name)}_total`,
      `Replica counter ${name}.`,
      "counter",
      shards.map((s, i) => [`{shard="${i}"}`, s.counters[name] ?? 0]),
    );
  }
  const transportNames = new Set<string>();
  for (const s of shards)
    for (const k of Object.keys(s.transport)) if (typeof s.transport[k] === "number") transportNames.add(k);
  for (const name of transportNames) {
    line(
      out,
      `hermes_transport_${snake(name)}_total`,
      `Transport counter ${name}.`,
      "counter",
      shards.map((s, i) => [`{shard="${i}"}`, s.transport[name] ?? 0]),
    );
  }
  const wireNames = new Set<string>();
  for (const s of shards) for (const k of Object.keys(s.wire)) wireNames.add(k);
  for (const name of wireNames) {
    line(
      out,
      `hermes_wire_${snake(name)}_total`,
      `Frame codec counter ${name} (received frames accepted or dropped, by reason).`,
      "counter",
      shards.map((s, i) => [`{shard="${i}"}`, s.wire[name] ?? 0]),
    );
  }
  return out.join("\n") + "\n";
}

/** The failure detector's series (etcd nodes with --suspect-ms > 0). */
export function renderDetectorMetrics(
  counters: { suspicionsRaised: number; suspicionsRefuted: number },
  status: NodeStatus,
): string {
  const out: string[] = [];
  line(out, "hermes_detector_suspects", "Members this node cannot hear (suspects).", "gauge", [
    ["", status.suspects?.length ?? 0],
  ]);
  line(out, "hermes_detector_suspected_by", "Members whose published suspicions name this node.", "gauge", [
    ["", status.suspectedBy?.length ?? 0],
  ]);
  line(out, "hermes_detector_suspicions_raised_total", "Times this node began to suspect a member.", "counter", [
    ["", counters.suspicionsRaised],
  ]);
  line(out, "hermes_detector_suspicions_refuted_total", "Times a suspected member was heard again.", "counter", [
    ["", counters.suspicionsRefuted],
  ]);
  line(
    out,
    "hermes_detector_eviction_holds",
    "Views removing an evicted member, held until its lease has surely expired.",
    "gauge",
    [["", status.evictions?.holding.length ?? 0]],
  );
  return out.join("\n") + "\n";
}

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}
