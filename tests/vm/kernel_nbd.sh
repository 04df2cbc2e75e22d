#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# kernel_nbd.sh: `flurry attach --via nbd` with the real kernel NBD client,
# inside a small qemu VM (software emulation, TCG), because the host kernel
# of the machines this project runs on has no NBD client.
#
#   usage: kernel_nbd.sh FLURRY FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
#                        [--cases "CASE ..."] [--timeout SECONDS] [--keep]
#
#   CASE is a write mode (write-through, fast-ack, log) or kill:MODE (the same
#   with a tract server killed with SIGKILL in the middle of the writes).
#   Default cases: "write-through fast-ack log kill:write-through", all in
#   one boot (TCG is slow). --timeout is the hard limit on the VM (default
#   420 s). --keep leaves the work directory (initramfs, console log).
#   The kernel cache is $FLURRY_VM_CACHE (default ${XDG_CACHE_HOME:-/var/cache}/flurry-vm).
#   Meson: meson test -C BUILDDIR --suite vm --print-errorlogs
#
# What it does, on the host:
#   1. the kernel: the linux-image-*-amd64 package that apt offers for
#      linux-image-amd64 (apt-get download, dpkg-deb -x), of which vmlinuz and
#      the modules crc16, mbcache, jbd2, crc32c_generic, ext4, nbd and brd
#      are kept (decompressed) in the cache dir $FLURRY_VM_CACHE, default
#      ${XDG_CACHE_HOME:-/var/cache}/flurry-vm/PACKAGE; later runs reuse it.
#   2. an uncompressed initramfs: busybox (static), guest_init.sh as /init,
#      flurry, flurry-meta, flurry-tractserver, flurry-disk (stripped copies),
#      nbd-client, mkfs.ext4, fsck.ext4, blkid (util-linux: `flurry attach`
#      runs `blkid -p`) and every shared library ldd lists for them.
#   3. qemu-system-x86_64 -accel tcg, console on ttyS0 captured to a file;
#      the guest (guest_init.sh) prints "FLURRY-VM: ..." markers there.
# It exits 0 when every case printed "FLURRY-VM: PASS case=..." and the
# guest printed "FLURRY-VM: DONE" with no FAIL; 1 otherwise; 77 (skip) only
# when qemu-system-x86_64 or the kernel package cannot be had.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "=== $*"; }

[[ $# -ge 4 ]] || { sed -n '4,18p' "$0"; exit 2; }
FLURRY=$1 FLURRY_META=$2 FLURRY_TS=$3 FLURRY_DISK=$4
shift 4
CASES="write-through fast-ack log kill:write-through"
TIMEOUT=420
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cases) CASES=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) fail "unknown option $1 (see the header of $0)" ;;
  esac
done
for c in $CASES; do
  case "$c" in
    write-through|fast-ack|log|kill:write-through|kill:fast-ack|kill:log) ;;
    *) fail "bad case '$c': want MODE or kill:MODE, MODE one of write-through fast-ack log" ;;
  esac
done

# --- what must be here -----------------------------------------------------
QEMU=$(command -v qemu-system-x86_64 || true)
[[ -n $QEMU ]] || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed (scripts/install-deps.sh installs it)"; }
for t in cpio strip ldd nbd-client mkfs.ext4 fsck.ext4 blkid apt-cache apt-get dpkg-deb flock timeout; do need "$t"; done
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
  if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi  # static: ldd refuses it
done
[[ -n $BUSYBOX ]] || fail "no static busybox (apt-get install busybox-static)"
for b in "$FLURRY" "$FLURRY_META" "$FLURRY_TS" "$FLURRY_DISK"; do
  [[ -x $b ]] || fail "$b is not an executable (build first: meson compile -C BUILDDIR)"
done

