// Submit every op of a batch in one turn and gather the results in request order, for both batch
// formats. Most ops of a read-heavy batch are answered during submit (a local read of a Valid key):
// those go straight into the results, and only the ops that wait get a callback. Promise.all over
// the mix wrapped every plain result in a promise of its own; here a batch whose ops all answer at
// once costs no promise, and any other exactly one.

import type { KvBackend, OpRequest, OpResult } from "../base/kv-backend.ts";

/** The results of `ops` in their order: at once when every op answered during submit, else a promise. */
export function submitAll(backend: KvBackend, ops: readonly OpRequest[]): OpResult[] | Promise<OpResult[]> {
  const count = ops.length;
  const results = new Array<OpResult>(count);
  let waiting = 0;
  let settle: ((results: OpResult[]) => void) | null = null;
  let fail: ((error: unknown) => void) | null = null;
  let failed = false;
  // Every op goes to the backend in this same turn, before any answer is awaited: the shard rings
  // publish them together, so the batch costs one round of the engine. A backend with submitEach
  // takes them all in one call (its clock read once); the promises among them are replaced below.
  const submitted = results as (OpResult | Promise<OpResult>)[];
  if (backend.submitEach !== undefined) backend.submitEach(ops, submitted);
  else for (let index = 0; index < count; index++) submitted[index] = backend.submit(ops[index]!);
  for (let index = 0; index < count; index++) {
    // A plain result is in place already; a promise's answer replaces it when it comes.
    const result = submitted[index]!;
    if (!(result instanceof Promise)) continue;
    waiting++;
    result.then(
      (answer) => {
        results[index] = answer;
        if (--waiting === 0 && !failed) settle?.(results);
      },
      (error: unknown) => {
        // A backend that rejects broke its contract: the batch fails (500), as Promise.all did.
        if (failed) return;
        failed = true;
        fail?.(error);
      },
    );
  }
  if (waiting === 0) return results;
  return new Promise<OpResult[]>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
}
