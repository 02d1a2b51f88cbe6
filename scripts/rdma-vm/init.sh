#!/bin/busybox sh
# PID 1 of the RDMA test guest (scripts/rdma-vm.sh): mounts the basics, loads rdma_rxe and its
# dependencies, runs /guest-test.sh, prints the result marker the host parses, and powers off.
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
KVER=$(uname -r)
echo "[init] kernel $KVER up at $(cut -d' ' -f1 /proc/uptime) s; loading modules"
while read -r rel; do
  insmod "/lib/modules/$KVER/$rel" 2>&1 | grep -v 'File exists'
done </etc/modules.order
/usr/local/bin/ip link set lo up
rc=1
if [ -x /guest-test.sh ]; then
  /guest-test.sh
  rc=$?
else
  echo "[init] /guest-test.sh is missing"
fi
echo "HERMES-RDMA-VM-EXIT=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