T=$(mktemp -d "${TMPDIR:-/tmp}/flurry-vm.XXXXXX")
QEMU_PID=
DL=
LOG=$T/console.log
SHOWN=0  # the console log was printed
cleanup() {
  local rc=$?
  if [[ $SHOWN -eq 0 && -s $LOG ]]; then
    echo "--- the last 60 lines of the console (interrupted) ---"
    tr -d '\r' <"$LOG" | tail -n 60
  fi
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null || true
    sleep 1
    kill -9 "$QEMU_PID" 2>/dev/null || true
  fi
  [[ -z $DL ]] || rm -rf "$DL"  # a half-done kernel download
  if [[ $KEEP -eq 1 ]]; then echo "work directory kept: $T"
  else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# --- 1. the kernel ---------------------------------------------------------
MODULES="crc16 mbcache jbd2 crc32c_generic ext4 nbd brd"
CACHE=${FLURRY_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/flurry-vm}
mkdir -p "$CACHE" 2>/dev/null && [[ -w $CACHE ]] || CACHE=${TMPDIR:-/tmp}/flurry-vm-cache
mkdir -p "$CACHE"
t0=$(date +%s.%N)
KDIR=
cached_kernel() {  # the newest complete kernel in the cache
  local d
  d=$(find "$CACHE" -mindepth 2 -maxdepth 2 -name ready -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d ]] && echo "$d"
}
exec 9>"$CACHE/lock"
flock -w 300 9 || fail "cannot lock $CACHE/lock (another run stuck?)"
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }' || true)
if [[ -n $PKG && -f $CACHE/$PKG/ready ]]; then
  KDIR=$CACHE/$PKG
elif [[ -n $PKG ]]; then
  step "fetching $PKG (apt-get download) into $CACHE"
  DL=$(mktemp -d "$CACHE/dl.XXXXXX")
  dl=$DL
  if (cd "$dl" && apt-get download "$PKG") >"$dl/apt.log" 2>&1; then
    dpkg-deb -x "$dl"/"$PKG"_*.deb "$dl/x" || fail "dpkg-deb -x $PKG failed"
    out=$dl/kernel
    mkdir -p "$out/modules"
    vmlinuz=$(find "$dl/x/boot" -name 'vmlinuz-*' | head -n 1)
    [[ -n $vmlinuz ]] || fail "$PKG holds no boot/vmlinuz-*"
    cp "$vmlinuz" "$out/vmlinuz"
    for m in $MODULES; do
      ko=$(find "$dl/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)
      [[ -n $ko ]] || fail "$PKG has no module $m"
      case "$ko" in
        *.xz) xz -dc "$ko" >"$out/modules/$m.ko" ;;
        *.zst) zstd -qdc "$ko" >"$out/modules/$m.ko" ;;
        *.gz) gzip -dc "$ko" >"$out/modules/$m.ko" ;;
        *) cp "$ko" "$out/modules/$m.ko" ;;
      esac
    done
    rm -rf "${CACHE:?}/$PKG"
    mv "$out" "$CACHE/$PKG"
    touch "$CACHE/$PKG/ready"
    KDIR=$CACHE/$PKG
  else
    echo "apt-get download $PKG failed: $(tail -n 3 "$dl/apt.log")"
  fi
  rm -rf "$dl"
  DL=
fi
if [[ -z $KDIR ]]; then
  KDIR=$(cached_kernel || true)
  if [[ -z $KDIR && -z $PKG ]]; then
    skip "no kernel: apt offers no linux-image-*-amd64 (apt-cache depends linux-image-amd64) and $CACHE holds none"
  fi
  [[ -n $KDIR ]] || skip "no kernel: apt-get download $PKG failed and $CACHE holds none"
  echo "using the cached kernel $KDIR (apt could not provide ${PKG:-one})"
fi
exec 9>&-
echo "kernel: $(basename "$KDIR") ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s to fetch or find)"

