// Protected mode (as Redis's): a node whose HTTP or transport address can be reached from other
// machines must have TLS, client tokens and the cluster key, or be told with --insecure that the
// risk is accepted. A pure function, so that every combination is unit-tested
// (test/cli/exposure-check.test.ts); node-command.ts and local-command.ts call it before binding anything.

export interface Exposure {
  /** The addresses the process binds, by flag ("--http", "--listen", "--host"), host part only. */
  addresses: readonly { flag: string; host: string }[];
  tls: boolean;
  authFile: boolean;
  /** null: the command has no cluster key (local: its replicas talk inside one process's machine only through the bound host). */
  clusterKeyFile: boolean | null;
  insecure: boolean;
}

/**
 * True for addresses only this machine can reach: 127.0.0.0/8, ::1 and "localhost". Anything else
 * (0.0.0.0 and :: included: they listen on every interface) is reachable from the network.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (bare === "localhost" || bare === "::1" || bare === "0:0:0:0:0:0:0:1") return true;
  const octets = bare.split(".");
  return octets.length === 4 && octets[0] === "127" && octets.every((o) => /^[0-9]{1,3}$/.test(o) && Number(o) <= 255);
}

/**
 * null when the process may start; otherwise one line that says which address is exposed, what is
 * missing, and that --insecure accepts the risk.
 */
export function exposureProblem(exposure: Exposure): string | null {
  if (exposure.insecure) return null;
  const exposed = exposure.addresses.filter((a) => !isLoopbackHost(a.host));
  if (exposed.length === 0) return null;
  const missing: string[] = [];
  if (!exposure.tls) missing.push("TLS (--tls-cert, --tls-key)");
  if (!exposure.authFile) missing.push("client tokens (--auth-file)");
  if (exposure.clusterKeyFile === false) missing.push("the cluster key (--cluster-key-file)");
  if (missing.length === 0) return null;
  const where = exposed.map((a) => `${a.flag} ${a.host}`).join(" and ");
  return `refusing to listen on ${where}, reachable from other machines, without ${missing.join(", ")}; add them, bind a loopback address, or pass --insecure to accept the risk`;
}
