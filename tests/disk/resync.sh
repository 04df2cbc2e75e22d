#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Replicas that a crash left different are resynced (R=2, 2 tract servers,
# write-through). The session-3 defect this guards against: an R-way write
# in flight when flurry-disk died had reached one replica only; nothing
# reconciled them, so later reads returned old or new data depending on
# which replica answered.
# 1. Write 0xaa over 4 MiB; SIGSTOP tract server 0; write 0xbb over the same
#    range (it lands on server 1 only; server 0 never sees it); kill -9
#    flurry-disk and then server 0.
# 2. Start flurry-disk while server 0 is still down: its recovery must wait
#    for it (the marked tracts' replicas cannot be compared without it);
#    restart server 0 on its directory and port; flurry-disk must log that
#    replicas differed and get ready.
# 3. Read the volume with server 1 killed, then with server 1 back and server
#    0 killed: both images must be identical, and each 4 KiB of the range
#    all 0xaa or all 0xbb (write-through: an unacknowledged write may be
#    there or not, nothing else).
# 4. The same with cold tracts (marks cleared by a short linger): the new
#    write's mark cannot be persisted while server 0 is stopped, so the data
#    must reach neither replica.
#   usage: resync.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools qemu-io qemu-img python3 cmp

fl_cluster_start --servers 2 --heartbeat-timeout-ms 600000
fl_volume v 64M 2
# Marks stay long after the writes, as under steady load.
fl_disk_start --volume v --dirty-linger-ms 600000
M=$((1 << 20))
ts_port() { cat "$T/ts$1.port"; }
P0=$(ts_port 0) P1=$(ts_port 1)

ts_restart() {  # $1 = server index; same directory, same port if still free
  local i=$1 port
  port=$(ts_port "$i")
  fl_spawn "ts$i.restart.$RANDOM" "$FL_TS_BIN" --dir "$T/ts$i" --meta "127.0.0.1:$META_PORT" \
    --listen "127.0.0.1:$port"
  FL_TS_PIDS[i]=$FL_LAST_PID
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fl_alive "${FL_TS_PIDS[i]}" && return 0
    fl_alive "${FL_TS_PIDS[i]}" || break
    sleep 0.1
  done
  # The port was taken meanwhile: a new one (the server re-registers with
  # meta under its own id, which updates its address in the TLT).
  rm -f "$T/ts$i.port"
  fl_spawn "ts$i.restart.$RANDOM" "$FL_TS_BIN" --dir "$T/ts$i" --meta "127.0.0.1:$META_PORT" \
    --listen 127.0.0.1:0 --port-file "$T/ts$i.port"
  FL_TS_PIDS[i]=$FL_LAST_PID
  fl_wait_file "$T/ts$i.port" 10 "${FL_TS_PIDS[i]}" || fl_fail "tract server $i did not come back"
  sleep 1  # registration
}

fl_step "write 0xaa over [0, 4M) on both replicas"
qemu-io -f raw -c "write -P 0xaa 0 $((4 * M))" "$NBD/v" >"$T/logs/qemu-a.log" 2>&1 || fl_fail "qemu-io write A"

fl_step "SIGSTOP tract server 0; write 0xbb (reaches server 1 only); kill -9 flurry-disk, then server 0"
kill -STOP "${FL_TS_PIDS[0]}"
qemu-io -f raw -c "write -P 0xbb 0 $((4 * M))" "$NBD/v" >"$T/logs/qemu-b.log" 2>&1 &
QB=$!
sleep 1.5
fl_alive "$QB" || fl_fail "write B completed with server 0 stopped; the test would prove nothing"
kill -KILL "$DISK_PID"
wait "$DISK_PID" 2>/dev/null || true
DISK_PID=
fl_kill9_ts 0
wait "$QB" 2>/dev/null || true

fl_step "start flurry-disk with server 0 down; restart server 0 after 2 s"
FL_DISK_RUNS=$((FL_DISK_RUNS + 1))
rm -f "$T/disk.port"
log=disk.$FL_DISK_RUNS
fl_spawn "$log" "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 \
  --port-file "$T/disk.port" --volume v
