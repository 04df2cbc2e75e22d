#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Re-replication: 5 tract servers, R=2. Write verified data; kill -9 one
# server; meta replaces it in every TLT row (entries "recovering") and
# re-replicates from the survivors; once nothing is recovering, kill -9 a
# second server and wait again. Every byte must still verify: after two
# losses that is only possible if the first repair really copied the data.
source "$(dirname "${BASH_SOURCE[0]}")/../disk/lib.sh"
fl_init "$@"
fl_need_tools fio python3

fl_cluster_start --servers 5 --heartbeat-timeout-ms 1500
fl_volume v 256M 2
fl_disk_start --volume v
uri="$NBD/v"

fl_step "write 128 MiB with crc32c verify headers"
fio --name=w --ioengine=nbd --uri="$uri" --rw=write --bs=1m --size=128m --iodepth=8 \
    --verify=crc32c --do_verify=0 --verify_state_save=0 > "$T/logs/fio-write.log" 2>&1 ||
  fl_fail "fio write failed (see $T/logs/fio-write.log)"

wait_repaired() {  # $1 = minimum repaired entries
  local st
  for _ in $(seq 1 60); do
    sleep 1
    st=$(fl_meta STATUS | grep recovering_entries || true)
    if [[ "$st" =~ recovering_entries\ 0\ repaired\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge "$1" ]; then
      echo "$st"
      return 0
    fi
  done
  fl_fail "re-replication did not finish: $st"
}

fl_step "kill -9 tract server 1"
fl_kill9_ts 1
wait_repaired 1
first=$(fl_meta STATUS | sed -n 's/.*repaired \([0-9]*\).*/\1/p')

fl_step "kill -9 tract server 3"
fl_kill9_ts 3
wait_repaired $((first + 1))

fl_step "verify every byte"
fio --name=w --ioengine=nbd --uri="$uri" --rw=write --bs=1m --size=128m --iodepth=8 \
    --verify=crc32c --verify_only=1 > "$T/logs/fio-verify.log" 2>&1 ||
  fl_fail "verify after two server losses failed (see $T/logs/fio-verify.log)"
grep -q "err= 0" "$T/logs/fio-verify.log" || fl_fail "fio reported errors"
fl_pass
