#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# nbd-bench.sh: the same fio jobs (ioengine=nbd) against flurry-disk and two
# baseline NBD servers on the same disk, one after another, in one run.
#
# usage: bench/nbd-bench.sh [options]
#
# Targets (in this order; never two loads at once):
#   r1        flurry-disk, volume with R=1, on a local cluster (meta + 4 tract servers);
#             flurry-disk reaches the tract servers over their local unix sockets
#   r1-tcp    the same volume, flurry-disk --no-local-socket: loopback TCP to the tract servers
#   r2        flurry-disk, volume with R=2, same cluster
#   qemu-nbd  qemu-nbd -f raw --cache=none --aio=io_uring -t serving a FILE-SIZE file
#   qemu-nbd-sync  the same with --cache=directsync (O_DIRECT + O_DSYNC): every write
#             durable before its reply, the promise flurry's write-through mode makes
#             (plain qemu-nbd's writes are durable only at a FLUSH)
#   nbdkit    nbdkit file plugin, cache=none, serving the same file
# Jobs (one fio job each, time based, over the first SIZE bytes):
#   randread4k   4 KiB random read, QD32            (IOPS)
#   randwrite4k  4 KiB random write, QD32           (IOPS)
#   read1m       1 MiB sequential read, QD8         (MB/s)
#   write1m      1 MiB sequential write, QD8        (MB/s)
#   fsync4k      4 KiB sequential write + flush after each, QD1 (IOPS)
# Each target's range is written once (1 MiB writes) before its first read
# job. With --repeat N everything runs N times and the table shows medians.
#
# Options:
#   --build DIR        meson build directory with the flurry binaries (default: REPO/build)
#   --runtime S        seconds per job (default 8)
#   --size SIZE        range the jobs touch, fio syntax (default 1g)
#   --file-size SIZE   size of the volumes and of the baseline file (default 2g)
#   --repeat N         run everything N times, report medians (default 1)
#   --targets LIST     comma-separated subset of r1,r1-tcp,r2,qemu-nbd,qemu-nbd-sync,nbdkit
#                      (default all)
#   --jobs LIST        comma-separated subset of the jobs above (default all)
#   --servers N        tract servers in the flurry cluster (default 4)
#   --delay-us N       tract server injected service latency (default 0)
#   --settle S         after each target: sync, then S seconds idle (default 5), so
#                      no target pays for the previous one's buffered writes
#   --volume-opts STR  extra VOLUME CREATE parameters (default: meta's defaults),
#                      e.g. "tract_size=8M segment=128 block=64K"
#   --workdir DIR      parent of the scratch directory (default ${TMPDIR:-/var/tmp});
#                      the tract servers' data and the baseline file live there
#   --out FILE         also write the table to FILE
#   --keep             keep the scratch directory (logs, fio JSON)
#   -h, --help         this text
#
# Example: a short smoke run, and the real measurement:
#   bench/nbd-bench.sh --build build --runtime 2 --size 256m --file-size 512m
#   bench/nbd-bench.sh --build build --repeat 3 --out bench-results.txt
#
# Needs fio with the nbd engine, nbdinfo, qemu-nbd, nbdkit and python3.
# Results are noisy on a shared machine: compare ratios within one run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build
RUNTIME=8 SIZE=1g FILE_SIZE=2g REPEAT=1 SERVERS=4 DELAY_US=0 SETTLE=5
TARGETS=r1,r1-tcp,r2,qemu-nbd,qemu-nbd-sync,nbdkit
JOBS=randread4k,randwrite4k,read1m,write1m,fsync4k
VOLUME_OPTS='' WORKPARENT=${TMPDIR:-/var/tmp} OUT='' KEEP=0

usage() { sed -n '4,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "nbd-bench: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --file-size) FILE_SIZE=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --delay-us) DELAY_US=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --volume-opts) VOLUME_OPTS=$2; shift 2 ;;
    --workdir) WORKPARENT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
