#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# fio over NBD against flurry-disk (R=2): four concurrent jobs (separate
# connections) write with crc32c verify headers — random 4k-1m, random
# 512-12k (512-aligned offsets), 3k blocks at 1.5k-offset, sequential 192k
# at an odd offset across tract/segment boundaries — and verify inline.
# A second fio process then re-reads everything (--verify_only). As a
# control, 4 KiB are zeroed and verify_only must then fail.
#   usage: fio_verify.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools fio qemu-io
fio --enghelp=nbd >/dev/null 2>&1 || fl_skip "fio lacks the nbd ioengine"

fl_cluster_start
fl_volume v1 256M 2
fl_disk_start --volume v1

cat >"$T/verify.fio" <<JOB
[global]
ioengine=nbd
uri=$NBD/v1
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1

[mixed]
rw=randwrite
bsrange=4k-1m
offset=0
size=96M
iodepth=16

[small]
rw=randwrite
bsrange=512-12k
offset=96M
size=8M
iodepth=32

[odd]
rw=randwrite
bs=3k
offset=$(((104 << 20) + 1536))
size=6M
iodepth=8

[seq]
rw=write
bs=192k
offset=$(((112 << 20) + 512))
size=36M
iodepth=4
JOB

fl_step "write + inline verify (4 jobs, 146 MiB)"
fio --output="$T/logs/fio-write.log" "$T/verify.fio" || { tail -n 40 "$T/logs/fio-write.log"; fl_fail "fio write/verify"; }
grep -E '^\s+(write|read):' "$T/logs/fio-write.log" | head -n 8 || true
[[ $(grep -c 'err= 0' "$T/logs/fio-write.log") -eq 4 ]] || fl_fail "a fio job reported errors"

fl_step "verify pass in a new process (--verify_only)"
fio --verify_only --output="$T/logs/fio-verify.log" "$T/verify.fio" \
  || { tail -n 40 "$T/logs/fio-verify.log"; fl_fail "fio verify_only"; }
[[ $(grep -c 'err= 0' "$T/logs/fio-verify.log") -eq 4 ]] || fl_fail "a verify job reported errors"

fl_step "control: corrupt 4 KiB, verify_only must now fail"
qemu-io -f raw -c 'write -P 0 40M 4k' "$NBD/v1" >/dev/null
if fio --verify_only --output="$T/logs/fio-control.log" "$T/verify.fio" >/dev/null 2>&1; then
  fl_fail "verify_only passed on corrupted data: the verify pass would not catch corruption"
fi
grep -qi 'verify\|bad' "$T/logs/fio-control.log" || true

fl_disk_stop
fl_pass
