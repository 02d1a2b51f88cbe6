#!/usr/bin/env bash
# A multi-host hermes-kv cluster on one machine: etcd and every node in a network namespace of its
# own, wired by two Linux bridges, with faults injected by the kernel (link down, nftables drops).
# Needs root, iproute2 and nftables (scripts/install-deps.sh installs them). The test tier in
# test/netns/ drives this same script, so a run by hand sees the topology the tests see.
#
# Topology of a run RUN (5 characters [a-z0-9]) with N nodes; D is an even number picked per run
# so that concurrent runs never share a subnet:
#
#   root namespace (this host)       node I: namespace hkv-RUN-nI     etcd: namespace hkv-RUN-etcd
#   bridge hkvRUN-d  10.77.D.1 ----- data 10.77.D.(10+I)
#     clients, replica transport,      HTTP :8080, transport :7000
#     snapshot loads
#   bridge hkvRUN-c  (no address) -- ctl  10.77.(D+1).(10+I)
#     etcd traffic only           \--------------------------------- ctl 10.77.(D+1).2, etcd :2379
#
# The host end of each veth is hkvRUN-dI / hkvRUN-cI (node I), hkvRUN-ce (etcd); the namespace end
# is "data" or "ctl". Namespaces have no default route: traffic can only go to these addresses.
# Every namespace has an nftables table `inet hkv` with an input chain where faults add drop rules
# (dropping on the receiver's ingress looks like loss on the wire: the sender gets no error).
#
# Usage:
#   netns-cluster.sh up [--nodes N] [--lease-ms MS] [--bin PATH] [--hold SECONDS]
#       Creates a run, starts etcd and N nodes (default 3, lease 1000 ms, dist/hermes-kv, with
#       --test-hooks), prints their URLs and the fault commands, and waits for Ctrl-C (or SECONDS);
#       then tears everything down (trap on EXIT, INT, TERM).
#   netns-cluster.sh check                      exit 0 if namespaces, veths, bridges and nft work here
#   netns-cluster.sh create RUN N [OWNER_PID]   create the topology only (prints the env file)
#   netns-cluster.sh env RUN                    print a run's env file (RUN, NODES, NET, OWNER, DIR)
#   netns-cluster.sh destroy RUN                kill every process in the run's namespaces, delete them
#   netns-cluster.sh sweep [--all]              destroy leftover runs whose owner process is gone (all with --all)
#   netns-cluster.sh list                       runs present (namespaces, links, env files)
#   netns-cluster.sh link RUN HOST data|ctl up|down     host end of HOST's veth (HOST: etcd, n0, n1, ...)
#   netns-cluster.sh drop RUN FROM TO...        drop packets FROM -> each TO (one direction), at TO's ingress
#   netns-cluster.sh cut RUN A B...             drop both directions between A and each B
#   netns-cluster.sh heal RUN                   flush every drop rule and set every link up
#   netns-cluster.sh exec RUN HOST CMD...       run CMD inside HOST's namespace
#   netns-cluster.sh restart RUN nI             SIGKILL node I and start it again in its namespace (runs made by `up`)
#
# Faults by hand, on a run printed by `up` (here n2 of run abcde):
#   link down:       netns-cluster.sh link abcde n2 data down
#   peer-only:       netns-cluster.sh cut abcde n2 n0 n1         (n2 still reaches etcd)
#   one direction:   netns-cluster.sh drop abcde n2 n0 n1        (n2 -> peers lost; peers -> n2 delivered)
#   etcd-only:       netns-cluster.sh cut abcde n2 etcd          (n2 still reaches its peers)
#   etcd isolated:   netns-cluster.sh link abcde etcd ctl down
#   pause / kill:    kill -STOP|-CONT|-KILL <pid printed by up>
#   kill + restart:  netns-cluster.sh restart abcde n2
#   heal:            netns-cluster.sh heal abcde
set -euo pipefail

readonly PREFIX=hkv
readonly STATE_DIR=${HKV_NETNS_STATE_DIR:-/run/hermes-kv-netns}
readonly RUN_RE='^[a-z0-9]{5}$'
readonly HTTP_PORT=8080
readonly LISTEN_PORT=7000
readonly ETCD_PORT=2379

die() { echo "netns-cluster: $*" >&2; exit 1; }
say() { echo "netns-cluster: $*" >&2; }

