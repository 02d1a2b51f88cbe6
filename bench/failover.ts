// Failover benchmark: how long writes are unavailable after a node process is SIGKILLed, for
// several etcd lease TTLs. A real etcd and three `hermes-kv node` processes on 127.0.0.1
// (test/cluster/helpers.ts). Measures; asserts nothing. Prints a table.
//
//   bun bench/failover.ts                          TTLs 1,2,5 s; 5,5,3 repetitions
//   FAILOVER_TTLS=1,2 FAILOVER_REPS=3 bun bench/failover.ts
//
// One repetition: writers on the two survivors keep PUTting (each to its own key, so no writer
// waits behind another's pending write); node 2 is SIGKILLed at t0; the unavailability is t0 to the
// first acknowledged write *invoked after t0* on a survivor. Such a write needs ACKs from every
// member, so it commits only after etcd expired the victim's lease and the survivors installed the
// view without it: this is kill -> lease expiry in etcd -> watch event -> new view -> commit.
// The victim is then restarted (its lease is gone), and the next repetition starts once all three
// serve again. Reported per TTL: min / median / max, and the time of the survivors' view change
// (first status poll showing the victim gone; polled every 10 ms, so an upper bound).

import { ProcCluster, request, waitFor } from "../test/cluster/helpers.ts";

const ttlsS = (process.env.FAILOVER_TTLS ?? "1,2,5").split(",").map(Number);
const repsOf = (ttlS: number): number => Number(process.env.FAILOVER_REPS ?? (ttlS >= 5 ? 3 : 5));
const victim = 2;
const survivors = [0, 1];
/** Concurrent writers per survivor. */
const writersPerNode = 4;
/** Client-side bound on one write; a stalled one is simply retried. */
const writeTimeoutMs = 15_000;

interface Sample {
  unavailableMs: number;
  viewChangeMs: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function measureTtl(ttlS: number, reps: number): Promise<Sample[]> {
  const cluster = await ProcCluster.start({ nodes: 3, leaseMs: ttlS * 1000 });
  const samples: Sample[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      let killedAt = Number.POSITIVE_INFINITY;
      let firstAckAt = Number.POSITIVE_INFINITY;
      let stop = false;
      const writers = survivors.flatMap((node) =>
        Array.from({ length: writersPerNode }, async (_, w) => {
          const url = `${cluster.node(node).url}/v1/kv/failover-${node}-${w}`;
          for (let seq = 0; !stop; seq++) {
            const call = performance.now();
            const answer = await request(url, { method: "PUT", body: `v${rep}-${seq}` }, writeTimeoutMs);
            const ret = performance.now();
            if (answer.kind === "response" && answer.status === 200 && call > killedAt && ret < firstAckAt)
              firstAckAt = ret;
            if (answer.kind !== "response" || answer.status !== 200) await Bun.sleep(5);
          }
        }),
      );
      let viewChangedAt = Number.POSITIVE_INFINITY;
      const poller = (async () => {
        while (!stop) {
          const statuses = await Promise.all(survivors.map((id) => cluster.node(id).status()));
          if (killedAt < Number.POSITIVE_INFINITY && statuses.every((s) => s !== null && !s.members.includes(victim))) {
            viewChangedAt = Math.min(viewChangedAt, performance.now());
          }
          await Bun.sleep(10);
        }
      })();
      await Bun.sleep(500); // writers warm up
      killedAt = performance.now();
      await cluster.node(victim).kill();
      await waitFor(
        "a write acknowledged after the kill",
        () => firstAckAt < Number.POSITIVE_INFINITY && viewChangedAt < Number.POSITIVE_INFINITY,
        60_000,
        5,
      );
      stop = true;
      await Promise.all([...writers, poller]);
      samples.push({ unavailableMs: firstAckAt - killedAt, viewChangeMs: viewChangedAt - killedAt });
      console.error(
        `ttl ${ttlS}s rep ${rep + 1}/${reps}: writes unavailable ${(firstAckAt - killedAt).toFixed(0)} ms, survivors' view changed by ${(viewChangedAt - killedAt).toFixed(0)} ms`,
      );
      // Restart the victim (its lease has expired: it left the survivors' view) for the next round.
      await cluster.node(victim).spawn();
      await cluster.node(victim).waitHealthy(60_000);
      await cluster.waitMembers([0, 1, 2], 30_000);
      const check = await request(`${cluster.node(victim).url}/v1/kv/failover-0-0`);
      if (check.kind !== "response" || check.status !== 200)
        throw new Error(`restarted victim cannot read: ${JSON.stringify(check)}`);
    }
  } finally {
    await cluster.close();
  }
  return samples;
}

const rows: string[] = [];
const started = performance.now();
for (const ttlS of ttlsS) {
  const samples = await measureTtl(ttlS, repsOf(ttlS));
  const u = samples.map((s) => s.unavailableMs);
  const v = samples.map((s) => s.viewChangeMs);
  rows.push(
    `| ${String(ttlS).padStart(5)} | ${String(samples.length).padStart(4)} | ${Math.min(...u)
      .toFixed(0)
      .padStart(7)} | ${median(u).toFixed(0).padStart(7)} | ${Math.max(...u)
      .toFixed(0)
      .padStart(7)} | ${median(v).toFixed(0).padStart(14)} |`,
  );
}
console.log(
  "\nwrite unavailability after SIGKILL of one of 3 nodes (ms from the kill to the first acknowledged write invoked after it)",
);
console.log("| TTL s | reps |     min |  median |     max | view change md |");
console.log("|------:|-----:|--------:|--------:|--------:|---------------:|");
for (const row of rows) console.log(row);
console.log(
  `(${((performance.now() - started) / 1000).toFixed(0)} s in all; etcd election timeout 500 ms; node drift margin 10% of the TTL)`,
);
