#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# pg-bench.sh: PostgreSQL 15 pgbench (TPC-B) on ext4 on flurry, one volume
# per write mode, against peers attached the same way. Root; needs /dev/fuse,
# loop devices, PostgreSQL 15, qemu-nbd, nbdkit, nbdfuse.
#
# usage: bench/pg-bench.sh [--delay-us 2000] [--time 20] [--scale 4] [--clients 4]
#                          [--repeat 1] [--replicas 2] [--size 2G] [--build DIR]
#                          [--targets "write-through fast-ack log log-4k qemu-nbd nbdkit-delay"]
#                          [--out FILE]
#
# Targets (every one is ext4 on a loop device over a FUSE file, PostgreSQL
# with its data directory on it, fsync=on, synchronous_commit=on):
#   write-through, fast-ack, log   flurry volumes (R=--replicas) on a local
#                                  cluster of 4 tract servers, each request
#                                  delayed by --delay-us (emulated remote disk);
#                                  one flurry-disk --fuse serves them all
#   log-4k         a log volume with 4 KiB blocks (--block 4K): PostgreSQL's
#                  8 KiB pages and ext4's 4 KiB blocks need no read-before-write
#   qemu-nbd       qemu-nbd (cache=none, aio=io_uring) of a file on the same
#                  local disk -> nbdfuse -> losetup: NO added latency (the
#                  local-disk reference, not latency-matched)
#   nbdkit-delay   nbdkit file plugin (cache=none) with the delay filter
#                  (delay-read/write/zero/trim = --delay-us) -> nbdfuse ->
#                  losetup: the latency-matched peer (every request pays what
#                  one flurry tract-server round trip pays; flush is fdatasync)
# Per target: mkfs.ext4, initdb, `pgbench -i -s SCALE`, CHECKPOINT; then per
# repeat, every target in turn: `pgbench -n -c CLIENTS -j 2 -T TIME`, then
# CHECKPOINT, sync and 5 s of idle so that buffered modes drain. Prints TPS
# per target (median over repeats) and ratios to flurry write-through.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build delay=2000 time=20 scale=4 clients=4 repeat=1 replicas=2 size=2G out=
targets="write-through fast-ack log log-4k qemu-nbd nbdkit-delay"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --delay-us) delay=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "pg-bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
die() { echo "pg-bench.sh: $*" >&2; exit 1; }
pgbin=/usr/lib/postgresql/15/bin
flurry=$build/tools/cli/flurry disk=$build/daemon/flurry-disk
[ "$(id -u)" = 0 ] || die "needs root (FUSE, losetup, mount)"
[ -c /dev/fuse ] || die "no /dev/fuse"
[ -x "$pgbin/pgbench" ] || die "PostgreSQL 15 is not installed ($pgbin)"
[ -x "$flurry" ] && [ -x "$disk" ] || die "$flurry or $disk not found; build first (meson compile -C build)"
for t in qemu-nbd nbdkit nbdfuse mkfs.ext4 setpriv losetup; do
  command -v $t >/dev/null || die "$t is not installed"
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/flurry-pgbench-XXXXXX")
chmod 755 "$work"
pids=()   # background servers (flurry-disk, qemu-nbd, nbdkit, nbdfuse), in start order
declare -A pgpid loopdev mnt
cleanup() {
  set +e
  local t i d
  for t in "${!pgpid[@]}"; do
    kill -INT "${pgpid[$t]}" 2>/dev/null
    for ((i = 0; i < 300; i++)); do kill -0 "${pgpid[$t]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pgpid[$t]}" 2>/dev/null
  done
  for t in "${!mnt[@]}"; do umount "${mnt[$t]}" 2>/dev/null || umount -l "${mnt[$t]}"; done
  for t in "${!loopdev[@]}"; do losetup -d "${loopdev[$t]}"; done
  for d in "$work"/fuse-*; do
    awk -v d="$d" '$2 == d { f = 1 } END { exit !f }' /proc/self/mounts && { fusermount3 -u "$d" 2>/dev/null || umount -l "$d"; }
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null
    wait "${pids[i]}" 2>/dev/null
  done
  "$flurry" cluster stop --dir "$work/c" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

wait_file() {  # FILE SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# nbd_fuse NAME URI: nbdfuse URI as the file $work/fuse-NAME/disk.
nbd_fuse() {
  mkdir -p "$work/fuse-$1"
  nbdfuse -P "$work/nbdfuse-$1.pid" "$work/fuse-$1/disk" "$2" >"$work/nbdfuse-$1.log" 2>&1 &
  pids+=($!)
  wait_file "$work/nbdfuse-$1.pid" 30 || die "nbdfuse for $1 did not start: $(cat "$work/nbdfuse-$1.log")"
  file[$1]=$work/fuse-$1/disk
}

declare -A file
# flurry: cluster, one volume per mode, one flurry-disk with a FUSE file each.
modes=()
for t in $targets; do case $t in write-through|fast-ack|log|log-4k) modes+=("$t") ;; esac; done
if [ ${#modes[@]} -gt 0 ]; then
  "$flurry" cluster start --dir "$work/c" --servers 4 --meta-port 0 --delay-us "$delay" >/dev/null
  meta=$(sed -n 's/^meta=//p' "$work/c/cluster.conf")
  vargs=()
  for m in "${modes[@]}"; do
    mode=$m extra=()
    [ "$m" = log-4k ] && mode=log extra=(--block 4K)
    "$flurry" volume create "pg-$m" --size "$size" --replicas "$replicas" --mode "$mode" "${extra[@]}" \
      --dir "$work/c" >/dev/null
    vargs+=(--volume "pg-$m")
  done
  mkdir -p "$work/fuse-flurry"
  "$disk" --meta "$meta" --listen 127.0.0.1:0 --fuse "$work/fuse-flurry" "${vargs[@]}" >"$work/flurry-disk.log" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 300; i++)); do grep -qs '^flurry-disk: ready' "$work/flurry-disk.log" && break; sleep 0.1; done
  grep -qs '^flurry-disk: ready' "$work/flurry-disk.log" || die "flurry-disk did not start: $(tail "$work/flurry-disk.log")"
  for m in "${modes[@]}"; do file[$m]=$work/fuse-flurry/pg-$m; done
fi
for t in $targets; do
  case $t in
    qemu-nbd)
      truncate -s "$size" "$work/qemu.img"
      port=$(free_port)
      qemu-nbd -f raw -t --cache=none --aio=io_uring -b 127.0.0.1 -p "$port" "$work/qemu.img" >"$work/qemu-nbd.log" 2>&1 &
      pids+=($!)
      for ((i = 0; i < 100; i++)); do nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done
      nbd_fuse qemu "nbd://127.0.0.1:$port"
      file[qemu-nbd]=${file[qemu]}
      ;;
    nbdkit-delay)
      truncate -s "$size" "$work/nbdkit.img"
      port=$(free_port)
      ms=$(awk -v u="$delay" 'BEGIN { printf "%gms", u / 1000 }')
      nbdkit -f -i 127.0.0.1 -p "$port" --filter=delay file "$work/nbdkit.img" cache=none \
        delay-read="$ms" delay-write="$ms" delay-zero="$ms" delay-trim="$ms" >"$work/nbdkit.log" 2>&1 &
      pids+=($!)
      for ((i = 0; i < 100; i++)); do nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done
      nbd_fuse nbdkit "nbd://127.0.0.1:$port"
      file[nbdkit-delay]=${file[nbdkit]}
      ;;
    write-through|fast-ack|log|log-4k) ;;
    *) die "unknown target $t" ;;
  esac
