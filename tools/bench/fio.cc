// SPDX-License-Identifier: Apache-2.0
//
// The local-disk baseline: fio with io_uring and O_DIRECT, parsed from its
// JSON output (--output-format=json).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tools/bench/jobs.h"

extern char** environ;

namespace flurry::bench {
namespace {

// A minimal JSON reader: enough for fio's output (objects, arrays, strings,
// numbers, true/false/null). Numbers are doubles.
struct Json {
  enum Kind { kNull, kBool, kNum, kStr, kArr, kObj } kind = kNull;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  const Json* get(const std::string& k) const {
    auto it = obj.find(k);
    return kind == kObj && it != obj.end() ? &it->second : nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  bool Parse(Json* out) {
    if (!Value(out, 0)) return false;
    Ws();
    return true;  // trailing text (fio notices) is ignored
  }

 private:
  void Ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t')) ++p_;
  }
  bool Lit(const char* w) {
    size_t n = strlen(w);
    if (s_.compare(p_, n, w) != 0) return false;
    p_ += n;
    return true;
  }
  bool String(std::string* out) {
    if (p_ >= s_.size() || s_[p_] != '"') return false;
    ++p_;
    while (p_ < s_.size() && s_[p_] != '"') {
      if (s_[p_] == '\\' && p_ + 1 < s_.size()) {
        char e = s_[++p_];
        if (e == 'u') {
          p_ += 4;  // escaped code points do not matter here
          out->push_back('?');
        } else {
          out->push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
        }
        ++p_;
        continue;
      }
      out->push_back(s_[p_++]);
    }
    if (p_ >= s_.size()) return false;
    ++p_;
    return true;
  }
  bool Value(Json* v, int depth) {
    if (depth > 64) return false;
    Ws();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '{') {
      v->kind = Json::kObj;
      ++p_;
      Ws();
      if (p_ < s_.size() && s_[p_] == '}') return ++p_, true;
      for (;;) {
        Ws();
        std::string k;
        if (!String(&k)) return false;
        Ws();
        if (p_ >= s_.size() || s_[p_++] != ':') return false;
        if (!Value(&v->obj[k], depth + 1)) return false;
        Ws();
        if (p_ < s_.size() && s_[p_] == ',') { ++p_; continue; }
        if (p_ < s_.size() && s_[p_] == '}') return ++p_, true;
        return false;
      }
    }
    if (c == '[') {
      v->kind = Json::kArr;
      ++p_;
      Ws();
      if (p_ < s_.size() && s_[p_] == ']') return ++p_, true;
      for (;;) {
        v->arr.emplace_back();
        if (!Value(&v->arr.back(), depth + 1)) return false;
        Ws();
        if (p_ < s_.size() && s_[p_] == ',') { ++p_; continue; }
        if (p_ < s_.size() && s_[p_] == ']') return ++p_, true;
        return false;
      }
    }
    if (c == '"') {
      v->kind = Json::kStr;
      return String(&v->str);
    }
    if (Lit("true")) { v->kind = Json::kBool; v->num = 1; return true; }
    if (Lit("false")) { v->kind = Json::kBool; return true; }
    if (Lit("null")) return true;
    char* end = nullptr;
    v->num = strtod(s_.c_str() + p_, &end);
    if (end == s_.c_str() + p_) return false;
    v->kind = Json::kNum;
    p_ = static_cast<size_t>(end - s_.c_str());
    return true;
  }

  const std::string& s_;
  size_t p_ = 0;
};

// Runs fio with args, returns its stdout; stderr goes to log.
int RunCapture(const std::vector<std::string>& args, const std::string& log, std::string* out) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    return -rc;
  }
  char buf[65536];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    out->append(buf, static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  return WIFSIGNALED(st) ? -EINTR : -EIO;
}

JobResult Fio(const std::string& fio, const std::string& file, uint64_t size, const std::string& name,
              const std::vector<std::string>& shape, const std::string& log) {
  JobResult r;
  std::vector<std::string> args = {fio, "--name=" + name, "--filename=" + file,
                                   "--size=" + std::to_string(size), "--ioengine=io_uring",
                                   "--direct=1", "--output-format=json"};
  args.insert(args.end(), shape.begin(), shape.end());
  std::string out;
  int rc = RunCapture(args, log, &out);
  if (rc < 0) {
    r.error = "fio failed (" + errstr(rc) + "); see " + log;
    return r;
  }
  size_t brace = out.find('{');
  Json root;
  if (brace == std::string::npos || !JsonParser(out.substr(brace)).Parse(&root)) {
    r.error = "cannot parse fio's JSON output; see " + log;
    return r;
  }
  const Json* jobs = root.get("jobs");
  if (!jobs || jobs->kind != Json::kArr || jobs->arr.empty()) {
    r.error = "fio output has no jobs";
    return r;
  }
  const Json& job = jobs->arr[0];
  for (const char* dir : {"read", "write"}) {
    const Json* d = job.get(dir);
    if (!d) continue;
    const Json* ios = d->get("total_ios");
    const Json* bytes = d->get("io_bytes");
    const Json* runtime = d->get("runtime");  // ms
    const Json* lat = d->get("lat_ns");
    if (!ios || !bytes || !runtime || ios->num <= 0) continue;
    r.ops += static_cast<uint64_t>(ios->num);
    r.bytes += static_cast<uint64_t>(bytes->num);
    r.seconds = std::max(r.seconds, runtime->num / 1000.0);
    if (lat && lat->get("mean")) r.mean_lat_us = lat->get("mean")->num / 1000.0;
  }
  const Json* err = job.get("error");
  if (err && err->num != 0) {
    r.error = "fio reported error " + std::to_string(static_cast<int>(err->num)) + "; see " + log;
    return r;
  }
  r.ok = r.ops > 0 && r.seconds > 0;
  if (!r.ok) r.error = "fio did no IO; see " + log;
  return r;
}

}  // namespace

JobResult RunFioJob(const std::string& fio, const std::string& file, uint64_t size, const JobSpec& spec,
                    double seconds, const std::string& log) {
  std::string rw = spec.random ? (spec.write ? "randwrite" : "randread") : (spec.write ? "write" : "read");
  return Fio(fio, file, size, "bench", {"--rw=" + rw, "--bs=" + std::to_string(spec.bs),
                                        "--iodepth=" + std::to_string(spec.qd),
                                        "--runtime=" + std::to_string(static_cast<long>(seconds * 1000)) + "ms", "--time_based",
                                        "--norandommap", "--randrepeat=0"}, log);
}

JobResult PrefillFioFile(const std::string& fio, const std::string& file, uint64_t size,
                         const std::string& log) {
  return Fio(fio, file, size, "prefill", {"--rw=write", "--bs=1M", "--iodepth=8"}, log);
}

}  // namespace flurry::bench
