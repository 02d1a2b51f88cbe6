// Transport benchmark: one-way throughput and ping-pong round trips for UDP and TCP, between two
// endpoints in one process and in two processes. Prints a table; asserts nothing.
//
//   bun bench/transport.bench.ts                 all cases, BENCH_MS (default 2000) ms each
//   BENCH_KINDS=udp BENCH_MS=1000 BENCH_WINDOW=256 bun bench/transport.bench.ts
//
// Every loop iteration is what a worker does: poll, send what the transport accepts, flush, then
// yield to the event loop so that Bun can run socket callbacks. "msgs/s" assumes the 1 KiB frames
// carry 16 coalesced 64-byte protocol messages (an INV with a short key and value is about that
// size); the 64 B rows send one message per frame, i.e. no coalescing.
// Two-process cases spawn this same script as the peer (`--child`), talking over stdin/stdout.

import type { Transport } from "../src/transport/transport.ts";
import { createTransport } from "../src/transport/factory.ts";

type Kind = "udp" | "tcp";
const host = "127.0.0.1";
const frameBytesMax = 1024;
const messagesPerFrame = 16;
const durationMs = Number(process.env.BENCH_MS ?? 2000);
const kinds = (process.env.BENCH_KINDS ?? "udp,tcp").split(",") as Kind[];
/** Sends attempted per iteration and peer: more than any window, so the transport is the limit. */
const burstMax = 256;
/** BENCH_WINDOW overrides the transports' windowFrames (default: theirs). */
const windowFrames = process.env.BENCH_WINDOW ? Number(process.env.BENCH_WINDOW) : undefined;
const open = (kind: Kind, self: number) => createTransport(kind, { host, port: 0, self, frameBytesMax, windowFrames });

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
/**
 * How a loop with nothing received waits: "wait" sleeps in the event loop until the transport has
 * a frame (whenReadable, or 2 ms), "spin" yields and polls again at once. On a loaded 2-core machine
 * two spinning processes starve each other; compare with BENCH_LOOP=spin.
 */
const loopMode = process.env.BENCH_LOOP === "spin" ? "spin" : "wait";

async function idle(t: Transport): Promise<void> {
  const readable = (t as Partial<{ whenReadable(): Promise<void> }>).whenReadable;
  if (loopMode === "spin" || readable === undefined) return yieldToLoop();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([readable.call(t), new Promise<void>((r) => (timer = setTimeout(r, 2)))]);
  clearTimeout(timer);
}

function frameOf(bytes: number): Uint8Array {
  const f = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) f[i] = i & 0xff;
  return f;
}

// ---- loops shared by both processes ----

/** Receive and count until `stop()`; the "sink" end of a one-way run. */
async function sink(t: Transport, stop: () => boolean) {
  let frames = 0;
  const count = () => void frames++;
  while (!stop()) {
    const n = t.poll(count);
    t.flush(); // what a worker loop does after each poll
    if (n === 0) await idle(t);
  }
  return frames;
}

/** Send to `peer` as fast as the transport accepts, until `stop()`. */
async function source(t: Transport, peer: number, frame: Uint8Array, stop: () => boolean) {
  let accepted = 0;
  const ignore = () => {};
  while (!stop()) {
    t.poll(ignore);
    for (let i = 0; i < burstMax && t.send(peer, frame); i++) accepted++;
    t.flush();
    await yieldToLoop();
  }
  return accepted;
}

/** Answer every frame from `peer` with the same bytes; the passive end of a ping-pong. */
async function echo(t: Transport, peer: number, stop: () => boolean) {
  const reply = (_from: number, f: Uint8Array) => void t.send(peer, f);
  while (!stop()) {
    const n = t.poll(reply);
    t.flush();
    if (n === 0) await idle(t);
  }
}

/** Ping-pong for durationMs: one frame in flight; a lost UDP ping is re-sent after 50 ms. */
async function pingPong(t: Transport, peer: number) {
  const ping = frameOf(64);
  const rtts: number[] = [];
  let got = false;
  const onFrame = () => void (got = true);
  const end = performance.now() + durationMs;
  while (performance.now() < end) {
    const t0 = performance.now();
    got = false;
    let resendAt = t0 + 50;
    t.send(peer, ping);
    t.flush();
    while (!got && performance.now() < end) {
      await idle(t);
      t.poll(onFrame);
      if (!got && performance.now() > resendAt) {
        t.send(peer, ping);
        t.flush();
        resendAt += 50;
      }
    }
    if (got) rtts.push(performance.now() - t0);
  }
  rtts.sort((a, b) => a - b);
  const q = (p: number) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))]! * 1000 : NaN);
  return { roundTrips: rtts.length, p50Us: q(0.5), p99Us: q(0.99) };
}

// ---- child process ----

