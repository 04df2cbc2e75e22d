#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# libnbd tools against flurry-disk (R=2, 64 MiB volume, TCP and unix socket).
# - nbdinfo: size, block size constraints, flags, listing.
# - nbdinfo --map: a new volume is one hole; after nbdcopy of an image with
#   a hole, data where written and hole where not; a 1-byte write allocates
#   exactly its 4 KiB chunk; discard and write-zeroes-with-unmap leave holes,
#   write-zeroes without unmap (NO_HOLE) and sub-chunk discards do not; the
#   extents tile the export; discarded ranges read as zeroes.
# - nbdcopy: a random image in over TCP, out over the unix socket and out
#   with 4 connections, byte-identical (cmp).
#   usage: nbd_tools.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_tools nbdinfo nbdcopy qemu-io cmp awk

fl_cluster_start
fl_volume v1 64M 2
fl_disk_start --volume v1 --unix "$T/nbd.sock"
URI=$NBD/v1
USOCK="nbd+unix:///v1?socket=$T/nbd.sock"
M=$((1 << 20))

# extent OFFSET: the type ("data" or "hole,zero") nbdinfo --map reports at OFFSET.
extent() {
  awk -v o="$1" '$1 <= o && o < $1 + $2 { print $4; found = 1 } END { if (!found) print "none" }' "$T/map.txt"
}
want_extent() {
  local got
  got=$(extent "$1")
  [[ $got == "$2" ]] || { cat "$T/map.txt"; fl_fail "map at $1: got '$got', want '$2' ($3)"; }
}
map() {
  nbdinfo --map "$URI" >"$T/map.txt"
  # The extents must tile [0, size) in order.
  awk -v size=$((64 * M)) 'BEGIN { next_off = 0 }
    { if ($1 != next_off) { print "gap or overlap at " $1; exit 1 } next_off = $1 + $2 }
    END { if (next_off != size) { print "extents end at " next_off; exit 1 } }' "$T/map.txt" \
    || { cat "$T/map.txt"; fl_fail "map extents do not tile the export"; }
}

fl_step "nbdinfo: size, block sizes, flags"
nbdinfo "$URI" >"$T/info.txt"
for want in 'export-size: 67108864' 'block_size_minimum: 1' 'block_size_preferred: 4096' \
    'is_read_only: false' 'can_trim: true' 'can_zero: true' 'can_flush: true' 'can_multi_conn: true' \
    'base:allocation' 'description: flurry volume v1'; do
  grep -q "$want" "$T/info.txt" || { cat "$T/info.txt"; fl_fail "nbdinfo lacks '$want'"; }
done
max=$(sed -n 's/.*block_size_maximum: //p' "$T/info.txt")
[[ -n $max && $max -ge $M ]] || fl_fail "block_size_maximum '$max' below 1 MiB"
[[ $(nbdinfo --size "$USOCK") == 67108864 ]] || fl_fail "size over the unix socket"
list=$(nbdinfo --list "nbd+unix:///?socket=$T/nbd.sock")
[[ $list == *'export="v1"'* ]] || fl_fail "nbdinfo --list lacks v1"

fl_step "nbdinfo --map: a new volume is one hole"
map
[[ $(wc -l <"$T/map.txt") -eq 1 ]] || { cat "$T/map.txt"; fl_fail "new volume is not one extent"; }
want_extent 0 hole,zero "new volume"

fl_step "nbdcopy: random image (16M data, 16M hole, 8M data) in over TCP"
head -c $((16 * M)) /dev/urandom >"$T/src.img"
truncate -s $((32 * M)) "$T/src.img"
head -c $((8 * M)) /dev/urandom >>"$T/src.img"
truncate -s $((64 * M)) "$T/src.img"
nbdcopy "$T/src.img" "$URI"
map
want_extent 0 data "copied data"
want_extent $((16 * M - 1)) data "copied data, last byte"
want_extent $((16 * M)) hole,zero "hole in the source"
want_extent $((32 * M)) data "second data run"
want_extent $((40 * M)) hole,zero "never written"

fl_step "nbdcopy: out over the unix socket, and with 4 connections; cmp"
nbdcopy "$USOCK" "$T/back1.img"
cmp "$T/src.img" "$T/back1.img" || fl_fail "nbdcopy round trip (unix socket) differs"
nbdcopy --connections=4 --requests=16 "$URI" "$T/back2.img"
cmp "$T/src.img" "$T/back2.img" || fl_fail "nbdcopy round trip (4 connections) differs"

fl_step "trim / zero: holes where deallocated, data where written"
qemu-io -f raw -c "discard $M $((2 * M))" -c "discard $((5 * M)) 4095" -c "discard $((6 * M)) 6000" \
  -c "write -z $((8 * M)) $M" -c "write -z -u $((9 * M)) $M" -c "write -P 0x5a $((48 * M + 100)) 1" \
  "$URI" >"$T/logs/qemu-io-trim.log" 2>&1 || { cat "$T/logs/qemu-io-trim.log"; fl_fail "qemu-io trim/zero"; }
map
want_extent 0 data "before the discard"
want_extent $M hole,zero "discarded"
want_extent $((3 * M - 1)) hole,zero "discarded, last byte"
want_extent $((3 * M)) data "after the discard"
want_extent $((5 * M)) data "a discard of less than a chunk cannot deallocate it"
want_extent $((6 * M)) hole,zero "discarded whole chunk"
want_extent $((6 * M + 4096)) data "discarded partial chunk stays allocated"
want_extent $((8 * M)) data "write-zeroes with NO_HOLE keeps allocation"
want_extent $((9 * M)) hole,zero "write-zeroes with unmap"
want_extent $((48 * M)) data "1-byte write allocates its chunk"
want_extent $((48 * M + 4095)) data "1-byte write allocates its chunk"
want_extent $((48 * M + 4096)) hole,zero "1-byte write allocates only its chunk"
want_extent $((48 * M - 1)) hole,zero "1-byte write allocates only its chunk"

fl_step "discarded and zeroed ranges read as zeroes, the rest is intact"
qemu-io -f raw -c "read -P 0 $M $((2 * M))" -c "read -P 0 $((5 * M)) 4095" -c "read -P 0 $((6 * M)) 6000" \
  -c "read -P 0 $((8 * M)) $((2 * M))" -c "read -P 0x5a $((48 * M + 100)) 1" \
  "$URI" >"$T/logs/qemu-io-zero.log" 2>&1 || { grep -i fail "$T/logs/qemu-io-zero.log"; fl_fail "zeroed ranges"; }
nbdcopy "$URI" "$T/after.img"
for r in "0 $M" "$((3 * M)) $((2 * M))" "$((5 * M + 4095)) $((M - 4095))" "$((6 * M + 6000)) $((2 * M - 6000))" \
    "$((10 * M)) $((6 * M))" "$((32 * M)) $((8 * M))"; do
  read -r off len <<<"$r"
  cmp -n "$len" -i "$off:$off" "$T/src.img" "$T/after.img" || fl_fail "bytes [$off, +$len) changed"
done

fl_disk_stop
fl_pass
