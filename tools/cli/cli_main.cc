// SPDX-License-Identifier: Apache-2.0
//
// flurry: the command line. Finds the command, handles --help, parses the
// flags and runs it (see cli.h).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tools/cli/cli.h"
#include "tools/cli/process.h"

#ifndef FLURRY_VERSION
#define FLURRY_VERSION "unknown"
#endif

using namespace flurry::cli;

namespace {

std::vector<Command> AllCommands() {
  std::vector<Command> all;
  for (auto table : {ClusterCommands, StatusCommands, VolumeCommands, ServeCommands, AttachCommands}) {
    auto t = table();
    all.insert(all.end(), t.begin(), t.end());
  }
  // Runs flurry-crashtest with the remaining arguments (see RunCrashtest).
  Command crash;
  crash.name = "crashtest";
  crash.summary = "Crash-inject a write mode and check its invariant (runs flurry-crashtest; --help there).";
  all.push_back(crash);
  return all;
}

// `flurry crashtest ARGS...` is flurry-crashtest ARGS... (its own --help and
// flags), found like the daemons: beside flurry, in the build tree, or in
// $FLURRY_BIN_DIR.
int RunCrashtest(const std::vector<std::string>& rest) {
  auto bin = FindBinary("flurry-crashtest");
  if (!bin.ok()) {
    fprintf(stderr, "flurry crashtest: %s\n", bin.status.message().c_str());
    return 1;
  }
  std::vector<std::string> argv{bin.value};
  argv.insert(argv.end(), rest.begin(), rest.end());
  if (rest.empty()) argv.push_back("--help");
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(cargv[0], cargv.data());
  fprintf(stderr, "flurry crashtest: cannot run %s: %s\n", cargv[0], strerror(errno));
  return 1;
}

void PrintOverview(const std::vector<Command>& all, const std::string& group, FILE* out) {
  if (group.empty()) {
    fprintf(out,
            "usage: flurry COMMAND [ARGS...] [--dir DIR | --meta HOST:PORT]\n"
            "\n"
            "Runs a flurry cluster (flurry-meta and tract servers) on this machine and manages its\n"
            "volumes: virtual disks striped over the tract servers, served over NBD by flurry-disk.\n"
            "\n"
            "commands:\n");
  } else {
    fprintf(out, "usage: flurry %s SUBCOMMAND [ARGS...]\n\nsubcommands:\n", group.c_str());
  }
  for (const Command& c : all) {
    if (!group.empty() && c.name.rfind(group + " ", 0) != 0) continue;
    std::string left = "  " + c.name;
    if (left.size() < 20) left.resize(20, ' ');
    fprintf(out, "%s%s\n", left.c_str(), c.summary.c_str());
  }
  if (group.empty())
    fprintf(out,
            "\n"
            "Commands find their cluster with --dir DIR (default $FLURRY_DIR, else ./flurry-cluster),\n"
            "whose cluster.conf holds the meta address; those that only need flurry-meta also take\n"
            "--meta HOST:PORT instead. Sizes take K, M, G, T suffixes (powers of 1024).\n"
            "`flurry COMMAND --help` tells more. `flurry --version` prints the version.\n");
  else
    fprintf(out, "\n`flurry %s SUBCOMMAND --help` tells more.\n", group.c_str());
}

bool WantsHelp(const std::vector<std::string>& args, size_t from) {
  for (size_t i = from; i < args.size(); ++i) {
    if (args[i] == "--") return false;
    if (args[i] == "--help" || args[i] == "-h") return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // Root's tools (losetup, mount, mkfs.*) live in sbin, which PATH may lack.
  const char* path = getenv("PATH");
  std::string p = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  if ((":" + p + ":").find(":/usr/sbin:") == std::string::npos) setenv("PATH", (p + ":/usr/sbin:/sbin").c_str(), 1);

  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<Command> all = AllCommands();
  // Options before the command: --help, --version, and --dir/--meta, which
  // are handed on to the command.
  std::vector<std::string> globals;
  size_t i = 0;
  for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      PrintOverview(all, "", stdout);
      return 0;
    }
    if (a == "--version") {
      printf("flurry %s\n", FLURRY_VERSION);
      return 0;
    }
    if ((a == "--dir" || a == "--meta") && i + 1 < args.size()) {
      globals.insert(globals.end(), {a, args[i + 1]});
      ++i;
    } else if (a.rfind("--dir=", 0) == 0 || a.rfind("--meta=", 0) == 0) {
      globals.push_back(a);
    } else {
      fprintf(stderr, "flurry: unknown option '%s' before the command\nTry 'flurry --help'.\n", a.c_str());
      return 2;
    }
  }
  if (i == args.size()) {
    PrintOverview(all, "", stderr);
    return 2;
  }
  if (args[i] == "crashtest")
    return RunCrashtest(std::vector<std::string>(args.begin() + static_cast<long>(i + 1), args.end()));
  const Command* cmd = nullptr;
  size_t words = 0;
  for (const Command& c : all) {
    if (i + 1 < args.size() && c.name == args[i] + " " + args[i + 1]) { cmd = &c; words = 2; }
    if (!cmd && c.name == args[i]) { cmd = &c; words = 1; }
  }
  if (!cmd) {
    const std::string& group = args[i];
    bool is_group = false;
    std::string subs;
    for (const Command& c : all)
      if (c.name.rfind(group + " ", 0) == 0) {
        is_group = true;
        subs += (subs.empty() ? "" : ", ") + c.name.substr(group.size() + 1);
      }
    if (!is_group) {
      std::vector<std::string> firsts;
      for (const Command& c : all) {
        std::string f = c.name.substr(0, c.name.find(' '));
        if (std::find(firsts.begin(), firsts.end(), f) == firsts.end()) firsts.push_back(f);
      }
      std::string names;
      for (const auto& f : firsts) names += (names.empty() ? "" : ", ") + f;
      fprintf(stderr, "flurry: unknown command '%s' (commands: %s)\nTry 'flurry --help'.\n", group.c_str(),
              names.c_str());
      return 2;
    }
    if (WantsHelp(args, i + 1)) {
      PrintOverview(all, group, stdout);
      return 0;
    }
    if (i + 1 == args.size())
      fprintf(stderr, "flurry %s: which one? (%s)\n", group.c_str(), subs.c_str());
    else
      fprintf(stderr, "flurry %s: unknown subcommand '%s' (subcommands: %s)\n", group.c_str(), args[i + 1].c_str(),
              subs.c_str());
    fprintf(stderr, "Try 'flurry %s --help'.\n", group.c_str());
    return 2;
  }
  if (WantsHelp(args, i + words)) {
    PrintHelp(*cmd, stdout);
    return 0;
  }
  std::vector<std::string> rest = globals;
  rest.insert(rest.end(), args.begin() + static_cast<long>(i + words), args.end());
  auto parsed = ParseArgs(*cmd, rest);
  if (!parsed.ok()) return UsageError(*cmd, parsed.status.message());
  return cmd->run(parsed.value);
}
