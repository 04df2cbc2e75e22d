#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A tract server is killed with SIGKILL while fio writes with verify
# headers to an R=2 volume (meta heartbeat timeout 1.5 s). fio must finish
# without an IO error, its inline verify must pass, meta must have declared
# the server down and published a new TLT without it, and a verify pass from
# a new fio process (new connections, reads served by the survivors) must
# pass too. The test fails if fio had already finished when the kill came.
#   usage: ts_kill.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools fio
fio --enghelp=nbd >/dev/null 2>&1 || fl_skip "fio lacks the nbd ioengine"

fl_cluster_start --heartbeat-timeout-ms 1500
fl_volume v1 256M 2
fl_disk_start --volume v1
tlt_before=$(fl_meta STATUS | sed -n 's/^tlt_version \([0-9]*\).*/\1/p')
ts1_addr=127.0.0.1:$(<"$T/ts1.port")
tlt=$(fl_meta TLT)
grep -q "$ts1_addr\b" <<<"$tlt" || fl_fail "tract server 1 ($ts1_addr) is not in the TLT to begin with"

# ~8 s of writes at a bounded rate, so that the kill lands mid-run.
cat >"$T/kill.fio" <<JOB
[global]
ioengine=nbd
uri=$NBD/v1
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1

[rand]
rw=randwrite
bsrange=4k-256k
offset=0
size=48M
iodepth=16
rate=6m

[seq]
rw=write
bs=1M
offset=64M
size=48M
iodepth=4
rate=6m
JOB

fl_step "fio (2 jobs, ~8 s at 12 MB/s); kill -9 tract server 1 after 2.5 s"
fl_spawn fio-kill.out fio --output="$T/logs/fio-kill.log" "$T/kill.fio"
FIO=$FL_LAST_PID
sleep 2.5
fl_alive "$FIO" || fl_fail "fio finished before the kill; the test would prove nothing"
fl_kill9_ts 1
echo "killed tract server 1 at $(date +%T.%N | cut -c1-12)"
rc=0
fl_wait "$FIO" || rc=$?
[[ $rc -eq 0 ]] || { tail -n 40 "$T/logs/fio-kill.log"; fl_fail "fio failed (rc=$rc) after a tract server was killed"; }
[[ $(grep -c 'err= 0' "$T/logs/fio-kill.log") -eq 2 ]] || fl_fail "a fio job reported errors"
grep -E '^\s+(write|read):|clat \(.sec\): min' "$T/logs/fio-kill.log" | head -n 8 || true

fl_step "meta declared the server down and published a new TLT"
status=$(fl_meta STATUS)
echo "$status"
[[ $status == *"servers 4 up 3"* ]] || fl_fail "meta does not report one server down"
tlt_after=$(sed -n 's/^tlt_version \([0-9]*\).*/\1/p' <<<"$status")
[[ $tlt_after -gt $tlt_before ]] || fl_fail "TLT version did not change ($tlt_before -> $tlt_after)"
tlt=$(fl_meta TLT)
if grep -q "$ts1_addr\b" <<<"$tlt"; then fl_fail "the killed server is still in the TLT"; fi

fl_step "verify pass from a new fio process"
fio --verify_only --output="$T/logs/fio-verify.log" "$T/kill.fio" \
  || { tail -n 40 "$T/logs/fio-verify.log"; fl_fail "verify after the kill"; }
[[ $(grep -c 'err= 0' "$T/logs/fio-verify.log") -eq 2 ]] || fl_fail "a verify job reported errors"

fl_disk_stop
fl_pass
