#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# End-to-end: real NBD clients (nbdinfo, qemu-io, qemu-img, nbdcopy, fio)
# against flurry-nbd-memserver over TCP and a unix socket.
#   usage: real_clients.sh path/to/flurry-nbd-memserver
# Exit 77 (meson: SKIP) when a client is missing. Logs are kept in the temp
# directory on failure.
set -euo pipefail

SERVER=${1:?usage: real_clients.sh flurry-nbd-memserver}
for tool in nbdinfo qemu-io qemu-img nbdcopy fio; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not installed"
    exit 77
  fi
done
if ! fio --enghelp=nbd >/dev/null 2>&1; then
  echo "SKIP: fio lacks the nbd ioengine"
  exit 77
fi

T=$(mktemp -d /tmp/flurry-nbd-e2e.XXXXXX)
SRV_PID=
cleanup() {
  rc=$?
  if [[ -n $SRV_PID ]]; then kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; fi
  if [[ $rc -eq 0 ]]; then rm -rf "$T"; else echo "FAILED (rc=$rc); logs kept in $T"; tail -n 30 "$T"/server.err 2>/dev/null || true; fi
}
trap cleanup EXIT

step() { echo "=== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

"$SERVER" --export mem:64M --export ro:8M:ro --export blk:8M:minblock=4096 \
  --default mem --unix "$T/nbd.sock" >"$T/server.out" 2>"$T/server.err" &
SRV_PID=$!
for _ in $(seq 100); do grep -q READY "$T/server.out" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$T/server.out" || fail "server did not start"
PORT=$(sed -n 's/^PORT=//p' "$T/server.out")
URI="nbd://127.0.0.1:$PORT"
echo "server on port $PORT"

step "nbdinfo: export flags and block sizes"
nbdinfo "$URI/mem" >"$T/info.txt"
cat "$T/info.txt"
grep -q 'export-size: 67108864' "$T/info.txt" || fail "size"
grep -q 'can_trim: true' "$T/info.txt" || fail "can_trim"
grep -q 'can_fua: true' "$T/info.txt" || fail "can_fua"
grep -q 'can_multi_conn: true' "$T/info.txt" || fail "can_multi_conn"
grep -q 'base:allocation' "$T/info.txt" || fail "base:allocation context"
grep -q 'description: flurry memory export mem' "$T/info.txt" || fail "description"

step "nbdinfo: default export (empty name)"
nbdinfo --size "$URI" | grep -qx 67108864 || fail "default export"

step "nbdinfo: read-only export"
nbdinfo "$URI/ro" | grep -q 'is_read_only: true' || fail "ro flag"

step "nbdinfo: minimum block size"
nbdinfo "$URI/blk" | grep -q 'block_size_minimum: 4096' || fail "min block"

step "nbdinfo --list"
nbdinfo --list "$URI" >"$T/list.txt"
for e in mem ro blk; do grep -q "export=\"$e\"" "$T/list.txt" || fail "list lacks $e"; done

step "nbdinfo: unknown export fails"
if nbdinfo "$URI/nosuch" >/dev/null 2>&1; then fail "unknown export accepted"; fi

step "qemu-io: write, read back, FUA, zero, discard"
qemu-io -f raw \
  -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' \
  -c 'write -f -P 0xcd 1M 64k' -c 'read -P 0xcd 1M 64k' \
  -c 'write -z 2M 1M' -c 'read -P 0 2M 1M' \
  -c 'aio_write -P 0x11 4M 4k' -c 'aio_write -P 0x22 5M 4k' -c 'aio_flush' \
  -c 'read -P 0x11 4M 4k' -c 'read -P 0x22 5M 4k' \
  -c 'flush' "$URI/mem" >"$T/qemu-io.txt" 2>&1 || { cat "$T/qemu-io.txt"; fail "qemu-io"; }
if grep -qi 'fail\|error\|mismatch' "$T/qemu-io.txt"; then cat "$T/qemu-io.txt"; fail "qemu-io pattern"; fi

step "qemu-io: write to read-only export is refused"
if qemu-io -f raw -c 'write -P 1 0 4k' "$URI/ro" >"$T/ro.txt" 2>&1 && ! grep -qi 'denied\|not permitted\|read-only\|failed' "$T/ro.txt"; then
  cat "$T/ro.txt"; fail "write to ro succeeded"
fi

step "nbdinfo --map after trim"
qemu-io -f raw -c 'write -P 0x5a 0 8M' -c 'discard 1M 2M' "$URI/mem" >/dev/null
nbdinfo --map "$URI/mem" >"$T/map.txt"
cat "$T/map.txt"
grep -Eq '^ +0 +1048576 +0 +data' "$T/map.txt" || fail "map: data at 0"
grep -Eq '^ +1048576 +2097152 +3 +hole,zero' "$T/map.txt" || fail "map: hole after trim"
qemu-io -f raw -c 'read -P 0 1M 2M' -c 'read -P 0x5a 3M 1M' "$URI/mem" | grep -qi 'fail\|mismatch' && fail "trimmed data"

step "qemu-img: info and convert"
qemu-img info -f raw "$URI/mem" | grep -q 'virtual size: 64 MiB' || fail "qemu-img info"
head -c 16M /dev/urandom >"$T/src.img"
qemu-img convert -n -f raw -O raw "$T/src.img" "$URI/mem"
qemu-img compare -f raw -F raw "$T/src.img" "$URI/mem" >/dev/null 2>&1 || true
qemu-img convert -f raw -O raw "$URI/mem" "$T/back.img"
cmp -n 16777216 "$T/src.img" "$T/back.img" || fail "qemu-img roundtrip"

step "nbdcopy: file -> export -> file (TCP and unix socket)"
head -c 64M /dev/urandom >"$T/big.img"
nbdcopy "$T/big.img" "$URI/mem"
nbdcopy "nbd+unix:///mem?socket=$T/nbd.sock" "$T/big.back"
cmp "$T/big.img" "$T/big.back" || fail "nbdcopy roundtrip"
nbdcopy --connections=4 --requests=32 "$URI/mem" "$T/big.back2"
cmp "$T/big.img" "$T/big.back2" || fail "nbdcopy multi-conn"

step "nbdcopy: sparse copy zeroes"
truncate -s 64M "$T/zero.img"
nbdcopy "$T/zero.img" "$URI/mem"
nbdinfo --map "$URI/mem" >"$T/map2.txt"
grep -q 'data' "$T/map2.txt" && { cat "$T/map2.txt"; echo "(note: zeroing without trim keeps data extents)"; }
qemu-io -f raw -c 'read -P 0 0 64M' "$URI/mem" | grep -qi 'fail\|mismatch' && fail "zeroed export"

step "fio --ioengine=nbd with crc32c verify"
fio --name=nbd-verify --ioengine=nbd --uri="$URI/mem" --rw=randwrite --bs=4k,64k \
  --size=32M --iodepth=32 --verify=crc32c --verify_fatal=1 --do_verify=1 \
  --output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio"; }
grep -q 'err= 0' "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio errors"; }
fio --name=nbd-seq --ioengine=nbd --uri="$URI/mem" --rw=write --bs=1M \
  --size=32M --iodepth=8 --verify=crc32c --verify_fatal=1 \
  --output="$T/fio2.txt" || { cat "$T/fio2.txt"; fail "fio seq"; }

step "graceful shutdown"
kill -TERM "$SRV_PID"
wait "$SRV_PID" || fail "server exit status"
SRV_PID=
grep 'export mem' "$T/server.err"
echo "PASS"
