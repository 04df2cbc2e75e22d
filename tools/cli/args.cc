// SPDX-License-Identifier: Apache-2.0
#include <cctype>

#include "common/units.h"
#include "tools/cli/cli.h"

namespace flurry::cli {
namespace {

const std::vector<Flag>& ClusterFlags() {
  static const std::vector<Flag> f = {
      DirFlag(),
      {"meta", "HOST:PORT", "use this flurry-meta instead of the one recorded in DIR/cluster.conf"},
  };
  return f;
}

const Flag* FindFlag(const Command& cmd, const std::string& name) {
  for (const Flag& f : cmd.flags)
    if (f.name == name) return &f;
  if (cmd.cluster)
    for (const Flag& f : ClusterFlags())
      if (f.name == name) return &f;
  return nullptr;
}

void PrintFlag(const Flag& f, FILE* out) {
  std::string left = "  --" + f.name + (f.metavar.empty() ? "" : " " + f.metavar);
  if (left.size() < 24) left.resize(24, ' ');
  else left += "\n" + std::string(24, ' ');
  fprintf(out, "%s%s\n", left.c_str(), f.help.c_str());
}

}  // namespace

Flag DirFlag() { return {"dir", "DIR", "cluster directory (default $FLURRY_DIR, else ./flurry-cluster)"}; }

std::string Args::Get(const std::string& flag, const std::string& def) const {
  auto it = flags_.find(flag);
  return it == flags_.end() || it->second.empty() ? def : it->second.back();
}

std::vector<std::string> Args::GetAll(const std::string& flag) const {
  auto it = flags_.find(flag);
  return it == flags_.end() ? std::vector<std::string>{} : it->second;
}

StatusOr<Args> ParseArgs(const Command& cmd, const std::vector<std::string>& argv) {
  Args a;
  bool flags_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& w = argv[i];
    if (flags_done || w.size() < 2 || w[0] != '-') {
      a.positional_.push_back(w);
      continue;
    }
    if (w == "--") {
      flags_done = true;
      continue;
    }
    if (w.rfind("--", 0) != 0)
      return Status::Error(-EINVAL, "unknown option '" + w + "' (options are spelt --name)");
    std::string name = w.substr(2), value;
    size_t eq = name.find('=');
    bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const Flag* f = FindFlag(cmd, name);
    if (f == nullptr) return Status::Error(-EINVAL, "unknown option '--" + name + "'");
    if (f->metavar.empty()) {
      if (inline_value) return Status::Error(-EINVAL, "--" + name + " takes no value");
    } else if (!inline_value) {
      if (i + 1 >= argv.size())
        return Status::Error(-EINVAL, "--" + name + " needs a value (" + f->metavar + ")");
      value = argv[++i];
    }
    auto& vals = a.flags_[name];
    if (!vals.empty() && !f->repeat)
      return Status::Error(-EINVAL, "--" + name + " given more than once");
    vals.push_back(value);
  }
  if (a.positional_.size() < cmd.min_args || a.positional_.size() > cmd.max_args) {
    std::string want = cmd.min_args == cmd.max_args ? std::to_string(cmd.min_args)
                       : cmd.max_args == std::numeric_limits<size_t>::max()
                           ? "at least " + std::to_string(cmd.min_args)
                           : std::to_string(cmd.min_args) + " to " + std::to_string(cmd.max_args);
    std::string got = a.positional_.empty() ? "none" : std::to_string(a.positional_.size());
    if (a.positional_.size() > cmd.max_args)
      got += " ('" + a.positional_[cmd.max_args] + "' is extra)";
    return Status::Error(-EINVAL, "expected " + want + " argument" + (want == "1" ? "" : "s") +
                                      " (" + cmd.synopsis + "), got " + got);
  }
  return a;
}

void PrintHelp(const Command& cmd, FILE* out) {
  fprintf(out, "usage: flurry %s%s%s\n\n%s\n", cmd.name.c_str(), cmd.synopsis.empty() ? "" : " ",
          cmd.synopsis.c_str(), cmd.summary.c_str());
  if (!cmd.details.empty()) fprintf(out, "\n%s", cmd.details.c_str());
  fprintf(out, "\noptions:\n");
  for (const Flag& f : cmd.flags) PrintFlag(f, out);
  if (cmd.cluster)
    for (const Flag& f : ClusterFlags()) PrintFlag(f, out);
  PrintFlag({"help", "", "this text"}, out);
}

int Fail(const std::string& msg) {
  fprintf(stderr, "flurry: %s\n", msg.c_str());
  return 1;
}

int Fail(const Status& s) { return Fail(s.ToString()); }

int UsageError(const Command& cmd, const std::string& msg) {
  fprintf(stderr, "flurry %s: %s\nTry 'flurry %s --help'.\n", cmd.name.c_str(), msg.c_str(), cmd.name.c_str());
  return 2;
}

StatusOr<uint64_t> ParseCount(const std::string& flag, const std::string& text, uint64_t lo, uint64_t hi) {
  auto bad = [&] {
    return Status::Error(-EINVAL, "bad " + flag + " '" + text + "': want a whole number from " +
                                      std::to_string(lo) + " to " + std::to_string(hi));
  };
  if (text.empty() || text.size() > 19) return bad();
  uint64_t v = 0;
  for (char c : text) {
    if (!isdigit(static_cast<unsigned char>(c))) return bad();
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v < lo || v > hi) return bad();
  return v;
}

StatusOr<uint64_t> ParseSizeArg(const std::string& what, const std::string& text) {
  auto r = ParseSize(text);
  if (!r)
    return Status::Error(-EINVAL, "bad " + what + " '" + text +
                                      "': want a number of bytes with an optional K, M, G or T suffix "
                                      "(powers of 1024), e.g. 10G or 64K");
  return *r;
}

}  // namespace flurry::cli
