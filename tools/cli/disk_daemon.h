// SPDX-License-Identifier: Apache-2.0
//
// flurry-disk daemons started by the CLI (`flurry serve --daemon`, `flurry
// attach`) in a cluster directory. Daemon names encode what they serve:
// "disk-VOL[+VOL...]" for serve, "attach-VOL" for attach ('+' never occurs
// in a volume name).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/units.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/process.h"

namespace flurry::cli {

std::string ServeDaemonName(const std::vector<std::string>& volumes);
std::string AttachDaemonName(const std::string& volume);
// The volumes a flurry-disk daemon's name says it serves.
std::vector<std::string> VolumesOfDaemon(const std::string& name);
// Live flurry-disk daemons of d, by the volumes they serve.
std::map<std::string, Daemon> ServedVolumes(const ClusterDir& d);

// Starts `flurry-disk --meta META ARGS...` as daemon `name` of d and waits
// until it prints "flurry-disk: ready" (then returns its pid) or exits, or
// timeout_ms passes (then it is stopped; the error quotes its log).
StatusOr<pid_t> StartDiskDaemon(const ClusterDir& d, const std::string& name, const HostPort& meta,
                                const std::vector<std::string>& args, int timeout_ms);
// Whether `flurry-disk --help` lists the option (e.g. "--no-tcp").
bool DiskSupports(const std::string& option);

}  // namespace flurry::cli
