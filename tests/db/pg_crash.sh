#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# pg_crash.sh: PostgreSQL 15 crash recovery on flurry. Per write mode: a
# volume (R=2), flurry-disk --fuse, a loop device, ext4, initdb (data
# checksums on) and `pgbench -i`. Then, per kill:
#   - load: pgbench (TPC-B, 4 clients) plus pg_ack_writer.sh, which commits
#     one row (round, id) per transaction and logs id only after COMMIT
#     returned;
#   - after a random 2-5 s: kill -9 flurry-disk (the crash), then SIGKILL
#     PostgreSQL and the clients; lazy umount, losetup -d, dead FUSE unmount;
#   - recovery: restart flurry-disk, losetup, e2fsck journal replay, then
#     fsck.ext4 -fn must be clean; mount; PostgreSQL must start (WAL redo);
#   - checks, in every mode:
#       pg_amcheck --heapallindexed --parent-check on database bench: no corruption;
#       TPC-B balances: sum(accounts) = sum(tellers) = sum(branches) = sum(history.delta);
#       the ids of this round form 1..m with no hole (WAL is replayed as a prefix);
#       every earlier round still has the rows it had after its own recovery;
#     in write-through also: m >= every acknowledged id (no committed
#     transaction lost); in fast-ack and log the number of acknowledged
#     commits lost is reported (allowed: flush is not durable there).
# Modes flurry-disk does not implement are skipped with a note. Skips (77)
# without root, /dev/fuse, losetup or PostgreSQL 15.
#
#   --strict applies the write-through check (no acknowledged commit lost) to
#   every mode: a negative control, fast-ack and log are expected to fail it.
#
#   usage: pg_crash.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
#              [--kills N] [--modes "write-through fast-ack log"]
#              [--min-s S] [--max-s S] [--seed N] [--delay-us N] [--scale N] [--strict]
#   pg_crash.sh --help
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
KILLS=1 MODES="write-through fast-ack log" MIN_S=2 MAX_S=5 SEED=${SEED:-$RANDOM} DELAY=0 STRICT=0 SCALE=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --kills) KILLS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --min-s) MIN_S=$2; shift 2 ;;
    --max-s) MAX_S=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --delay-us) DELAY=$2; shift 2 ;;
    --strict) STRICT=1; shift ;;
    --scale) SCALE=$2; shift 2 ;;
    *) echo "pg_crash.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
fl_init "${bins[@]}"
trap db_cleanup EXIT
fl_need_fuse_loop
fl_need_tools mkfs.ext4 fsck.ext4 e2fsck timeout
db_need_pg
RANDOM=$SEED
echo "seed $SEED, $KILLS kills per mode, modes: $MODES, tract server delay ${DELAY} us"

