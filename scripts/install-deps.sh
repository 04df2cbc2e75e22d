#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything flurry needs to build, test and benchmark, from Debian
# packages. Idempotent: skips apt when everything is already there.
set -euo pipefail
pkgs=(
  meson ninja-build pkg-config g++ clang libclang-rt-14-dev
  liburing-dev libxxhash-dev libgtest-dev libgmock-dev libbenchmark-dev
  libfuse3-dev fuse3
  fio nbdkit qemu-utils bc libnbd-bin nbd-client e2fsprogs sqlite3 util-linux
  qemu-system-x86 busybox-static cpio kmod postgresql postgresql-contrib
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
