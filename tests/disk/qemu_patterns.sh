#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# qemu-io and qemu-img against flurry-disk (R=2, 64 MiB volume).
# 1. Pattern writes at aligned and unaligned offsets and lengths, across
#    64K stripe-block, tract and segment boundaries, plus two overlapping
#    in-flight writes, zero-writes and discards, are mirrored into a local
#    reference file; every write reads back with -P, its neighbours keep
#    their pattern, and `qemu-img compare` of the whole volume against the
#    reference must report identical.
# 2. `qemu-img convert -n` of a random image with a hole onto the (dirty)
#    volume, then `qemu-img compare` must report identical; a control
#    change of one byte must make it report a difference.
#   usage: qemu_patterns.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools qemu-io qemu-img dd tr

fl_cluster_start
fl_volume v1 64M 2
fl_disk_start --volume v1
URI=$NBD/v1
REF=$T/ref.img
truncate -s 64M "$REF"

QIO=()  # qemu-io commands, applied in one connection
# put PATTERN OFFSET LENGTH: a pattern write, mirrored into the reference.
put() {
  QIO+=(-c "write -P $1 $2 $3")
  head -c "$3" /dev/zero | tr '\000' "\\$(printf %03o "$1")" |
    dd of="$REF" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none
}
zero() {
  QIO+=(-c "$1 $2 $3")  # write -z / discard
  head -c "$3" /dev/zero | dd of="$REF" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none
}
M=$((1 << 20)) K=1024

fl_step "pattern writes (aligned, unaligned, across block/tract/segment boundaries)"
put 0x11 0 $((32 * M))                     # background, 8 x 4 MiB requests worth
put 0x22 1000 5000                         # unaligned inside the first stripe block
put 0x33 $((64 * K - 6)) 12                # straddles a 64K stripe block boundary
put 0x44 $((M - 1000)) 2000                # straddles 1 MiB
put 0x55 $((16 * M - 300)) 600             # straddles the first segment (16 tracts)
put 0x66 $((3 * M + 7)) $((3 * M + 5))     # large, odd start and length
put 0x77 $((40 * M)) 1                     # single bytes beyond the background
put 0x78 $((64 * M - 1)) 1                 # the very last byte
put 0x79 $((48 * M)) $((16 * M - 1))       # up to the last byte, odd length
zero "write -z" $((5 * M + 3)) $((70 * K)) # zero-write, unaligned
zero "discard" $((20 * M)) $((2 * M))      # trim, aligned
zero "discard" $((24 * M + 512)) $((100 * K))  # trim, unaligned: partial chunks must read as zero
qemu-io -f raw "${QIO[@]}" "$URI" >"$T/logs/qemu-io-write.log" 2>&1 \
  || { tail "$T/logs/qemu-io-write.log"; fl_fail "qemu-io writes"; }

fl_step "read back every write and its neighbours with -P"
qemu-io -f raw \
  -c 'read -P 0x11 0 1000' -c 'read -P 0x22 1000 5000' -c 'read -P 0x11 6000 59530' \
  -c "read -P 0x33 $((64 * K - 6)) 12" -c "read -P 0x11 $((64 * K + 6)) 1000" \
  -c "read -P 0x44 $((M - 1000)) 2000" -c "read -P 0x11 $((M + 1000)) 4096" \
  -c "read -P 0x55 $((16 * M - 300)) 600" -c "read -P 0x11 $((16 * M + 300)) 300" \
  -c "read -P 0x11 $((3 * M)) 7" -c "read -P 0x66 $((3 * M + 7)) $((2 * M - 4))" \
  -c "read -P 0 $((5 * M + 3)) $((70 * K))" -c "read -P 0x66 $((5 * M + 3 + 70 * K)) $((M - 70 * K + 9))" \
  -c "read -P 0x11 $((6 * M + 12)) 100" \
  -c "read -P 0 $((20 * M)) $((2 * M))" -c "read -P 0x11 $((22 * M)) $((2 * M + 512))" \
  -c "read -P 0 $((24 * M + 512)) $((100 * K))" -c "read -P 0x11 $((24 * M + 512 + 100 * K)) 512" \
  -c "read -P 0 $((32 * M)) $((8 * M))" -c "read -P 0x77 $((40 * M)) 1" \
  -c "read -P 0x79 $((48 * M)) $((16 * M - 1))" -c "read -P 0x78 $((64 * M - 1)) 1" \
  "$URI" >"$T/logs/qemu-io-read.log" 2>&1 || { grep -i fail "$T/logs/qemu-io-read.log"; fl_fail "pattern read-back"; }
! grep -qi 'fail\|mismatch' "$T/logs/qemu-io-read.log" || fl_fail "pattern read-back"

fl_step "overlapping in-flight writes complete in arrival order"
qemu-io -f raw -c "aio_write -P 0xa1 $((8 * M)) $((64 * K))" -c "aio_write -P 0xa2 $((8 * M + 32 * K)) $((64 * K))" \
  -c aio_flush -c "read -P 0xa1 $((8 * M)) $((32 * K))" -c "read -P 0xa2 $((8 * M + 32 * K)) $((64 * K))" \
  "$URI" >"$T/logs/qemu-io-aio.log" 2>&1 || { cat "$T/logs/qemu-io-aio.log"; fl_fail "overlapping writes"; }
head -c $((32 * K)) /dev/zero | tr '\000' '\241' | dd of="$REF" bs=64K seek=$((8 * M)) oflag=seek_bytes conv=notrunc status=none
head -c $((64 * K)) /dev/zero | tr '\000' '\242' | dd of="$REF" bs=64K seek=$((8 * M + 32 * K)) oflag=seek_bytes conv=notrunc status=none

fl_step "qemu-img compare: whole volume equals the reference"
qemu-img compare -f raw -F raw "$REF" "$URI" || fl_fail "volume differs from the reference"

fl_step "qemu-img convert -n a random image with a hole onto the volume"
head -c $((64 * M)) /dev/urandom >"$T/src.img"
fallocate --punch-hole -o $((10 * M)) -l $((4 * M)) "$T/src.img" 2>/dev/null \
  || dd if=/dev/zero of="$T/src.img" bs=1M seek=10 count=4 conv=notrunc status=none
qemu-img convert -n -f raw -O raw "$T/src.img" "$URI"
qemu-img compare -f raw -F raw "$T/src.img" "$URI" || fl_fail "converted volume differs from its source"

fl_step "control: one changed byte must make compare report a difference"
qemu-io -f raw -c "write -P 0x5a $((11 * M + 123)) 1" "$URI" >/dev/null
rc=0
qemu-img compare -q -f raw -F raw "$T/src.img" "$URI" || rc=$?
[[ $rc -eq 1 ]] || fl_fail "qemu-img compare returned $rc on a changed volume (want 1)"

fl_disk_stop
fl_pass
