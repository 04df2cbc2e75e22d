#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Several exports from one flurry-disk: two read-write volumes (R=2 and R=1,
# different sizes) and one read-only volume.
# - Read-only: nbdinfo says so; qemu-io and nbdcopy writes fail; a raw NBD
#   client that sends WRITE, TRIM and WRITE_ZEROES anyway gets an error for
#   each (the server enforces it, not only the client); reads work and the
#   content is unchanged afterwards.
# - Independence: random images copied to both read-write exports at once
#   read back identical; trimming all of one leaves the other intact.
#   usage: exports.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools nbdinfo nbdcopy qemu-io python3 cmp

fl_cluster_start
fl_volume a 64M 2
fl_volume b 32M 1
fl_volume ro 16M 2
M=$((1 << 20))

fl_step "fill 'ro' with a pattern while it is still served read-write"
fl_disk_start --volume ro
qemu-io -f raw -c "write -P 0x77 0 $((16 * M))" "$NBD/ro" >/dev/null || fl_fail "fill ro"
fl_disk_stop

fl_step "one daemon: a, b read-write, ro read-only"
fl_disk_start --volume a --volume b --read-only ro
info() { nbdinfo "$NBD/$1" >"$T/info.$1.txt" && cat "$T/info.$1.txt"; }
[[ $(info a) == *"export-size: 67108864"*"is_read_only: false"* ]] || fl_fail "nbdinfo a"
[[ $(info b) == *"export-size: 33554432"*"is_read_only: false"* ]] || fl_fail "nbdinfo b"
[[ $(info ro) == *"export-size: 16777216"*"is_read_only: true"* ]] || fl_fail "nbdinfo ro"
[[ $(nbdinfo --size "$NBD") == 67108864 ]] || fl_fail "the default export is not the first volume"

fl_step "read-only: qemu-io and nbdcopy writes fail, reads work"
if qemu-io -f raw -c "write -P 0x11 0 4k" "$NBD/ro" >"$T/logs/qemu-io-ro.log" 2>&1 \
    && grep -q '^wrote' "$T/logs/qemu-io-ro.log"; then
  fl_fail "qemu-io wrote to the read-only export"
fi
head -c $M /dev/urandom >"$T/1m.img"
if nbdcopy "$T/1m.img" "$NBD/ro" 2>"$T/logs/nbdcopy-ro.log"; then fl_fail "nbdcopy wrote to the read-only export"; fi
qemu-io -f raw -r -c "read -P 0x77 0 $((16 * M))" "$NBD/ro" >"$T/logs/qemu-io-ro-read.log" 2>&1 \
  || fl_fail "read of the read-only export"

fl_step "read-only: the server refuses WRITE, TRIM and WRITE_ZEROES from a raw client"
python3 - "$NBD_PORT" ro <<'PY' || fl_fail "raw client: the server accepted a modification"
import socket, struct, sys
port, name = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(('127.0.0.1', port), timeout=10)
def recvn(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError('server closed the connection')
        b += c
    return b
assert recvn(18)[:8] == b'NBDMAGIC'
s.sendall(struct.pack('>I', 3))  # fixed newstyle, no zeroes
s.sendall(struct.pack('>QII', 0x49484156454F5054, 7, 4 + len(name) + 2) +
          struct.pack('>I', len(name)) + name + struct.pack('>H', 0))  # NBD_OPT_GO
while True:
    _, _, t, n = struct.unpack('>QIII', recvn(20))
    recvn(n)
    if t == 1: break  # NBD_REP_ACK
    assert t == 3, f'OPT_GO failed: reply type {t:#x}'  # NBD_REP_INFO
bad = []
for cookie, (cmd, payload) in enumerate([(1, b'\x11' * 4096), (4, b''), (6, b'')], 1):  # WRITE, TRIM, WRITE_ZEROES
    s.sendall(struct.pack('>IHHQQI', 0x25609513, 0, cmd, cookie, 0, 4096) + payload)
    magic, err, ck = struct.unpack('>IIQ', recvn(16))
    assert magic == 0x67446698 and ck == cookie
    print(f'command {cmd}: error {err}')
    if err == 0: bad.append(cmd)
s.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 2, 99, 0, 0))  # NBD_CMD_DISC
sys.exit(1 if bad else 0)
PY
qemu-io -f raw -r -c "read -P 0x77 0 $((16 * M))" "$NBD/ro" >/dev/null 2>&1 \
  || fl_fail "the read-only export changed"

fl_step "independence: different images to a and b at once"
head -c $((64 * M)) /dev/urandom >"$T/a.img"
head -c $((32 * M)) /dev/urandom >"$T/b.img"
fl_spawn nbdcopy-a nbdcopy "$T/a.img" "$NBD/a"
ca=$FL_LAST_PID
fl_spawn nbdcopy-b nbdcopy "$T/b.img" "$NBD/b"
cb=$FL_LAST_PID
fl_wait "$ca" || fl_fail "nbdcopy to a"
fl_wait "$cb" || fl_fail "nbdcopy to b"
nbdcopy "$NBD/a" "$T/a.back"
nbdcopy "$NBD/b" "$T/b.back"
cmp "$T/a.img" "$T/a.back" || fl_fail "export a differs"
cmp "$T/b.img" "$T/b.back" || fl_fail "export b differs"

fl_step "trim all of a: a reads zeroes, b is untouched"
qemu-io -f raw -c "discard 0 $((64 * M))" -c "read -P 0 0 $((64 * M))" "$NBD/a" >"$T/logs/qemu-io-trim.log" 2>&1 \
  || fl_fail "trim of a"
nbdcopy "$NBD/b" "$T/b.back2"
cmp "$T/b.img" "$T/b.back2" || fl_fail "export b changed when a was trimmed"
qemu-io -f raw -r -c "read -P 0x77 0 $((16 * M))" "$NBD/ro" >/dev/null 2>&1 || fl_fail "export ro changed"

fl_disk_stop
fl_pass
