#!/usr/bin/env bash
# Installs everything hermes-kv needs on a fresh Debian machine with Node and npm: the npm packages
# (Bun itself is one of them, pinned in package.json) and the Debian packages used by the tests,
# benchmarks and the RDMA guest. Idempotent and quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, one reason each.
apt_packages=(
  etcd-server          # the real membership service for multi-node tests (issue 4)
  wrk                  # HTTP load tool for the benchmarks
  gcc libc6-dev        # generating struct layouts from C headers
  libibverbs-dev libibverbs1 ibverbs-providers rdma-core   # verbs headers + runtime (ffi/ibverbs)
  libnuma-dev libnuma1 # ffi/numa
  qemu-system-x86 busybox-static cpio kmod zstd xz-utils iproute2   # the Soft-RoCE guest
  openssl curl         # the TLS tests make their certificates with openssl and check HTTPS with curl (issue 9)
  chromium             # the web console's browser test (test/browser): headless, driven over the DevTools protocol
  nftables iproute2    # the netns test tier (test/netns, scripts/netns-cluster.sh): namespaces, veths, bridges, nft drop rules
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/bun ] || ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm may skip Bun's postinstall (allowScripts); then the .bin entry is a placeholder. Run it.
if ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  (cd node_modules/bun && node install.js)
fi
