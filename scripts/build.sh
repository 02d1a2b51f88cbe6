#!/usr/bin/env bash
# Builds dist/hermes-kv: one executable with the Bun runtime, the CLI and the shard worker inside.
# Worker files must be extra entrypoints, and the main entry must sit at the top of all of them
# (src/main.ts above src/worker/) so that `new URL("../worker/...", import.meta.url)` resolves in
# the binary's embedded file system (shared/notes/bun-toolchain.md §5).
set -euo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
mkdir -p dist
"$BUN" build --compile --minify --sourcemap=none \
  src/main.ts src/worker/shard-worker.ts src/cli/http-bench-worker.ts \
  --outfile dist/hermes-kv
ls -l dist/hermes-kv | awk '{print "built " $9 " (" int($5/1048576) " MiB)"}'
