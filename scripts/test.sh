#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds flurry and runs its test suites: unit, cluster (real processes on
# loopback), e2e (real NBD clients, FUSE + loop, filesystems, SQLite) and vm
# (the kernel NBD client in a qemu VM: tests/vm/kernel_nbd.sh, ~2.5 min).
#
#   scripts/test.sh            build in ./build and run unit + cluster + e2e + vm
#   scripts/test.sh --asan     also build ./build-asan (address+undefined) and run the unit tests there
#   scripts/test.sh --quick    unit tests only
#
# Tests that need something this machine lacks (root, /dev/fuse, a tool)
# report SKIP (exit 77) with the reason in their log.
set -euo pipefail
cd "$(dirname "$0")/.."
asan=0 quick=0
for a in "$@"; do
  case "$a" in
    --asan) asan=1 ;;
    --quick) quick=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done
if [ ! -f build/build.ninja ]; then
  meson setup build --werror
fi
meson compile -C build
suites=(--suite unit)
[ $quick -eq 1 ] || suites+=(--suite cluster --suite e2e --suite vm)
meson test -C build --print-errorlogs --num-processes 2 "${suites[@]}"
if [ $asan -eq 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    # -O0: the sanitizer build only runs the unit tests, and compiles twice as fast.
    meson setup build-asan --werror -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
      -Dbenchmarks=disabled
  fi
  meson compile -C build-asan
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C build-asan --print-errorlogs --suite unit
fi
