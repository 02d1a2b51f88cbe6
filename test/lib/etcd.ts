// Starts a real, single-member etcd on 127.0.0.1 for tests: free ports, a temporary data dir,
// waits until it is healthy, stops it (SIGTERM, then SIGKILL), kills it, restarts it on the same
// ports and data dir, and always cleans up:
//  - cleanup() / stop() from afterAll or finally blocks;
//  - a process "exit" handler (runs after a failed test file too) kills what is left and removes
//    the data dirs;
//  - a watchdog shell per etcd kills it and removes its dir if the test process itself is killed
//    with SIGKILL (PR_SET_PDEATHSIG would be simpler but was not delivered on this VM: tried with
//    setpriv --pdeathsig, the child outlived its killed parent).
//
// etcd is Debian's etcd-server (3.4.x) at /usr/bin/etcd; ETCD_BIN overrides the path.

import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const etcdBin = process.env.ETCD_BIN ?? "/usr/bin/etcd";
/** Raft timings for tests: a 500 ms election timeout makes etcd's minimum lease TTL 1 s (1.5 election timeouts, rounded up). */
export const testHeartbeatMs = 50;
export const testElectionMs = 500;
/** Attempts at picking free ports when etcd cannot bind them (another process took one in between). */
const portAttemptsMax = 3;
/** Lines of etcd's log shown when it fails to start. */
const logTailLines = 30;

export function etcdAvailable(): boolean {
  return existsSync(etcdBin);
}

/** Client-side TLS for etcd: a server certificate, and client certificates checked against a CA. */
export interface EtcdTestTls {
  certFile: string;
  keyFile: string;
  /** Starts etcd with --client-cert-auth --trusted-ca-file this. */
  clientCaFile?: string;
  /** PEM contents the health check uses (with client-cert-auth it must present a client certificate). */
  health: { ca?: string; cert?: string; key?: string };
}

export interface EtcdServerOptions {
  /** How long start() waits for /health; default 15 s. */
  startTimeoutMs?: number;
  /** https:// client URL with these certificates; plain http:// when absent. */
  tls?: EtcdTestTls;
  /** More etcd flags, e.g. ["--auth-token", "simple", "--auth-token-ttl", "1"]. */
  extraArgs?: readonly string[];
  /** How long stop() waits after SIGTERM before SIGKILL; default 5 s. */
  stopTimeoutMs?: number;
}

export interface EtcdServer {
  /** e.g. "http://127.0.0.1:41234" */
  readonly clientUrl: string;
  readonly dataDir: string;
  /** pid of the running etcd, or null when stopped. */
  pid(): number | null;
  /** Starts etcd again on the same ports and data dir (after stop or kill) and waits until healthy. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves when the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crash); resolves when the process is gone. */
  kill(): Promise<void>;
  /** Stops etcd and removes its directory. Idempotent. */
  cleanup(): Promise<void>;
  /** The tail of etcd's log, for failure messages. */
  logTail(lines?: number): string;
}

const live = new Set<EtcdProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const server of live) server.cleanupSync();
  });
}

async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

class EtcdProcess implements EtcdServer {
  readonly clientUrl: string;
  private readonly peerUrl: string;
  private readonly logPath: string;
  private proc: Subprocess | null = null;
  private watchdog: Subprocess | null = null;
  private removed = false;

  constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly options: EtcdServerOptions,
  ) {
    this.clientUrl = `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${clientPort}`;
    this.peerUrl = `http://127.0.0.1:${peerPort}`;
    this.logPath = join(dataDir, "etcd.log");
  }

  pid(): number | null {
    return this.proc?.pid ?? null;
  }

  logTail(lines = logTailLines): string {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  async start(): Promise<void> {
    if (this.removed) throw new Error("etcd test server: already cleaned up");
    if (this.proc !== null) throw new Error("etcd test server: already running");
    const logFd = openSync(this.logPath, "a");
    try {
      this.proc = Bun.spawn(
        [
          etcdBin,
          "--name",
          "hermes-test",
          "--data-dir",
          join(this.dataDir, "data"),
          "--listen-client-urls",
          this.clientUrl,
          "--advertise-client-urls",
          this.clientUrl,
          "--listen-peer-urls",
          this.peerUrl,
          "--initial-advertise-peer-urls",
          this.peerUrl,
          "--initial-cluster",
          `hermes-test=${this.peerUrl}`,
          "--initial-cluster-state",
          "new",
          "--heartbeat-interval",
          String(testHeartbeatMs),
          "--election-timeout",
          String(testElectionMs),
          ...this.tlsArgs(),
          ...(this.options.extraArgs ?? []),
        ],
        { stdin: "ignore", stdout: logFd, stderr: logFd },
      );
    } finally {
      closeSync(logFd);
    }
    live.add(this);
    installExitHook();
    const etcdPid = this.proc.pid;
    // Blocks reading a pipe whose only writer is this process: when this process dies, even by
    // SIGKILL, the read sees EOF and the watchdog kills etcd. `read` is a shell builtin, so killing
    // the watchdog on a normal stop leaves no child behind.
    this.watchdog = Bun.spawn(
      ["sh", "-c", `read _ ; if kill -0 ${etcdPid} 2>/dev/null; then kill -9 ${etcdPid}; rm -rf '${this.dataDir}'; fi`],
      { stdin: "pipe", stdout: "ignore", stderr: "ignore" },
    );
    try {
      await this.waitHealthy();
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  private tlsArgs(): string[] {
    const tls = this.options.tls;
    if (tls === undefined) return [];
    const args = ["--cert-file", tls.certFile, "--key-file", tls.keyFile];
    if (tls.clientCaFile !== undefined) args.push("--client-cert-auth", "--trusted-ca-file", tls.clientCaFile);
    return args;
  }

  private async waitHealthy(): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 15_000;
    const startedAt = performance.now();
    const proc = this.proc;
    while (performance.now() - startedAt < timeoutMs) {
      if (proc === null || proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `etcd exited during start-up (code ${proc?.exitCode}, signal ${proc?.signalCode}):\n${this.logTail()}`,
        );
      }
      try {
        const init: RequestInit & { tls?: EtcdTestTls["health"] } = { signal: AbortSignal.timeout(1000) };
        if (this.options.tls !== undefined) init.tls = this.options.tls.health;
        const response = await fetch(`${this.clientUrl}/health`, init);
        const body = (await response.json()) as { health?: string };
        if (response.ok && body.health === "true") return;
      } catch {
        // not listening yet
      }
      await Bun.sleep(50);
    }
    throw new Error(`etcd not healthy after ${timeoutMs} ms:\n${this.logTail()}`);
  }

  private async reap(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const proc = this.proc;
    if (proc === null) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    if (signal === "SIGTERM") {
      const timeoutMs = this.options.stopTimeoutMs ?? 5000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
      });
      const outcome = await Promise.race([proc.exited, timedOut]);
      clearTimeout(timer);
      if (outcome === "timeout") proc.kill("SIGKILL");
    }
    await proc.exited;
    this.proc = null;
    const watchdog = this.watchdog;
    this.watchdog = null;
    if (watchdog !== null) {
      watchdog.kill("SIGKILL");
      await watchdog.exited;
    }
  }

  stop(): Promise<void> {
    return this.reap("SIGTERM");
  }

  kill(): Promise<void> {
    return this.reap("SIGKILL");
  }

  async cleanup(): Promise<void> {
    await this.stop();
    this.removeDir();
  }

  /** For the exit hook: no awaiting possible there. */
  cleanupSync(): void {
    try {
      if (this.proc !== null && this.proc.exitCode === null) this.proc.kill("SIGKILL");
      if (this.watchdog !== null) this.watchdog.kill("SIGKILL");
    } catch {
      // already gone
    }
    this.removeDir();
  }

  private removeDir(): void {
    if (this.removed) return;
    this.removed = true;
    live.delete(this);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Starts a fresh single-member etcd with free ports and a temporary data dir; waits until healthy. */
export async function startEtcd(options: EtcdServerOptions = {}): Promise<EtcdServer> {
  if (!etcdAvailable()) throw new Error(`etcd not found at ${etcdBin} (run scripts/install-deps.sh, or set ETCD_BIN)`);
  let lastError: unknown;
  for (let attempt = 0; attempt < portAttemptsMax; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), "hermes-etcd-"));
    const server = new EtcdProcess(dir, await freePort(), await freePort(), options);
    if (server.clientPort === server.peerPort) {
      server.cleanupSync();
      continue;
    }
    try {
      await server.start();
      return server;
    } catch (err) {
      lastError = err;
      await server.cleanup();
      // A port taken between picking and binding shows as a bind error; anything else is fatal.
      if (!/address already in use/i.test(String(err))) break;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}
