#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Data outlives the processes that served it (R=2, 64 MiB volume):
# 1. nbdcopy a random image in; SIGTERM flurry-disk (must exit 0); start it
#    again; nbdcopy out must be byte-identical.
# 2. Overwrite part of it with qemu-io, then SIGTERM everything — flurry-disk,
#    the four tract servers, meta — restart them all on the same directories
#    (new ports), and read the volume back: identical to the updated image.
# 3. SIGTERM flurry-disk while a raw NBD client (nbd_ack_writer.py) keeps 16
#    writes in flight: flurry-disk must exit 0 within 10 s, and after a
#    restart every write it acknowledged must read back intact.
#   usage: restart.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
source "$HERE/lib.sh"
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

fl_step "SIGTERM flurry-disk during writes: prompt exit 0, acknowledged writes survive"
fl_volume big 1G 2
fl_disk_start --volume big
fl_spawn writer python3 "$HERE/nbd_ack_writer.py" write "$NBD_PORT" big "$T/acked" "$T/progress"
writer=$FL_LAST_PID
for ((i = 0; i < 300; i++)); do
  [[ -s $T/progress && $(<"$T/progress") -ge 300 ]] && break
  fl_alive "$writer" || fl_fail "the writer exited early"
  sleep 0.1
done
[[ -s $T/progress && $(<"$T/progress") -ge 300 ]] || fl_fail "the writer got fewer than 300 acknowledgements in 30 s"
t0=$(date +%s%N)
fl_disk_stop
ms=$((($(date +%s%N) - t0) / 1000000))
echo "flurry-disk stopped ${ms} ms after SIGTERM with writes in flight"
[[ $ms -lt 10000 ]] || fl_fail "flurry-disk took ${ms} ms to stop"
fl_wait "$writer" || fl_fail "the writer failed"
cat "$T/logs/writer.log"
grep -q 'every slot was written' "$T/logs/writer.log" && fl_fail "the writer finished before SIGTERM; the test would prove nothing"
fl_disk_start --volume big
python3 "$HERE/nbd_ack_writer.py" check "$NBD_PORT" big "$T/acked" || fl_fail "acknowledged writes were lost"

fl_disk_stop
fl_pass
