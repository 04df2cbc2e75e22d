// SPDX-License-Identifier: Apache-2.0
//
// LocalCluster: a throwaway flurry cluster of real processes on loopback —
// one flurry-meta and N flurry-tractservers, each with its own directory
// under one root. Used by flurry-bench and by the integration tests in
// tests/cluster/ (which can kill -9 and restart single servers).
//
// Contract
// - Start() returns once every tract server has registered with meta (it
//   polls SERVERS), or fails with a Status that says which process did not
//   come up and where its log is.
// - Every process writes its stdout and stderr to <root>/<name>.log
//   (appended across restarts, each start headed by its command line).
// - Children get PR_SET_PDEATHSIG(SIGKILL): they die with the process that
//   started them, even if it crashes.
// - The destructor kills every process that is still running (SIGTERM, then
//   SIGKILL after a grace period) and reaps it. It never deletes the root
//   directory: the owner decides whether to keep it (logs on failure).
// - Not thread-safe: use one LocalCluster from one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/units.h"
#include "meta/meta_types.h"

namespace flurry {

class LocalCluster {
 public:
  struct Options {
    std::string meta_bin;         // path of flurry-meta
    std::string tractserver_bin;  // path of flurry-tractserver
    std::string root;             // directory for all state and logs (created)
    int servers = 4;
    uint64_t heartbeat_timeout_ms = 1500;
    uint32_t tlt_width = 3;
    uint32_t delay_us = 0;        // --delay-us of every tract server
    std::vector<std::string> server_args;  // more flags for every tract server
    int start_timeout_ms = 15000;
  };

  static Result<std::unique_ptr<LocalCluster>> Start(Options opts, Status* why);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const HostPort& meta() const { return meta_addr_; }
  const std::string& root() const { return opts_.root; }
  int servers() const { return static_cast<int>(servers_.size()); }
  // "127.0.0.1:PORT" of server i, as registered with meta (and in the TLT).
  std::string server_addr(int i) const;
  std::string server_dir(int i) const;
  bool server_running(int i);

  // Sends sig to server i and reaps it (waits up to 10 s).
  Status KillServer(int i, int sig = 9);
  // Sends sig to server i and returns (SIGSTOP / SIGCONT: a hung server).
  Status SignalServer(int i, int sig);
  // Starts server i again on the same directory and port and waits until
  // meta has heard from the new process.
  Status RestartServer(int i);
  // Sends a request to meta; fails unless it answers OK.
  Result<std::vector<std::string>> MetaCall(const std::string& request, Status* why);
  // VOLUME CREATE name size=.. tract_size=.. replicas=..
  Result<VolumeInfo> CreateVolume(const std::string& name, uint64_t size, uint32_t tract_size,
                                  uint32_t replicas, Status* why);
  // Stops every process (SIGTERM, SIGKILL after grace_ms).
  void StopAll(int grace_ms = 2000);
  // The last `lines` lines of every log, for failure reports.
  std::string LogTails(size_t lines = 20) const;

 private:
  struct Proc {
    std::string name;
    std::string dir;
    std::string log;
    std::string port_file;
    uint16_t port = 0;
    pid_t pid = -1;
  };
  explicit LocalCluster(Options o) : opts_(std::move(o)) {}
  Status Spawn(Proc* p, const std::vector<std::string>& argv);
  Status WaitPort(Proc* p);
  Status StartServer(int i, uint16_t port);
  // Waits until meta lists server i as up with a heartbeat younger than
  // max_age_ms.
  Status WaitUp(int i, uint64_t max_age_ms);
  static void Reap(Proc* p, int grace_ms);

  Options opts_;
  HostPort meta_addr_;
  Proc meta_;
  std::vector<Proc> servers_;
};

// Finds a flurry binary: $ENV_VAR if set, else next to the build tree of the
// running program (<exe dir>/../../<subdir>/<name>), else <name> on $PATH.
std::string FindFlurryBinary(const char* env_var, const char* subdir, const char* name);

}  // namespace flurry
