#!/bin/sh
# shellcheck disable=SC3040,SC2013  # busybox ash: pipefail exists; word lists are intended
# SPDX-License-Identifier: Apache-2.0
#
# guest_init.sh: /init of the VM that tests/vm/kernel_nbd.sh boots (busybox
# sh, PID 1). Not meant to be run on a host.
#
#   /init                       boot: mounts, modules, a local flurry cluster,
#                               then every case in /cases, then power off
#   /init case NAME MODE KILL   one case (run by the boot part, in its own
#                               process so that `set -e` holds inside it)
#
# A case, on a volume of its own (R=2, 1 MiB tracts, write mode MODE):
#   flurry attach V /mnt/V --via nbd --mkfs ext4   (flurry-disk + nbd-client
#     on /dev/nbdN + mkfs.ext4 + mount: the product path, unchanged)
#   copy a file tree with known sha256 sums onto it, sync
#     (KILL=1: file by file, each followed by sync, in the background; after
#     two files a live tract server (ts1 first) is killed with SIGKILL, found
#     by its pid file in D/pids/; the writer must still
#     be running then, and must finish without error)
#   flurry detach V; drop the page cache
#   flurry attach V /mnt/V --via nbd   (no --mkfs: must find the filesystem)
#   sha256sum -c on the mounted tree
#   umount /mnt/V (nbd stays connected), fsck.ext4 -fn /dev/nbdN: clean
#   flurry detach V (finds the filesystem unmounted, releases nbd, stops flurry-disk)
# Markers on the console: "FLURRY-VM: BOOT ...", "CLUSTER ...",
# "PASS case=NAME ..." or "FAIL case=NAME reason", "DONE pass=N fail=M".
set -eu
set -o pipefail  # busybox ash has it
export PATH=/usr/local/bin:/sbin:/usr/sbin:/bin:/usr/bin
D=/data/cluster        # the cluster directory (ext4 on a RAM disk: O_DIRECT)
SRC=/tmp/src           # the file tree, on the initramfs (RAM), and its sums
CMD_TIMEOUT=240        # seconds any single flurry command may take

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "FLURRY-VM: $*"; }

