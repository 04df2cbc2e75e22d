// SPDX-License-Identifier: Apache-2.0
//
// The `flurry` command line: commands, their flags and argument parsing.
//
// Contract
// - Every command is described once, by a Command: its words ("volume
//   create"), synopsis, one-line summary, details and flags. Its --help text
//   and the parser's idea of what is allowed are both generated from that
//   description, so the help cannot drift from the behaviour.
// - Flags are "--name VALUE", "--name=VALUE" or a bare "--name" switch, in
//   any order among the positional arguments; "--" ends the flags.
// - Exit codes: 0 success, 1 the work failed (message on stderr saying what
//   to do), 2 the command line was wrong (message plus a pointer to --help).
// - Single-threaded; commands run to completion and return the exit code.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace flurry::cli {

// A value or a Status that explains why there is none.
template <typename T>
struct StatusOr {
  StatusOr(T v) : value(std::move(v)) {}                   // NOLINT
  StatusOr(Status s) : status(std::move(s)) {}              // NOLINT
  bool ok() const { return status.ok(); }
  T value{};
  Status status;
};

struct Command;

struct Flag {
  std::string name;      // "size" for --size
  std::string metavar;   // "SIZE"; empty for a switch that takes no value
  std::string help;
  bool repeat = false;   // may be given more than once
};

// The parsed command line of one command.
class Args {
 public:
  bool Has(const std::string& flag) const { return flags_.count(flag) != 0; }
  // The last value given for flag, or def.
  std::string Get(const std::string& flag, const std::string& def = "") const;
  std::vector<std::string> GetAll(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  friend StatusOr<Args> ParseArgs(const Command&, const std::vector<std::string>&);
  std::map<std::string, std::vector<std::string>> flags_;
  std::vector<std::string> positional_;
};

struct Command {
  std::string name;        // words after "flurry", e.g. "volume create"
  std::string synopsis;    // e.g. "NAME --size SIZE [options]"
  std::string summary;     // one line, for the overview
  std::string details;     // paragraphs after the synopsis (may be empty)
  std::vector<Flag> flags;
  bool cluster = true;     // accepts --dir and --meta to pick the cluster
  size_t min_args = 0;
  size_t max_args = std::numeric_limits<size_t>::max();
  int (*run)(const Args&) = nullptr;
};

// --dir DIR, for commands that need the directory itself (cluster false).
Flag DirFlag();

// Parses argv (the words after the command's name). --help is not handled
// here: the dispatcher looks for it first.
StatusOr<Args> ParseArgs(const Command& cmd, const std::vector<std::string>& argv);
void PrintHelp(const Command& cmd, FILE* out);

// "flurry: <msg>" on stderr; returns 1.
int Fail(const std::string& msg);
int Fail(const Status& s);
// "flurry <cmd>: <msg>" plus a pointer to --help on stderr; returns 2.
int UsageError(const Command& cmd, const std::string& msg);

// The current errno as a Status: "<what>: <strerror>". Call it first thing
// after the failing call, before errno can change.
inline Status ErrnoStatus(const std::string& what) {
  int e = errno;
  return Status::Error(-e, what + ": " + errstr(-e));
}

// Numeric flag values: a plain decimal integer in [lo, hi].
StatusOr<uint64_t> ParseCount(const std::string& flag, const std::string& text, uint64_t lo, uint64_t hi);
// A size with an optional K/M/G/T suffix, explained when malformed.
StatusOr<uint64_t> ParseSizeArg(const std::string& what, const std::string& text);

// Command tables, one per source file.
std::vector<Command> ClusterCommands();   // cluster_cmd.cc
std::vector<Command> StatusCommands();    // status_cmd.cc
std::vector<Command> VolumeCommands();    // volume_cmd.cc
std::vector<Command> ServeCommands();     // serve_cmd.cc
std::vector<Command> AttachCommands();    // attach_cmd.cc, detach_cmd.cc

}  // namespace flurry::cli
