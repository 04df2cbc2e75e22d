#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# ab-bench.sh: two builds of flurry side by side on the same jobs, runs
# alternating (A, B, A, B, ...), each on a fresh cluster, so that this
# machine's drift hits both alike. For measuring one change.
#
# usage: bench/ab-bench.sh --a DIR --b DIR [--mode MODE] [--block SIZE]
#                          [--delay-us 2000] [--runtime 8] [--rounds 2]
#                          [--jobs fsync1,fsync4,nofsync,aligned]
#
#   --a DIR, --b DIR   directories holding flurry-meta, flurry-tractserver
#                      and flurry-disk (passed as $FLURRY_BIN_DIR); the
#                      flurry CLI is this checkout's build/tools/cli/flurry
#   --mode MODE        write mode of the volume (default log)
#   --block SIZE       its block size (default: the mode's default)
#   --delay-us N       tract servers' injected latency (default 2000)
#   --runtime S        seconds per fio job (default 8)
#   --rounds N         A/B pairs (default 2)
#   --jobs LIST        of fsync1 (4 KiB random write, flush after each, QD1),
#                      fsync4 (flush every 4, QD4), nofsync (QD32), aligned
#                      (64 KiB at 64 KiB offsets, flush every 4, QD4);
#                      default fsync1,fsync4,nofsync
# Each run: 4 tract servers, one 1 GiB R=2 volume, fio ioengine=nbd over the
# first 256 MiB. Prints IOPS per run and the median per build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
a='' b='' mode=log block='' delay=2000 runtime=8 rounds=2 jobs=fsync1,fsync4,nofsync
while [ $# -gt 0 ]; do
  case "$1" in
    --a) a=$2; shift 2 ;;
    --b) b=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --block) block=$2; shift 2 ;;
    --delay-us) delay=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '4,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ab-bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$a" ] || [ -z "$b" ]; then echo "ab-bench.sh: --a DIR and --b DIR are required (try --help)" >&2; exit 2; fi
for d in "$a" "$b"; do
  for x in flurry-meta flurry-tractserver flurry-disk; do
    [ -x "$d/$x" ] || { echo "ab-bench.sh: $d/$x not found" >&2; exit 1; }
  done
done
flurry=$top/build/tools/cli/flurry
[ -x "$flurry" ] || { echo "ab-bench.sh: $flurry not found; build first (meson compile -C build)" >&2; exit 1; }
command -v fio >/dev/null || { echo "ab-bench.sh: fio is not installed" >&2; exit 1; }
IFS=, read -r -a job_list <<< "$jobs"
# shellcheck source=bench/write-jobs.sh
. "$top/bench/write-jobs.sh"
for j in "${job_list[@]}"; do
  write_job_args "$j" >/dev/null || { echo "ab-bench.sh: unknown job '$j' (try --help)" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/var/tmp}/flurry-ab-XXXXXX")
cur=''
cleanup() { [ -n "$cur" ] && FLURRY_BIN_DIR=$cur "$flurry" cluster stop --dir "$work/c" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
declare -A res
run() {  # run LABEL BINDIR
  local label=$1 bin=$2 port iops
  rm -rf "$work/c"
  cur=$bin
  export FLURRY_BIN_DIR=$bin
  "$flurry" cluster start --dir "$work/c" --servers 4 --meta-port 0 --delay-us "$delay" >/dev/null
  "$flurry" volume create v --size 1G --replicas 2 --mode "$mode" ${block:+--block "$block"} --dir "$work/c" >/dev/null
  "$flurry" serve v --daemon --listen 127.0.0.1:0 --dir "$work/c" > "$work/serve.out"
  port=$(sed -n 's|.*nbd://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.out" | head -1)
  [ -n "$port" ] || { echo "ab-bench.sh: flurry-disk did not start:"; cat "$work/serve.out"; exit 1; }
  printf '%s:' "$label"
  for j in "${job_list[@]}"; do
    # shellcheck disable=SC2046
    iops=$(fio --name="$j" --ioengine=nbd --uri="nbd://127.0.0.1:$port/v" $(write_job_args "$j") \
             --size=256m --runtime="$runtime" --time_based --output-format=json 2>/dev/null |
           sed -n '/^{/,$p' | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
    res[$label,$j]="${res[$label,$j]:-} $iops"
    printf ' %s %s' "$j" "$iops"
    sleep 2
  done
  echo
  "$flurry" cluster stop --dir "$work/c" >/dev/null
  cur=
}
for _ in $(seq 1 "$rounds"); do
  run A "$a"
  run B "$b"
done
# The median; of an even count, the mean of the middle two.
median() {
  tr ' ' '\n' | grep -v '^$' | sort -n |
    awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%d\n", (v[NR/2]+v[NR/2+1])/2}'
}
echo "medians of $rounds (IOPS), mode $mode${block:+, block $block}, delay ${delay} us, ${runtime} s per job:"
for j in "${job_list[@]}"; do
  ma=$(echo "${res[A,$j]}" | median)
  mb=$(echo "${res[B,$j]}" | median)
  printf '  %-8s A %7s  B %7s  B/A %.2f\n' "$j" "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)"
done
