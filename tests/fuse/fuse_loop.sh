#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# fuse_loop.sh FUSE_MEMSERVER [SERVER_OPTIONS...]
#
# End to end: a RAM BlockDevice exported as a FUSE file (FuseExport), used
# directly (dd, fallocate) and as a loop device carrying ext4: a file tree
# is copied in, the loop device is detached and re-attached, fsck must be
# clean and every checksum must match. Skips (77) without root, /dev/fuse or
# the tools. Logs are kept in the work directory on failure.
set -euo pipefail

SERVER=${1:?usage: fuse_loop.sh FUSE_MEMSERVER [SERVER_OPTIONS...]}
shift
SERVER_OPTS=("$@")
SRC_PARENT=/usr/include
SRC_NAME=linux

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/fuse ] || skip "no /dev/fuse"
for tool in losetup mkfs.ext4 fsck.ext4 mount umount fallocate sha256sum cmp; do
  command -v "$tool" >/dev/null || skip "no $tool"
done
[ -d "$SRC_PARENT/$SRC_NAME" ] || skip "no $SRC_PARENT/$SRC_NAME to copy"
losetup -f >/dev/null 2>&1 || skip "no free loop device"

WORK=$(mktemp -d /tmp/flurry-fuse-loop.XXXXXX)
FUSE=$WORK/fuse
MNT=$WORK/mnt
LOG=$WORK/server.log
mkdir -p "$FUSE" "$MNT"
LOOPDEV=
SERVER_PID=
OK=0

cleanup() {
  set +e
  mountpoint -q "$MNT" && umount "$MNT"
  [ -n "$LOOPDEV" ] && losetup -d "$LOOPDEV"
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  mountpoint -q "$FUSE" && umount -l "$FUSE"
  if [ "$OK" = 1 ]; then
    rm -rf "$WORK"
  else
    echo "FAILED; logs kept in $WORK"
    echo "--- server log (tail)"; tail -n 30 "$LOG" 2>/dev/null
  fi
}
trap cleanup EXIT

step() { echo "== $*"; }

step "start server"
"$SERVER" "$FUSE" 256M "${SERVER_OPTS[@]}" >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  grep -q '^ready' "$LOG" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died"; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$LOG" || { echo "server not ready"; exit 1; }
DISK=$FUSE/disk
[ "$(stat -c %s "$DISK")" = $((256 << 20)) ] || { echo "wrong size"; exit 1; }

step "direct IO on the FUSE file"
head -c $((4 << 20)) /dev/urandom >"$WORK/rand"
dd if="$WORK/rand" of="$DISK" bs=1M seek=3 oflag=direct conv=notrunc,fsync status=none
dd if="$DISK" of="$WORK/back" bs=1M skip=3 count=4 iflag=direct status=none
cmp "$WORK/rand" "$WORK/back"
# Unaligned buffered-style IO also works (direct_io passes it through).
printf 'hello flurry' | dd of="$DISK" bs=1 seek=12345 conv=notrunc status=none
[ "$(dd if="$DISK" bs=1 skip=12345 count=12 status=none)" = "hello flurry" ]

step "punch hole and zero range"
fallocate --punch-hole --keep-size -o $((3 << 20)) -l $((1 << 20)) "$DISK"
fallocate --zero-range --keep-size -o $((5 << 20)) -l 4096 "$DISK"
cmp <(dd if="$DISK" bs=1M skip=3 count=1 status=none) <(head -c $((1 << 20)) /dev/zero)
cmp <(dd if="$DISK" bs=4096 skip=$((5 << 8)) count=1 status=none) <(head -c 4096 /dev/zero)
# Neighbours untouched.
cmp <(dd if="$DISK" bs=1M skip=4 count=1 status=none) <(dd if="$WORK/rand" bs=1M skip=1 count=1 status=none)
[ "$(stat -c %s "$DISK")" = $((256 << 20)) ]

if command -v python3 >/dev/null; then
  step "SEEK_DATA / SEEK_HOLE"
  # Written: 12345.. (grain 12288..16384) and 3M..7M; 3M..4M punched since.
  python3 - "$DISK" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