ns_of() { echo "$PREFIX-$1-$2"; }                 # RUN HOST -> namespace
bridge_of() { echo "$PREFIX$1-$2"; }              # RUN d|c -> bridge
veth_of() {                                        # RUN HOST data|ctl -> host end of the veth
  local run=$1 host=$2 net=$3 n=${3:0:1}
  if [ "$host" = etcd ]; then echo "$PREFIX$run-${n}e"; else echo "$PREFIX$run-$n${host#n}"; fi
}
check_run() { [[ $1 =~ $RUN_RE ]] || die "bad run id '$1' (5 of [a-z0-9])"; }

load_env() { # RUN -> sets NODES NET OWNER DIR
  local f="$STATE_DIR/$1.env"
  [ -f "$f" ] || die "no run $1 ($f missing)"
  # shellcheck disable=SC1090
  . "$f"
}

# Addresses: data 10.77.NET.x, control 10.77.(NET+1).x.
addr_of() { # HOST data|ctl (needs NET) -> address
  local host=$1 net=$2 third=$NET
  [ "$net" = ctl ] && third=$((NET + 1))
  if [ "$host" = etcd ]; then
    [ "$net" = ctl ] || die "etcd has no data address"
    echo "10.77.$third.2"
  else
    echo "10.77.$third.$((10 + ${host#n}))"
  fi
}
hosts_of() { echo etcd; local i; for ((i = 0; i < NODES; i++)); do echo "n$i"; done; }
check_host() {
  [ "$1" = etcd ] && return 0
  [[ $1 =~ ^n[0-9]+$ ]] && [ "${1#n}" -lt "$NODES" ] || die "no host '$1' (etcd, n0..n$((NODES - 1)))"
}
addrs_of() { # HOST -> every address it has
  if [ "$1" = etcd ]; then addr_of etcd ctl; else addr_of "$1" data; addr_of "$1" ctl; fi
}

run_ids_present() {
  {
    ip netns list 2>/dev/null | awk '{print $1}' | sed -nE "s/^$PREFIX-([a-z0-9]{5})-.*/\1/p"
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed -nE "s/^$PREFIX([a-z0-9]{5})-[^@]*(@.*)?$/\1/p"
    ls "$STATE_DIR" 2>/dev/null | sed -nE 's/^([a-z0-9]{5})\.env$/\1/p'
  } | sort -u
}

cmd_check() {
  [ "$(id -u)" = 0 ] || { echo "not root (uid $(id -u))"; return 1; }
  command -v ip >/dev/null || { echo "iproute2 (ip) not installed"; return 1; }
  command -v nft >/dev/null || { echo "nftables (nft) not installed"; return 1; }
  local ns="$PREFIX-probe$$" err
  if ! err=$(ip netns add "$ns" 2>&1); then echo "ip netns add failed: $err"; return 1; fi
  local ok=0 why=""
  if ! err=$(ip link add "${PREFIX}probe$$" type veth peer name probe netns "$ns" 2>&1); then ok=1; why="veth: $err"
  elif ! err=$(ip link add "${PREFIX}pb$$" type bridge 2>&1); then ok=1; why="bridge: $err"
  elif ! err=$(ip netns exec "$ns" nft add table inet hkv 2>&1); then ok=1; why="nft in a namespace: $err"
  fi
  ip link del "${PREFIX}pb$$" 2>/dev/null || true
  ip link del "${PREFIX}probe$$" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  [ $ok = 0 ] || echo "$why"
  return $ok
}

