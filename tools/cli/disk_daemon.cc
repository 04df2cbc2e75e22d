// SPDX-License-Identifier: Apache-2.0
#include "tools/cli/disk_daemon.h"

#include <unistd.h>

#include <fstream>
#include <iterator>

namespace flurry::cli {

std::string ServeDaemonName(const std::vector<std::string>& volumes) {
  std::string n = "disk-";
  for (size_t i = 0; i < volumes.size(); ++i) n += (i ? "+" : "") + volumes[i];
  return n;
}

std::string AttachDaemonName(const std::string& volume) { return "attach-" + volume; }

std::vector<std::string> VolumesOfDaemon(const std::string& name) {
  std::vector<std::string> out;
  if (name.rfind("attach-", 0) == 0) return {name.substr(7)};
  if (name.rfind("disk-", 0) != 0) return out;
  std::string rest = name.substr(5);
  size_t p;
  while ((p = rest.find('+')) != std::string::npos) {
    out.push_back(rest.substr(0, p));
    rest.erase(0, p + 1);
  }
  out.push_back(rest);
  return out;
}

std::map<std::string, Daemon> ServedVolumes(const ClusterDir& d) {
  std::map<std::string, Daemon> out;
  for (const Daemon& dm : ListDaemons(d.Pids())) {
    if (!dm.alive || dm.binary != "flurry-disk") continue;
    for (const auto& v : VolumesOfDaemon(dm.name)) out[v] = dm;
  }
  return out;
}

StatusOr<pid_t> StartDiskDaemon(const ClusterDir& d, const std::string& name, const HostPort& meta,
                                const std::vector<std::string>& args, int timeout_ms) {
  auto bin = FindBinary("flurry-disk");
  if (!bin.ok()) return bin.status;
  std::vector<std::string> argv = {bin.value, "--meta", meta.ToString()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string log = d.LogFile(name);
  uint64_t log_start = FileSize(log);
  auto pid = SpawnDaemon(argv, log, d.PidFile(name));
  if (!pid.ok()) return pid.status;
  bool ready = false, died = false;
  WaitUntil(timeout_ms, [&] {
    std::ifstream in(log);
    in.seekg(static_cast<std::streamoff>(log_start));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ready = text.find("flurry-disk: ready") != std::string::npos;
    died = !ready && !ProcessAlive(pid.value, "flurry-disk");
    return ready || died;
  });
  if (ready) return pid.value;
  std::string what = died ? "flurry-disk exited before it was ready"
                          : "flurry-disk was not ready after " + std::to_string(timeout_ms / 1000) + " s (stopped it)";
  if (!died) StopDaemons({Daemon{name, "flurry-disk", d.PidFile(name), pid.value, true}}, 5000);
  unlink(d.PidFile(name).c_str());
  return Status::Error(-EIO, what + "; the end of " + log + ":\n" + Tail(log, 12, log_start));
}

bool DiskSupports(const std::string& option) {
  auto bin = FindBinary("flurry-disk");
  if (!bin.ok()) return false;
  RunResult r = Run({bin.value, "--help"});
  return r.ok() && r.output.find(option) != std::string::npos;
}

}  // namespace flurry::cli
