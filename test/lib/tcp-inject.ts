// An attacker on the network, for the security tests: connects to a node's TCP transport port
// claiming to be node `from` (the hello is not authenticated: the frame MAC is what is), and writes
// frames exactly as given, length-prefixed, over a real socket.

import { tcpHelloBytes, tcpHelloMagic, tcpHelloVersion } from "../../src/transport/tcp.ts";

/** How long the connection stays open after the last byte, so that the receiver reads everything. */
const lingerMs = 200;
const writeTimeoutMs = 10_000;

export async function injectTcpFrames(
  port: number,
  from: number,
  to: number,
  frames: readonly Uint8Array[],
): Promise<void> {
  const hello = Buffer.alloc(tcpHelloBytes);
  hello.writeUInt32LE(tcpHelloMagic, 0);
  hello.writeUInt16LE(tcpHelloVersion, 4);
  hello.writeUInt16LE(from, 6);
  hello.writeUInt16LE(to, 8);
  const parts: Buffer[] = [hello];
  for (const f of frames) {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(f.length, 0);
    parts.push(length, Buffer.from(f));
  }
  const bytes = Buffer.concat(parts);
  let written = 0;
  let closed = false;
  let wake: (() => void) | null = null;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data() {}, // credit records: an attacker ignores them
      drain(s) {
        written += s.write(bytes.subarray(written));
        if (written === bytes.length) wake?.();
      },
      close() {
        closed = true;
        wake?.();
      },
    },
  });
  written += socket.write(bytes);
  if (written < bytes.length && !closed) {
    await Promise.race([new Promise<void>((resolve) => (wake = resolve)), Bun.sleep(writeTimeoutMs)]);
  }
  if (written !== bytes.length) throw new Error(`wrote ${written} of ${bytes.length} bytes (closed: ${closed})`);
  await Bun.sleep(lingerMs);
  socket.end();
}