# D: even, 10..250, neither 10.77.D nor 10.77.(D+1) on any interface or claimed by a run's env file.
pick_net() {
  local used d
  used=$({ ip -4 -o addr show; ip -4 route show; cat "$STATE_DIR"/*.env 2>/dev/null; } | sed -nE 's/.*10\.77\.([0-9]+)\..*/\1/p; s/^NET=([0-9]+)$/\1/p' | sort -u)
  for ((d = 10; d <= 250; d += 2)); do
    if ! grep -qxE "$d|$((d + 1))" <<<"$used"; then echo $d; return 0; fi
  done
  die "no free 10.77.x.0/24 pair"
}

add_veth() { # RUN HOST data|ctl BRIDGE
  local run=$1 host=$2 net=$3 br=$4 ns veth addr
  ns=$(ns_of "$run" "$host"); veth=$(veth_of "$run" "$host" "$net"); addr=$(addr_of "$host" "$net")
  ip link add "$veth" type veth peer name "$net" netns "$ns"
  sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1" 2>/dev/null || true
  ip link set "$veth" master "$br" up
  ip -n "$ns" addr add "$addr/24" dev "$net"
  ip -n "$ns" link set "$net" up
}

cmd_create() { # RUN N [OWNER]
  local run=$1 nodes=$2 owner=${3:-$$}
  check_run "$run"
  [[ $nodes =~ ^[1-9][0-9]?$ ]] && [ "$nodes" -le 50 ] || die "bad node count '$nodes' (1..50)"
  mkdir -p "$STATE_DIR"
  [ ! -e "$STATE_DIR/$run.env" ] || die "run $run exists"
  local dir="${TMPDIR:-/tmp}/hkv-netns-$run" rc=0
  # In a subshell that is not tested by || or if, so that set -e stops it at the first failure.
  set +e
  (
    set -e
    flock 9
    NODES=$nodes
    NET=$(pick_net)
    # The owner is recorded before anything exists, so a concurrent sweep never takes this run for a leftover.
    printf 'RUN=%s\nNODES=%s\nNET=%s\nOWNER=%s\nDIR=%s\n' "$run" "$nodes" "$NET" "$owner" "$dir" >"$STATE_DIR/$run.env"
    mkdir -p "$dir"
    local brd brc host ns
    brd=$(bridge_of "$run" d); brc=$(bridge_of "$run" c)
    ip link add "$brd" type bridge; ip link add "$brc" type bridge
    for br in "$brd" "$brc"; do sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1" 2>/dev/null || true; ip link set "$br" up; done
    ip addr add "10.77.$NET.1/24" dev "$brd"
    for host in $(hosts_of); do
      ns=$(ns_of "$run" "$host")
      ip netns add "$ns"
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
      ip -n "$ns" link set lo up
      ip netns exec "$ns" nft -f - <<'EOF'
table inet hkv {
  chain input { type filter hook input priority 0; policy accept; }
}
EOF
      [ "$host" = etcd ] || add_veth "$run" "$host" data "$brd"
      add_veth "$run" "$host" ctl "$brc"
    done
  ) 9>"$STATE_DIR/.lock"
  rc=$?
  set -e
  if [ $rc != 0 ]; then cmd_destroy "$run" >/dev/null 2>&1 || true; die "create $run failed (rc $rc); cleaned up"; fi
  cat "$STATE_DIR/$run.env"
}

cmd_destroy() { # RUN
  local run=$1 ns pids link round
  check_run "$run"
  local namespaces links
  namespaces=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-$run-" || true)
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for ns in $namespaces; do pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
    [ -n "${pids// /}" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  # Host ends of the veths, then the bridges (the kernel tears namespaces down asynchronously, so
  # nothing is left to it), then the namespaces.
  links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$PREFIX$run-" || true)
  for link in $links; do [ "$link" = "$PREFIX$run-d" ] || [ "$link" = "$PREFIX$run-c" ] || ip link del "$link" 2>/dev/null || true; done
  for link in "$PREFIX$run-d" "$PREFIX$run-c"; do ip link del "$link" 2>/dev/null || true; done
  for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; done
  local dir="${TMPDIR:-/tmp}/hkv-netns-$run"
  if [ -f "$STATE_DIR/$run.env" ]; then dir=$(sed -nE 's/^DIR=(.*)$/\1/p' "$STATE_DIR/$run.env"); fi
  case "$dir" in */hkv-netns-"$run") rm -rf "$dir" ;; esac
  rm -f "$STATE_DIR/$run.env"
  # Verify.
  local left
  left=$( { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-$run-"; ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E "^$PREFIX$run-"; } || true)
  [ -z "$left" ] || die "destroy $run left: $(echo $left)"
}

cmd_sweep() {
  local all=${1:-} run owner
  for run in $(run_ids_present); do
    owner=""
    [ -f "$STATE_DIR/$run.env" ] && owner=$(sed -nE 's/^OWNER=([0-9]+)$/\1/p' "$STATE_DIR/$run.env")
    if [ "$all" != --all ] && [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then continue; fi
    say "sweeping leftover run $run (owner ${owner:-unknown}, gone)"
    cmd_destroy "$run" || true
  done
}

cmd_list() {
  local run
  for run in $(run_ids_present); do
    if [ -f "$STATE_DIR/$run.env" ]; then echo "$run $(tr '\n' ' ' <"$STATE_DIR/$run.env")"; else echo "$run (no env file: a leftover)"; fi
  done
}

cmd_link() { # RUN HOST data|ctl up|down
  local run=$1 host=$2 net=$3 state=$4
  load_env "$run"; check_host "$host"
  [[ $net =~ ^(data|ctl)$ ]] && [[ $state =~ ^(up|down)$ ]] || die "usage: link RUN HOST data|ctl up|down"
  [ "$host" != etcd ] || [ "$net" = ctl ] || die "etcd has only a ctl link"
  ip link set "$(veth_of "$run" "$host" "$net")" "$state"
}

cmd_drop() { # RUN FROM TO...
  local run=$1 from=$2; shift 2
  load_env "$run"; check_host "$from"
  [ $# -gt 0 ] || die "usage: drop RUN FROM TO..."
  local set to
  set=$(addrs_of "$from" | paste -sd, -)
  for to in "$@"; do
    check_host "$to"
    [ "$to" != "$from" ] || die "drop: $from to itself"
    ip netns exec "$(ns_of "$run" "$to")" nft add rule inet hkv input ip saddr "{ $set }" drop
  done
}

cmd_cut() { # RUN A B...
  local run=$1 a=$2; shift 2
  cmd_drop "$run" "$a" "$@"
  local b; for b in "$@"; do cmd_drop "$run" "$b" "$a"; done
}

cmd_heal() { # RUN
  local run=$1 host
  load_env "$run"
  for host in $(hosts_of); do
    ip netns exec "$(ns_of "$run" "$host")" nft flush chain inet hkv input
    [ "$host" = etcd ] || ip link set "$(veth_of "$run" "$host" data)" up
    ip link set "$(veth_of "$run" "$host" ctl)" up
  done
}

cmd_restart() { # RUN nI: SIGKILL the node's process(es), start the same command again (runs started by `up`)
  local run=$1 host=$2 ns pids round
  load_env "$run"; check_host "$host"
  [ "$host" != etcd ] || die "restart: nodes only"
  [ -f "$DIR/$host.cmd" ] || die "restart: no $DIR/$host.cmd (only runs started by 'up' can be restarted here)"
  ns=$(ns_of "$run" "$host")
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$ns" | tr '\n' ' ')
    [ -n "${pids// /}" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  # Its etcd lease must run out first, or the new process finds its id still registered and exits.
  local lease
  lease=$(sed -nE 's/.*--lease-ms ([0-9]+).*/\1/p' "$DIR/$host.cmd")
  say "$host killed; waiting $((${lease:-2000} / 1000 + 1)) s for its lease to expire in etcd"
  sleep $((${lease:-2000} / 1000 + 1))
  echo "--- restarted $(date +%T)" >>"$DIR/$host.log"
  eval "$(cat "$DIR/$host.cmd")" >>"$DIR/$host.log" 2>&1 &
  disown
  say "$host restarted: pid $!"
}

cmd_exec() { # RUN HOST CMD...
  local run=$1 host=$2; shift 2
  load_env "$run"; check_host "$host"
  exec ip netns exec "$(ns_of "$run" "$host")" "$@"
}

# An HTTP GET from inside a namespace with bash's /dev/tcp (no curl needed); true if the body matches.
probe_http() { # NS ADDR PORT PATH PATTERN
  ip netns exec "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3 && grep -qE "$3" <&3' "$2" "$3" "$4" "$5" 2>/dev/null
}

cmd_up() {
  local nodes=3 lease=1000 bin=dist/hermes-kv hold=""
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --lease-ms) lease=$2; shift 2 ;;
      --bin) bin=$2; shift 2 ;;
      --hold) hold=$2; shift 2 ;;
      *) die "up: unknown option $1" ;;
    esac
  done
  local why
  why=$(cmd_check) || die "network namespaces are not usable here: $why"
  [ -x "$bin" ] || die "$bin not found: run 'npm run build' (or pass --bin)"
  command -v etcd >/dev/null || die "etcd not installed (scripts/install-deps.sh)"
  cmd_sweep
  local run
  run=$(head -c 64 /dev/urandom | tr -dc 'a-z0-9' | head -c 5)
  [ ${#run} = 5 ] || die "could not make a run id"
  # Whatever happens from here on, the run is torn down (globals: the trap runs after this returns).
  UP_RUN=$run UP_WAITER=""
  trap 'trap - EXIT; if [ -n "$UP_WAITER" ]; then kill "$UP_WAITER" 2>/dev/null || true; fi; say "tearing down run $UP_RUN"; cmd_destroy "$UP_RUN" && say "run $UP_RUN removed"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_create "$run" "$nodes" "$$" >/dev/null
  load_env "$run"
  local etcd_addr etcd_url i addr
  etcd_addr=$(addr_of etcd ctl); etcd_url="http://$etcd_addr:$ETCD_PORT"
  cp "$bin" "$DIR/hermes-kv"
  ip netns exec "$(ns_of "$run" etcd)" etcd --name hkv --data-dir "$DIR/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster hkv=http://127.0.0.1:2380 --initial-cluster-state new \
    --heartbeat-interval 50 --election-timeout 500 >"$DIR/etcd.log" 2>&1 &
  disown
  say "etcd pid $! in $(ns_of "$run" etcd) at $etcd_url"
  for ((i = 0; i < 150; i++)); do probe_http "$(ns_of "$run" etcd)" "$etcd_addr" $ETCD_PORT /health '"health":"true"' && break; sleep 0.1; done
  [ $i -lt 150 ] || { tail -20 "$DIR/etcd.log" >&2; die "etcd not healthy"; }
  for ((i = 0; i < nodes; i++)); do
    addr=$(addr_of "n$i" data)
    # Kept for `restart`.
    printf '%q ' ip netns exec "$(ns_of "$run" "n$i")" "$DIR/hermes-kv" node --id "$i" --http "$addr:$HTTP_PORT" --listen "$addr:$LISTEN_PORT" \
      --etcd "$etcd_url" --cluster "netns-$run" --lease-ms "$lease" --transport tcp --test-hooks --insecure >"$DIR/n$i.cmd"
    ip netns exec "$(ns_of "$run" "n$i")" "$DIR/hermes-kv" node --id "$i" --http "$addr:$HTTP_PORT" --listen "$addr:$LISTEN_PORT" \
      --etcd "$etcd_url" --cluster "netns-$run" --lease-ms "$lease" --transport tcp --test-hooks --insecure >"$DIR/n$i.log" 2>&1 &
    disown
    say "node $i pid $! in $(ns_of "$run" "n$i"): http://$addr:$HTTP_PORT (log $DIR/n$i.log)"
  done
  for ((i = 0; i < nodes; i++)); do
    addr=$(addr_of "n$i" data)
    local t
    for ((t = 0; t < 300; t++)); do probe_http "$(ns_of "$run" "n$i")" "$addr" $HTTP_PORT /health '^HTTP/1\.[01] 200' && break; sleep 0.1; done
    [ $t -lt 300 ] || { tail -20 "$DIR/n$i.log" >&2; die "node $i not healthy after 30 s"; }
  done
  say "run $run up: $nodes nodes; try: curl -X PUT --data v http://$(addr_of n0 data):$HTTP_PORT/v1/kv/k"
  say "faults: $0 cut $run n$((nodes - 1)) etcd | link $run etcd ctl down | drop $run n0 n1 | heal $run"
  echo "RUN=$run"
  [ -n "$hold" ] || say "Ctrl-C to tear down"
  sleep "${hold:-infinity}" &
  UP_WAITER=$!
  wait "$UP_WAITER" || true
}

main() {
  local cmd=${1:-}
  [ -n "$cmd" ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
  shift
  case $cmd in
    check) cmd_check ;;
    create) [ $# -ge 2 ] || die "usage: create RUN N [OWNER]"; cmd_create "$@" ;;
    env) [ $# = 1 ] || die "usage: env RUN"; check_run "$1"; cat "$STATE_DIR/$1.env" ;;
    destroy) [ $# = 1 ] || die "usage: destroy RUN"; cmd_destroy "$1" ;;
    sweep) cmd_sweep "$@" ;;
    list) cmd_list ;;
    link) [ $# = 4 ] || die "usage: link RUN HOST data|ctl up|down"; cmd_link "$@" ;;
    drop) [ $# -ge 3 ] || die "usage: drop RUN FROM TO..."; cmd_drop "$@" ;;
    cut) [ $# -ge 3 ] || die "usage: cut RUN A B..."; cmd_cut "$@" ;;
    heal) [ $# = 1 ] || die "usage: heal RUN"; cmd_heal "$1" ;;
    exec) [ $# -ge 3 ] || die "usage: exec RUN HOST CMD..."; cmd_exec "$@" ;;
    restart) [ $# = 2 ] || die "usage: restart RUN nI"; cmd_restart "$@" ;;
    up) cmd_up "$@" ;;
    *) die "unknown command '$cmd' (run without arguments for help)" ;;
  esac
}

main "$@"
