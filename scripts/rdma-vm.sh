#!/usr/bin/env bash
# Runs the RDMA tests on a real verbs device: Soft-RoCE (rdma_rxe) inside a qemu guest.
#
# The host has no RDMA device and cannot load kernel modules, so this script builds a small guest:
# Debian's kernel and rdma userspace (apt-get download; the host's boot is untouched), static
# busybox, the host's glibc, Bun from node_modules, and the project's sources. It boots the guest
# under qemu TCG (the host's KVM cannot run a stock kernel: /work/shared/notes/soft-roce-vm.md),
# creates rxe0 over the guest's loopback, and runs inside it:
#   1. bun test test/ffi      the verbs and numa wrappers against rxe0
#   2. bun test test/rdma     the shared transport suite over the RDMA transport
#   3. test/rdma/guest-cluster.sh (run if present): `hermes-kv local --replicas 3 --transport rdma`
#      driven by HTTP clients whose history must be linearizable (test/rdma/cluster.check.ts);
#      the hook's interface is in the header of scripts/rdma-vm/guest-test.sh
# The guest prints a marker with its exit code on the serial console; this script exits with it.
# Its last line contains "ok" only when everything passed.
#
# Usage: scripts/rdma-vm.sh            Env: RDMA_VM_DIR (cache/work dir, default .work/rdma-vm)
#        RDMA_VM_SUITES=ffi,rdma,cluster (steps to run; add bench for bench/ffi.bench.ts)   RDMA_VM_TIMEOUT_S (qemu limit, 420)
#        RDMA_VM_SMP (2)   RDMA_VM_MEM_MB (3072)
# Idempotent: downloads, extraction and the base image are cached under RDMA_VM_DIR and rebuilt
# only when their inputs change; the project's files are re-packed on every run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${RDMA_VM_DIR:-$ROOT/.work/rdma-vm}
SUITES=${RDMA_VM_SUITES:-ffi,rdma,cluster}
TIMEOUT_S=${RDMA_VM_TIMEOUT_S:-420}
SMP=${RDMA_VM_SMP:-2}
MEM_MB=${RDMA_VM_MEM_MB:-3072}
GUEST_DIR=$ROOT/scripts/rdma-vm
T_START=$(date +%s.%N)

