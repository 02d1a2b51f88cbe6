// `hermes-kv local`: a whole cluster of N replicas in this process, for trying hermes-kv and for
// showing failure and recovery on one machine.

import type { TransportKind } from "../base/transport-kind.ts";
import { LocalCluster } from "./local-cluster.ts";
import { expectPositionals, parseArgs, parseIntegerFlag, UsageError } from "./args.ts";
import { resolveTransport } from "./transport-choice.ts";
import { exposureProblem } from "./exposure-check.ts";
import { FatalError } from "./fatal-error.ts";
import { loadServerSecurity, reloadAuthOnSighup, serverSecurityHelp, serverSecuritySpecs } from "./server-security.ts";
import { readClusterKeyFile } from "./cluster-key-file.ts";
import { clusterKeyLabel, deriveClusterKey, generateClusterKey } from "../base/cluster-key.ts";

import { durabilityFlagSpecs, durabilityUsage, parseDurabilityFlags } from "./durability-flags.ts";

export const localUsage = `usage: hermes-kv local [--replicas N] [--http-port P] [--shards W] [--transport auto|tcp|udp|rdma]
                      [--host ADDR] [--lease-ms MS] [--tls-cert F --tls-key F [--tls-ca F]]
                      [--auth-file F [--metrics-public]] [--cluster-key-file FILE] [--insecure]
                      [--data-dir DIR [--durability fsync|async]]

Runs N replicas of one hermes-kv cluster in this process, with an in-process membership service
(leases and epochs as in a real cluster). Replica i serves HTTP on port P+i.

  --replicas N     replicas, 1..7 (default 3)
  --http-port P    HTTP port of replica 0 (default 8080; 0 = any free ports)
  --shards W       Hermes workers (threads) per replica (default 1)
  --transport T    replica-to-replica transport (default auto: rdma if a device is present, else tcp)
  --host ADDR      address to bind, loopback by default (127.0.0.1); any other address needs
                   TLS and --auth-file, or --insecure
  --lease-ms MS    membership lease; a stopped replica is removed this long after it stops (default 1000)
${serverSecurityHelp}
  --insecure       bind a non-loopback --host without TLS or an auth file
  --cluster-key-file FILE  the key of the MAC on every replica frame (hermes-kv keygen FILE); default:
                   a random key made in memory at start, so frames are authenticated either way
${durabilityUsage}
                   (replica i keeps its data in DIR/replica-i; a restart of the process recovers them all)

Try it:
  curl -X PUT --data-binary hello http://127.0.0.1:8080/v1/kv/greeting
  curl http://127.0.0.1:8081/v1/kv/greeting            # read from another replica
  curl -X POST http://127.0.0.1:8082/v1/kv/visits/incr
  curl -X POST http://127.0.0.1:8081/v1/admin/stop      # stop replica 1 (as if it crashed)
  curl -X POST http://127.0.0.1:8081/v1/admin/start     # it rejoins and loads the current state
Web console: http://127.0.0.1:8080/ui (any replica's port).
Ctrl-C stops everything cleanly.`;

const specs = {
  replicas: { kind: "string" },
  "http-port": { kind: "string" },
  shards: { kind: "string" },
  transport: { kind: "string" },
  host: { kind: "string" },
  "lease-ms": { kind: "string" },
  ...serverSecuritySpecs,
  insecure: { kind: "boolean" },
  "cluster-key-file": { kind: "string" },
  ...durabilityFlagSpecs,
  help: { kind: "boolean", short: "h" },
} as const;

export async function runLocalCommand(argv: readonly string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, specs);
  if (flags.help) {
    console.log(localUsage);
    return 0;
  }
  expectPositionals(positionals, 0, 0, "");
  const replicas = flags.replicas === undefined ? 3 : parseIntegerFlag("--replicas", flags.replicas, 1, 7);
  const httpPort =
    flags["http-port"] === undefined ? 8080 : parseIntegerFlag("--http-port", flags["http-port"], 0, 65535 - replicas);
  const shards = flags.shards === undefined ? 1 : parseIntegerFlag("--shards", flags.shards, 1, 64);
  const leaseMs =
    flags["lease-ms"] === undefined ? 1000 : parseIntegerFlag("--lease-ms", flags["lease-ms"], 100, 600_000);
  const host = flags.host ?? "127.0.0.1";
  // A local cluster always authenticates its frames (with --cluster-key-file's key, or one made in
  // memory at start), so only TLS and the auth file are asked for (null: not a question here).
  const problem = exposureProblem({
    addresses: [{ flag: "--host", host }],
    tls: flags["tls-cert"] !== undefined,
    authFile: flags["auth-file"] !== undefined,
    clusterKeyFile: null,
    insecure: flags.insecure,
  });
  if (problem !== null) throw new FatalError(problem);
  const security = await loadServerSecurity(flags);
  // Replicas of one process share the key, so a fresh one per run is as good as a file, unless
  // something outside the process must speak to them (it then needs the file).
  const clusterKey =
    flags["cluster-key-file"] === undefined ? generateClusterKey() : readClusterKeyFile(flags["cluster-key-file"]);
  const transport: TransportKind = resolveTransport(flags.transport ?? "auto", (line) => console.error(line));
  const durability = parseDurabilityFlags(flags);

  const cluster = await LocalCluster.start({
    replicas,
    host,
    httpPort,
    shards,
    transport,
    rm: {
      leaseMs,
      renewEveryMs: Math.max(10, Math.floor(leaseMs / 10)),
      removalMarginMs: Math.max(10, Math.floor(leaseMs / 20)),
    },
    node: { frameKey: deriveClusterKey(clusterKey, clusterKeyLabel.frameMac) },
    log: (line) => console.error(line),
    security,
    durability,
  }).catch((error: unknown) => {
    // With a data dir: a corrupt file (named, with its offset), a refusing disk, a locked or foreign dir.
    if (error instanceof UsageError) throw error;
    throw new FatalError(`cannot start: ${error instanceof Error ? error.message : String(error)}`);
  });
  if (security.authFile !== null)
    reloadAuthOnSighup(
      security.authFile,
      (tokens) => cluster.setAuthTokens(tokens),
      (line) => console.error(line),
    );
  for (let id = 0; id < replicas; id++) {
    console.log(
      `replica ${id} ready: ${cluster.url(id)}  (node ${id}, ${shards} shard${shards > 1 ? "s" : ""}, ${transport})`,
    );
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      console.error("hermes-kv local: stopping");
      void cluster.close().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  return 0;
}

export { UsageError };
