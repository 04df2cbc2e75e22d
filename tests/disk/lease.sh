#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# One writer per volume: the write lease at flurry-meta (daemon/lease.h).
# 1. flurry-disk A serves v. A second flurry-disk on another address fails at
#    once, naming A; deleting v is refused; a read-only flurry-disk may serve
#    v beside A.
# 2. A is killed -9: the next flurry-disk starts at once (A's process is
#    gone, so its lease is broken, not waited out).
# 3. That writer (B, 3 s lease) is stopped (SIGSTOP) past its lease; C takes
#    the volume over after the lease lapsed and writes; both tract servers
#    restart (their in-memory fences are gone, B will reconnect); B continued:
#    its writes fail ("lease lost") and never reach the disk.
# 4. flurry-meta killed -9 while C holds the lease: C's writes wait once the
#    lease is overdue, and complete when flurry-meta is back (the lease was
#    persisted); a new flurry-disk is still refused.
# 5. C stops cleanly: the lease is released, the volume can be deleted.
# 6. One flurry-disk serves 150 writable volumes (more than flurry-meta's 128
#    connections): all their leases are taken and renewed over one shared
#    flurry-meta connection, and released on a clean stop.
#   usage: lease.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools qemu-io

fl_cluster_start --servers 2 --heartbeat-timeout-ms 600000
fl_volume v 16M 2
M=$((1 << 20))

# disk_up NAME ARGS...: a flurry-disk that must get ready; sets UP_PID, UP_URI.
disk_up() {
  local name=$1 i
  shift
  rm -f "$T/$name.port"
  fl_spawn "$name" "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 \
    --port-file "$T/$name.port" "$@"
  UP_PID=$FL_LAST_PID
  for ((i = 0; i < 200; i++)); do
    grep -qs "^flurry-disk: ready" "$T/logs/$name.log" && break
    fl_alive "$UP_PID" || fl_fail "flurry-disk $name exited during start-up: $(tail -3 "$T/logs/$name.log")"
    sleep 0.05
  done
  grep -q "^flurry-disk: ready" "$T/logs/$name.log" || fl_fail "flurry-disk $name not ready after 10 s"
  UP_URI="nbd://127.0.0.1:$(<"$T/$name.port")/v"
}

# disk_refused NAME ARGS...: a flurry-disk that must exit 1 within 5 s.
disk_refused() {
  local name=$1 rc=0
  shift
  timeout 5 "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 "$@" \
    >"$T/logs/$name.log" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] || fl_fail "flurry-disk $name: exit status $rc, want 1 (refused): $(tail -3 "$T/logs/$name.log")"
}

qio() {  # qio [-r] URI CMD: qemu-io, output in $T/logs/qio.log, status returned
  local ro=()
  [[ $1 == -r ]] && { ro=(-r); shift; }
  qemu-io "${ro[@]}" -f raw -c "$2" "$1" >"$T/logs/qio.log" 2>&1 && ! grep -q "failed" "$T/logs/qio.log"
}

fl_step "A serves v; a second writer is refused, a reader is not"
disk_up A --volume v
A_PID=$UP_PID A_URI=$UP_URI
qio "$A_URI" "write -P 0x11 0 $M" || fl_fail "write via A: $(cat "$T/logs/qio.log")"
disk_refused second --volume v
grep -q "is being served by flurry-disk pid $A_PID on this host" "$T/logs/second.log" \
  || fl_fail "the refusal does not name A: $(cat "$T/logs/second.log")"
if fl_meta VOLUME DELETE v >/dev/null 2>&1; then fl_fail "a served volume was deleted"; fi
disk_up reader --read-only v
qio -r "$UP_URI" "read -P 0x11 0 $M" || fl_fail "read-only flurry-disk beside A: $(cat "$T/logs/qio.log")"
fl_stop_pid "$UP_PID" 10 || fl_fail "the read-only flurry-disk did not stop cleanly"

fl_step "A killed -9: the next writer breaks its lease at once"
kill -KILL "$A_PID"
wait "$A_PID" 2>/dev/null || true
fl_reaped "$A_PID"
t0=$(date +%s%N)
disk_up B --volume v --lease-ttl-ms 3000
B_PID=$UP_PID B_URI=$UP_URI
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q "is gone; breaking its write lease" "$T/logs/B.log" || fl_fail "B did not break A's lease"
echo "B ready ${ms} ms after A's SIGKILL"
[[ $ms -lt 5000 ]] || fl_fail "B took ${ms} ms (A's 10 s lease was waited out?)"
qio "$B_URI" "read -P 0x11 0 $M" || fl_fail "A's data via B"
qio "$B_URI" "write -P 0x22 $M $M" || fl_fail "write via B"