say() { echo "rdma-vm: $*"; }
# The final line of a failed run: never contains the success word.
die() { echo "rdma-vm: FAILED: $*"; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- host tools ---------------------------------------------------------------------------------
missing=()
for t in qemu-system-x86_64 cpio flock apt-get apt-cache dpkg-deb depmod modprobe ldd sha256sum; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ -x /bin/busybox ] || missing+=(busybox-static)
IP_BIN=$(command -v ip || true); RDMA_BIN=$(command -v rdma || true)
[ -n "$IP_BIN" ] || missing+=(iproute2:ip)
[ -n "$RDMA_BIN" ] || missing+=(iproute2:rdma)
[ ${#missing[@]} -eq 0 ] || die "missing host tools: ${missing[*]} (run scripts/install-deps.sh)"
BUN=$(readlink -f "$ROOT/node_modules/.bin/bun" 2>/dev/null || true)
[ -n "$BUN" ] && head -c 4 "$BUN" | grep -q ELF || die "no Bun binary in node_modules (run scripts/install-deps.sh)"

mkdir -p "$W/debs" "$W/x"
# One run at a time per work directory (the images and the log are shared).
exec 9>"$W/.lock"
if ! flock -n 9; then
  say "another run holds $W/.lock; waiting for it (up to 600 s)"
  flock -w 600 9 || die "timed out waiting for $W/.lock"
fi

# ---- 1. download (cached by package file name) --------------------------------------------------
t=$(date +%s.%N)
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
if [ -z "$KPKG" ]; then
  # No apt lists: fall back to a kernel downloaded earlier.
  KPKG=$(cd "$W/debs" && ls linux-image-[0-9]*.deb 2>/dev/null | sed 's/_.*//' | sort -V | tail -1)
  [ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 (run apt-get update) and no kernel is cached in $W/debs"
fi
PKGS=("$KPKG" libibverbs1 ibverbs-providers libnl-3-200 libnl-route-3-200 ibverbs-utils libnuma1)
need=()
for p in "${PKGS[@]}"; do compgen -G "$W/debs/${p}_*.deb" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  say "downloading ${need[*]}"
  # apt warns that it downloads unsandboxed as root into a directory _apt cannot write: harmless.
  (cd "$W/debs" && apt-get download -q "${need[@]}" 2>&1 | grep -vE 'unsandboxed|^Get:|^Fetched' || true)
  for p in "${need[@]}"; do compgen -G "$W/debs/${p}_*.deb" >/dev/null || die "apt-get download $p did not produce a .deb"; done
fi
say "packages ready ($(elapsed "$t") s)"

# ---- 2. extract (cached per .deb by a stamp file) ----------------------------------------------
t=$(date +%s.%N)
for p in "${PKGS[@]}"; do
  deb=$(ls "$W/debs/${p}"_*.deb | sort -V | tail -1)
  stamp="$W/x/.$(basename "$deb").extracted"
  if [ ! -f "$stamp" ]; then
    dpkg-deb -x "$deb" "$W/x"
    touch "$stamp"
  fi
done
KVER=${KPKG#linux-image-}
[ -f "$W/x/boot/vmlinuz-$KVER" ] || die "kernel image vmlinuz-$KVER missing after extraction"
if [ ! -f "$W/x/lib/modules/$KVER/modules.dep" ] || [ "$W/x/lib/modules/$KVER/modules.dep" -ot "$W/x/boot/vmlinuz-$KVER" ]; then
  depmod -b "$W/x" "$KVER"
fi
say "kernel $KVER and rdma userspace extracted ($(elapsed "$t") s)"

# ---- 3. base image: busybox, glibc, bun, rdma libraries, modules (cached by its inputs) ---------
t=$(date +%s.%N)
BASE=$W/base.cpio
base_key=$( {
  echo "$KVER"; stat -c '%n %s %Y' "$BUN" /bin/busybox "$IP_BIN" "$RDMA_BIN"; ls "$W/debs"
  sha256sum "$0" "$GUEST_DIR/init.sh"
} | sha256sum | cut -d' ' -f1)
if [ ! -f "$BASE" ] || [ "$(cat "$W/base.key" 2>/dev/null)" != "$base_key" ]; then
  R=$W/base-root
  rm -rf "$R"
  mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,usr/bin,usr/sbin,usr/local/bin,lib64,lib/x86_64-linux-gnu} \
    "$R/usr/lib/x86_64-linux-gnu/libibverbs" "$R/etc/libibverbs.d" "$R/lib/modules/$KVER"
  cp /bin/busybox "$R/bin/busybox"
  X=$W/x
  export LD_LIBRARY_PATH=$X/usr/lib/x86_64-linux-gnu:$X/lib/x86_64-linux-gnu
  copy_libs() { # the shared libraries (and the loader) a binary or library needs
    ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } $1 ~ /^\/lib64\// { print $1 }' | while read -r l; do
      case "$l" in
        /lib64/*) cp -L "$l" "$R/lib64/" ;;
        *) cp -L "$l" "$R/lib/x86_64-linux-gnu/" ;;
      esac
    done
  }
  add_bin() { cp -L "$1" "$R$2"; chmod +x "$R$2"; copy_libs "$1"; }
  add_bin "$BUN" /usr/local/bin/bun
  add_bin "$IP_BIN" /usr/local/bin/ip         # busybox's ip cannot do everything iproute2 does
  add_bin "$RDMA_BIN" /usr/local/bin/rdma
  add_bin "$X/usr/bin/ibv_devinfo" /usr/local/bin/ibv_devinfo
  # Loaded by bun:ffi with dlopen, so ldd of bun does not list them.
  for l in libibverbs.so.1 libnuma.so.1; do
    cp -L "$X/usr/lib/x86_64-linux-gnu/$l" "$R/lib/x86_64-linux-gnu/"; copy_libs "$X/usr/lib/x86_64-linux-gnu/$l"
  done
  # The rxe provider, which libibverbs finds through rxe.driver.
  cp -L "$X/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so" "$R/usr/lib/x86_64-linux-gnu/libibverbs/"
  copy_libs "$X/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so"
  cp "$X/etc/libibverbs.d/rxe.driver" "$R/etc/libibverbs.d/"
  # glibc dlopens libgcc_s for thread cancellation and unwinding.
  cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/"
  printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
  printf 'root:x:0:\n' >"$R/etc/group"
  # rdma_rxe and its dependencies, in load order. crc32_generic: rxe asks for the crc32 shash
  # through request_module, which fails without a modprobe in the guest.
  : >"$R/etc/modules.order"
  for m in crc32_generic rdma_rxe; do
    modprobe -d "$X" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' | while read -r ko; do
      rel=${ko#"$X/lib/modules/$KVER/"}
      if ! grep -qx "$rel" "$R/etc/modules.order"; then
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
        cp "$ko" "$R/lib/modules/$KVER/$rel"
        echo "$rel" >>"$R/etc/modules.order"
      fi
    done
  done
  grep -q rdma_rxe "$R/etc/modules.order" || die "rdma_rxe.ko not found in kernel $KVER"
  install -m 755 "$GUEST_DIR/init.sh" "$R/init"
  # Uncompressed: the kernel unpacks it faster under TCG than a gzip of Bun's 100 MB.
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet >"$BASE.tmp")
  mv "$BASE.tmp" "$BASE"
  echo "$base_key" >"$W/base.key"
  rm -rf "$R"
  say "base image built: $(du -h "$BASE" | cut -f1) ($(elapsed "$t") s)"
else
  say "base image cached ($(elapsed "$t") s)"
fi

# ---- 4. project image (every run): the sources the guest runs, appended to the base ------------
t=$(date +%s.%N)
P=$W/project-root
rm -rf "$P"
mkdir -p "$P/opt/hermes/node_modules"
(
  cd "$ROOT"
  for f in package.json tsconfig.json bunfig.toml src ffi test scripts bench; do
    [ -e "$f" ] && cp -a "$f" "$P/opt/hermes/"
  done
  # Runtime dependencies, and mitata for the optional bench step (Bun itself is in the base image).
  for d in hono valibot mitata; do [ -d "node_modules/$d" ] && cp -a "node_modules/$d" "$P/opt/hermes/node_modules/"; done
)
install -m 755 "$GUEST_DIR/guest-test.sh" "$P/guest-test.sh"
PROJ=$W/project.cpio
(cd "$P" && find . | LC_ALL=C sort | cpio -o -H newc --quiet >"$PROJ")
rm -rf "$P"
# The kernel unpacks concatenated cpio archives in order: the project lands on top of the base.
INITRD=$W/initrd.cpio
cat "$BASE" "$PROJ" >"$INITRD"
say "project image packed ($(du -h "$PROJ" | cut -f1), $(elapsed "$t") s)"

# ---- 5. boot ------------------------------------------------------------------------------------
LOG=$W/guest.log
: >"$LOG"
QPID=""
cleanup() {
  # Never leave qemu running: the run may be interrupted or time out.
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null || true; sleep 1; kill -9 "$QPID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'cleanup; echo "rdma-vm: FAILED: interrupted"; exit 130' INT TERM
say "booting the guest (qemu TCG, -smp $SMP, ${MEM_MB} MiB, limit ${TIMEOUT_S} s, suites $SUITES); console log: $LOG"
t=$(date +%s.%N)
timeout --kill-after=10 "$TIMEOUT_S" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM_MB" \
  -nographic -no-reboot -serial mon:stdio -display none -nic none \
  -kernel "$W/x/boot/vmlinuz-$KVER" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 hermes.suites=$SUITES" \
  </dev/null >"$LOG" 2>&1 &
QPID=$!
# Show the console as it arrives; tail exits when qemu does.
tail -n +1 --pid="$QPID" -f "$LOG" | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g'
qrc=0
wait "$QPID" || qrc=$?
QPID=""
guest_s=$(elapsed "$t")
rc=$(tr -d '\r' <"$LOG" | sed -n 's/^HERMES-RDMA-VM-EXIT=\([0-9]*\).*/\1/p' | tail -1)
total_s=$(elapsed "$T_START")
echo
tr -d '\r' <"$LOG" | grep -E '^\[step ' || true
if [ -z "$rc" ]; then
  if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then die "the guest did not finish within ${TIMEOUT_S} s (qemu killed); see $LOG"; fi
  die "the guest stopped without reporting a result (qemu exit $qrc: panic or crash?); see $LOG"
fi
if [ "$rc" -ne 0 ]; then
  die "guest tests failed (guest exit $rc, guest ${guest_s} s, total ${total_s} s); see $LOG"
fi
say "all guest suites passed ($SUITES): guest ${guest_s} s, total ${total_s} s: ok"
