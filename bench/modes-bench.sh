#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# modes-bench.sh: the write modes side by side (issue "Flush epochs"), with
# the tract servers' injected latency emulating remote disks.
#
# usage: bench/modes-bench.sh [--delay-us 2000] [--runtime 8] [--replicas 2]
#                             [--size 256m] [--repeat N] [--build DIR] [--out FILE]
#
# One local cluster (meta + 4 tract servers, --delay-us per request), one
# volume per mode (write-through, fast-ack, log with the default 64 KiB
# blocks, and log-4k: log with 4 KiB blocks, so 4 KiB writes need no
# read-before-write), one flurry-disk serving them all. fio (ioengine=nbd),
# one job at a time, per volume:
#   fsync1    4 KiB random write, flush after every write, QD1
#   fsync4    4 KiB random write, flush after every 4 writes, QD4
#   nofsync   4 KiB random write, no flush, QD32
#   aligned   64 KiB random write at 64 KiB offsets (= the default block size), flush every 4, QD4
# Prints IOPS per mode and the ratio to write-through (medians with --repeat).
# Data lost per crash at these rates comes from flurry-crashtest (see README).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build delay=2000 runtime=8 replicas=2 size=256m repeat=1 out=
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --delay-us) delay=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "modes-bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
flurry=$build/tools/cli/flurry
[ -x "$flurry" ] || { echo "modes-bench.sh: $flurry not found; build first (meson compile -C build)" >&2; exit 1; }
command -v fio >/dev/null || { echo "modes-bench.sh: fio is not installed" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/flurry-modes-XXXXXX")
cleanup() { "$flurry" cluster stop --dir "$work/c" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

"$flurry" cluster start --dir "$work/c" --servers 4 --meta-port 0 --delay-us "$delay" >/dev/null
modes=(write-through fast-ack log log-4k)
for m in "${modes[@]}"; do
  case $m in
    log-4k) args=(--mode log --block 4K) ;;
    *) args=(--mode "$m") ;;
  esac
  "$flurry" volume create "$m" --size 1G --replicas "$replicas" "${args[@]}" --dir "$work/c" >/dev/null
done
"$flurry" serve "${modes[@]}" --daemon --listen 127.0.0.1:0 --dir "$work/c" > "$work/serve.out"
port=$(sed -n 's|.*nbd://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.out" | head -1)
[ -n "$port" ] || { echo "modes-bench.sh: flurry-disk did not start:"; cat "$work/serve.out"; exit 1; }

jobs=(fsync1 fsync4 nofsync aligned)
# shellcheck source=bench/write-jobs.sh
. "$top/bench/write-jobs.sh"
declare -A res
for r in $(seq 1 "$repeat"); do
  for j in "${jobs[@]}"; do
    for m in "${modes[@]}"; do
      # shellcheck disable=SC2046
      fio --name="$j" --ioengine=nbd --uri="nbd://127.0.0.1:$port/$m" $(write_job_args "$j") \
          --size="$size" --runtime="$runtime" --time_based --output-format=json \
          > "$work/$m-$j-$r.json" 2>/dev/null || { echo "fio failed for $m $j"; exit 1; }
      iops=$(sed -n '/^{/,$p' "$work/$m-$j-$r.json" |
             python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
      res[$m,$j]="${res[$m,$j]:-} $iops"
      # Let the buffered modes drain before the next job: flush, then idle.
      sleep 2
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
{
  echo "write modes, fio ioengine=nbd, ${runtime} s per job, R=$replicas, tract server delay ${delay} us, medians of $repeat"
  printf '| %-42s | %13s | %9s | %9s | %9s | %7s | %7s | %8s |\n' job write-through fast-ack log log-4k fa/wt log/wt log4k/wt
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..44})" "$(printf -- '-%.0s' {1..15})" \
    "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..11})" \
    "$(printf -- '-%.0s' {1..9})" "$(printf -- '-%.0s' {1..9})" "$(printf -- '-%.0s' {1..10})"
  for j in "${jobs[@]}"; do
    wt=$(echo "${res[write-through,$j]}" | median)
    fa=$(echo "${res[fast-ack,$j]}" | median)
    lg=$(echo "${res[log,$j]}" | median)
    l4=$(echo "${res[log-4k,$j]}" | median)
    case $j in
      fsync1) d="4K randwrite, fsync each, QD1" ;;
      fsync4) d="4K randwrite, fsync every 4, QD4" ;;
      nofsync) d="4K randwrite, no fsync, QD32" ;;
      aligned) d="64K aligned randwrite, fsync/4, QD4" ;;
    esac
    printf '| %-42s | %13s | %9s | %9s | %9s | %7.2f | %7.2f | %8.2f |\n' "$d (IOPS)" "$wt" "$fa" "$lg" "$l4" \
      "$(echo "$fa / $wt" | bc -l)" "$(echo "$lg / $wt" | bc -l)" "$(echo "$l4 / $wt" | bc -l)"
  done
} | tee ${out:+"$out"}