# ---------------------------------------------------------------- one case
run_case() {
  name=$1 mode=$2 kill=$3
  vol=v$(echo "$name" | tr -cd 'a-z0-9')
  mnt=/mnt/$vol
  bad() { echo "case $name: $*" >&2; exit 1; }
  t_case=$(now)
  echo "--- case $name: volume $vol, mode $mode, kill a tract server: $kill"
  flurry volume create "$vol" --size 256M --replicas 2 --mode "$mode" --tract-size 1M --segment 16 \
    --block 64K --dir "$D"
  mkdir -p "$mnt"

  # 1. attach with mkfs: the real product path.
  rm -f /tmp/mkfs.time
  t=$(now)
  timeout "$CMD_TIMEOUT" flurry attach "$vol" "$mnt" --via nbd --mkfs ext4 --dir "$D" >/tmp/attach.out 2>&1 \
    || { cat /tmp/attach.out; bad "flurry attach --via nbd --mkfs ext4 failed"; }
  attach_s=$(since "$t")
  cat /tmp/attach.out
  tail -n 4 "$D/logs/attach-$vol.log" || true  # flurry-disk's start-up lines
  grep -q 'kernel NBD client' /tmp/attach.out || bad "flurry attach did not use the kernel NBD client"
  [ -f /tmp/mkfs.time ] || bad "flurry attach --mkfs ext4 did not run mkfs.ext4"
  mkfs_s=$(awk '{ printf "%.1f", $2 - $1 }' /tmp/mkfs.time)
  dev=$(awk -v m="$mnt" '$2 == m { print $1 }' /proc/mounts)
  case "$dev" in
    /dev/nbd[0-9]*) ;;
    *) bad "$mnt is not mounted from an NBD device (got '$dev')" ;;
  esac
  [ -f "/sys/block/${dev#/dev/}/pid" ] || bad "$dev has no NBD client connected"
  fstype=$(awk -v m="$mnt" '$2 == m { print $3 }' /proc/mounts)
  [ "$fstype" = ext4 ] || bad "$mnt is $fstype, not ext4"

  # 2. the file tree.
  mkdir "$mnt/tree"
  t=$(now)
  if [ "$kill" = 1 ]; then
    : >/tmp/progress
    (
      set -e
      for f in $(cat "$SRC/files"); do
        mkdir -p "$mnt/tree/$(dirname "$f")"
        cp "$SRC/tree/$f" "$mnt/tree/$f"
        sync
        echo "$f" >>/tmp/progress
      done
    ) &
    writer=$!
    n=0
    while [ "$(wc -l </tmp/progress)" -lt 2 ]; do
      kill -0 "$writer" 2>/dev/null || break
      n=$((n + 1))
      [ $n -lt 1200 ] || bad "the writer made no progress in 120 s"
      sleep 0.1
    done
    kill -0 "$writer" 2>/dev/null || bad "the writer finished before the kill; the case would prove nothing"
    done_at_kill=$(wc -l </tmp/progress)
    ts='' ts_pid=''
    for i in 1 2 3 0; do  # the first tract server still alive (a kill case may come twice)
      p=$(cat "$D/pids/ts$i.pid" 2>/dev/null || true)
      if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then ts=ts$i ts_pid=$p; break; fi
    done
    [ -n "$ts_pid" ] || bad "no live tract server to kill"
    kill -9 "$ts_pid"
    echo "killed tract server $ts (pid $ts_pid) after $done_at_kill of $(wc -l <"$SRC/files") files"
    wait "$writer" || bad "the writes failed after a tract server was killed"
    [ "$(wc -l </tmp/progress)" -eq "$(wc -l <"$SRC/files")" ] || bad "the writer did not write every file"
    sync
    n=0  # meta must have noticed (heartbeat timeout 5 s): the writes rode through a real failure
    until flurry cluster status --dir "$D" | grep -E "^ .* down .* $ts \(exited\)" >/dev/null; do
      n=$((n + 1))
      [ $n -lt 30 ] || { flurry cluster status --dir "$D" || true; bad "meta does not list $ts as down"; }
      sleep 1
    done
    flurry cluster status --dir "$D" | grep "^servers"
  else
    cp -a "$SRC/tree/." "$mnt/tree/"
    sync
  fi
  write_s=$(since "$t")

  # 3. detach, forget every cached block, attach again without mkfs.
  t=$(now)
  timeout "$CMD_TIMEOUT" flurry detach "$vol" --dir "$D" || bad "flurry detach failed"
  detach_s=$(since "$t")
  if grep -q " $mnt " /proc/mounts; then bad "$mnt is still mounted after detach"; fi
  [ ! -f "/sys/block/${dev#/dev/}/pid" ] || bad "$dev is still connected after detach"
  sync
  echo 3 >/proc/sys/vm/drop_caches
  t=$(now)
  timeout "$CMD_TIMEOUT" flurry attach "$vol" "$mnt" --via nbd --dir "$D" >/tmp/attach.out 2>&1 \
    || { cat /tmp/attach.out; bad "re-attach (no --mkfs) failed"; }
  reattach_s=$(since "$t")
  cat /tmp/attach.out
  if grep -q formatting /tmp/attach.out; then bad "re-attach formatted the volume"; fi
  dev=$(awk -v m="$mnt" '$2 == m { print $1 }' /proc/mounts)
  case "$dev" in /dev/nbd[0-9]*) ;; *) bad "re-attach: $mnt is not mounted from an NBD device" ;; esac

  # 4. checksums, read through the kernel NBD client from the tract servers.
  t=$(now)
  (cd "$mnt/tree" && sha256sum -c "$SRC/sums" >/tmp/verify.out 2>&1) \
    || { grep -v ': OK$' /tmp/verify.out | head -n 20; bad "checksums differ after re-attach"; }
  [ "$(grep -c ': OK$' /tmp/verify.out)" -eq "$(wc -l <"$SRC/sums")" ] || bad "not every file was verified"
  verify_s=$(since "$t")

  # 5. fsck on the device, unmounted but still attached through NBD.
  umount "$mnt" || bad "umount $mnt failed"
  t=$(now)
  fsck.ext4 -fn "$dev" >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; bad "fsck.ext4 -fn $dev is not clean"; }
  fsck_s=$(since "$t")
  tail -n 1 /tmp/fsck.out
  timeout "$CMD_TIMEOUT" flurry detach "$vol" --dir "$D" || bad "flurry detach (after fsck) failed"
  [ ! -f "/sys/block/${dev#/dev/}/pid" ] || bad "$dev is still connected after the last detach"
  [ ! -e "$D/attach/$vol" ] || bad "the attach record of $vol is left behind"

  say "PASS case=$name mode=$mode kill=$kill attach_mkfs_s=$attach_s mkfs_s=$mkfs_s write_s=$write_s" \
    "detach_s=$detach_s reattach_s=$reattach_s verify_s=$verify_s fsck_s=$fsck_s total_s=$(since "$t_case")"
}

