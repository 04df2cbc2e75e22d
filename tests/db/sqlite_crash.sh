#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sqlite_crash.sh: SQLite (WAL mode, synchronous=FULL) crash recovery on
# flurry. Per write mode: a volume (R=2), flurry-disk --fuse, a loop device,
# ext4 and a database (sqlite_writer.py init). Then, per kill:
#   - sqlite_writer.py run: one transaction per acknowledged id (plus churn
#     of 0.5-6 KiB blobs, frequent WAL checkpoints), id logged only after
#     COMMIT returned;
#   - after a random 1-4 s: kill -9 flurry-disk, then SIGKILL the writer;
#     lazy umount, losetup -d, dead FUSE unmount;
#   - recovery: restart flurry-disk, losetup, e2fsck journal replay, then
#     fsck.ext4 -fn must be clean; mount;
#   - sqlite_writer.py verify: PRAGMA integrity_check = ok, no hole in the
#     round's ids, no torn transaction, earlier rounds intact, and in
#     write-through every acknowledged commit present (fast-ack and log:
#     lost commits counted, allowed).
# Skips (77) without root, /dev/fuse, losetup or python3.
#
#   --strict applies the write-through check (no acknowledged commit lost) to
#   every mode: a negative control, fast-ack and log are expected to fail it.
#
#   usage: sqlite_crash.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
#              [--kills N] [--modes "write-through fast-ack log"]
#              [--min-s S] [--max-s S] [--seed N] [--delay-us N] [--strict]
#   sqlite_crash.sh --help
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0; fi
# shellcheck source=../disk/lib.sh
source "$here/../disk/lib.sh"
# shellcheck source=dblib.sh
source "$here/dblib.sh"
[[ $# -ge 3 ]] || { echo "usage: $0 FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK [options]" >&2; exit 2; }
bins=("$1" "$2" "$3")
shift 3
KILLS=1 MODES="write-through fast-ack log" MIN_S=1 MAX_S=4 SEED=${SEED:-$RANDOM} DELAY=0 STRICT=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --kills) KILLS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --min-s) MIN_S=$2; shift 2 ;;
    --max-s) MAX_S=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --delay-us) DELAY=$2; shift 2 ;;
    --strict) STRICT=1; shift ;;
    *) echo "sqlite_crash.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
fl_init "${bins[@]}"
trap db_cleanup EXIT
fl_need_fuse_loop
fl_need_tools mkfs.ext4 fsck.ext4 e2fsck python3
python3 -c 'import sqlite3' 2>/dev/null || fl_skip "python3 has no sqlite3 module"
W=$here/sqlite_writer.py
RANDOM=$SEED
echo "seed $SEED, $KILLS kills per mode, modes: $MODES, tract server delay ${DELAY} us"

fl_cluster_start --delay-us "$DELAY"
failed=0 ran=0
summary=()
for mode in $MODES; do
  fl_step "mode $mode"
  vol=sq-$mode
  fl_meta VOLUME CREATE "$vol" size=256M replicas=2 tract_size=1M segment=8 block=64K "mode=$mode" >/dev/null \
    || fl_fail "cannot create a $mode volume"
  FUSE=$T/fuse-$vol MNT=$T/mnt-$mode
  mkdir -p "$MNT"
  rc=0
  db_start_disk "$vol" || rc=$?
  if [[ $rc -eq 3 ]]; then
    echo "mode $mode: not available in this flurry-disk; skipped"
    summary+=("$mode: not available")
    continue
  fi
  ran=$((ran + 1))
  db_attach "$vol"
  fl_bounded 120 "$T/logs/mkfs-$mode.log" mkfs.ext4 -q -F "$LOOPDEV" || { cat "$T/logs/mkfs-$mode.log"; fl_fail "mkfs.ext4"; }
  db_mount "$LOOPDEV" "$MNT"
  DB=$MNT/test.db
  fl_bounded 60 "$T/logs/init-$mode.log" python3 "$W" init "$DB" || { cat "$T/logs/init-$mode.log"; fl_fail "sqlite init"; }
  db_settle "$vol" "$MNT"
  STATE=$T/state-$mode.json
  rm -f "$STATE"
  lost_total=0 lost_max=0 acked_total=0
  for ((k = 1; k <= KILLS; k++)); do
    secs=$((MIN_S + RANDOM % (MAX_S - MIN_S + 1)))
    fl_spawn "writer-$mode-$k" python3 "$W" run "$DB" "$k" "$T/ack-$mode-$k" --seed "$RANDOM"
    wr=$FL_LAST_PID
    sleep "$secs.$((RANDOM % 10))"
    fl_alive "$wr" || { cat "$T/logs/writer-$mode-$k.log"; fl_fail "the writer stopped before the kill"; }
    db_kill_disk
    kill -KILL "$wr" 2>/dev/null || true
    fl_wait_dead "$wr" || fl_fail "writer $wr still alive 60 s after SIGKILL"
    fl_wait "$wr" || true
    fl_crash_cleanup "$MNT" "$FUSE"

    db_start_disk "$vol"
    db_attach "$vol"
    if ! db_fsck "$mode-$k"; then
      echo "FAIL: mode $mode kill $k: fsck.ext4 -fn is not clean after crash and journal replay"
      failed=1
      break
    fi
    db_mount "$LOOPDEV" "$MNT"
    out=$T/logs/verify-$mode-$k.log
    check=$mode
    [[ $STRICT == 1 ]] && check=write-through
    if ! fl_bounded 300 "$out" python3 "$W" verify "$DB" "$k" "$T/ack-$mode-$k" "$STATE" --mode "$check"; then
      cat "$out"
      echo "FAIL: mode $mode kill $k: SQLite check failed"
      failed=1
      break
    fi
    read -r _ nack _ got _ lost _ <"$out"
    acked_total=$((acked_total + nack))
    lost_total=$((lost_total + lost))
    [[ $lost -gt $lost_max ]] && lost_max=$lost
    echo "mode $mode kill $k: after ${secs}s; fsck clean, integrity_check ok; acked $nack, present $got, lost $lost"
  done
  fl_is_mounted "$MNT" && fl_umount "$MNT"
  [[ -n $LOOPDEV ]] && fl_loop_detach
  [[ -n $DISK_PID ]] && fl_disk_stop
  summary+=("$mode: $KILLS kills, fsck clean, integrity_check ok, $acked_total acknowledged commits, lost $lost_total (max $lost_max per kill)")
  [[ $failed -eq 0 ]] || break
done
printf 'sqlite_crash: %s\n' "${summary[@]}"
[[ $failed -eq 0 ]] || fl_fail "SQLite crash test failed (seed $SEED)"
[[ $ran -gt 0 ]] || fl_skip "no requested write mode is available in this flurry-disk"
fl_pass
