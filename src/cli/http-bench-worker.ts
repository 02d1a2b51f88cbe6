// A Bun Worker of `hermes-kv bench --endpoints --threads N`: runs one thread's connections
// (http-bench-load.ts) and posts back what it counted.

import { type LoadConfig, runLoadThread } from "./http-bench-load.ts";

declare const self: Worker;

export interface WorkerStart {
  config: LoadConfig;
  thread: number;
  shared: SharedArrayBuffer;
}

self.onmessage = async (event: MessageEvent<WorkerStart>) => {
  const { config, thread, shared } = event.data;
  try {
    const counts = await runLoadThread(config, thread, new Int32Array(shared));
    self.postMessage({ ok: true, counts });
  } catch (error) {
    self.postMessage({ ok: false, message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
};
