#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# ext4 on a flurry volume (R=2, 256 MiB) through flurry-disk's FUSE export
# and a loop device: mkfs.ext4, mount, copy /usr/include/linux, sha256 of
# every file must match the source; umount, detach and restart flurry-disk;
# fsck.ext4 -fn must be clean; remount, every checksum must still match.
# Skips (77) without root, /dev/fuse or a free loop device.
#   usage: fuse_ext4.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_fuse_loop
fl_need_tools mkfs.ext4 fsck.ext4 sha256sum find sort xargs
SRC_PARENT=/usr/include SRC_NAME=linux
[[ -d $SRC_PARENT/$SRC_NAME ]] || fl_skip "no $SRC_PARENT/$SRC_NAME to copy"

fl_cluster_start
fl_volume v1 256M 2
mkdir -p "$T/fuse" "$T/mnt"
fl_fuse_dir "$T/fuse"
fl_disk_start --volume v1 --fuse "$T/fuse"
FILE=$T/fuse/v1
[[ $(stat -c %s "$FILE") == $((256 << 20)) ]] || fl_fail "FUSE file has size $(stat -c %s "$FILE")"

sums() { (cd "$1" && find "$SRC_NAME" -type f -print0 | sort -z | xargs -0 sha256sum); }
sums "$SRC_PARENT" >"$T/sums.src"
echo "$(wc -l <"$T/sums.src") files in $SRC_PARENT/$SRC_NAME"

fl_step "losetup, mkfs.ext4, mount, copy the tree"
fl_loop_attach "$FILE"
mkfs.ext4 -q -F "$LOOPDEV" >"$T/logs/mkfs.log" 2>&1 || { cat "$T/logs/mkfs.log"; fl_fail "mkfs.ext4"; }
fl_mount "$LOOPDEV" "$T/mnt"
cp -a "$SRC_PARENT/$SRC_NAME" "$T/mnt/"
sync -f "$T/mnt"
sums "$T/mnt" >"$T/sums.1"
cmp "$T/sums.src" "$T/sums.1" || fl_fail "checksums differ right after the copy"

fl_step "umount, detach, restart flurry-disk"
fl_umount "$T/mnt"
fl_loop_detach
fl_disk_stop
mountpoint -q "$T/fuse" && fl_fail "FUSE export still mounted after flurry-disk exited"
fl_disk_start --volume v1 --fuse "$T/fuse"

fl_step "fsck.ext4 -fn must be clean"
fl_loop_attach "$FILE"
fsck.ext4 -fn "$LOOPDEV" >"$T/logs/fsck.log" 2>&1 || { cat "$T/logs/fsck.log"; fl_fail "fsck.ext4 found problems"; }
tail -n 1 "$T/logs/fsck.log"

fl_step "remount, every checksum matches"
fl_mount "$LOOPDEV" "$T/mnt"
sums "$T/mnt" >"$T/sums.2"
cmp "$T/sums.src" "$T/sums.2" || { diff "$T/sums.src" "$T/sums.2" | head; fl_fail "checksums differ after remount"; }

fl_step "clean up: umount, detach, stop"
fl_umount "$T/mnt"
fl_loop_detach
fl_disk_stop
mountpoint -q "$T/fuse" && fl_fail "FUSE export still mounted after flurry-disk exited"
fl_pass