done

# Per target: loop device, ext4, PostgreSQL (own socket dir), pgbench -i.
psql_t() { "$pgbin/psql" -X -q -At -h "$work/sock-$1" -p 5432 -U postgres "${@:2}"; }
for t in $targets; do
  f=${file[$t]}
  loopdev[$t]=$(losetup -f --show --direct-io=on "$f" 2>/dev/null || losetup -f --show "$f")
  mkfs.ext4 -q -F "${loopdev[$t]}"
  mnt[$t]=$work/mnt-$t
  mkdir -p "${mnt[$t]}" "$work/sock-$t"
  mount "${loopdev[$t]}" "${mnt[$t]}"
  d=${mnt[$t]}/pgdata
  mkdir -p "$d"
  chown postgres: "$d" "$work/sock-$t"
  chmod 700 "$d"
  setpriv --reuid=postgres --regid=postgres --init-groups "$pgbin/initdb" -N -D "$d" -U postgres --auth=trust \
    -E UTF8 --locale=C >"$work/initdb-$t.log" 2>&1 || die "initdb on $t: $(tail "$work/initdb-$t.log")"
  cat >>"$d/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work/sock-$t'
port = 5432
shared_buffers = 128MB
max_wal_size = 1GB
EOF
  sync -f "$d"
  setpriv --reuid=postgres --regid=postgres --init-groups "$pgbin/postgres" -D "$d" >"$work/postgres-$t.log" 2>&1 &
  pgpid[$t]=$!
  for ((i = 0; i < 600; i++)); do "$pgbin/pg_isready" -q -h "$work/sock-$t" -p 5432 && break; sleep 0.1; done
  "$pgbin/pg_isready" -q -h "$work/sock-$t" -p 5432 || die "PostgreSQL on $t did not start: $(tail "$work/postgres-$t.log")"
  psql_t "$t" -d postgres -c "CREATE DATABASE bench"
  t0=$(date +%s.%N)
  "$pgbin/pgbench" -i -q -s "$scale" -h "$work/sock-$t" -p 5432 -U postgres bench >"$work/init-$t.log" 2>&1 \
    || die "pgbench -i on $t: $(tail "$work/init-$t.log")"
  psql_t "$t" -d bench -c CHECKPOINT
  echo "$t: ${loopdev[$t]} on ${f}; pgbench -i -s $scale + checkpoint in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
