# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# lib.sh: shared helpers for the flurry-disk end-to-end tests (tests/disk).
#
# Every test is run by meson as
#     bash tests/disk/TEST.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# and begins with
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     fl_init "$@"
#
# Contract:
#   fl_init META TS DISK     checks the binaries, makes a fresh work dir $T
#                            (mktemp -d) with logs in $T/logs, and installs a
#                            trap that, on any exit, unmounts what fl_mount
#                            mounted, detaches what fl_loop_attach attached
#                            and kills every process fl_spawn started (TERM,
#                            then KILL). On success $T is removed; on failure
#                            (or without fl_pass) it is kept and its path and
#                            the log tails are printed.
#   fl_skip MSG              exit 77 (meson: SKIP) with a reason.
#   fl_need_tools TOOL...    skip unless every tool is on PATH.
#   fl_need_fuse_loop        skip unless root, /dev/fuse and a free loop device.
#   fl_cluster_start [--heartbeat-timeout-ms N] [--servers N] [--delay-us N]
#                            meta + N (default 4) tract servers; returns when
#                            meta reports all of them up. Sets META_PORT.
#                            Called again after fl_cluster_stop, it restarts
#                            them on the same directories (new ports).
#   fl_cluster_stop          SIGTERM tract servers and meta (see below).
#   fl_meta LINE             one request to meta; prints the reply lines;
#                            returns 1 (after printing the error) on ERR.
#   fl_volume NAME SIZE R    VOLUME CREATE with 1M tracts, 16-tract segments,
#                            64K blocks (small, so that tests are fast).
#   fl_disk_start ARGS...    flurry-disk --meta ... --listen 127.0.0.1:0 ARGS;
#                            returns once it printed "ready". Sets DISK_PID,
#                            NBD_PORT and NBD (nbd://127.0.0.1:PORT).
#   fl_disk_stop             SIGTERM flurry-disk; fails unless it exits 0.
#   fl_kill9_ts I            kill -9 tract server I (0-based).
#   fl_spawn NAME CMD...     run CMD in the background (output in logs/NAME.log),
#                            killed at exit unless reaped with fl_wait PID.
#   fl_loop_attach FILE      losetup (direct IO if the kernel takes it); sets LOOPDEV.
#   fl_loop_detach           detach $LOOPDEV.
#   fl_mount DEV DIR / fl_umount DIR
#   fl_bounded SECS OUT CMD... run CMD (output to OUT); if it hangs SECS s,
#                            kill -9 flurry-disk and fail (a dead device).
#   fl_wait_dead PID         until PID has exited (zombie counts), <= 60 s.
#   fl_crash_cleanup MNT FUSE after kill -9 of flurry-disk: lazy umount,
#                            losetup -d, unmount the dead FUSE mount.
#   fl_step MSG / fl_fail MSG / fl_pass
#
# All helpers run under `set -euo pipefail`; any failing command fails the test.

set -euo pipefail

fl_step() { echo "=== $*"; }
# Mounted? /proc/self/mounts, not mountpoint(1): a FUSE mount whose daemon
# died cannot be stat()ed ("Transport endpoint is not connected").
fl_is_mounted() { awk -v d="$(realpath -m "$1")" '$2 == d { f = 1 } END { exit !f }' /proc/self/mounts; }
fl_fail() { echo "FAIL: $*" >&2; exit 1; }
fl_skip() { echo "SKIP: $*"; exit 77; }

fl_need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || fl_skip "$t not installed"
  done
}

fl_need_fuse_loop() {
  [[ $(id -u) == 0 ]] || fl_skip "needs root (FUSE mount, losetup, mount)"
  [[ -c /dev/fuse ]] || fl_skip "no /dev/fuse"
  fl_need_tools losetup mount umount mountpoint
  losetup -f >/dev/null 2>&1 || fl_skip "no free loop device"
}

# --- bookkeeping -----------------------------------------------------------

FL_PIDS=()       # every process fl_spawn started
FL_NAMES=()      # and its log name, same index
FL_MOUNTS=()     # mount points fl_mount mounted (most recent last)
FL_FUSE_DIRS=()  # FUSE mount points to lazily unmount if a daemon died
LOOPDEV=
FL_OK=0

