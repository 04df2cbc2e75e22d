#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# cli_test.sh FLURRY
#
# The `flurry` command line end to end, on a real local cluster in a temp
# directory: help texts, cluster start/status/stop (and refusing a second
# start), volume create/list/info/resize/delete, bad inputs (non-zero exit
# and a message that says what is wrong), serve --daemon, and - when
# flurry-disk is built and this is root with /dev/fuse and losetup -
# attach/detach with ext4. Logs are kept in the work directory on failure.
set -uo pipefail

FLURRY=${1:?usage: cli_test.sh path/to/flurry}
FLURRY=$(realpath "$FLURRY")
BIN=$(dirname "$FLURRY")/../..
W=$(mktemp -d /tmp/flurry-cli-test.XXXXXX)
C=$W/cluster
MNT=$W/mnt
OK=0
unset FLURRY_DIR FLURRY_BIN_DIR

cleanup() {
  set +e
  "$FLURRY" cluster stop --dir "$C" --force --timeout 5 >/dev/null 2>&1
  if [ "$OK" = 1 ]; then
    rm -rf "$W"
  else
    echo "FAILED; work directory kept: $W"
    for f in "$C"/logs/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 15 "$f"; }; done
  fi
}
trap cleanup EXIT

step() { echo "== $*"; }
die() { echo "FAIL: $*"; exit 1; }

# ok CMD...: must exit 0; its stdout is in $OUT.
ok() {
  OUT=$("$@" 2>"$W/err") || { cat "$W/err"; die "'$*' exited $?"; }
}
# fails CODE REGEX CMD...: must exit CODE with REGEX in stderr (the message).
fails() {
  local code=$1 re=$2
  shift 2
  "$@" >"$W/out" 2>"$W/err"
  local rc=$?
  [ "$rc" = "$code" ] || { cat "$W/out" "$W/err"; die "'$*' exited $rc, want $code"; }
  grep -Eq -- "$re" "$W/err" || { cat "$W/err"; die "'$*': message lacks /$re/"; }
  echo "   ok: $* -> $code: $(head -n 1 "$W/err")"
}
has() { grep -Eq -- "$1" <<<"$OUT" || { echo "$OUT"; die "output lacks /$1/"; }; }
hasnt() { ! grep -Eq -- "$1" <<<"$OUT" || { echo "$OUT"; die "output has /$1/"; }; }

fl() { "$FLURRY" "$@" --dir "$C"; }

step "help"
ok "$FLURRY" --help
OVERVIEW=$OUT
for c in "cluster start" "cluster stop" "cluster status" status "volume create" "volume list" \
         "volume info" "volume resize" "volume delete" serve attach detach; do
  OUT=$OVERVIEW
  has "^  $c "
  # shellcheck disable=SC2086
  ok "$FLURRY" $c --help
  has "^usage: flurry $c"
  has "--help"
  hasnt "not implemented"
done
ok "$FLURRY" volume --help
has "volume create"
# `flurry crashtest` is flurry-crashtest: its help, and a tiny real run.
OUT=$OVERVIEW
has "^  crashtest "
ok "$FLURRY" crashtest --help
has "^usage: flurry-crashtest inproc"
ok "$FLURRY" crashtest inproc --mode log --states 10 --seed 5
has "mode log: 10 crash states, 0 violations"
ok "$FLURRY" --version
has "^flurry [0-9]"

step "bad command lines exit 2 and point at --help"
fails 2 "unknown command 'frobnicate'" "$FLURRY" frobnicate
fails 2 "unknown subcommand 'frob'" "$FLURRY" volume frob
fails 2 "which one" "$FLURRY" cluster
fails 2 "unknown option '--bogus'" "$FLURRY" volume list --bogus
fails 2 "needs a value" "$FLURRY" volume create x --size
fails 2 "expected 1 argument" "$FLURRY" volume info
fails 2 "is extra" "$FLURRY" volume info a b
fails 2 "given more than once" "$FLURRY" volume create x --size 1G --size 2G
fails 2 "" "$FLURRY"

step "binaries are found via FLURRY_BIN_DIR when set"
fails 1 "cannot find flurry-meta in \\\$FLURRY_BIN_DIR" env FLURRY_BIN_DIR="$W/nobin" "$FLURRY" cluster start --dir "$W/x"