fl_step "B stalls past its lease; C takes over; B's writes then fail"
kill -STOP "$B_PID"
t0=$(date +%s%N)
disk_up C --volume v --lease-ttl-ms 2000 --lease-wait-ms 10000
C_PID=$UP_PID C_URI=$UP_URI
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q "waiting up to" "$T/logs/C.log" || fl_fail "C did not wait for B's lease"
echo "C took over ${ms} ms after B stopped (B's lease: 3000 ms)"
qio "$C_URI" "write -P 0x33 0 $M" || fl_fail "write via C"
# Restart the tract servers (same directories and ports): the FENCE C sent
# is forgotten, and B's connections are gone. What stops B now is its lease
# and, at the tract servers, C's writer generation (kept on disk).
for i in 0 1; do
  port=$(<"$T/ts$i.port")
  fl_kill9_ts "$i"
  fl_spawn "ts$i.restart" "$FL_TS_BIN" --dir "$T/ts$i" --meta "127.0.0.1:$META_PORT" --listen "127.0.0.1:$port"
  FL_TS_PIDS[i]=$FL_LAST_PID
  for ((k = 0; k < 100; k++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    fl_alive "${FL_TS_PIDS[i]}" || fl_fail "tract server $i did not restart on port $port"
    sleep 0.1
  done
done
qio "$C_URI" "read -P 0x33 0 $M" || fl_fail "C after the tract server restarts: $(cat "$T/logs/qio.log")"
# B's connection is accepted before it runs on, so its write is queued for
# its loop; it must fail (lease lost), not land.
qemu-io -f raw -c "write -P 0x44 0 $M" "$B_URI" >"$T/logs/qio-b.log" 2>&1 &
QPID=$!
sleep 0.3
kill -CONT "$B_PID"
wait "$QPID" 2>/dev/null || true
grep -q "failed" "$T/logs/qio-b.log" || fl_fail "B (lease lost) still wrote: $(cat "$T/logs/qio-b.log")"
grep -q "write lease lost" "$T/logs/B.log" || fl_fail "B did not log the lost lease"
qio "$C_URI" "read -P 0x33 0 $M" || fl_fail "C's data was overwritten by B: $(cat "$T/logs/qio.log")"
qio "$C_URI" "read -P 0x22 $M $M" || fl_fail "B's acknowledged write is gone"
fl_stop_pid "$B_PID" 20 || true

fl_step "flurry-meta killed -9: C's writes wait for it, then complete"
kill -KILL "$FL_META_PID"
wait "$FL_META_PID" 2>/dev/null || true
fl_reaped "$FL_META_PID"
sleep 2  # past C's renewals (every 500 ms) and validity (1.5 s)
qemu-io -f raw -c "write -P 0x55 $((2 * M)) $M" "$C_URI" >"$T/logs/qio-c.log" 2>&1 &
QPID=$!
sleep 1
fl_alive "$QPID" || fl_fail "C wrote without a valid lease: $(cat "$T/logs/qio-c.log")"
grep -q "writes wait for the write lease" "$T/logs/C.log" || fl_fail "C's write did not wait for the lease"
fl_spawn meta.2 "$FL_META_BIN" --dir "$T/meta" --listen "127.0.0.1:$META_PORT" --heartbeat-timeout-ms 600000
FL_META_PID=$FL_LAST_PID
for ((i = 0; i < 200; i++)); do fl_alive "$QPID" || break; sleep 0.1; done
fl_alive "$QPID" && fl_fail "C's write still waits 20 s after flurry-meta came back"
rc=0
wait "$QPID" || rc=$?
[[ $rc -eq 0 ]] && ! grep -q failed "$T/logs/qio-c.log" \
  || fl_fail "C's write after flurry-meta came back: status $rc: $(cat "$T/logs/qio-c.log")"
grep -q "write lease renewed again" "$T/logs/C.log" || fl_fail "C did not log the renewal"
qio "$C_URI" "read -P 0x55 $((2 * M)) $M" || fl_fail "C's write after the meta restart"
disk_refused third --volume v
grep -q "is being served by flurry-disk pid $C_PID" "$T/logs/third.log" \
  || fl_fail "after the meta restart, a second writer was not refused: $(cat "$T/logs/third.log")"

fl_step "C stops cleanly: lease released"
fl_stop_pid "$C_PID" 20 || fl_fail "C did not stop cleanly"
info=$(fl_meta LEASE INFO v) || fl_fail "LEASE INFO"
[[ $info == *free* ]] || fl_fail "lease not released: $info"
fl_meta VOLUME DELETE v >/dev/null || fl_fail "volume delete after release"

fl_step "150 writable volumes in one flurry-disk: one flurry-meta connection renews every lease"
N=150
vols=()
for ((i = 0; i < N; i++)); do
  fl_volume "m$i" 1M 1 >/dev/null
  vols+=(--volume "m$i")
done
t0=$(date +%s%N)
disk_up M "${vols[@]}" --lease-ttl-ms 2000
M_PID=$UP_PID
echo "$N volumes ready in $((($(date +%s%N) - t0) / 1000000)) ms"
sleep 3  # 1.5 lease ttls: every lease must have been renewed meanwhile
conns=$(ss -tnpH state established "( dport = :$META_PORT )" | grep -c "pid=$M_PID," || true)
echo "flurry-disk's connections to flurry-meta: $conns"
[[ $conns -le 2 ]] || fl_fail "$conns connections to flurry-meta for $N volumes (want one for the leases, one for the TLT)"
for ((i = 0; i < N; i++)); do
  info=$(fl_meta LEASE INFO "m$i") || fl_fail "LEASE INFO m$i"
  [[ $info == *"/$M_PID/"* ]] || fl_fail "m$i: lease not held by flurry-disk $M_PID after 1.5 ttls: $info"
done
port=$(<"$T/M.port")
qio "nbd://127.0.0.1:$port/m$((N - 1))" "write -P 0x66 0 64k" || fl_fail "write to the last volume: $(cat "$T/logs/qio.log")"
disk_refused fourth --volume "m$((N / 2))"
fl_stop_pid "$M_PID" 30 || fl_fail "the $N-volume flurry-disk did not stop cleanly"
for i in 0 $((N / 2)) $((N - 1)); do
  info=$(fl_meta LEASE INFO "m$i") || fl_fail "LEASE INFO m$i"
  [[ $info == *free* ]] || fl_fail "m$i: lease not released: $info"
done
fl_pass
