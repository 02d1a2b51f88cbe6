// Socket options through bun:ffi, for what Bun's socket APIs do not expose.
//
// Bun.udpSocket has no receive-buffer option and no fd accessor (notes/bun-toolchain.md §7), and the
// default 208 KiB SO_RCVBUF drops most of a burst. The fix: find the socket's fd by asking the kernel
// for the bound address of each open fd (getsockname) and matching the port, then setsockopt on it.
// Linux only: the option numbers below are Linux's (asm-generic/socket.h); other platforms get null.

import { readdirSync } from "node:fs";
import { dlopen, FFIType } from "bun:ffi";
import { errno, NativeError } from "./libc.ts";

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const AF_INET = 2;
const AF_INET6 = 10;
const ENOTSOCK = 88;

export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export type SocketType = typeof SOCK_STREAM | typeof SOCK_DGRAM;

/** Upper bound on the fds scanned, so a process with a huge fd table cannot make the scan unbounded. */
export const fdScanMax = 65536;

const supported = process.platform === "linux";

type LibcSocket = {
  getsockname: (fd: number, addr: Uint8Array, len: Uint32Array) => number;
  getsockopt: (fd: number, level: number, name: number, value: Int32Array, len: Uint32Array) => number;
  setsockopt: (fd: number, level: number, name: number, value: Int32Array, len: number) => number;
};

let lib: LibcSocket | null = null;

/** Lazily bound: a process that never enlarges a buffer never dlopens anything. */
function libc(): LibcSocket {
  if (lib !== null) return lib;
  const l = dlopen("libc.so.6", {
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    getsockopt: {
      args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr],
      returns: FFIType.i32,
    },
    setsockopt: {
      args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32],
      returns: FFIType.i32,
    },
  });
  lib = l.symbols as unknown as LibcSocket;
  return lib;
}

// Scratch buffers reused by every call (sockaddr_storage is 128 bytes).
const addrBuf = new Uint8Array(128);
const addrView = new DataView(addrBuf.buffer);
const lenBuf = new Uint32Array(1);
const intBuf = new Int32Array(1);

export interface SocketName {
  family: "IPv4" | "IPv6";
  address: string;
  port: number;
}

/** The bound address of `fd`, or null when `fd` is not an IPv4/IPv6 socket. */
export function socketName(fd: number): SocketName | null {
  if (!supported) return null;
  lenBuf[0] = addrBuf.length;
  if (libc().getsockname(fd, addrBuf, lenBuf) !== 0) {
    const code = errno();
    if (code === ENOTSOCK || code === 9 /* EBADF: closed during the scan */) return null;
    throw new NativeError("getsockname", code, `fd ${fd}`);
  }
  const family = addrView.getUint16(0, true);
  const port = addrView.getUint16(2, false); // network byte order
  if (family === AF_INET) {
    return { family: "IPv4", address: `${addrBuf[4]}.${addrBuf[5]}.${addrBuf[6]}.${addrBuf[7]}`, port };
  }
  if (family === AF_INET6) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(addrView.getUint16(8 + 2 * i, false).toString(16));
    return { family: "IPv6", address: groups.join(":"), port };
  }
  return null;
}

function getInt(fd: number, name: number, call: string): number {
  intBuf[0] = 0;
  lenBuf[0] = 4;
  if (libc().getsockopt(fd, SOL_SOCKET, name, intBuf, lenBuf) !== 0) {
    throw new NativeError("getsockopt", errno(), `${call} on fd ${fd}`);
  }
  return intBuf[0]!;
}

/** SO_TYPE of a socket fd (SOCK_STREAM, SOCK_DGRAM, ...). */
export function socketType(fd: number): number {
  return getInt(fd, SO_TYPE, "SO_TYPE");
}

/**
 * The fds of this process's sockets of `type` bound to `port` (and to `address` when given).
 * Candidates come from /proc/self/fd, so the scan touches only open fds.
 */
export function findBoundSocketFds(type: SocketType, port: number, address?: string): number[] {
  if (!supported) return [];
  if (!(Number.isInteger(port) && port > 0 && port < 65536)) throw new RangeError(`bad port ${port}`);
  const found: number[] = [];
  const names = readdirSync("/proc/self/fd");
  for (let i = 0; i < names.length && i < fdScanMax; i++) {
    const fd = Number(names[i]);
    if (!Number.isInteger(fd) || fd < 3) continue; // stdio is never ours
    const name = socketName(fd);
    if (name === null || name.port !== port) continue;
    if (address !== undefined && name.address !== address) continue;
    if (socketType(fd) !== type) continue;
    found.push(fd);
  }
  return found;
}

export type BufferDirection = "receive" | "send";

export interface BufferResult {
  /** The size the kernel reports afterwards (Linux doubles the request to cover its bookkeeping). */
  bytes: number;
  /** True when the privileged *FORCE option worked, false when the capped plain option was used. */
  forced: boolean;
}

/**
 * Ask for a `bytes`-sized socket buffer: SO_*BUFFORCE first (needs CAP_NET_ADMIN, ignores
 * net.core.[rw]mem_max), falling back to SO_*BUF (silently capped at [rw]mem_max).
 * Throws NativeError when both fail.
 */
export function setSocketBufferBytes(fd: number, direction: BufferDirection, bytes: number): BufferResult {
  if (!supported) throw new NativeError("setsockopt", 95 /* EOPNOTSUPP */, `not Linux (${process.platform})`);
  if (!(Number.isInteger(bytes) && bytes > 0 && bytes <= 0x3fffffff)) throw new RangeError(`bad size ${bytes}`);
  const force = direction === "receive" ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
  const plain = direction === "receive" ? SO_RCVBUF : SO_SNDBUF;
  intBuf[0] = bytes;
  let forced = true;
  if (libc().setsockopt(fd, SOL_SOCKET, force, intBuf, 4) !== 0) {
    forced = false;
    intBuf[0] = bytes;
    if (libc().setsockopt(fd, SOL_SOCKET, plain, intBuf, 4) !== 0) {
      throw new NativeError("setsockopt", errno(), `${direction} buffer ${bytes} bytes on fd ${fd}`);
    }
  }
  return { bytes: socketBufferBytes(fd, direction), forced };
}

/** The socket buffer size the kernel reports for `fd`. */
export function socketBufferBytes(fd: number, direction: BufferDirection): number {
  return getInt(
    fd,
    direction === "receive" ? SO_RCVBUF : SO_SNDBUF,
    direction === "receive" ? "SO_RCVBUF" : "SO_SNDBUF",
  );
}