done

declare -A res
for ((r = 1; r <= repeat; r++)); do
  for t in $targets; do
    "$pgbin/pgbench" -n -c "$clients" -j 2 -T "$time" -h "$work/sock-$t" -p 5432 -U postgres bench \
      >"$work/run-$t-$r.log" 2>&1 || die "pgbench on $t: $(tail "$work/run-$t-$r.log")"
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/run-$t-$r.log")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/run-$t-$r.log")
    echo "run $r $t: tps $tps, latency $lat ms" >&2
    res[$t]="${res[$t]:-} $tps"
    psql_t "$t" -d bench -c CHECKPOINT
    sync -f "${mnt[$t]}"
    sleep 5
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
{
  echo "pgbench TPC-B, scale $scale, $clients clients, ${time} s per run, medians of $repeat; ext4 on loop on a FUSE file;"
  echo "flurry R=$replicas, 4 tract servers with ${delay} us per request; nbdkit-delay = nbdkit file + delay filter ${delay} us (latency-matched);"
  echo "qemu-nbd = local file, no added latency (not latency-matched)"
  wt=$(echo "${res[write-through]:-}" | median)
  printf '| %-14s | %10s | %-28s | %8s |\n' target "TPS" "runs" "/ wt"
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..30})" "$(printf -- '-%.0s' {1..10})"
  for t in $targets; do
    m=$(echo "${res[$t]}" | median)
    ratio=-
    [ -n "$wt" ] && ratio=$(awk -v a="$m" -v b="$wt" 'BEGIN { printf "%.2f", a / b }')
    runs=$(echo "${res[$t]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i }')
    printf '| %-14s | %10.1f | %-28s | %8s |\n' "$t" "$m" "$runs" "$ratio"
  done
} | tee ${out:+"$out"}
