// One clock for every thread of the process.
// Bun.nanoseconds(), performance.now() and process.hrtime() start at each Worker's own start, so
// they cannot be compared across threads. The kernel's CLOCK_MONOTONIC is one clock for the whole
// machine, never steps, and ticks as performance.now() does; reading it costs a native call, so each
// thread reads it once, when this module loads, and keeps the offset to its own performance.now().
//
// Not performance.timeOrigin (what this used before): that is the *wall* clock at the thread's
// start, so a wall-clock step between two thread starts (time sync stepping, a VM resumed) put the
// threads on scales that differ by the step. A forward step made shard workers see every lease the
// main thread granted as ended (503 until restart); a backward one made them trust leases longer.

import { dlopen, FFIType } from "bun:ffi";

/** clockid_t of CLOCK_MONOTONIC on Linux. */
const clockMonotonic = 1;
/**
 * Added to every reading, the same in every thread: keeps the scale far from 0 as the wall-clock
 * scale was, so that a time of 0 (never) stays long ago even just after boot.
 */
const scaleOffsetMs = 1e12;

function kernelMonotonicMs(): number {
  const libc = dlopen("libc.so.6", {
    clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  });
  // struct timespec on 64-bit Linux: tv_sec and tv_nsec, two 64-bit integers.
  const timespec = new BigInt64Array(2);
  const rc = libc.symbols.clock_gettime(clockMonotonic, timespec);
  libc.close();
  if (rc !== 0) throw new Error(`clock_gettime(CLOCK_MONOTONIC) failed (${rc})`);
  return Number(timespec[0]!) * 1000 + Number(timespec[1]!) / 1e6;
}

const threadOriginMs = scaleOffsetMs + kernelMonotonicMs() - performance.now();

/** Milliseconds on one monotonic scale shared by every thread of this process (not wall time). */
export function monotonicMs(): number {
  return threadOriginMs + performance.now();
}
