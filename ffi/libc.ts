// libc through bun:ffi: errno and its text, for errors that name the failing call.
// Native errors are values: NativeError carries the call, errno and strerror (rust-ibverbs style).

import { dlopen, FFIType, read, CString, type Pointer } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.ptr },
});

/** The calling thread's errno, read right after a failed call. */
export function errno(): number {
  const p = libc.symbols.__errno_location();
  if (p === null) return 0;
  return read.i32(p as Pointer, 0);
}

export function strerror(code: number): string {
  const p = libc.symbols.strerror(code);
  return p === null ? `errno ${code}` : new CString(p as Pointer).toString();
}

/** An error from a native call: which call, errno and its text. */
export class NativeError extends Error {
  readonly call: string;
  readonly errno: number;
  constructor(call: string, code: number, detail?: string) {
    super(`${call} failed: ${strerror(code)} (errno ${code})${detail ? `: ${detail}` : ""}`);
    this.name = "NativeError";
    this.call = call;
    this.errno = code;
  }
}

/** Throws NativeError for `call` with the current errno. */
export function throwErrno(call: string, detail?: string): never {
  throw new NativeError(call, errno(), detail);
}
