// SPDX-License-Identifier: Apache-2.0
//
// The real crash runner: a volume of the mode on a ProcCluster, served by
// flurry-disk, driven over NBD (NbdClient) by the Workload; at a random
// moment flurry-disk gets SIGKILL (and, with kill_tractserver, one tract
// server too). Replies already sent before the kill still count as
// acknowledged (they are read until EOF). Then the tract server is
// restarted on its directory and port, flurry-disk is restarted (its
// start-up runs the engine's recovery), the whole disk is read back over
// NBD and checked; what was read is the next generation's baseline. With
// kill_tractserver, the disk is then read once more with a random tract
// server down (SIGKILL, restarted after): it must read the same (replicas
// that a crash left different are resynced at start-up).
// Every acknowledged request, with its epoch, goes to DIR/ops-MODE.log.
#pragma once

#include <cstdint>
#include <string>

#include "meta/meta_types.h"
#include "tools/crashtest/cluster.h"
#include "tools/crashtest/stats.h"
#include "tools/crashtest/workload.h"

namespace flurry::crashtest {

struct NbdOptions {
  WriteMode mode = WriteMode::kWriteThrough;
  uint64_t kills = 10;
  uint64_t seed = 1;
  uint64_t size = 64u << 20;
  uint32_t block = 64u << 10;
  int kill_min_ms = 20, kill_max_ms = 500;  // workload time before each kill
  bool kill_tractserver = false;
  uint64_t max_violations = 20;             // stop the mode after this many violating kills
  WorkloadOptions wl;
  bool verbose = false;
};

// 0, -EOPNOTSUPP when flurry-disk does not implement the mode (*why says
// so), or another negative errno when the campaign could not run (*why).
int RunNbd(ProcCluster* cluster, const NbdOptions& o, CrashStats* st, std::string* why);

}  // namespace flurry::crashtest