fl_cluster_start --delay-us "$DELAY"
failed=0 ran=0
summary=()
for mode in $MODES; do
  fl_step "mode $mode"
  vol=pg-$mode
  fl_meta VOLUME CREATE "$vol" size=1G replicas=2 tract_size=1M segment=8 block=64K "mode=$mode" >/dev/null \
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
  chmod 755 "$MNT"
  pg_initdb "$MNT/pgdata"
  pg_start "$MNT/pgdata" || fl_fail "PostgreSQL did not start on a fresh cluster"
  pg_psql -d postgres -c "CREATE DATABASE bench"
  fl_bounded 300 "$T/logs/pgbench-init-$mode.log" "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$PG_SOCK" -p 5432 -U postgres bench \
    || { cat "$T/logs/pgbench-init-$mode.log"; fl_fail "pgbench -i"; }
  pg_psql -d bench -c "CREATE TABLE acked (round int, id int, at timestamptz, PRIMARY KEY (round, id))"
  pg_stop || fl_fail "PostgreSQL did not shut down cleanly"
  db_settle "$vol" "$MNT"
  pg_start "$MNT/pgdata" || fl_fail "PostgreSQL did not start after the settling restart"
  declare -A kept=()
  lost_total=0 lost_max=0 acked_total=0
  for ((k = 1; k <= KILLS; k++)); do
    secs=$((MIN_S + RANDOM % (MAX_S - MIN_S + 1)))
    fl_spawn "pgbench-$mode-$k" "$PG_BIN/pgbench" -n -c 4 -j 2 -T 600 -h "$PG_SOCK" -p 5432 -U postgres bench
    pgb=$FL_LAST_PID
    fl_spawn "ack-$mode-$k" bash "$here/pg_ack_writer.sh" "$PG_SOCK" "$k" "$T/ack-$mode-$k"
    ackw=$FL_LAST_PID
    sleep "$secs.$((RANDOM % 10))"
    fl_alive "$pgb" || { cat "$T/logs/pgbench-$mode-$k.log"; fl_fail "pgbench stopped before the kill"; }
    fl_alive "$ackw" || { cat "$T/logs/ack-$mode-$k.log"; fl_fail "the ack writer stopped before the kill"; }
    # The crash: flurry-disk first, then the database and its clients.
    db_kill_disk
    pg_kill
    kill -KILL "$pgb" "$ackw" 2>/dev/null || true
    fl_wait "$pgb" || true
    fl_wait "$ackw" || true
    nack=$(wc -l <"$T/ack-$mode-$k")
    acked_total=$((acked_total + nack))
    fl_crash_cleanup "$MNT" "$FUSE"

    db_start_disk "$vol"
    db_attach "$vol"
    if ! db_fsck "$mode-$k"; then
      echo "FAIL: mode $mode kill $k: fsck.ext4 -fn is not clean after crash and journal replay"
      failed=1
      break
    fi
    db_mount "$LOOPDEV" "$MNT"
    if ! pg_start "$MNT/pgdata"; then
      echo "--- tail of postgresql.conf:"
      tail -c 400 "$MNT/pgdata/postgresql.conf" | od -c | tail -n 12
      ls -la "$MNT/pgdata"
      echo "FAIL: mode $mode kill $k: PostgreSQL did not recover"
      failed=1
      break
    fi
    redo=$(grep -c -E 'redo (done|starts)|automatic recovery' "$(pg_log)" || true)
    [[ $redo -gt 0 ]] || echo "note: no WAL redo message in $(pg_log)"
    if ! fl_bounded 600 "$T/logs/amcheck-$mode-$k.log" "$PG_BIN/pg_amcheck" -h "$PG_SOCK" -p 5432 -U postgres \
        --install-missing --heapallindexed --parent-check -d bench; then
      cat "$T/logs/amcheck-$mode-$k.log"
      echo "FAIL: mode $mode kill $k: pg_amcheck found corruption"
      failed=1
      break
    fi
    bal=$(pg_psql -d bench -F ' ' -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts),
      (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches),
      (SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)")
    read -r sa st sb sh nh <<<"$bal"
    if [[ $sa != "$st" || $sa != "$sb" || $sa != "$sh" ]]; then
      echo "FAIL: mode $mode kill $k: TPC-B balances differ: accounts $sa tellers $st branches $sb history $sh"
      failed=1
      break
    fi
    bad= got=0
    while read -r r n m; do
      if [[ $r -eq $k ]]; then
        [[ $n -eq $m ]] || bad+=" round $r has $n rows but max id $m (a hole: commits replayed out of order);"
        kept[$r]=$n
        got=$m
      elif [[ ${kept[$r]:-x} != "$n" ]]; then
        bad+=" round $r had ${kept[$r]:-?} rows after its recovery, now $n;"
      fi
    done < <(pg_psql -d bench -F ' ' -c "SELECT round, count(*), max(id) FROM acked GROUP BY round ORDER BY round")
    [[ -n ${kept[$k]:-} ]] || kept[$k]=0
    lost=$((nack > got ? nack - got : 0))
    if [[ ($mode == write-through || $STRICT == 1) && $lost -gt 0 ]]; then
      bad+=" $lost acknowledged commits lost (acked 1..$nack, present 1..$got);"
    fi
    if [[ -n $bad ]]; then
      echo "FAIL: mode $mode kill $k:$bad"
      failed=1
      break
    fi
    lost_total=$((lost_total + lost))
    [[ $lost -gt $lost_max ]] && lost_max=$lost
    echo "mode $mode kill $k: after ${secs}s; fsck clean, WAL recovery ok, pg_amcheck clean," \
      "balances equal ($nh history rows); acked $nack, present $got, lost $lost"
  done
  pg_stop || fl_fail "PostgreSQL did not shut down cleanly"
  fl_umount "$MNT"
  [[ -n $LOOPDEV ]] && fl_loop_detach
  [[ -n $DISK_PID ]] && fl_disk_stop
  if [[ $mode == write-through ]]; then
    summary+=("$mode: $KILLS kills, fsck clean, WAL recovery ok, pg_amcheck clean, $acked_total acknowledged commits, 0 lost")
  else
    summary+=("$mode: $KILLS kills, fsck clean, WAL recovery ok, pg_amcheck clean, $acked_total acknowledged commits, lost $lost_total (max $lost_max per kill; allowed)")
  fi
  unset kept
  [[ $failed -eq 0 ]] || break
done
printf 'pg_crash: %s\n' "${summary[@]}"
[[ $failed -eq 0 ]] || fl_fail "PostgreSQL crash test failed (seed $SEED)"
[[ $ran -gt 0 ]] || fl_skip "no requested write mode is available in this flurry-disk"
fl_pass
