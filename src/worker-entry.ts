// Where the shard worker's code is. This module sits at the top of src/ on purpose: inside the
// compiled binary every module shares the entry's import.meta.url ($bunfs/root/hermes-kv), and the
// worker entrypoint lives at $bunfs/root/worker/shard-worker.ts. From here the same relative URL
// is right both under `bun src/...` and in the binary.
export const shardWorkerUrl = new URL("./worker/shard-worker.ts", import.meta.url);
