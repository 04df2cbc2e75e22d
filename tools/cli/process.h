// SPDX-License-Identifier: Apache-2.0
//
// Processes for the CLI: locating flurry's binaries, starting daemons with
// pid files and logs, stopping them, and running helper programs (losetup,
// mount, ...) to completion.
//
// Contract
// - A daemon is identified by a name ("meta", "ts3", "disk-a+b", "attach-a")
//   that names its pid file and log. A pid file is trusted only while the
//   process it names is alive, not a zombie, runs the binary the name
//   implies and names the cluster directory in its arguments, so a stale
//   file whose pid was reused is never signalled.
// - Daemons run in their own session with stdin from /dev/null and
//   stdout/stderr appended to their log; they inherit no other descriptor.
// - Nothing here throws; failures come back as a Status with a sentence.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "tools/cli/cli.h"

namespace flurry::cli {

// The path of a sibling binary (flurry-meta, flurry-tractserver,
// flurry-disk): in $FLURRY_BIN_DIR if set; else next to this executable (an
// installed layout); else where the build tree puts it relative to
// tools/cli/flurry (../../meta/, ../../tractserver/, ../../daemon/).
StatusOr<std::string> FindBinary(const std::string& name);

// Starts argv as a daemon, appending its output to log_file and writing its
// pid to pid_file. It runs in / (so it pins no mount point): every path in
// argv must be absolute.
StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv, const std::string& log_file,
                            const std::string& pid_file);

// True if pid is alive, not a zombie, its argv[0] has basename binary and
// (unless empty) one of its arguments contains mention. Reaps pid if it is
// an exited child of this process.
bool ProcessAlive(pid_t pid, const std::string& binary, const std::string& mention = "");

struct Daemon {
  std::string name;      // from the pid file's name
  std::string binary;    // flurry-meta, flurry-tractserver or flurry-disk
  std::string pid_file;  // DIR/pids/NAME.pid; its arguments mention DIR/
  pid_t pid = 0;
  bool alive = false;
};
// The binary a daemon name implies ("" for a name this tool never writes).
std::string BinaryForDaemon(const std::string& name);
// Every NAME.pid in pids_dir (DIR/pids), sorted by name; alive says whether
// it runs.
std::vector<Daemon> ListDaemons(const std::string& pids_dir);
StatusOr<Daemon> ReadDaemon(const std::string& pids_dir, const std::string& name);
// SIGTERM to each live daemon, up to timeout_ms for all to exit, then
// SIGKILL. Removes the pid files. Returns the names that needed SIGKILL.
std::vector<std::string> StopDaemons(const std::vector<Daemon>& ds, int timeout_ms);

struct RunResult {
  int status = -1;       // exit code; 128+N if killed by signal N; 127 if it could not run
  std::string output;    // stdout and stderr, interleaved
  bool ok() const { return status == 0; }
  std::string Trimmed() const;  // output without trailing newlines
};
// Runs argv (PATH lookup) to completion with stdin from /dev/null.
RunResult Run(const std::vector<std::string>& argv);
bool InPath(const std::string& program);

// The last `lines` lines of file from byte `from` on, indented for messages.
std::string Tail(const std::string& file, size_t lines, uint64_t from = 0);
uint64_t FileSize(const std::string& file);
// Polls cond every 50 ms until it is true (returns true) or timeout_ms passes.
bool WaitUntil(int timeout_ms, const std::function<bool()>& cond);

}  // namespace flurry::cli
