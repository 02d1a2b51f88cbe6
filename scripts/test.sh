#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need, runs every suite and
# ends with one line `N passed, N failed, N skipped`; exits non-zero if anything failed.
#   scripts/test.sh        everything: type check, format check, bun tests, 300 simulation seeds per mode, the RDMA guest
#   scripts/test.sh fast   type check, format check and bun tests only
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}

bash scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
BUN=node_modules/.bin/bun
passed=0 failed=0 skipped=0
logdir=$(mktemp -d)

# One step that is not a bun test run counts as one test.
step() {
  local name=$1; shift
  echo "=== $name: $*"
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok"; else failed=$((failed + 1)); echo "=== $name: FAILED"; fi
}

step "type check" node_modules/.bin/tsc --noEmit -p .
step "format (npm run format:check)" npm run -s format:check

# bun test writes its counts to stderr as " N pass", " N fail", " N skip" lines.
echo "=== bun test"
$BUN test --timeout 300000 test 2>&1 | tee "$logdir/bun-test.log"
bun_rc=${PIPESTATUS[0]}
count() { grep -E "^ *[0-9]+ $1\$" "$logdir/bun-test.log" | tail -1 | awk '{print $1}'; }
p=$(count pass); f=$(count fail); s=$(count skip); t=$(count todo)
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0} + ${t:-0}))
# A run that failed without counting a failure (e.g. a crash of the runner) still fails.
if [ "$bun_rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); fi

if [ "$mode" = all ]; then
  # The core alone (fast), then the real shard loop and frame codec per node (test/sim --mode).
  sim_check() {
    $BUN test/sim/main.ts --seeds 300 --mode "$1" | tee "$logdir/sim-$1.log" | tail -3
    tail -1 "$logdir/sim-$1.log" | grep -qE '^seeds=300 ops=[0-9]+ violations=0$'
  }
  step "simulation, 300 seeds, core mode" sim_check core
  step "simulation, 300 seeds, shard mode" sim_check shard
  if [ -f scripts/rdma-vm.sh ]; then
    step "RDMA guest (Soft-RoCE under qemu)" bash scripts/rdma-vm.sh
  fi
fi

rm -rf "$logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