# --- 2. the initramfs ------------------------------------------------------
step "initramfs"
t0=$(date +%s.%N)
R=$T/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/lib/flurry-vm,lib/modules,etc,proc,sys,dev,tmp,run,mnt,data}
cp "$BUSYBOX" "$R/bin/busybox"
add_libs() {  # the shared libraries (and loader) a dynamic binary needs
  local lib
  for lib in $(ldd "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
    [[ -e $R$lib ]] && continue
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
}
add_bin() {  # add_bin SOURCE DEST (DEST inside the initramfs)
  local src
  src=$(command -v "$1") || fail "$1 not found"
  cp -L "$src" "$R$2"
  add_libs "$src"
}
for b in "$FLURRY" "$FLURRY_META" "$FLURRY_TS" "$FLURRY_DISK"; do
  name=$(basename "$b")
  strip --strip-unneeded -o "$R/usr/local/bin/$name" "$b"
  add_libs "$b"
done
add_bin nbd-client /usr/local/bin/nbd-client
add_bin blkid /usr/local/bin/blkid
add_bin fsck.ext4 /usr/local/bin/fsck.ext4
# mkfs.ext4 behind a shim that only records how long it ran (for the mkfs
# timing; `flurry attach --mkfs ext4` runs it with its own arguments).
add_bin mkfs.ext4 /usr/local/lib/flurry-vm/mkfs.ext4
cat >"$R/usr/local/bin/mkfs.ext4" <<'SHIM'
#!/bin/sh
# Timing shim: runs the real mkfs.ext4 with the same arguments and exit code.
start=$(cut -d' ' -f1 /proc/uptime)
rc=0
/usr/local/lib/flurry-vm/mkfs.ext4 "$@" || rc=$?
echo "$start $(cut -d' ' -f1 /proc/uptime)" >/tmp/mkfs.time
exit $rc
SHIM
chmod 755 "$R/usr/local/bin/mkfs.ext4"
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$R/etc/"
ln -s /proc/self/mounts "$R/etc/mtab"
echo "root:x:0:0:root:/:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
# busybox applets, never over a real binary nor over busybox itself
for p in $("$R/bin/busybox" --list-full); do
  [[ $p == bin/busybox ]] && continue
  [[ -e $R/$p || -L $R/$p ]] && continue
  mkdir -p "$R/$(dirname "$p")"
  ln -s /bin/busybox "$R/$p"
done
[[ -x $R/bin/busybox && ! -L $R/bin/busybox ]] || fail "the busybox binary was overwritten"
for m in $MODULES; do cp "$KDIR/modules/$m.ko" "$R/lib/modules/"; done
cp "$here/guest_init.sh" "$R/init"
chmod 755 "$R/init"
echo "$CASES" >"$R/cases"
(cd "$R" && find . | cpio -o -H newc --quiet) >"$T/initrd.cpio"  # uncompressed: TCG unpacks it faster
echo "initramfs: $(du -h "$T/initrd.cpio" | cut -f1) ($(find "$R" -type f | wc -l) files)" \
  "built in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# --- 3. the VM -------------------------------------------------------------
step "booting the VM (qemu TCG, timeout ${TIMEOUT}s); cases: $CASES"
start=$(date +%s.%N)
timeout --kill-after=10 "$TIMEOUT" "$QEMU" -accel tcg -smp 2 -m 2048 -nographic -no-reboot -nic none \
  -kernel "$KDIR/vmlinuz" -initrd "$T/initrd.cpio" \
  -append "console=ttyS0 quiet panic=-1" </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!
qrc=0
wait "$QEMU_PID" || qrc=$?
QEMU_PID=
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "--- console ---"
tr -d '\r' <"$LOG"
echo "--- end of console ---"
SHOWN=1
[[ $qrc -ne 124 && $qrc -ne 137 ]] || echo "the VM was stopped after ${TIMEOUT}s (timeout)"

# --- 4. verdict ------------------------------------------------------------
# (a marker may follow the firmware's terminal escapes on the same line)
markers=$(tr -d '\r' <"$LOG" | grep -o 'FLURRY-VM: .*' || true)
ok=1
grep -q '^FLURRY-VM: BOOT ' <<<"$markers" || { echo "no BOOT marker: the guest's /init did not run"; ok=0; }
for c in $CASES; do
  grep -q "^FLURRY-VM: PASS case=$c " <<<"$markers" || { echo "case $c: no PASS marker"; ok=0; }
done
if grep -q '^FLURRY-VM: FAIL' <<<"$markers"; then ok=0; fi
grep -q '^FLURRY-VM: DONE' <<<"$markers" || { echo "no DONE marker: the guest did not finish"; ok=0; }
echo "--- timings (seconds; guest clock) ---"
sed -n 's/^FLURRY-VM: \(BOOT\|CLUSTER\|PASS\|FAIL\|DONE\)/\1/p' <<<"$markers"
echo "vm wall time: ${wall}s (qemu exit code $qrc)"
[[ $ok -eq 1 ]] || fail "kernel NBD VM test failed (see the console above)"
echo "PASS: all cases ($CASES)"
