// Prometheus series of the shards' write-ahead logs and snapshots (--durability fsync|async):
// nothing without a data dir. A failed log shows as hermes_durability_disk_failed{shard,code} 1,
// the reason the node refuses updates.

import type { ShardStats } from "../worker/messages.ts";

export function renderDurabilityMetrics(shards: ShardStats[]): string {
  const rows = shards.flatMap((s, i) => (s.durability == null ? [] : [{ shard: i, d: s.durability }]));
  if (rows.length === 0) return "";
  const out: string[] = [];
  const series = (
    name: string,
    help: string,
    type: "gauge" | "counter",
    value: (d: (typeof rows)[number]["d"]) => number,
  ): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const { shard, d } of rows) out.push(`${name}{shard="${shard}",mode="${d.mode}"} ${value(d)}`);
  };
  series("hermes_durability_log_records_total", "Records appended to the shard's log.", "counter", (d) => d.records);
  series("hermes_durability_log_bytes_total", "Bytes appended to the shard's log.", "counter", (d) => d.logBytes);
  series(
    "hermes_durability_fsyncs_total",
    "fdatasync calls of the shard's log (group commits).",
    "counter",
    (d) => d.syncs,
  );
  series(
    "hermes_durability_frames_withheld_total",
    "Frames not sent because the log could not be synced.",
    "counter",
    (d) => d.framesWithheld,
  );
  series(
    "hermes_durability_updates_refused_total",
    "Updates refused (503) because the shard's log failed.",
    "counter",
    (d) => d.updatesRefused,
  );
  series("hermes_durability_snapshots_total", "Snapshots of the shard written.", "counter", (d) => d.snapshots);
  series(
    "hermes_durability_snapshot_step_seconds_max",
    "The longest loop-turn pause a snapshot step caused.",
    "gauge",
    (d) => d.snapshotStepMsMax / 1000,
  );
  series(
    "hermes_durability_snapshot_last_seconds",
    "Duration of the last snapshot, first step to rename.",
    "gauge",
    (d) => d.snapshotLastMs / 1000,
  );
  out.push(
    "# HELP hermes_durability_disk_failed 1 when the shard's log failed with this errno: updates are refused.",
    "# TYPE hermes_durability_disk_failed gauge",
  );
  for (const { shard, d } of rows)
    out.push(
      `hermes_durability_disk_failed{shard="${shard}",code="${d.failure?.code ?? ""}"} ${d.failure === null ? 0 : 1}`,
    );
  return out.join("\n") + "\n";
}