[[ $RUNTIME =~ ^[0-9]+$ && $RUNTIME -ge 1 ]] || die "--runtime wants whole seconds >= 1"
[[ $REPEAT =~ ^[0-9]+$ && $REPEAT -ge 1 ]] || die "--repeat wants a count >= 1"
[[ $SERVERS =~ ^[0-9]+$ && $SERVERS -ge 2 ]] || die "--servers wants at least 2 (R=2)"
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
IFS=, read -r -a JOB_LIST <<<"$JOBS"
for t in "${TARGET_LIST[@]}"; do [[ $t =~ ^(r1|r1-tcp|r2|qemu-nbd|qemu-nbd-sync|nbdkit)$ ]] || die "unknown target '$t'"; done
for j in "${JOB_LIST[@]}"; do [[ $j =~ ^(randread4k|randwrite4k|read1m|write1m|fsync4k)$ ]] || die "unknown job '$j'"; done

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed"; }
need fio; need nbdinfo; need python3
fio --enghelp=nbd >/dev/null 2>&1 || die "fio lacks the nbd ioengine"
uses() { [[ ",$TARGETS," == *",$1,"* ]]; }
if uses r1 || uses r1-tcp || uses r2; then
  META_BIN=$BUILD/meta/flurry-meta TS_BIN=$BUILD/tractserver/flurry-tractserver DISK_BIN=$BUILD/daemon/flurry-disk
  for b in "$META_BIN" "$TS_BIN" "$DISK_BIN"; do
    [[ -x $b ]] || die "$b not found: build first (meson compile -C $BUILD) or pass --build DIR"
  done
fi
{ uses qemu-nbd || uses qemu-nbd-sync; } && need qemu-nbd
uses nbdkit && need nbdkit
SIZE_BYTES=$(numfmt --from=iec "${SIZE^^}") || die "bad --size '$SIZE'"
FILE_BYTES=$(numfmt --from=iec "${FILE_SIZE^^}") || die "bad --file-size '$FILE_SIZE'"
[[ $SIZE_BYTES -le $FILE_BYTES ]] || die "--size ($SIZE) exceeds --file-size ($FILE_SIZE)"