if [ "${1:-}" = case ]; then
  run_case "$2" "$3" "$4"
  exit 0
fi

# ---------------------------------------------------------------- boot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /dev/shm
boot_s=$(now)

finish() {
  sync
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger  # if poweroff did not work; else PID 1 exits: panic=-1 and -no-reboot end qemu
}
trap 'say "FAIL case=boot the guest init script stopped at an error"; finish' EXIT

for m in crc16 mbcache jbd2 crc32c_generic ext4 nbd brd; do
  case $m in
    brd) insmod /lib/modules/brd.ko rd_nr=1 rd_size=1048576 max_part=1 ;;
    *) insmod "/lib/modules/$m.ko" ;;
  esac
done
ip link set lo up
ip addr add 127.0.0.1/8 dev lo 2>/dev/null || true
[ -b /dev/nbd0 ] || { say "FAIL case=boot no /dev/nbd0 after insmod nbd"; exit 1; }
# The cluster's data: the tract servers open their files with O_DIRECT,
# which the initramfs (ramfs) refuses; ext4 on a RAM disk takes it.
mkfs.ext4 -q -F /dev/ram0
mkdir -p /data
mount -t ext4 /dev/ram0 /data
rm -f /tmp/mkfs.time
say "BOOT uptime_s=$boot_s kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem_kb=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"

# The file tree (about 16 MiB: 4 x 2 MiB, 8 x 512 KiB, 40 small files in
# nested directories, one empty file), from /dev/urandom, and its sums.
mkdir -p "$SRC/tree"
i=0
for size in 2048 2048 2048 2048 512 512 512 512 512 512 512 512; do
  i=$((i + 1))
  d="$SRC/tree/big/d$((i % 3))"
  mkdir -p "$d"
  head -c "$((size * 1024))" /dev/urandom >"$d/f$i.bin"
done
for i in $(seq 1 40); do
  d="$SRC/tree/small/a$((i % 4))/b$((i % 5))"
  mkdir -p "$d"
  head -c "$((i * 1531))" /dev/urandom >"$d/s$i.dat"
done
: >"$SRC/tree/empty"
(cd "$SRC/tree" && find . -type f | sort >"$SRC/files" && xargs sha256sum <"$SRC/files" >"$SRC/sums")

t=$(now)
if ! timeout "$CMD_TIMEOUT" flurry cluster start --dir "$D" --servers 4; then
  tail -n 20 "$D"/logs/*.log || true
  say "FAIL case=cluster flurry cluster start failed"
  exit 1
fi
say "CLUSTER start_s=$(since "$t") servers=4"

pass=0 failed=0
for c in $(cat /cases); do
  case "$c" in
    kill:*) mode=${c#kill:} kill=1 ;;
    *) mode=$c kill=0 ;;
  esac
  rc=0
  sh /init case "$c" "$mode" "$kill" || rc=$?
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1))
  else
    failed=$((failed + 1))
    say "FAIL case=$c mode=$mode kill=$kill (exit $rc; see the lines above)"
    for l in "$D"/logs/*.log; do echo "--- tail of $l"; tail -n 15 "$l"; done
    vol=v$(echo "$c" | tr -cd 'a-z0-9')
    flurry detach "$vol" --force --dir "$D" || true
  fi
done
flurry cluster status --dir "$D" || true
say "DONE pass=$pass fail=$failed uptime_s=$(now)"
trap - EXIT
finish
