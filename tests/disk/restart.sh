#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Data outlives the processes that served it (R=2, 64 MiB volume):
# 1. nbdcopy a random image in; SIGTERM flurry-disk (must exit 0); start it
#    again; nbdcopy out must be byte-identical.
# 2. Overwrite part of it with qemu-io, then SIGTERM everything — flurry-disk,
#    the four tract servers, meta — restart them all on the same directories
#    (new ports), and read the volume back: identical to the updated image.
#   usage: restart.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools nbdcopy qemu-io cmp

fl_cluster_start
fl_volume v1 64M 2
fl_disk_start --volume v1
M=$((1 << 20))

fl_step "nbdcopy a random image in"
head -c $((64 * M)) /dev/urandom >"$T/src.img"
nbdcopy "$T/src.img" "$NBD/v1"

fl_step "SIGTERM flurry-disk, start it again, read back"
fl_disk_stop
fl_disk_start --volume v1
nbdcopy "$NBD/v1" "$T/back1.img"
cmp "$T/src.img" "$T/back1.img" || fl_fail "volume differs after a flurry-disk restart"

fl_step "overwrite 3 ranges, then restart the whole cluster"
qemu-io -f raw -c "write -P 0x3c $((5 * M + 17)) 333333" -c "write -P 0xc3 $((31 * M)) $((2 * M))" \
  -c "write -z $((60 * M)) $((4 * M))" "$NBD/v1" >"$T/logs/qemu-io.log" 2>&1 || fl_fail "qemu-io writes"
head -c 333333 /dev/zero | tr '\000' '\074' | dd of="$T/src.img" bs=64K seek=$((5 * M + 17)) oflag=seek_bytes conv=notrunc status=none
head -c $((2 * M)) /dev/zero | tr '\000' '\303' | dd of="$T/src.img" bs=64K seek=$((31 * M)) oflag=seek_bytes conv=notrunc status=none
head -c $((4 * M)) /dev/zero | dd of="$T/src.img" bs=64K seek=$((60 * M)) oflag=seek_bytes conv=notrunc status=none
fl_disk_stop
fl_cluster_stop
fl_cluster_start
fl_disk_start --volume v1
nbdcopy "$NBD/v1" "$T/back2.img"
cmp "$T/src.img" "$T/back2.img" || fl_fail "volume differs after restarting the whole cluster"

fl_disk_stop
fl_pass