W=$(mktemp -d "$WORKPARENT/flurry-nbd-bench.XXXXXX")
mkdir -p "$W/logs" "$W/fio"
PIDS=()
OK=0
cleanup() {
  local rc=$? p
  set +e
  for ((p = ${#PIDS[@]} - 1; p >= 0; p--)); do
    [[ -n ${PIDS[p]} ]] && kill -TERM "${PIDS[p]}" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do [[ -n $p ]] && wait "$p" 2>/dev/null; done
  if [[ $OK == 1 && $KEEP == 0 ]]; then
    rm -rf "$W"
  else
    # Drop the bulky data, keep logs and fio output.
    rm -rf "$W/cluster" "$W/disk.img"
    echo "nbd-bench: logs kept in $W" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# spawn NAME CMD...: background process with its log; sets LAST_PID.
spawn() {
  local name=$1
  shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
# stop PID: SIGTERM, wait (KILL after 30 s).
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${!PIDS[@]}"; do [[ ${PIDS[i]} == "$pid" ]] && PIDS[i]=; done
  return 0
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_nbd URI PID: until nbdinfo can connect (20 s).
wait_nbd() {
  local i
  for ((i = 0; i < 200; i++)); do
    nbdinfo --size "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# --- targets ------------------------------------------------------------------

META_PORT=
meta() {  # one request line to flurry-meta; prints the reply, fails on ERR
  python3 - "$META_PORT" "$*" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode() + b"\n")
f = s.makefile("r")
head = f.readline().split()
if not head or head[0] != "OK":
    sys.exit("meta: " + " ".join(head))
for _ in range(int(head[1])):
    print(f.readline().rstrip("\n"))
PY
}

cluster_start() {
  local i
  mkdir -p "$W/cluster/meta"
  spawn meta "$META_BIN" --dir "$W/cluster/meta" --listen 127.0.0.1:0 --port-file "$W/meta.port"
  for ((i = 0; i < 100; i++)); do [[ -s $W/meta.port ]] && break; sleep 0.1; done
  META_PORT=$(<"$W/meta.port")
  for ((i = 0; i < SERVERS; i++)); do
    mkdir -p "$W/cluster/ts$i"
    spawn "ts$i" "$TS_BIN" --dir "$W/cluster/ts$i" --meta "127.0.0.1:$META_PORT" --delay-us "$DELAY_US"
  done
  for ((i = 0; i < 100; i++)); do
    [[ $(meta STATUS 2>/dev/null) == *"servers $SERVERS up $SERVERS"* ]] && break
    sleep 0.1
  done
  [[ $(meta STATUS) == *"servers $SERVERS up $SERVERS"* ]] || die "tract servers did not register"
  # shellcheck disable=SC2086  # VOLUME_OPTS is a word list on purpose
  meta VOLUME CREATE r1 "size=$FILE_BYTES" replicas=1 $VOLUME_OPTS >/dev/null
  # shellcheck disable=SC2086
  meta VOLUME CREATE r2 "size=$FILE_BYTES" replicas=2 $VOLUME_OPTS >/dev/null
  log "cluster: meta on $META_PORT, $SERVERS tract servers (delay ${DELAY_US} us); volume r2: $(meta VOLUME INFO r2)"
}

# target_start T: start target T's server; sets URI and SERVER_PID.
target_start() {
  local port
  case $1 in
    r1|r1-tcp|r2)
      rm -f "$W/disk.port"
      local vol=${1%-tcp} extra=()
      [[ $1 == *-tcp ]] && extra=(--no-local-socket)
      spawn "disk-$1" "$DISK_BIN" --meta "127.0.0.1:$META_PORT" --volume "$vol" --listen 127.0.0.1:0 \
        --port-file "$W/disk.port" "${extra[@]}"
      SERVER_PID=$LAST_PID
      local i
      for ((i = 0; i < 300; i++)); do [[ -s $W/disk.port ]] && break; sleep 0.1; done
      [[ -s $W/disk.port ]] || die "flurry-disk did not start (see $W/logs/disk-$1.log)"
      URI=nbd://127.0.0.1:$(<"$W/disk.port")/$vol
      ;;
    qemu-nbd|qemu-nbd-sync)
      port=$(free_port)
      local cache=none
      [[ $1 == qemu-nbd-sync ]] && cache=directsync
      spawn "$1" qemu-nbd -f raw --cache=$cache --aio=io_uring -t -x disk -p "$port" --bind 127.0.0.1 "$W/disk.img"
      SERVER_PID=$LAST_PID
      URI=nbd://127.0.0.1:$port/disk
      ;;
    nbdkit)
      port=$(free_port)
      spawn nbdkit nbdkit -f -p "$port" -i 127.0.0.1 file "$W/disk.img" cache=none
      SERVER_PID=$LAST_PID
      URI=nbd://127.0.0.1:$port/
      ;;
  esac
  wait_nbd "$URI" "$SERVER_PID" || die "$1 did not come up at $URI (see $W/logs)"
}

# --- jobs ---------------------------------------------------------------------

job_args() {
  case $1 in
    randread4k) echo "--rw=randread --bs=4k --iodepth=32 --norandommap --randrepeat=0" ;;
    randwrite4k) echo "--rw=randwrite --bs=4k --iodepth=32 --norandommap --randrepeat=0" ;;
    read1m) echo "--rw=read --bs=1M --iodepth=8" ;;
    write1m) echo "--rw=write --bs=1M --iodepth=8" ;;
    fsync4k) echo "--rw=write --bs=4k --iodepth=1 --fsync=1" ;;
  esac
}

# run_fio OUTFILE URI ARGS...: fio with JSON output in OUTFILE (stripped of the
# lines fio prints before the JSON document).
run_fio() {
  local out=$1 uri=$2
  shift 2
  fio --name=job --ioengine=nbd --uri="$uri" --size="$SIZE" --output-format=json "$@" >"$out.raw" 2>"$out.err" \
    || { cat "$out.err" >&2; die "fio failed: $*"; }
  sed -n '/^{/,$p' "$out.raw" >"$out"
}

# metric FILE JOB: IOPS (4K jobs) or MB/s (1M jobs) from a fio JSON file.
metric() {
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
j = d["jobs"][0]
if "error" in j and j["error"]:
    sys.exit(f"fio job error {j['error']}")
side = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
print(f"{side['bw_bytes'] / 1e6:.1f}" if sys.argv[2].endswith("1m") else f"{side['iops']:.0f}")
PY
}

declare -A PREFILLED=()
prefill() {
  [[ -n ${PREFILLED[$2]:-} ]] && return 0
  log "  prefill $SIZE of $2"
  run_fio "$W/fio/prefill-$1.json" "$URI" --rw=write --bs=1M --iodepth=8
  PREFILLED[$2]=1
}

# --- run ----------------------------------------------------------------------

