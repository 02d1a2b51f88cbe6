// flock(2) through bun:ffi: node:fs has no file locks. One job: try to take an exclusive lock on an
// open file descriptor without waiting.

import { dlopen, FFIType, read } from "bun:ffi";

const lockExclusive = 2; // LOCK_EX
const lockNonBlocking = 4; // LOCK_NB
const errnoWouldBlock = 11; // EWOULDBLOCK == EAGAIN on Linux

let libc: ReturnType<typeof openLibc> | null = null;

function openLibc() {
  return dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

/**
 * Takes an exclusive lock on `fd` if no other open file description holds one: true if taken,
 * false if another holds it. Throws on any other failure. The kernel releases the lock when the
 * descriptor is closed or the process dies, however it dies.
 */
export function tryLockExclusive(fd: number): boolean {
  libc ??= openLibc();
  if (libc.symbols.flock(fd, lockExclusive | lockNonBlocking) === 0) return true;
  const errnoAddress = libc.symbols.__errno_location();
  const errno = errnoAddress === null ? -1 : read.i32(errnoAddress, 0);
  if (errno === errnoWouldBlock) return false;
  throw new Error(`flock(${fd}) failed with errno ${errno}`);
}
