#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The long crash campaign (not a meson test: about 70 minutes on the 2-core
# reference machine). Run it before trusting a change to a write mode:
#   - in-process: 100,000 crash states per mode, plus 20,000 with a small
#     write-cache bound and 4 KiB blocks (backpressure, partial blocks);
#   - real: 1,000 SIGKILLs of flurry-disk per mode over NBD, plus 200 per
#     mode that also SIGKILL a tract server;
#   - ext4 on FUSE + loop: 20 kills per mode (needs root and /dev/fuse).
# Every step prints its statistics; the exit status is 1 if any step failed.
#
#   usage: tests/crash/long_campaign.sh [BUILD_DIR] [SEED]   (default: build, $RANDOM)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
seed=${2:-$RANDOM}
B=$build/tools/crashtest/flurry-crashtest
[[ -x $B ]] || { echo "no $B: build first (meson compile -C $build)" >&2; exit 2; }
echo "seed $seed"
failed=0
step() {
  echo "=== $*"
  local rc=0
  "$@" || rc=$?
  [[ $rc -eq 0 || $rc -eq 77 ]] || { echo "=== FAILED (exit $rc): $*"; failed=1; }
}
step "$B" inproc --mode all --states 100000 --seed "$seed"
step "$B" inproc --mode all --states 20000 --seed "$seed" --block 4K --max-buffered 256K
step "$B" nbd --mode all --kills 1000 --seed "$seed"
step "$B" nbd --mode all --kills 200 --seed "$seed" --kill-tractserver
step bash "$here/fs_crash.sh" "$build/meta/flurry-meta" "$build/tractserver/flurry-tractserver" \
  "$build/daemon/flurry-disk" --kills 20 --seed "$seed"
exit $failed
