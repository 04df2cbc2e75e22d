#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Filesystem crash test: ext4 on a flurry volume (flurry-disk --fuse + a
# loop device), a workload of creates, renames, appends and fsyncs
# (fs_workload.py, which logs every fsync'd file and its sha256), then
# kill -9 flurry-disk at a random moment. The loop device and the dead
# FUSE mount are cleaned up (umount -l, losetup -d), flurry-disk restarted,
# the journal replayed (e2fsck -E journal_only), and then
#   - fsck.ext4 -fn must be clean, in every write mode;
#   - in write-through, every fsync'd file must be intact (in fast-ack and
#     log a crash may lose the newest epochs, so lost files are counted,
#     not failed).
# Each kill adds a round (its own directory); every round so far is
# verified after every kill. Modes flurry-disk does not implement are
# skipped with a note. Skips (77) without root, /dev/fuse or losetup.
#
#   usage: fs_crash.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
#              [--kills N] [--modes "write-through fast-ack log"]
#              [--min-s S] [--max-s S] [--seed N]
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../disk/lib.sh
source "$here/../disk/lib.sh"
[[ $# -ge 3 ]] || { echo "usage: $0 FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK [options]" >&2; exit 2; }
bins=("$1" "$2" "$3")
shift 3
KILLS=3 MODES="write-through fast-ack log" MIN_S=1 MAX_S=4 SEED=${SEED:-$RANDOM}
while [[ $# -gt 0 ]]; do
  case $1 in
    --kills) KILLS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --min-s) MIN_S=$2; shift 2 ;;
    --max-s) MAX_S=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "fs_crash.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
fl_init "${bins[@]}"
# After kill -9 of flurry-disk its FUSE mount is dead (stat fails with
# ENOTCONN), which mountpoint(1) in lib.sh's cleanup cannot see: unmount
# such leftovers (and our ext4 mounts) lazily, then run lib.sh's cleanup.
fs_cleanup() {
  local rc=$? d
  set +e
  for d in "$T"/mnt-* "$T"/fuse-*; do
    if grep -qs " $d " /proc/self/mounts; then umount -l "$d"; fi
  done
  (exit $rc)
  fl_cleanup
}
trap fs_cleanup EXIT
fl_need_fuse_loop
fl_need_tools mkfs.ext4 fsck.ext4 e2fsck python3 timeout
WL="$here/fs_workload.py"
RANDOM=$SEED
echo "seed $SEED, $KILLS kills per mode, modes: $MODES"

# start_disk MODE: flurry-disk for volume fs-MODE with its FUSE file.
# Returns 3 if flurry-disk does not implement the mode.
start_disk() {
  local mode=$1 i log
  FL_DISK_RUNS=$((FL_DISK_RUNS + 1))
  log="disk-$mode.$FL_DISK_RUNS"
  rm -f "$T/disk.port"
  fl_spawn "$log" "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 \
    --port-file "$T/disk.port" --volume "fs-$mode" --fuse "$T/fuse-$mode"
  DISK_PID=$FL_LAST_PID
  for ((i = 0; i < 600; i++)); do
    grep -qs '^flurry-disk: ready' "$T/logs/$log.log" && return 0
    if ! fl_alive "$DISK_PID"; then
      fl_wait "$DISK_PID" || true
      grep -qs 'does not implement' "$T/logs/$log.log" && return 3
      cat "$T/logs/$log.log"
      fl_fail "flurry-disk exited during start-up"
    fi
    sleep 0.1
  done
  fl_fail "flurry-disk not ready after 60 s (see $log.log)"
}

fl_cluster_start
failed=0 ran=0
summary=()
for mode in $MODES; do
  fl_step "mode $mode"
  # 1 GiB: write-through keeps every round's files (all are verified after
  # each kill), about 17 MB a round.
  fl_meta VOLUME CREATE "fs-$mode" size=1G replicas=2 tract_size=1M segment=8 block=64K "mode=$mode" >/dev/null \
    || fl_fail "cannot create a $mode volume"
  FUSE=$T/fuse-$mode MNT=$T/mnt-$mode
  mkdir -p "$FUSE" "$MNT"
  fl_fuse_dir "$FUSE"
  rc=0
  start_disk "$mode" || rc=$?
  if [[ $rc -eq 3 ]]; then
    echo "mode $mode: not available in this flurry-disk; skipped"
    summary+=("$mode: not available")
    continue
  fi
  ran=$((ran + 1))
  fl_loop_attach "$FUSE/fs-$mode"
  fl_bounded 120 "$T/logs/mkfs-$mode.log" mkfs.ext4 -q -F "$LOOPDEV" || { cat "$T/logs/mkfs-$mode.log"; fl_fail "mkfs.ext4"; }
  # fast-ack and log acknowledge mkfs's fsync before the filesystem is
  # durable: a kill seconds later may leave no filesystem at all (prefix
  # consistency allows it). A clean stop (SIGTERM quiesces: everything
  # acknowledged becomes durable) and a restart make the kills test ext4.
  fl_loop_detach
  fl_disk_stop
  start_disk "$mode"
  fl_loop_attach "$FUSE/fs-$mode"
  lost_total=0
  for ((k = 1; k <= KILLS; k++)); do
    fl_bounded 60 "$T/logs/mount-$mode-$k.log" mount "$LOOPDEV" "$MNT"
    FL_MOUNTS+=("$MNT")
    secs=$((MIN_S + RANDOM % (MAX_S - MIN_S + 1)))
    fl_spawn "wl-$mode-$k" python3 "$WL" run "$MNT/r$k" "$T/fslog-$mode-$k" --seed "$RANDOM"
    wl=$FL_LAST_PID
    sleep "$secs.$((RANDOM % 10))"
    fl_alive "$wl" || { cat "$T/logs/wl-$mode-$k.log"; fl_fail "the workload stopped before the kill"; }
    kill -KILL "$DISK_PID"
    fl_wait "$DISK_PID" || true
    DISK_PID=
    # The workload now gets IO errors (or hangs until the FUSE connection
    # is gone); it must not outlive the cleanup.
    kill -KILL "$wl" 2>/dev/null || true
    fl_wait_dead "$wl" || fl_fail "workload $wl still alive 60 s after SIGKILL"
    fl_wait "$wl" || true
    nlog=$(wc -l <"$T/fslog-$mode-$k")
    fl_crash_cleanup "$MNT" "$FUSE"

    start_disk "$mode"
    fl_loop_attach "$FUSE/fs-$mode"
    fl_bounded 120 "$T/logs/replay-$mode-$k.log" e2fsck -y -E journal_only "$LOOPDEV" || true
    if ! fl_bounded 120 "$T/logs/fsck-$mode-$k.log" fsck.ext4 -fn "$LOOPDEV"; then
      cat "$T/logs/fsck-$mode-$k.log"
      echo "FAIL: mode $mode kill $k: fsck.ext4 -fn is not clean after crash and journal replay"
      failed=1
      break
    fi
    fl_bounded 60 "$T/logs/mount-$mode-$k.log" mount "$LOOPDEV" "$MNT"
    bad=0
    if [[ $mode == write-through ]]; then
      # Every round so far: later rounds must not have disturbed earlier ones.
      for ((j = 1; j <= k; j++)); do
        fl_bounded 120 "$T/logs/verify.out" python3 "$WL" verify "$MNT/r$j" "$T/fslog-$mode-$j" || bad=1
        cat "$T/logs/verify.out"
      done
    else
      fl_bounded 120 "$T/logs/verify.out" python3 "$WL" verify --report-only "$MNT/r$k" "$T/fslog-$mode-$k"
      # The first line is the summary (the rest lists the files). Read from
      # the file, not `echo | head`: under pipefail a long list made echo die
      # of SIGPIPE when head exited, failing the test.
      first=$(head -n 1 "$T/logs/verify.out")
      echo "$first"
      n=$(sed -n 's/.* \([0-9]*\) wrong$/\1/p' <<<"$first")
      lost_total=$((lost_total + ${n:-0}))
    fi
    fl_bounded 60 "$T/logs/umount.out" umount "$MNT"
    if [[ $bad -ne 0 ]]; then
      echo "FAIL: mode $mode kill $k: fsync'd files damaged in write-through"
      failed=1
      break
    fi
    echo "mode $mode kill $k: after ${secs}s, $nlog log lines; fsck clean"
  done
  [[ -n $LOOPDEV ]] && { losetup -d "$LOOPDEV"; LOOPDEV=; }
  [[ -n $DISK_PID ]] && fl_disk_stop
  if [[ $mode == write-through ]]; then
    summary+=("$mode: $KILLS kills, fsck clean, every fsync'd file intact")
  else
    summary+=("$mode: $KILLS kills, fsck clean, $lost_total fsync'd files lost (allowed: prefix consistency)")
  fi
  [[ $failed -eq 0 ]] || break
done
printf '%s\n' "${summary[@]}"
[[ $failed -eq 0 ]] || fl_fail "filesystem crash test failed (seed $SEED)"
[[ $ran -gt 0 ]] || fl_skip "no requested write mode is available in this flurry-disk"
fl_pass
