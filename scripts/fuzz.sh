#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang (./build-fuzz) and runs each for a
# bounded time: the tract frame parser and the NBD handshake/request parser.
#   scripts/fuzz.sh [SECONDS per target, default 60]
# A crash leaves its reproducer (crash-*) in build-fuzz/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
[ -f build-fuzz/build.ninja ] ||
  CXX=clang++ meson setup build-fuzz -Dfuzzers=true -Dtests=disabled -Dbenchmarks=disabled -Dfuse=disabled >/dev/null
meson compile -C build-fuzz tractserver/fuzz_tract_frame nbdserver/fuzz_nbd >/dev/null
cd build-fuzz
for f in tractserver/fuzz_tract_frame nbdserver/fuzz_nbd; do
  echo "== $f for ${secs}s"
  "./$f" -max_total_time="$secs" -print_final_stats=1 2>&1 | grep -E "^Done|stat::number_of_executed_units|ERROR|SUMMARY" || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz.sh: $f found a crash (reproducer in build-fuzz/)"; exit 1; }
done