M = 1 << 20
got = [os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 12288, os.SEEK_HOLE),
       os.lseek(fd, 16384, os.SEEK_DATA), os.lseek(fd, 4 * M, os.SEEK_HOLE),
       os.lseek(fd, 200 * M, os.SEEK_HOLE)]
want = [12288, 16384, 4 * M, 7 * M, 200 * M]
try:
    os.lseek(fd, 200 * M, os.SEEK_DATA)
    got.append("data")
except OSError as e:
    got.append(e.errno)
want.append(6)  # ENXIO: no data after 200M
if got != want:
    sys.exit(f"lseek: got {got}, want {want}")
PY
fi

step "fixed size and read-only are enforced"
if truncate -s 1M "$DISK" 2>/dev/null; then echo "truncate succeeded"; exit 1; fi
if fallocate -o 0 -l 1G "$DISK" 2>/dev/null; then echo "growing fallocate succeeded"; exit 1; fi
if dd if=/dev/zero of="$DISK" bs=4096 seek=$((256 << 8)) count=1 conv=notrunc status=none 2>/dev/null; then
  echo "write past the end succeeded"; exit 1
fi
if echo x 2>/dev/null >"$FUSE/ro"; then echo "write to read-only file succeeded"; exit 1; fi
[ "$(stat -c %a "$FUSE/ro")" = 400 ]
[ "$(ls "$FUSE" | tr '\n' ' ')" = "disk ro " ]

attach() {
  if LOOPDEV=$(losetup -f --show --direct-io=on "$DISK" 2>>"$WORK/losetup.log"); then
    echo "   $LOOPDEV (direct-io=$(cat /sys/block/"${LOOPDEV#/dev/}"/loop/dio 2>/dev/null || echo ?))"
  else
    LOOPDEV=$(losetup -f --show "$DISK")
    echo "   $LOOPDEV (buffered; direct-io refused, see losetup.log)"
  fi
}
detach() { losetup -d "$LOOPDEV"; LOOPDEV=; }
sums() { (cd "$1" && find "$SRC_NAME" -type f -print0 | sort -z | xargs -0 sha256sum); }

step "loop device"
attach
if command -v fio >/dev/null; then
  step "fio randwrite + verify on the loop device (iodepth 16, 4k-256k)"
  fio --name=verify --filename="$LOOPDEV" --rw=randwrite --bsrange=4k-256k --direct=1 \
      --ioengine=libaio --iodepth=16 --offset=64M --size=64M --verify=crc32c \
      --verify_fatal=1 --do_verify=1 --randrepeat=0 >"$WORK/fio.log" 2>&1 \
    || { tail -n 20 "$WORK/fio.log"; exit 1; }
else
  echo "   (no fio: skipped)"
fi

step "mkfs.ext4, copy $SRC_PARENT/$SRC_NAME"
mkfs.ext4 -q -F "$LOOPDEV" >"$WORK/mkfs.log" 2>&1
mount "$LOOPDEV" "$MNT"
cp -a "$SRC_PARENT/$SRC_NAME" "$MNT/"
sums "$SRC_PARENT" >"$WORK/sums.src"
sums "$MNT" >"$WORK/sums.1"
cmp "$WORK/sums.src" "$WORK/sums.1"
echo "   $(wc -l <"$WORK/sums.src") files"
umount "$MNT"

step "re-attach, fsck -fn, remount, compare"
detach
attach
fsck.ext4 -fn "$LOOPDEV" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log"; exit 1; }
mount "$LOOPDEV" "$MNT"
sums "$MNT" >"$WORK/sums.2"
cmp "$WORK/sums.src" "$WORK/sums.2"
umount "$MNT"
detach

step "stop server while a loop device is still attached"
attach
dd if="$LOOPDEV" of=/dev/null bs=1M count=1 iflag=direct status=none
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=
grep -q '^stopped' "$LOG"
if mountpoint -q "$FUSE"; then echo "still mounted"; exit 1; fi
grep '^stopped' "$LOG"
# The loop device outlived its backing file's server: IO now fails cleanly.
if dd if="$LOOPDEV" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
  echo "read through a dead export succeeded"; exit 1
fi
detach

OK=1
echo "PASS"