step "no cluster yet"
fails 1 "no cluster in $W/none .*flurry cluster start" "$FLURRY" volume list --dir "$W/none"
fails 1 "no cluster in" env FLURRY_DIR="$W/none" "$FLURRY" status
fails 1 "bad --meta" "$FLURRY" volume list --meta nonsense
fails 1 "does not answer|cannot reach" "$FLURRY" status --meta 127.0.0.1:1

step "cluster start (3 servers, 3 zones, any meta port)"
mkdir -p "$W/foreign" && touch "$W/foreign/notes.txt"
fails 1 "not a flurry cluster directory .*notes.txt" "$FLURRY" cluster start --dir "$W/foreign" --meta-port 0
fails 1 "--zones 4 is more than --servers 3" "$FLURRY" cluster start --dir "$C" --servers 3 --zones 4
fails 1 "bad --servers" "$FLURRY" cluster start --dir "$C" --servers many
ok "$FLURRY" cluster start --dir "$C" --servers 3 --zones 3 --meta-port 0
has "cluster running in $C"
[ -f "$C/cluster.conf" ] || die "no cluster.conf"
for n in meta ts0 ts1 ts2; do
  [ -f "$C/pids/$n.pid" ] && kill -0 "$(cat "$C/pids/$n.pid")" || die "$n not running"
  [ -f "$C/logs/$n.log" ] || die "no log for $n"
done
META=$(sed -n 's/^meta=//p' "$C/cluster.conf")

step "starting twice is refused"
fails 1 "already running in $C" "$FLURRY" cluster start --dir "$C" --servers 3 --zones 3 --meta-port 0

step "cluster status"
ok fl cluster status
has "servers +3 of 3 up"
has "TLT +version [0-9]+, [0-9]+ rows"
for z in z0 z1 z2; do has "127\.0\.0\.1:[0-9]+ +$z +up"; done
has "volumes +0"
ok "$FLURRY" cluster status --meta "$META"
has "3 of 3 up"

step "volume create / list / info"
ok fl volume list
has "no volumes"
ok fl volume create alpha --size 64M --replicas 2
has "created volume alpha: 64M, 2 replicas"
ok fl volume create beta --size 32M --replicas 3 --tract-size 1M --segment 4 --block 128K --mode fast-ack
has "relaxed flush"
ok fl volume create gamma --size 1G --replicas 1 --mode log
ok "$FLURRY" --dir "$C" volume list
has "^alpha "
ok env FLURRY_DIR="$C" "$FLURRY" volume list
has "^NAME +SIZE +R +TRACT +SEGMENT +BLOCK +MODE"
has "^alpha +64M +2 +8M +128 +1M +write-through$"  # default block: 1M, but 64K in log mode
has "^beta +32M +3 +1M +4 +128K +fast-ack \(relaxed flush: prefix consistency\)$"
has "^gamma +1G +1 +8M +128 +64K +log \(relaxed flush: prefix consistency\)$"
ok "$FLURRY" volume info beta --meta "$META"
has "^size +32M \(33554432 bytes\)"
has "^replicas +3"
has "^mode +fast-ack \(relaxed flush"
ok fl status
has "volumes +3"

step "bad volume inputs"
fails 1 "bad --size '10Q'.*K, M, G or T" fl volume create x --size 10Q
fails 1 "bad --size '-5'" fl volume create x --size -5
fails 1 "multiple of 4 KiB" fl volume create x --size 1000
fails 1 "needs a size" fl volume create x
fails 1 "bad volume name 'bad/name'" fl volume create bad/name --size 1G
fails 1 "bad volume name '.hidden'" fl volume create .hidden --size 1G
fails 1 "bad --replicas '4'" fl volume create x --size 1G --replicas 4
fails 1 "bad --mode 'fast'" fl volume create x --size 1G --mode fast
fails 1 "tract size must be a power of two" fl volume create x --size 1G --tract-size 3M
fails 1 "block size" fl volume create x --size 1G --block 16M --tract-size 8M
fails 1 "already exists" fl volume create alpha --size 64M
fails 1 "no volume named 'nosuch'" fl volume info nosuch
fails 1 "no volume named 'nosuch'" fl volume delete nosuch
fails 1 "no volume named 'nosuch'" fl volume resize nosuch 1G
fails 1 "shrinking .* not supported" fl volume resize alpha 32M
fails 1 "bad size 'big'" fl volume resize alpha big
ok fl volume list
hasnt "^x "

