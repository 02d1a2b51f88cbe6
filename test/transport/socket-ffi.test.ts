// ffi/socket.ts: finding Bun's sockets by their bound address and sizing their buffers.

import { afterEach, expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import {
  findBoundSocketFds,
  setSocketBufferBytes,
  socketBufferBytes,
  socketName,
  socketType,
  SOCK_DGRAM,
  SOCK_STREAM,
} from "../../ffi/socket.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

test("a UDP socket and a TCP listener on the same port number are told apart by type", async () => {
  const u = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  cleanup.push(() => u.close());
  const l = Bun.listen({ hostname: "127.0.0.1", port: u.port, socket: { data() {} } });
  cleanup.push(() => l.stop(true));
  const [udpFd, ...moreUdp] = findBoundSocketFds(SOCK_DGRAM, u.port, "127.0.0.1");
  const [tcpFd, ...moreTcp] = findBoundSocketFds(SOCK_STREAM, l.port, "127.0.0.1");
  expect(moreUdp).toEqual([]);
  expect(moreTcp).toEqual([]);
  expect(udpFd).not.toBe(tcpFd);
  expect(socketType(udpFd!)).toBe(SOCK_DGRAM);
  expect(socketType(tcpFd!)).toBe(SOCK_STREAM);
  expect(socketName(udpFd!)).toEqual({ family: "IPv4", address: "127.0.0.1", port: u.port });
  // Another address on the same port matches nothing.
  expect(findBoundSocketFds(SOCK_DGRAM, u.port, "127.0.0.2")).toEqual([]);
});

test("a file descriptor that is not a socket has no socket name", () => {
  const fd = openSync("/proc/self/status", "r");
  cleanup.push(() => closeSync(fd));
  expect(socketName(fd)).toBeNull();
});

test("buffer sizes are set and read back; the kernel reports twice the request", async () => {
  const u = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  cleanup.push(() => u.close());
  const [fd] = findBoundSocketFds(SOCK_DGRAM, u.port, "127.0.0.1");
  const r = setSocketBufferBytes(fd!, "receive", 1 << 20);
  expect(r.bytes).toBe(socketBufferBytes(fd!, "receive"));
  if (r.forced) expect(r.bytes).toBe(2 << 20);
  const s = setSocketBufferBytes(fd!, "send", 256 << 10);
  expect(s.bytes).toBe(socketBufferBytes(fd!, "send"));
  expect(() => setSocketBufferBytes(fd!, "receive", 0)).toThrow(RangeError);
});
