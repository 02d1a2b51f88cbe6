#!/usr/bin/env bun
// hermes-kv: the single binary's entry point (`bun build --compile` entry). Subcommands:
// local, node, bench, and the client commands get|put|delete|cas|incr|batch|ls|watch.

import { exitUsage, UsageError } from "./cli/args.ts";
import { batchCommand, clientCommands, runClientCommand } from "./cli/client.ts";
import { browseCommands, runBrowseCommand } from "./cli/browse-client.ts";
import { FatalError } from "./cli/fatal-error.ts";

const version = "0.1.0";

const usage = `hermes-kv ${version}: a replicated, linearizable key-value store (the Hermes protocol)

usage: hermes-kv <command> [flags]    (every command has --help)

  local     run a whole cluster of N replicas in this process (try it here)
  node      run one node of a real cluster, with etcd for membership
  bench     benchmark: the engine in-process (bypassing HTTP), or any cluster over HTTP (--endpoints)
  get       read a key                     hermes-kv get KEY [--endpoint URL]
  put       write a key                    hermes-kv put KEY VALUE|- [--endpoint URL]
  delete    delete a key                   hermes-kv delete KEY
  cas       compare-and-set on the ETag    hermes-kv cas KEY VALUE --etag E
  incr      add to an integer value        hermes-kv incr KEY [--by N]
  batch     many independent ops at once   hermes-kv batch FILE.json|-
  ls        list keys by prefix            hermes-kv ls PREFIX [--values] [--limit N]
  watch     print changes as they happen   hermes-kv watch PREFIX [--from-now]

  --version, --help`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(usage);
    return command === undefined ? exitUsage : 0;
  }
  if (command === "--version") {
    console.log(version);
    return 0;
  }
  try {
    switch (command) {
      case "local":
        return await (await import("./cli/local-command.ts")).runLocalCommand(rest);
      case "node":
        return await (await import("./cli/node-command.ts")).runNodeCommand(rest);
      case "bench":
        return await (await import("./cli/bench-command.ts")).runBenchCommand(rest);
      case batchCommand:
        return await runClientCommand(argv);
      default:
        if ((browseCommands as readonly string[]).includes(command)) return await runBrowseCommand(argv);
        if ((clientCommands as readonly string[]).includes(command)) return await runClientCommand(argv);
        console.error(`hermes-kv: unknown command "${command}"\n\n${usage}`);
        return exitUsage;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`hermes-kv ${command}: ${error.message} (see hermes-kv ${command} --help)`);
      return exitUsage;
    }
    if (error instanceof FatalError) {
      console.error(`hermes-kv ${command}: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

const command = process.argv[2];
const code = await main(process.argv.slice(2));
// The servers (local, node) end only by a signal, after a clean close: exit even if a stray
// timer is left. Client commands just set the code, so that their output is flushed first.
if (command === "local" || command === "node") process.exit(code);
process.exitCode = code;
