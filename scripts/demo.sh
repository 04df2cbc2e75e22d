#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, end to end, on this machine: install what is missing, build,
# start a local cluster (flurry-meta + 4 tract servers), create a volume,
# serve and attach it (kernel NBD if /dev/nbd0 exists, else FUSE + loop),
# mkfs.ext4, mount, write and read back files, run a short fio job, then
# print how to do each step by hand.
#
#   scripts/demo.sh [--dir DIR] [--size 2G] [--replicas 2] [--mode write-through|fast-ack|log] [--keep]
#
# Without --keep the volume is detached and the cluster stopped at the end
# (the data stays in DIR). Needs root (mount, losetup).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dir=/tmp/flurry-demo size=2G replicas=2 mode=write-through keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: needs root (mount and losetup)" >&2; exit 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "install dependencies"
./scripts/install-deps.sh
step "build"
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build | tail -1
flurry=$top/build/tools/cli/flurry
mnt=$dir/mnt

cleanup() {
  if [ $keep -eq 0 ]; then
    "$flurry" detach demo --dir "$dir" >/dev/null 2>&1 || true
    "$flurry" cluster stop --dir "$dir" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "start a local cluster in $dir (flurry-meta + 4 tract servers)"
"$flurry" cluster stop --dir "$dir" >/dev/null 2>&1 || true
"$flurry" cluster start --dir "$dir" --servers 4
if info=$("$flurry" volume info demo --dir "$dir" 2>/dev/null); then
  have=$(awk '$1 == "mode" { print $2; exit }' <<<"$info")
  if [ "$have" != "$mode" ]; then
    echo "note: volume demo already exists in $dir with mode $have; --mode $mode applies to a new volume" >&2
    echo "      (delete it with \`$flurry volume delete demo --dir $dir\`, or use another --dir)" >&2
  fi
else
  "$flurry" volume create demo --size "$size" --replicas "$replicas" --mode "$mode" --dir "$dir"
fi
"$flurry" volume list --dir "$dir"

step "attach the volume, mkfs.ext4 on first use, mount on $mnt"
mkdir -p "$mnt"
"$flurry" attach demo "$mnt" --mkfs ext4 --dir "$dir"
df -h "$mnt" | tail -1

step "write files and read them back"
mkdir -p "$mnt/files"
cp -r /usr/include/linux "$mnt/files/"
dd if=/dev/urandom of="$mnt/files/random.bin" bs=1M count=64 status=none
sync
(cd "$mnt/files" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$dir/sums"
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
(cd "$mnt/files" && sha256sum --quiet -c "$dir/sums") && echo "read back $(wc -l < "$dir/sums") files: all checksums match"

step "fio on the mounted filesystem (10 s: 4 KiB random read/write, O_DIRECT, QD16)"
fio --name=demo --directory="$mnt" --size=256m --rw=randrw --bs=4k --iodepth=16 \
    --ioengine=io_uring --direct=1 --runtime=10 --time_based --group_reporting 2>&1 |
  grep -E "^\s+(read|write):|lat \(usec\): min.*avg" | awk 'NR <= 4'  # awk reads everything: no SIGPIPE under pipefail

step "by hand"
cat <<EOT
  $flurry cluster start --dir $dir --servers 4      # meta + tract servers
  $flurry volume create demo --size $size --replicas $replicas --mode $mode --dir $dir
  $flurry serve demo --dir $dir                      # NBD on nbd://127.0.0.1:10809/demo
  nbdinfo nbd://127.0.0.1:10809/demo                 # or fio --ioengine=nbd, qemu-io, nbdcopy
  $flurry attach demo $mnt --mkfs ext4 --dir $dir    # kernel nbd-client, else FUSE + loop
  $flurry detach demo --dir $dir
  $flurry cluster stop --dir $dir
EOT
if [ $keep -eq 1 ]; then
  echo; echo "left running (--keep): $mnt is mounted; detach with: $flurry detach demo --dir $dir"
fi
