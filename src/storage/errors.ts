// The storage layer's two failure kinds, kept apart because callers react differently:
// - DiskError: the operating system refused a write, fsync, open or rename (ENOSPC, EIO, ...). An
//   operating error: the node stops accepting updates and says why, but keeps serving reads.
// - CorruptionError: bytes on disk are not what was written, somewhere that is not a torn tail.
//   Recovery stops rather than serve silently wrong data; the message names the file and the offset.

/** An I/O call failed. `code` is the errno name ("ENOSPC", "EIO", ...). */
export class DiskError extends Error {
  constructor(
    readonly code: string,
    readonly operation: string,
    readonly path: string,
    cause?: unknown,
  ) {
    super(`${operation} ${path}: ${code}`, { cause });
    this.name = "DiskError";
  }
}

/** Wraps whatever node:fs threw into a DiskError carrying its errno code. */
export function diskError(operation: string, path: string, error: unknown): DiskError {
  if (error instanceof DiskError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  return new DiskError(typeof code === "string" ? code : "EUNKNOWN", operation, path, error);
}

/** Bytes on disk fail their checksum or framing at a place that cannot be a torn tail. */
export class CorruptionError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly why: string,
  ) {
    super(`corrupt data in ${file} at byte offset ${offset}: ${why}`);
    this.name = "CorruptionError";
  }
}