step "volume resize (grow only)"
ok fl volume resize alpha 128M
has "grown from 64M to 128M"
ok fl volume info alpha
has "^size +128M"
ok fl volume resize alpha 128M
has "already 128M"

DISK=$BIN/daemon/flurry-disk
if [ -x "$DISK" ]; then
  step "flurry-disk rejects bad engine bounds"
  fails 2 "bad --max-buffered '10K'" "$DISK" --meta 127.0.0.1:1 --volume alpha --max-buffered 10K
  fails 2 "bad --max-unretired-epochs '0'" "$DISK" --meta 127.0.0.1:1 --volume alpha --max-unretired-epochs 0
  fails 2 "bad --max-unretired-epochs '9x'" "$DISK" --meta 127.0.0.1:1 --volume alpha --max-unretired-epochs 9x
  fails 2 "bad --lease-ttl-ms '50'" "$DISK" --meta 127.0.0.1:1 --volume alpha --lease-ttl-ms 50
  fails 2 "bad --lease-wait-ms 'x'" "$DISK" --meta 127.0.0.1:1 --volume alpha --lease-wait-ms x
  ok fl volume info alpha
  has "writer +none"
  step "serve --daemon, write through NBD, stop"
  ok fl serve alpha --daemon --listen 127.0.0.1:0
  has "nbd://127\.0\.0\.1:[0-9]+/alpha"
  [ -f "$C/pids/disk-alpha.pid" ] || die "no pid file for the serve daemon"
  fails 1 "already served" fl serve alpha --daemon --listen 127.0.0.1:0
  fails 1 "being served" fl volume delete alpha
  ok fl volume info alpha
  has "writer +flurry-disk pid $(cat "$C/pids/disk-alpha.pid") on .*write lease generation 1"
  PORT=$(cat "$C/run/disk-alpha.port")
  WROTE=0
  if command -v qemu-io >/dev/null; then
    qemu-io -f raw -c 'write -P 0xab 0 4M' -c 'write -P 0xcd 100M 1M' "nbd://127.0.0.1:$PORT/alpha" >"$W/qemu-io.log" 2>&1 \
      || { cat "$W/qemu-io.log"; die "qemu-io write"; }
    WROTE=1
  else
    echo "   (no qemu-io: not writing data)"
  fi
  ok fl status
  has "disk-alpha +[0-9]+ +running"
  ok fl serve --stop alpha
  has "stopped flurry-disk"
  fails 1 "no flurry-disk daemon" fl serve --stop alpha
  fails 1 "no volume named 'nosuch'" fl serve nosuch

  step "serve in the foreground (exec), over a unix socket; SIGTERM ends it"
  ok fl volume create eps --size 64M --replicas 1
  "$FLURRY" serve eps --unix "$W/eps.sock" --listen 127.0.0.1:0 --dir "$C" 2>"$W/fg.log" &
  FG=$!
  for _ in $(seq 100); do
    grep -q "flurry-disk: ready" "$W/fg.log" && break
    kill -0 "$FG" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "flurry-disk: ready" "$W/fg.log" || { cat "$W/fg.log"; die "foreground serve not ready"; }
  [ -S "$W/eps.sock" ] || die "no unix socket"
  if command -v nbdinfo >/dev/null; then
    [ "$(nbdinfo --size "nbd+unix:///eps?socket=$W/eps.sock")" = $((64 << 20)) ] || die "nbdinfo size over unix socket"
  fi
  kill -TERM "$FG"
  wait "$FG" || die "foreground flurry-disk exited $? on SIGTERM"
else
  echo "== SKIP serve: no $DISK"
fi

step "volume delete removes the registry entry and the tracts"
ID=$(fl volume info alpha | sed -n 's/^blob id *//p')
[ -n "$ID" ] || die "no blob id"
tract_files() { find "$C"/ts*/tracts -path "*$ID*" -type f 2>/dev/null | wc -l; }
if [ "${WROTE:-0}" = 1 ]; then
  [ "$(tract_files)" -gt 0 ] || die "no tract files of $ID on the servers after writing"
fi
ok fl volume delete alpha
has "deleted volume alpha"
fails 1 "no volume named 'alpha'" fl volume info alpha
[ "$(tract_files)" = 0 ] || die "$(tract_files) tract files of $ID are still on the servers"

if [ -x "$DISK" ] && [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && command -v losetup >/dev/null &&
   command -v mkfs.ext4 >/dev/null && losetup -f >/dev/null 2>&1; then
  step "attach --mkfs ext4, write, detach (busy first), re-attach"
  mkdir -p "$MNT"
  ok fl volume create delta --size 128M --replicas 2
  fails 1 "no filesystem yet.*--mkfs ext4" fl attach delta "$MNT"
  if command -v setpriv >/dev/null; then
    fails 1 "needs root" setpriv --reuid=65534 --regid=65534 --clear-groups "$FLURRY" attach delta "$MNT" --dir "$C"
    fails 1 "needs root" setpriv --reuid=65534 --regid=65534 --clear-groups "$FLURRY" detach delta --dir "$C"
  fi
  [ ! -e "$C/attach/delta" ] || die "a failed attach left its record"
  ok fl attach delta "$MNT" --mkfs ext4 --via fuse
  has "attached delta at $MNT"
  findmnt "$MNT" >/dev/null || die "not mounted"
  head -c 3M /dev/urandom >"$W/payload"
  cp "$W/payload" "$MNT/payload"
  sync
  fails 1 "already attached" fl attach delta "$MNT"
  mkdir -p "$W/mnt2"
  fails 1 "no volume named" fl attach nosuch "$W/mnt2"
  fails 1 "does not exist" fl attach delta "$W/missing-dir"
  ok fl status
  has "delta +$MNT +/dev/loop[0-9]+ +fuse-loop +ext4 +mounted"
  (cd "$MNT" && sleep 4) &
  BUSY=$!
  sleep 0.5
  fails 1 "target is busy|fuser" fl detach delta
  findmnt "$MNT" >/dev/null || die "a refused detach unmounted anyway"
  wait "$BUSY"
  ok fl detach "$MNT"
  has "detached delta"
  ! findmnt "$MNT" >/dev/null || die "still mounted after detach"
  [ ! -e "$C/attach/delta" ] || die "record left after detach"
  [ ! -e "$C/pids/attach-delta.pid" ] || die "daemon pid file left after detach"
  fails 1 "nothing is attached" fl detach delta
  ok fl attach delta "$MNT" --mkfs ext4
  has "already holds a filesystem"
  cmp "$W/payload" "$MNT/payload" || die "payload differs after re-attach"
  fails 1 "is attached at" fl volume delete delta
  step "cluster stop detaches attached volumes"
  ok "$FLURRY" cluster stop --dir "$C"
  has "detached delta"
  ! findmnt "$MNT" >/dev/null || die "still mounted after cluster stop"
  step "the filesystem survives a cluster restart"
  ok "$FLURRY" cluster start --dir "$C" --meta-port 0
  ok fl attach delta "$MNT"
  cmp "$W/payload" "$MNT/payload" || die "payload differs after a cluster restart"
  ok fl detach delta
else
  echo "== SKIP attach: needs flurry-disk, root, /dev/fuse, losetup, mkfs.ext4 and a free loop device"
fi

step "cluster stop: a dead server is skipped, a stuck one gets SIGKILL after --timeout"
kill -KILL "$(cat "$C/pids/ts0.pid")"
kill -STOP "$(cat "$C/pids/ts1.pid")"
ok "$FLURRY" cluster stop --dir "$C" --timeout 1
has "stopped 1 flurry-meta, 2 tract servers"
has "were killed: ts1"
for f in "$C"/pids/*.pid; do [ -e "$f" ] && die "pid file $f left behind"; done
fails 1 "does not answer" fl cluster status
ok "$FLURRY" cluster stop --dir "$C"
has "nothing was running"

step "restart keeps the volumes"
fails 1 "restart it with --servers 3" "$FLURRY" cluster start --dir "$C" --servers 4
ok "$FLURRY" cluster start --dir "$C" --meta-port 0
ok fl volume list
has "^beta "
has "^gamma "
ok "$FLURRY" cluster stop --dir "$C"

OK=1
echo "PASS"