if uses qemu-nbd || uses qemu-nbd-sync || uses nbdkit; then
  fallocate -l "$FILE_BYTES" "$W/disk.img" 2>/dev/null || truncate -s "$FILE_BYTES" "$W/disk.img"
fi
if uses r1 || uses r1-tcp || uses r2; then cluster_start; fi
log "runtime ${RUNTIME}s per job, range $SIZE, repeat $REPEAT, targets $TARGETS, scratch $W"

: >"$W/results.tsv"
for ((rep = 1; rep <= REPEAT; rep++)); do
  for t in "${TARGET_LIST[@]}"; do
    target_start "$t"
    data=$t
    [[ $t == qemu-nbd* || $t == nbdkit ]] && data="file"  # they share disk.img
    [[ $t == r1-tcp ]] && data="r1"                      # the same volume
    # Reads first (over prefilled data), then writes.
    for j in randread4k read1m randwrite4k write1m fsync4k; do
      [[ ",$JOBS," == *",$j,"* ]] || continue
      [[ $j == randread4k || $j == read1m ]] && prefill "$t" "$data"
      f=$W/fio/$t-$j-$rep.json
      # shellcheck disable=SC2046  # job_args is a word list on purpose
      run_fio "$f" "$URI" --time_based --runtime="$RUNTIME" $(job_args "$j")
      v=$(metric "$f" "$j")
      printf '%s\t%s\t%s\t%s\n' "$rep" "$t" "$j" "$v" >>"$W/results.tsv"
      log "rep $rep/$REPEAT $t $j: $v $([[ $j == *1m ]] && echo MB/s || echo IOPS)"
    done
    stop "$SERVER_PID"
    # Settle: the next target must not pay for this one's buffered writes
    # (nbdkit's cache=none writes through the page cache, and the kernel
    # writes them back afterwards): flush them, then let the disk go idle.
    sync
    sleep "$SETTLE"
  done
done

python3 - "$W/results.tsv" "$REPEAT" "$RUNTIME" "$SIZE" "$DELAY_US" "$TARGETS" "$JOBS" >"$W/table.txt" <<'PY'
import statistics, sys
path, repeat, runtime, size, delay, targets, jobs = sys.argv[1:]
vals = {}
for line in open(path):
    rep, t, j, v = line.split("\t")
    vals.setdefault((t, j), []).append(float(v))
cols = [("r1", "flurry R=1"), ("r1-tcp", "R=1 TCP"), ("r2", "flurry R=2"), ("qemu-nbd", "qemu-nbd"),
        ("qemu-nbd-sync", "qemu-nbd dsync"), ("nbdkit", "nbdkit")]
rows = [("randread4k", "4K randread QD32", "IOPS"), ("randwrite4k", "4K randwrite QD32", "IOPS"),
        ("read1m", "1M read QD8", "MB/s"), ("write1m", "1M write QD8", "MB/s"),
        ("fsync4k", "4K write+fsync QD1", "IOPS")]
jobs = jobs.split(",")
def med(t, j):
    v = vals.get((t, j))
    return statistics.median(v) if v else None
def fmt(x, unit):
    if x is None:
        return "-"
    if unit == "IOPS":
        return f"{x / 1000:.1f}K" if x >= 10000 else f"{x:.0f}"
    return f"{x:.0f}"
header = ["job"] + [c[1] for c in cols] + ["R1/qemu-nbd", "R1 TCP/qemu-nbd", "R1/qemu-nbd dsync"]
table = []
for j, name, unit in rows:
    if j not in jobs:
        continue
    ratio = lambda t, base: f"{med(t, j) / med(base, j):.2f}" if med(t, j) is not None and med(base, j) else "-"
    table.append([f"{name} ({unit})"] + [fmt(med(c, j), unit) for c, _ in cols] +
                 [ratio("r1", "qemu-nbd"), ratio("r1-tcp", "qemu-nbd"), ratio("r1", "qemu-nbd-sync")])
widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
line = lambda r: "| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) + " |"
what = "median of %s runs" % repeat if int(repeat) > 1 else "1 run"
print(f"fio ioengine=nbd, {runtime} s per job, range {size}, {what}; tract server delay {delay} us")
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in table:
    print(line(r))
PY
cat "$W/table.txt"
if [[ -n $OUT ]]; then cp "$W/table.txt" "$OUT"; log "table written to $OUT"; fi
OK=1