async function child(kind: Kind, role: "sink" | "echo") {
  const t = await open(kind, 2);
  let stopped = false;
  const lines = readLines(Bun.stdin.stream());
  console.log(`ADDR ${t.address}`);
  const peerLine = (await lines.next()).value as string;
  t.connect(1, peerLine.slice("PEER ".length));
  void lines.next().then(() => (stopped = true)); // any further line (or EOF) means stop
  if (role === "sink") {
    const frames = await sink(t, () => stopped);
    console.log(`RESULT ${JSON.stringify({ frames, stats: t.stats() })}`);
  } else {
    await echo(t, 1, () => stopped);
    console.log(`RESULT ${JSON.stringify({ stats: t.stats() })}`);
  }
  t.close();
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

/** Start the peer process; resolves once it has bound and learned our address. */
async function spawnPeer(kind: Kind, role: "sink" | "echo", self: Transport) {
  const proc = Bun.spawn([process.execPath, import.meta.path, "--child", kind, role], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const lines = readLines(proc.stdout);
  const addr = ((await lines.next()).value as string).slice("ADDR ".length);
  self.connect(2, addr);
  proc.stdin.write(`PEER ${self.address}\n`);
  await proc.stdin.flush();
  return {
    async stop(): Promise<{ frames?: number; stats: Record<string, number> }> {
      proc.stdin.write("STOP\n");
      await proc.stdin.flush();
      for (let r = await lines.next(); !r.done; r = await lines.next()) {
        if (r.value.startsWith("RESULT ")) {
          const result = JSON.parse(r.value.slice("RESULT ".length));
          proc.stdin.end();
          await proc.exited;
          return result;
        }
      }
      throw new Error("peer exited without a result");
    },
  };
}

// ---- cases ----

interface Row {
  kind: Kind;
  where: "1 proc" | "2 procs";
  test: string;
  framesPerS?: number;
  msgsPerS?: number;
  mbPerS?: number;
  lossPct?: number;
  rttP50Us?: number;
  rttP99Us?: number;
}

async function oneWay(kind: Kind, twoProcs: boolean, frameBytes: number): Promise<Row> {
  const a = await open(kind, 1);
  const frame = frameOf(frameBytes);
  let received: number;
  let seconds: number;
  if (twoProcs) {
    const peer = await spawnPeer(kind, "sink", a);
    const t0 = performance.now();
    const end = t0 + durationMs;
    await source(a, 2, frame, () => performance.now() >= end);
    seconds = (performance.now() - t0) / 1000;
    await Bun.sleep(100); // let the last window land before the peer stops counting
    received = (await peer.stop()).frames!;
  } else {
    const b = await open(kind, 2);
    a.connect(2, b.address);
    b.connect(1, a.address);
    // Both ends in one loop, one thread: each iteration polls b, fills a's window, flushes both.
    let frames = 0;
    const count = () => void frames++;
    const ignore = () => {};
    const t0 = performance.now();
    const end = t0 + durationMs;
    while (performance.now() < end) {
      b.poll(count);
      a.poll(ignore);
      for (let i = 0; i < burstMax && a.send(2, frame); i++);
      a.flush();
      b.flush();
      await yieldToLoop();
    }
    seconds = (performance.now() - t0) / 1000;
    for (let i = 0; i < 20; i++) {
      await yieldToLoop();
      b.poll(count);
    }
    received = frames;
    b.close();
  }
  const sent = a.stats().framesSent;
  a.close();
  const fps = received / seconds;
  return {
    kind,
    where: twoProcs ? "2 procs" : "1 proc",
    test: `one-way ${frameBytes === 1024 ? "1 KiB" : `${frameBytes} B`}`,
    framesPerS: fps,
    msgsPerS: frameBytes === 1024 ? fps * messagesPerFrame : fps,
    mbPerS: (fps * frameBytes) / 1e6,
    lossPct: sent > 0 ? (100 * Math.max(0, sent - received)) / sent : 0,
  };
}

async function rtt(kind: Kind, twoProcs: boolean): Promise<Row> {
  const a = await open(kind, 1);
  let r: Awaited<ReturnType<typeof pingPong>>;
  if (twoProcs) {
    const peer = await spawnPeer(kind, "echo", a);
    r = await pingPong(a, 2);
    await peer.stop();
  } else {
    const b = await open(kind, 2);
    a.connect(2, b.address);
    b.connect(1, a.address);
    let stopped = false;
    const echoing = echo(b, 1, () => stopped);
    r = await pingPong(a, 2);
    stopped = true;
    await echoing;
    b.close();
  }
  a.close();
  return {
    kind,
    where: twoProcs ? "2 procs" : "1 proc",
    test: "ping-pong 64 B",
    framesPerS: r.roundTrips / (durationMs / 1000),
    rttP50Us: r.p50Us,
    rttP99Us: r.p99Us,
  };
}

function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || Number.isNaN(n)) return "-";
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(digits);
}

function printTable(rows: Row[]) {
  const head = ["kind", "where", "test", "frames/s (rt/s)", "msgs/s", "MB/s", "loss %", "rtt p50 us", "rtt p99 us"];
  const body = rows.map((r) => [
    r.kind,
    r.where,
    r.test,
    fmt(r.framesPerS),
    fmt(r.msgsPerS),
    fmt(r.mbPerS, 1),
    r.lossPct === undefined ? "-" : r.lossPct.toFixed(1),
    fmt(r.rttP50Us),
    fmt(r.rttP99Us),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
}

async function main() {
  const load = (
    await Bun.file("/proc/loadavg")
      .text()
      .catch(() => "?")
  ).split(" ")[0];
  console.log(
    `transport bench: ${durationMs} ms per case, loop ${loopMode}, window ${windowFrames ?? "default"}, ` +
      `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, load ${load}`,
  );
  const rows: Row[] = [];
  for (const kind of kinds) {
    for (const twoProcs of [false, true]) {
      rows.push(await oneWay(kind, twoProcs, 1024));
      rows.push(await oneWay(kind, twoProcs, 64));
      rows.push(await rtt(kind, twoProcs));
    }
  }
  printTable(rows);
}

if (process.argv[2] === "--child") await child(process.argv[3] as Kind, process.argv[4] as "sink" | "echo");
else await main();
