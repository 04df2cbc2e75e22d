#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# fastack-bound.sh: how much of fast-ack's gain over write-through on an
# fsync-after-every-write workload comes from its epoch bound absorbing a
# burst (docs/BENCHMARKS.md, issue 4 section).
#
# usage: bench/fastack-bound.sh [--delay-us 2000] [--rounds 2] [--build DIR]
#
# One local cluster (4 tract servers, --delay-us per request), volumes wt
# (write-through) and fa (fast-ack), R=2. Per round, one flurry-disk per run
# with --max-unretired-epochs B, fio ioengine=nbd 4 KiB randwrite, fsync
# after every write, QD1:
#   write-through 8 s; fast-ack B=4096 (the default) 8 s and 30 s; fast-ack B=16 8 s.
# Prints IOPS per run. Needs fio with the nbd engine and python3.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build delay=2000 rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --delay-us) delay=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '4,16p' "$0"; exit 0 ;;
    *) echo "fastack-bound.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
flurry=$build/tools/cli/flurry disk=$build/daemon/flurry-disk
if [ ! -x "$flurry" ] || [ ! -x "$disk" ]; then echo "fastack-bound.sh: build first (meson compile -C $build)" >&2; exit 2; fi
command -v fio >/dev/null || { echo "fastack-bound.sh: needs fio (with the nbd engine)" >&2; exit 2; }
W=$(mktemp -d /tmp/fastack-bound.XXXXXX)
DISK=
cleanup() {
  if [ -n "$DISK" ]; then kill "$DISK" 2>/dev/null || true; fi
  "$flurry" cluster stop --dir "$W/c" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
"$flurry" cluster start --dir "$W/c" --servers 4 --meta-port 0 --delay-us "$delay" >/dev/null
"$flurry" volume create wt --size 1G --replicas 2 --mode write-through --dir "$W/c" >/dev/null
"$flurry" volume create fa --size 1G --replicas 2 --mode fast-ack --dir "$W/c" >/dev/null
meta=$(sed -n 's/^meta=//p' "$W/c/cluster.conf")
run() {  # VOLUME BOUND SECONDS
  rm -f "$W/port"
  "$disk" --meta "$meta" --volume "$1" --listen 127.0.0.1:0 --port-file "$W/port" \
    --max-unretired-epochs "$2" > "$W/disk.log" 2>&1 &
  DISK=$!
  for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.1; done
  [ -s "$W/port" ] || { echo "flurry-disk did not start:"; cat "$W/disk.log"; exit 1; }
  fio --name=x --ioengine=nbd --uri="nbd://127.0.0.1:$(cat "$W/port")/$1" --rw=randwrite --bs=4k \
    --iodepth=1 --fsync=1 --size=256m --runtime="$3" --time_based --output-format=json > "$W/o.json" 2>/dev/null
  iops=$(sed -n '/^{/,$p' "$W/o.json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
  printf '%-14s B=%-5s %3s s: %6s IOPS\n' "$1" "$2" "$3" "$iops"
  kill "$DISK"; wait "$DISK" 2>/dev/null || true
  DISK=
  sleep 1
}
echo "fsync after every write, QD1, R=2, tract server delay $delay us"
for r in $(seq 1 "$rounds"); do
  echo "round $r"
  run wt 4096 8
  run fa 4096 8
  run fa 4096 30
  run fa 16 8
done
