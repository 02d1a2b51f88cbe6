// One clock for every thread of the process.
// Bun.nanoseconds() and performance.now() start at each Worker's own start, so they cannot be
// compared across threads. timeOrigin + now() is the same scale in every thread and never steps
// back within a thread (now() is monotonic; timeOrigin is fixed at thread start, so it is read once
// per thread, when this module loads: the getter showed up at 5 % of a shard worker's HTTP profile).

const threadOriginMs = performance.timeOrigin;

export function monotonicMs(): number {
  return threadOriginMs + performance.now();
}
