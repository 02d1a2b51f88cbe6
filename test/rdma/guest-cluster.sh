#!/bin/sh
# A 3-replica hermes-kv cluster over RDMA with a history check. scripts/rdma-vm.sh runs this inside
# its guest (rxe0 up; interface in scripts/rdma-vm/guest-test.sh). It starts
# `hermes-kv local --replicas 3 --transport $HERMES_TRANSPORT` (from source, on OS-chosen ports),
# waits for its three "replica N ready: URL" lines, runs test/rdma/cluster.check.ts against those
# URLs, and stops the cluster. Exit 0 only if the history is linearizable.
# Elsewhere: HERMES_TRANSPORT=tcp sh test/rdma/guest-cluster.sh is a dry run of the same steps.
set -u
cd "${HERMES_ROOT:-$(dirname "$0")/../..}" || exit 1
# The guest sets BUN; in a checkout the pinned Bun is node_modules/.bin/bun.
if [ -z "${BUN:-}" ]; then if [ -x node_modules/.bin/bun ]; then BUN=node_modules/.bin/bun; else BUN=bun; fi; fi
transport=${HERMES_TRANSPORT:-rdma}
budget=${CLUSTER_TIMEOUT_S:-180}
log=${TMPDIR:-/tmp}/hermes-cluster-$$.log
# Long leases: under TCG, timers run late, and a missed renewal would remove a healthy replica.
"$BUN" src/main.ts local --replicas 3 --transport "$transport" --http-port 0 --lease-ms 5000 >"$log" 2>&1 &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || return 0
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
fail() {
  echo "guest-cluster: FAILED: $*"
  echo "--- cluster log (last 40 lines)"; tail -n 40 "$log"
  stop
  exit 1
}
trap 'stop; exit 1' INT TERM

# Up to a third of the budget to start (three replicas, their workers and RDMA endpoints).
waited=0
limit=$((budget * 10 / 3))
until [ "$(grep -c '^replica [0-9]* ready: ' "$log")" -ge 3 ]; do
  kill -0 "$pid" 2>/dev/null || fail "the cluster exited during startup"
  waited=$((waited + 1))
  [ $waited -gt $limit ] && fail "the cluster was not ready within $((limit / 10)) s"
  sleep 0.1
done
urls=$(sed -n 's/^replica [0-9]* ready: \(http[^ ]*\).*/\1/p' "$log" | paste -sd, -)
echo "guest-cluster: 3 replicas ready over $transport after ~$((waited / 10)) s: $urls"
grep -E "transport|numa|unpinned" "$log" | head -5

HERMES_CLUSTER_URLS=$urls HERMES_TRANSPORT=$transport "$BUN" test --timeout $((budget * 1000)) ./test/rdma/cluster.check.ts
rc=$?
[ $rc -eq 0 ] || fail "the history check failed (bun test exit $rc)"
stop
echo "guest-cluster: history of the $transport cluster is linearizable"
exit 0