fl_init() {
  [[ $# -ge 3 ]] || { echo "usage: $0 FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK" >&2; exit 2; }
  FL_META_BIN=$1 FL_TS_BIN=$2 FL_DISK_BIN=$3
  local b
  for b in "$FL_META_BIN" "$FL_TS_BIN" "$FL_DISK_BIN"; do
    [[ -x $b ]] || { echo "not executable: $b" >&2; exit 2; }
  done
  T=$(mktemp -d "${TMPDIR:-/tmp}/flurry-disk-$(basename "$0" .sh).XXXXXX")
  mkdir -p "$T/logs"
  trap fl_cleanup EXIT
  trap 'echo "interrupted" >&2; exit 143' TERM INT
  echo "work dir $T"
}

fl_alive() { kill -0 "$1" 2>/dev/null; }

# fl_spawn NAME CMD...: start CMD in the background, output to $T/logs/NAME.log.
# Sets FL_LAST_PID.
fl_spawn() {
  local name=$1
  shift
  "$@" >"$T/logs/$name.log" 2>&1 &
  FL_LAST_PID=$!
  FL_PIDS+=("$FL_LAST_PID")
  FL_NAMES+=("$name")
}

# fl_reaped PID: forget PID once waited for, so that cleanup never signals a
# process that reused its number.
fl_reaped() {
  local i
  for ((i = 0; i < ${#FL_PIDS[@]}; i++)); do
    [[ ${FL_PIDS[i]} == "$1" ]] && FL_PIDS[i]=
  done
  return 0
}

# fl_stop_pid PID SECONDS: TERM, wait up to SECONDS, then KILL. Returns the exit status.
fl_stop_pid() {
  local pid=$1 secs=${2:-10} i rc=0
  [[ -n $pid ]] || return 0
  fl_alive "$pid" || { wait "$pid" 2>/dev/null || rc=$?; fl_reaped "$pid"; return $rc; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do fl_alive "$pid" || break; sleep 0.1; done
  if fl_alive "$pid"; then
    echo "pid $pid ignored SIGTERM for ${secs}s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  fl_reaped "$pid"
  return $rc
}

# fl_wait PID: wait for a process fl_spawn started; returns its exit status.
fl_wait() {
  local rc=0
  wait "$1" || rc=$?
  fl_reaped "$1"
  return $rc
}

fl_cleanup() {
  local rc=$? i d
  set +e
  trap - TERM INT
  for ((i = ${#FL_MOUNTS[@]} - 1; i >= 0; i--)); do
    fl_is_mounted "${FL_MOUNTS[i]}" && { umount "${FL_MOUNTS[i]}" || umount -l "${FL_MOUNTS[i]}"; }
  done
  [[ -n $LOOPDEV ]] && losetup -d "$LOOPDEV"
  # Daemons first (they hold connections to the tract servers), meta last.
  for ((i = ${#FL_PIDS[@]} - 1; i >= 0; i--)); do
    fl_stop_pid "${FL_PIDS[i]}" 10 >/dev/null 2>&1
  done
  for d in "${FL_FUSE_DIRS[@]}"; do
    fl_is_mounted "$d" && umount -l "$d"
  done
  if [[ $rc -eq 0 && $FL_OK == 1 ]]; then
    rm -rf "$T"
  elif [[ $rc -ne 77 ]]; then
    [[ $rc -eq 0 ]] && rc=1
    echo "FAILED (rc=$rc); logs kept in $T/logs"
    for ((i = 0; i < ${#FL_NAMES[@]}; i++)); do
      echo "--- ${FL_NAMES[i]}.log (last 15 lines)"
      tail -n 15 "$T/logs/${FL_NAMES[i]}.log" 2>/dev/null
    done
  else
    rm -rf "$T"
  fi
  exit $rc
}

fl_pass() { FL_OK=1; echo "PASS"; }

# fl_wait_file FILE SECONDS PID: wait for FILE to exist while PID lives.
fl_wait_file() {
  local f=$1 secs=$2 pid=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    [[ -s $f ]] && return 0
    fl_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

# --- cluster ---------------------------------------------------------------

fl_meta() {
  local fd status n line i
  exec {fd}<>"/dev/tcp/127.0.0.1/$META_PORT"
  printf '%s\n' "$*" >&"$fd"
  if ! read -r -t 10 status n <&"$fd"; then
    exec {fd}>&-
    echo "meta: no reply to '$*'" >&2
    return 1
  fi
  if [[ $status != OK ]]; then
    exec {fd}>&-
    echo "meta: '$*' -> $status $n" >&2
    return 1
  fi
  for ((i = 0; i < n; i++)); do
    read -r -t 10 line <&"$fd"
    printf '%s\n' "$line"
  done
  exec {fd}>&-
}

FL_TS_PIDS=()
FL_META_PID=
FL_CLUSTER_RUNS=0

# shellcheck disable=SC2120  # options are optional
fl_cluster_start() {
  local hb=5000 servers=4 delay=0 i
  while [[ $# -gt 0 ]]; do
    case $1 in
      --heartbeat-timeout-ms) hb=$2; shift 2 ;;
      --servers) servers=$2; shift 2 ;;
      --delay-us) delay=$2; shift 2 ;;
      *) fl_fail "fl_cluster_start: unknown option $1" ;;
    esac
  done
  FL_CLUSTER_RUNS=$((FL_CLUSTER_RUNS + 1))
  local sfx=
  [[ $FL_CLUSTER_RUNS -gt 1 ]] && sfx=.$FL_CLUSTER_RUNS
  mkdir -p "$T/meta"
  rm -f "$T/meta.port"
  fl_spawn "meta$sfx" "$FL_META_BIN" --dir "$T/meta" --listen 127.0.0.1:0 --port-file "$T/meta.port" \
    --heartbeat-timeout-ms "$hb"
  FL_META_PID=$FL_LAST_PID
  fl_wait_file "$T/meta.port" 10 "$FL_META_PID" || fl_fail "flurry-meta did not start"
  META_PORT=$(<"$T/meta.port")
  FL_TS_PIDS=()
  for ((i = 0; i < servers; i++)); do
    mkdir -p "$T/ts$i"
    rm -f "$T/ts$i.port"
    fl_spawn "ts$i$sfx" "$FL_TS_BIN" --dir "$T/ts$i" --meta "127.0.0.1:$META_PORT" \
      --port-file "$T/ts$i.port" --delay-us "$delay"
    FL_TS_PIDS+=("$FL_LAST_PID")
  done
  local status=
  for ((i = 0; i < 100; i++)); do
    status=$(fl_meta STATUS 2>&1 || true)
    [[ $status == *"servers $servers up $servers"* ]] && break
    sleep 0.1
  done
  [[ $status == *"servers $servers up $servers"* ]] || fl_fail "tract servers did not register: $status"
  echo "cluster: meta on $META_PORT, $servers tract servers up (heartbeat timeout ${hb} ms)"
}

# fl_cluster_stop: SIGTERM every tract server, then meta; each must shut
# down cleanly (exit 0). fl_cluster_start afterwards restarts them on the
# same directories.
fl_cluster_stop() {
  local pid rc
  for pid in "${FL_TS_PIDS[@]}"; do
    rc=0
    fl_stop_pid "$pid" 10 || rc=$?
    [[ $rc -eq 0 ]] || fl_fail "tract server $pid exited with status $rc after SIGTERM"
  done
  rc=0
  fl_stop_pid "$FL_META_PID" 10 || rc=$?
  [[ $rc -eq 0 ]] || fl_fail "flurry-meta exited with status $rc after SIGTERM"
  FL_TS_PIDS=() FL_META_PID=
}

fl_volume() {
  local name=$1 size=$2 r=$3
  fl_meta VOLUME CREATE "$name" "size=$size" "replicas=$r" tract_size=1M segment=16 block=64K >/dev/null \
    || fl_fail "cannot create volume $name"
}

fl_kill9_ts() {
  kill -KILL "${FL_TS_PIDS[$1]}"
  wait "${FL_TS_PIDS[$1]}" 2>/dev/null || true
  fl_reaped "${FL_TS_PIDS[$1]}"
  FL_TS_PIDS[$1]=
}

FL_DISK_RUNS=0
DISK_PID=

fl_disk_start() {
  FL_DISK_RUNS=$((FL_DISK_RUNS + 1))
  rm -f "$T/disk.port"
  local log="disk.$FL_DISK_RUNS" i
  fl_spawn "$log" "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 \
    --port-file "$T/disk.port" "$@"
  DISK_PID=$FL_LAST_PID
  for ((i = 0; i < 300; i++)); do
    grep -qs "^flurry-disk: ready" "$T/logs/$log.log" && break
    fl_alive "$DISK_PID" || fl_fail "flurry-disk exited during start-up (see $log.log)"
    sleep 0.1
  done
  grep -q '^flurry-disk: ready' "$T/logs/$log.log" || fl_fail "flurry-disk not ready after 30 s"
  NBD_PORT=$(<"$T/disk.port")
  NBD="nbd://127.0.0.1:$NBD_PORT"
  echo "flurry-disk (pid $DISK_PID) serving on $NBD"
}

fl_disk_stop() {
  local rc=0
  fl_stop_pid "$DISK_PID" 40 || rc=$?
  [[ $rc -eq 0 ]] || fl_fail "flurry-disk exited with status $rc after SIGTERM"
  DISK_PID=
}

# --- FUSE, loop devices, mounts ---------------------------------------------

fl_fuse_dir() { FL_FUSE_DIRS+=("$1"); }

fl_loop_attach() {
  local file=$1
  if LOOPDEV=$(losetup -f --show --direct-io=on "$file" 2>>"$T/logs/losetup.log"); then
    echo "loop: $LOOPDEV (direct-io=$(cat "/sys/block/${LOOPDEV#/dev/}/loop/dio" 2>/dev/null || echo '?'))"
  else
    LOOPDEV=$(losetup -f --show "$file")
    echo "loop: $LOOPDEV (buffered; direct IO refused, see losetup.log)"
  fi
}

fl_loop_detach() {
  losetup -d "$LOOPDEV"
  LOOPDEV=
}

fl_mount() {
  mount "$1" "$2"
  FL_MOUNTS+=("$2")
}

fl_umount() { umount "$1"; }

# fl_bounded SECS OUT CMD...: runs CMD with its output to OUT; if it has not
# finished after SECS seconds the device under it has stopped answering:
# kill -9 flurry-disk ($DISK_PID, so that IO blocked in the kernel fails) and
# fail the test. Returns CMD's status otherwise.
fl_bounded() {
  local secs=$1 out=$2 pid i rc=0
  shift 2
  "$@" >"$out" 2>&1 &
  pid=$!
  for ((i = 0; i < secs * 10; i++)); do
    fl_alive "$pid" || break
    sleep 0.1
  done
  if fl_alive "$pid"; then
    [[ -n ${DISK_PID:-} ]] && kill -KILL "$DISK_PID"
    wait "$pid" || true
    cat "$out"
    fl_fail "'$*' still running after ${secs}s: flurry-disk stopped serving the device"
  fi
  wait "$pid" || rc=$?
  return $rc
}

# fl_wait_dead PID: until PID has exited (a zombie counts), at most 60 s.
fl_wait_dead() {
  local i st
  for ((i = 0; i < 600; i++)); do
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z $st || $st == Z ]] && return 0
    sleep 0.1
  done
  return 1
}

# fl_crash_cleanup MNT FUSE_DIR: after kill -9 of flurry-disk, lazily unmount
# MNT, detach $LOOPDEV and unmount the dead FUSE mount (fl_is_mounted sees it
# although stat fails with ENOTCONN).
fl_crash_cleanup() {
  local mnt=$1 fuse=$2
  fl_is_mounted "$mnt" && umount -l "$mnt"
  [[ -n ${LOOPDEV:-} ]] && { losetup -d "$LOOPDEV" 2>/dev/null || true; LOOPDEV=; }
  fl_is_mounted "$fuse" && umount -l "$fuse"
  return 0
}
