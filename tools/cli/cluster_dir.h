// SPDX-License-Identifier: Apache-2.0
//
// A local cluster's directory, and how a command finds its cluster.
//
// Layout of DIR (created by `flurry cluster start`):
//   cluster.conf      meta=HOST:PORT, servers=N, zones=Z, delay_us=N
//   meta/             flurry-meta's state
//   ts0/ ... tsN-1/   one tract server's data each
//   logs/NAME.log     stdout+stderr of each daemon
//   pids/NAME.pid     pid of each running daemon: meta, ts<i>,
//                     disk-<vol>[+<vol>...] (flurry serve --daemon),
//                     attach-<vol> (flurry attach)
//   run/NAME.port     TCP port a daemon bound
//   attach/VOLUME     what `flurry attach` did, for `flurry detach`
//   fuse-VOLUME/      FUSE mount point of an attached volume
//   lock              flock()ed by commands that change DIR
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/units.h"
#include "tools/cli/cli.h"

namespace flurry::cli {

struct ClusterDir {
  std::string dir;  // absolute

  std::string Conf() const { return dir + "/cluster.conf"; }
  std::string MetaState() const { return dir + "/meta"; }
  std::string ServerData(uint32_t i) const { return dir + "/ts" + std::to_string(i); }
  std::string Pids() const { return dir + "/pids"; }
  std::string Attach() const { return dir + "/attach"; }
  std::string PidFile(const std::string& name) const { return dir + "/pids/" + name + ".pid"; }
  std::string LogFile(const std::string& name) const { return dir + "/logs/" + name + ".log"; }
  std::string PortFile(const std::string& name) const { return dir + "/run/" + name + ".port"; }
  std::string AttachRecord(const std::string& volume) const { return dir + "/attach/" + volume; }
  std::string FuseDir(const std::string& volume) const { return dir + "/fuse-" + volume; }
  // Creates DIR and its subdirectories (logs, pids, run, attach).
  Status MakeDirs() const;
};

struct ClusterConf {
  HostPort meta;
  uint32_t servers = 0;
  uint32_t zones = 1;
  uint32_t delay_us = 0;

  Status Write(const std::string& path) const;
  static StatusOr<ClusterConf> Read(const std::string& path);
};

// --dir, else $FLURRY_DIR, else ./flurry-cluster; made absolute.
ClusterDir DirFor(const Args& a);
// --meta, else the address in DIR/cluster.conf; says what to do when neither.
StatusOr<HostPort> MetaFor(const Args& a);

// An exclusive flock() on DIR/lock, held while a command changes DIR
// (start, stop, serve --daemon, attach, detach). Waits up to 30 s.
class DirLock {
 public:
  static StatusOr<std::shared_ptr<DirLock>> Acquire(const ClusterDir& d);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace flurry::cli
