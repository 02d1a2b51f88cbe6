#!/bin/sh
# Runs inside the RDMA test guest (scripts/rdma-vm.sh), as root, after /init loaded rdma_rxe.
# Creates the Soft-RoCE device rxe0 over the loopback interface, then runs the steps named on the
# kernel command line (hermes.suites=ffi,rdma,cluster[,bench]), each bounded by a timeout. Prints one
# "[step NAME rc=N s=SECONDS]" line per step and exits non-zero if any step failed.
#
# Interface of the cluster hook test/rdma/guest-cluster.sh (run only if it exists):
#   - run with /bin/sh from the project root /opt/hermes (cwd), as root, no network but loopback;
#   - environment: BUN=/usr/local/bin/bun (the Bun binary; `bun` is also on PATH),
#     HERMES_ROOT=/opt/hermes, RDMA_DEVICE=rxe0, RDMA_GID_INDEX=<index of the RoCE v2 IPv4 GID>,
#     HERMES_TRANSPORT=rdma, TMPDIR=/tmp (tmpfs), HOME=/root, CLUSTER_TIMEOUT_S=<its time budget>;
#   - the present one starts `bun src/main.ts local --replicas 3 --transport rdma --http-port 0`,
#     runs test/rdma/cluster.check.ts (HTTP clients recording a history, linearizability check)
#     against the URLs of its "replica N ready" lines, then stops the cluster;
#   - exit 0 when the history checks out, non-zero otherwise; it is killed after CLUSTER_TIMEOUT_S
#     (TERM, then KILL 5 s later) and must leave no process behind.
set -u
cd /opt/hermes || exit 1
export HOME=/root TMPDIR=/tmp BUN=/usr/local/bin/bun HERMES_ROOT=/opt/hermes NO_COLOR=1
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin
# Test timeouts under TCG: everything is 10-50x slower than on the host.
FFI_TIMEOUT_S=150 RDMA_TIMEOUT_S=180 CLUSTER_TIMEOUT_S=180
suites=ffi,rdma,cluster
for a in $(cat /proc/cmdline); do case $a in hermes.suites=*) suites=${a#hermes.suites=} ;; esac; done
up() { cut -d' ' -f1 /proc/uptime; }
fail=0

# ---- rxe0 over lo ---------------------------------------------------------------------------------
rdma link add rxe0 type rxe netdev lo || { echo "[guest] rdma link add failed"; exit 1; }
i=0
until [ "$(cat /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null)" = "4: ACTIVE" ]; do
  i=$((i + 1)); [ $i -gt 50 ] && { echo "[guest] rxe0 port 1 never became ACTIVE"; exit 1; }
  sleep 0.2
done
# The GID carrying the IPv4 address (::ffff:127.0.0.1, RoCE v2); reading 8 entries with builtins is
# enough (each fork under TCG costs milliseconds).
RDMA_GID_INDEX=""
for n in 0 1 2 3 4 5 6 7; do
  read -r g </sys/class/infiniband/rxe0/ports/1/gids/$n 2>/dev/null || continue
  read -r ty </sys/class/infiniband/rxe0/ports/1/gid_attrs/types/$n 2>/dev/null || ty=?
  case "$g" in 0000:0000:0000:0000:0000:0000:0000:0000) continue ;; esac
  echo "[guest] rxe0 gid[$n] $g ($ty)"
  case "$g:$ty" in *0000:ffff:*"RoCE v2") [ -z "$RDMA_GID_INDEX" ] && RDMA_GID_INDEX=$n ;; esac
done
export RDMA_DEVICE=rxe0 RDMA_GID_INDEX=${RDMA_GID_INDEX:-1} RDMA_TEST_REQUIRE_DEVICE=1
echo "[guest] rxe0 ACTIVE at $(up) s, gid index $RDMA_GID_INDEX; bun $(bun --version)"

step() { # step NAME TIMEOUT_S COMMAND...
  name=$1; limit=$2; shift 2
  echo "=== step $name (limit ${limit} s) at $(up) s: $*"
  t0=$(up)
  timeout -s TERM -k 5 "$limit" "$@"
  r=$?
  echo "[step $name rc=$r s=$(awk -v a="$t0" -v b="$(up)" 'BEGIN { printf "%.1f", b - a }')]"
  [ $r -eq 0 ] || fail=1
}
has() { case ",$suites," in *",$1,"*) return 0 ;; esac; return 1; }

if has ffi; then step ffi $FFI_TIMEOUT_S bun test --timeout 60000 test/ffi; fi
if has rdma; then step rdma $RDMA_TIMEOUT_S bun test --timeout 60000 test/rdma; fi
# Not in the default set: mitata under TCG measures the emulator, so this is a functional check.
if has bench; then step bench 240 bun bench/ffi.bench.ts; fi
if has cluster; then
  if [ -f test/rdma/guest-cluster.sh ]; then
    export HERMES_TRANSPORT=rdma CLUSTER_TIMEOUT_S
    step cluster $CLUSTER_TIMEOUT_S sh test/rdma/guest-cluster.sh
  else
    echo "[step cluster skipped: test/rdma/guest-cluster.sh does not exist yet]"
  fi
fi
exit $fail
