// The mixed client workload of the e2e tests: closed-loop clients, each bound to one replica,
// issuing reads, blind writes (values unique per key), deletes, CAS with the ETag of their last
// read or write, create-if-absent, and increments of separate counter keys (never CASed, always by
// a positive amount, so counter values never repeat either).

import { type Client, type Recorder, prng } from "./harness.ts";

export interface WorkloadOptions {
  clients: Client[];
  recorder: Recorder;
  registerKeys: readonly string[];
  counterKeys: readonly string[];
  seed: number;
  /** Clients stop once this many ops were invoked and `keepGoing` (if any) says stop. */
  opsMin: number;
  /** Hard bound on ops invoked, whatever `keepGoing` says: the run can never be unbounded. */
  opsMax: number;
  keepGoing?: () => boolean;
  /** Pause of a client after an answer that says "not now" (503, 429): such answers are instant. */
  backoffMs?: number;
}

export interface WorkloadResult {
  invoked: number;
}

export async function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const { clients, recorder, registerKeys, counterKeys, opsMin, opsMax } = options;
  const backoffMs = options.backoffMs ?? 10;
  const done = (): boolean => {
    const invoked = recorder.history.invokedCount;
    if (invoked >= opsMax) return true;
    if (invoked < opsMin) return false;
    return options.keepGoing === undefined || !options.keepGoing();
  };
  await Promise.all(
    clients.map(async (client) => {
      const random = prng(options.seed ^ Math.imul(client.id + 1, 0x9e3779b1));
      const int = (n: number): number => Math.floor(random() * n);
      let seq = 0;
      const fresh = (): string => `c${client.id}-${seq++}`;
      while (!done()) {
        const key = registerKeys[int(registerKeys.length)]!;
        const r = random();
        let outcome: string;
        if (r < 0.3) {
          outcome = (await client.read(key)).outcome;
        } else if (r < 0.5) {
          outcome = await client.put(key, fresh());
        } else if (r < 0.57) {
          outcome = await client.remove(key);
        } else if (r < 0.75) {
          const known = client.known(key);
          outcome =
            known === null ? (await client.read(key)).outcome : await client.put(key, fresh(), { ifMatch: known });
        } else if (r < 0.83) {
          outcome = await client.put(key, fresh(), { ifNoneMatch: true });
        } else {
          outcome = (await client.incr(counterKeys[int(counterKeys.length)]!, 1 + int(5))).outcome;
        }
        if (outcome === "failed") await Bun.sleep(backoffMs);
      }
    }),
  );
  return { invoked: recorder.history.invokedCount };
}
