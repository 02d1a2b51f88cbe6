#!/usr/bin/env bash
# Batches of 64 at 95 % reads over HTTP, before/after in alternating rounds, with the engine's rate
# in the same session: each round starts a fresh `local --replicas 3` of one build, fills 10,000
# keys, runs `bench --endpoints` (JSON, and binary where the build has it) and records the server's
# and the load tool's CPU time (/proc/<pid>/stat), then runs the in-process engine bench.
#   bash bench/batch-ab.sh BEFORE_DIR AFTER_DIR [rounds] [seconds] [port]
# BEFORE_FORMATS (default "json binary"): the formats of the before build ("json" for a build
# older than binary batches).
set -uo pipefail
before=${1:?before dir}
after=${2:?after dir}
rounds=${3:-3}
seconds=${4:-5}
port=${5:-$((30000 + RANDOM % 20000))}
tick=$(getconf CLK_TCK)

# The cluster of the round in flight: stopped whatever ends the script.
cluster_pid=""
trap '[ -n "$cluster_pid" ] && kill "$cluster_pid" 2>/dev/null' EXIT

cpu_ms() { awk -v t="$tick" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat"; }

run_build() {
  local label=$1 dir=$2 formats=$3
  (cd "$dir" && exec node_modules/.bin/bun src/main.ts local --replicas 3 --http-port "$port" >/tmp/batch-ab-local.log 2>&1) &
  local pid=$!
  cluster_pid=$pid
  for _ in $(seq 1 300); do
    grep -q "replica 2 ready" /tmp/batch-ab-local.log 2>/dev/null && break
    sleep 0.1
  done
  local endpoints="http://127.0.0.1:$port,http://127.0.0.1:$((port + 1)),http://127.0.0.1:$((port + 2))"
  (cd "$dir" && node_modules/.bin/bun src/main.ts bench --endpoints "$endpoints" -c 24 -k 10000 -v 32 -d 0.5 --warmup 0 --fill >/dev/null 2>&1)
  for format in $formats; do
    local flag=()
    [ "$format" = binary ] && flag=(--batch-format binary)
    local s0 out
    s0=$(cpu_ms "$pid")
    out=$(cd "$dir" && /usr/bin/time -f "tool_cpu_s=%U+%S" node_modules/.bin/bun src/main.ts bench --endpoints "$endpoints" \
      -c 24 -k 10000 -v 32 --batch 64 "${flag[@]}" -d "$seconds" 2>&1) || true
    local s1
    s1=$(cpu_ms "$pid")
    local rate
    rate=$(grep -o 'ops_per_s=[0-9.]*' <<<"$out" || echo "failed: $(tail -c 300 <<<"$out")")
    echo "$label $format $rate $(grep -o 'p99_us=[0-9]*' <<<"$out" || true) server_cpu_ms=$((s1 - s0)) $(grep -o 'tool_cpu_s=[0-9.+]*' <<<"$out" || true) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  cluster_pid=""
}

for round in $(seq 1 "$rounds"); do
  echo "round $round"
  run_build before "$before" "${BEFORE_FORMATS:-json binary}"
  run_build after "$after" "json binary"
  (cd "$after" && node_modules/.bin/bun src/main.ts bench -M 3 -W 1 -w 50 -k 10000 -d 4 2>&1 | grep -o 'throughput_mreqs=[0-9.]*' | sed "s/^/engine /; s/$/ load=$(cut -d' ' -f1 /proc/loadavg)/")
done
