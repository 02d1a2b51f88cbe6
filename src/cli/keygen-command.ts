// `hermes-kv keygen FILE`: writes a new cluster key (as `consul keygen` makes a gossip key).

import { clusterKeyBytes } from "../base/cluster-key.ts";
import { expectPositionals, parseArgs } from "./args.ts";
import { keyFileMode, writeNewClusterKeyFile } from "./cluster-key-file.ts";

export const keygenUsage = `usage: hermes-kv keygen FILE

Writes a new cluster key to FILE: ${clusterKeyBytes} random bytes as hex, mode ${keyFileMode.toString(8)}. Refuses to
overwrite an existing file. Copy the same file to every node and start each with
--cluster-key-file FILE: replica traffic is then authenticated (a MAC on every frame) and the
internal routes (state transfer) answer only holders of the key. See README "The cluster key".`;

const specs = { help: { kind: "boolean", short: "h" } } as const;

export function runKeygenCommand(argv: readonly string[]): number {
  const { flags, positionals } = parseArgs(argv, specs);
  if (flags.help) {
    console.log(keygenUsage);
    return 0;
  }
  expectPositionals(positionals, 1, 1, "FILE");
  const path = positionals[0]!;
  writeNewClusterKeyFile(path);
  console.error(`hermes-kv keygen: wrote a new cluster key to ${path} (mode ${keyFileMode.toString(8)})`);
  return 0;
}
