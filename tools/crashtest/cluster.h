// SPDX-License-Identifier: Apache-2.0
//
// ProcCluster: the real processes of an NBD crash campaign, all children of
// the harness, all state and logs under one work directory: flurry-meta,
// N flurry-tractservers (one directory each), and flurry-disk daemons
// started, SIGKILLed and restarted on demand.
//
// Contract
// - Binaries: $FLURRY_BIN_DIR/{flurry-meta,flurry-tractserver,flurry-disk}
//   if set, else the build tree relative to this executable
//   (../../meta/flurry-meta, ../../tractserver/flurry-tractserver,
//   ../../daemon/flurry-disk), else next to it (an installed layout).
// - Every child gets PR_SET_PDEATHSIG(SIGKILL) (it dies with the harness),
//   stdin from /dev/null and stdout+stderr appended to DIR/NAME.log.
// - The destructor SIGTERMs every child still running, SIGKILLs it after
//   a grace period and reaps it; it never deletes the directory.
// - Blocking, one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/units.h"

namespace flurry::crashtest {

struct Binaries {
  std::string meta, tractserver, disk;
};
Status FindBinaries(Binaries* out);

class ProcCluster {
 public:
  struct Disk {
    pid_t pid = -1;
    uint16_t port = 0;
    std::string log;
  };

  static Result<std::unique_ptr<ProcCluster>> Start(const Binaries& bins, const std::string& dir,
                                                    int servers, Status* why);
  ~ProcCluster();
  ProcCluster(const ProcCluster&) = delete;
  ProcCluster& operator=(const ProcCluster&) = delete;

  const HostPort& meta() const { return meta_; }
  int servers() const { return static_cast<int>(ts_.size()); }
  // One meta request; fails unless the reply is OK.
  Status Meta(const std::string& request, std::vector<std::string>* lines = nullptr);

  // SIGKILL tract server i (and reap it); restart it on its directory and port.
  Status KillServer(int i);
  Status RestartServer(int i);

  // Starts flurry-disk serving `volume` and waits for its ready line.
  // -EOPNOTSUPP (with the daemon's sentence) when it refuses the volume's
  // write mode.
  Status StartDisk(const std::string& volume, Disk* d, int timeout_ms = 60000);
  void KillDisk(Disk* d);       // SIGKILL and reap
  Status StopDisk(Disk* d);     // SIGTERM; must exit 0 within 30 s

  std::string LogTail(const std::string& log, size_t lines = 15) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Child {
    std::string name;
    pid_t pid = -1;
  };
  ProcCluster() = default;
  Result<pid_t> Spawn(const std::string& name, const std::vector<std::string>& argv, Status* why);
  Status StartServer(int i, uint16_t port);
  void Forget(pid_t pid);

  Binaries bins_;
  std::string dir_;
  HostPort meta_;
  std::vector<Child> children_;
  struct Ts {
    pid_t pid = -1;
    uint16_t port = 0;
  };
  std::vector<Ts> ts_;
  int disk_runs_ = 0, ts_runs_ = 0;
};

}  // namespace flurry::crashtest