DISK_PID=$FL_LAST_PID
sleep 2
grep -qs '^flurry-disk: ready' "$T/logs/$log.log" &&
  fl_fail "flurry-disk got ready without comparing the replicas of server 0"
fl_alive "$DISK_PID" || fl_fail "flurry-disk exited while server 0 was down (see $log.log)"
ts_restart 0
for _ in $(seq 1 300); do
  grep -qs '^flurry-disk: ready' "$T/logs/$log.log" && break
  fl_alive "$DISK_PID" || fl_fail "flurry-disk exited during recovery (see $log.log)"
  sleep 0.1
done
grep -q '^flurry-disk: ready' "$T/logs/$log.log" || fl_fail "flurry-disk not ready 30 s after server 0 came back"
grep "replicas:" "$T/logs/$log.log" || fl_fail "no resync report in $log.log"
grep -q "replicas differed" "$T/logs/$log.log" || fl_fail "recovery found no replicas that differed"
NBD="nbd://127.0.0.1:$(<"$T/disk.port")"

read_image() {  # $1 = output file
  qemu-img convert -f raw -O raw "$NBD/v" "$1" 2>>"$T/logs/qemu-img.log" || fl_fail "reading the volume failed"
}

# read_each_replica NAME: the whole volume into NAME0.img with server 1 down
# (server 0's replicas) and into NAME1.img with server 0 down.
read_each_replica() {
  fl_kill9_ts 1
  read_image "$T/${1}0.img"
  ts_restart 1
  fl_kill9_ts 0
  read_image "$T/${1}1.img"
  ts_restart 0
}

fl_step "read everything with server 1 down, then with server 0 down"
read_each_replica only
cmp "$T/only0.img" "$T/only1.img" || fl_fail "the two replicas still hold different data"
python3 - "$T/only0.img" <<'PY' || fl_fail "a chunk is neither the old nor the new data"
import sys
data = open(sys.argv[1], "rb").read()
aa = bytes([0xAA]) * 4096
bb = bytes([0xBB]) * 4096
n = {"aa": 0, "bb": 0}
for off in range(0, 4 << 20, 4096):
    c = data[off:off + 4096]
    if c == aa: n["aa"] += 1
    elif c == bb: n["bb"] += 1
    else: sys.exit(f"chunk at {off} is neither")
if any(data[4 << 20:]): sys.exit("bytes past the written range are not zero")
print(f"chunks of the range: {n['aa']} old (0xaa), {n['bb']} new (0xbb)")
PY

# 4. Cold tracts: a mark must be durable on every replica before the data
#    goes out. With a 100 ms linger the tracts of [8M, 12M) are unmarked
#    again after 0xcc is written; with server 0 stopped, 0xdd's mark cannot
#    be persisted, so 0xdd must reach no replica at all.
fl_step "cold tracts: write 0xcc over [8M, 12M), wait past the linger, SIGSTOP server 0, write 0xdd, crash"
fl_disk_stop
fl_disk_start --volume v --dirty-linger-ms 100
qemu-io -f raw -c "write -P 0xcc $((8 * M)) $((4 * M))" "$NBD/v" >"$T/logs/qemu-c.log" 2>&1 || fl_fail "qemu-io write C"
sleep 1
kill -STOP "${FL_TS_PIDS[0]}"
qemu-io -f raw -c "write -P 0xdd $((8 * M)) $((4 * M))" "$NBD/v" >"$T/logs/qemu-d.log" 2>&1 &
QD=$!
sleep 1.5
kill -KILL "$DISK_PID"
wait "$DISK_PID" 2>/dev/null || true
DISK_PID=
fl_kill9_ts 0
wait "$QD" 2>/dev/null || true
ts_restart 0
fl_disk_start --volume v
read_each_replica cold
cmp "$T/cold0.img" "$T/cold1.img" || fl_fail "cold tracts: the replicas hold different data (data went out before its mark)"
python3 - "$T/cold0.img" <<'PY' || fl_fail "cold tracts: 0xdd reached a replica although its mark could not be persisted"
import sys
data = open(sys.argv[1], "rb").read()
r = data[8 << 20:12 << 20]
if r != bytes([0xCC]) * len(r): sys.exit("the range is not all 0xcc")
print("cold range: all 0xcc on both replicas")
PY
fl_pass
