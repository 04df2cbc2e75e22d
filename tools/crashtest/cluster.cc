// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "meta/meta_client.h"

namespace flurry::crashtest {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool Executable(const std::string& p) { return access(p.c_str(), X_OK) == 0; }

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Waits for pid to exit for up to timeout_ms; its wait status, or -1.
int WaitExit(pid_t pid, int timeout_ms) {
  for (int waited = 0;; waited += 10) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0) return -1;
    if (waited >= timeout_ms) return -1;
    SleepMs(10);
  }
}

}  // namespace

Status FindBinaries(Binaries* out) {
  const char* names[3] = {"flurry-meta", "flurry-tractserver", "flurry-disk"};
  const char* build_dirs[3] = {"meta", "tractserver", "daemon"};
  std::string* dst[3] = {&out->meta, &out->tractserver, &out->disk};
  if (const char* env = getenv("FLURRY_BIN_DIR"); env && *env) {
    for (int i = 0; i < 3; ++i) {
      *dst[i] = std::string(env) + "/" + names[i];
      if (!Executable(*dst[i]))
        return Status::Error(-ENOENT, "no executable " + *dst[i] + " ($FLURRY_BIN_DIR is set to " + env + ")");
    }
    return Status::Ok();
  }
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return Status::Error(-errno, "readlink /proc/self/exe failed; set FLURRY_BIN_DIR");
  buf[n] = 0;
  std::string self(buf), dir = self.substr(0, self.rfind('/'));
  for (int i = 0; i < 3; ++i) {
    std::string in_build = dir + "/../../" + build_dirs[i] + "/" + names[i];
    std::string beside = dir + "/" + names[i];
    if (Executable(in_build)) *dst[i] = in_build;
    else if (Executable(beside)) *dst[i] = beside;
    else
      return Status::Error(-ENOENT, std::string("cannot find ") + names[i] + " (looked at " + in_build + " and " +
                                        beside + "); set FLURRY_BIN_DIR to the directory that holds it");
  }
  return Status::Ok();
}

Result<pid_t> ProcCluster::Spawn(const std::string& name, const std::vector<std::string>& argv, Status* why) {
  std::string log = dir_ + "/" + name + ".log";
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    *why = Status::Error(-errno, "cannot open " + log + ": " + errstr(-errno));
    return Result<pid_t>::error(why->code());
  }
  std::string head = "===";
  for (const auto& a : argv) head += " " + a;
  head += "\n";
  (void)!write(fd, head.data(), head.size());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int nul = open("/dev/null", O_RDONLY);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close_range(3, ~0u, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int err = errno;
  close(fd);
  if (pid < 0) {
    *why = Status::Error(-err, "fork: " + errstr(-err));
    return Result<pid_t>::error(-err);
  }
  children_.push_back({name, pid});
  return pid;
}

void ProcCluster::Forget(pid_t pid) {
  for (auto it = children_.begin(); it != children_.end(); ++it)
    if (it->pid == pid) {
      children_.erase(it);
      return;
    }
}

Result<std::unique_ptr<ProcCluster>> ProcCluster::Start(const Binaries& bins, const std::string& dir,
                                                        int servers, Status* why) {
  using R = Result<std::unique_ptr<ProcCluster>>;
  std::unique_ptr<ProcCluster> c(new ProcCluster());
  c->bins_ = bins;
  c->dir_ = dir;
  mkdir((dir + "/meta").c_str(), 0755);
  std::string port_file = dir + "/meta.port";
  // A long heartbeat timeout: a tract server killed by the harness comes
  // back on the same address before meta would replace it.
  auto pid = c->Spawn("meta", {bins.meta, "--dir", dir + "/meta", "--listen", "127.0.0.1:0", "--port-file",
                               port_file, "--heartbeat-timeout-ms", "600000"}, why);
  if (!pid) return R::error(pid.err());
  for (int i = 0; i < 1000 && ReadFile(port_file).empty(); ++i) SleepMs(10);
  auto port = ParseHostPort(":" + ReadFile(port_file).substr(0, ReadFile(port_file).find('\n')));
  if (!port) {
    *why = Status::Error(-EIO, "flurry-meta did not start:\n" + c->LogTail("meta"));
    return R::error(-EIO);
  }
  c->meta_ = *port;
  c->ts_.resize(servers);
  for (int i = 0; i < servers; ++i) {
    Status s = c->StartServer(i, 0);
    if (!s.ok()) { *why = s; return R::error(s.code()); }
  }
  std::string want = "servers " + std::to_string(servers) + " up " + std::to_string(servers);
  for (int i = 0;; ++i) {
    std::vector<std::string> lines;
    Status s = c->Meta("STATUS", &lines);
    if (s.ok() && !lines.empty() && lines[0] == want) break;
    if (i > 1000) {
      *why = Status::Error(-ETIMEDOUT, "tract servers did not register with meta (" +
                                           (lines.empty() ? s.ToString() : lines[0]) + ")");
      return R::error(-ETIMEDOUT);
    }
    SleepMs(10);
  }
  return c;
}

ProcCluster::~ProcCluster() {
  for (auto& ch : children_) kill(ch.pid, SIGTERM);
  for (auto& ch : children_)
    if (WaitExit(ch.pid, 3000) == -1) {
      kill(ch.pid, SIGKILL);
      waitpid(ch.pid, nullptr, 0);
    }
}

Status ProcCluster::Meta(const std::string& request, std::vector<std::string>* lines) {
  MetaClient mc(meta_, 5000);
  MetaReply r = mc.Call(request);
  if (lines) *lines = r.lines;
  return r.status;
}

Status ProcCluster::StartServer(int i, uint16_t port) {
  std::string d = dir_ + "/ts" + std::to_string(i), pf = d + ".port";
  mkdir(d.c_str(), 0755);
  unlink(pf.c_str());
  Status why;
  auto pid = Spawn("ts" + std::to_string(i),
                   {bins_.tractserver, "--dir", d, "--meta", meta_.ToString(), "--listen",
                    "127.0.0.1:" + std::to_string(port), "--port-file", pf},
                   &why);
  if (!pid) return why;
  ts_[i].pid = *pid;
  ts_runs_++;
  for (int k = 0; k < 1000; ++k) {
    std::string s = ReadFile(pf);
    if (!s.empty() && s.back() == '\n') {
      ts_[i].port = static_cast<uint16_t>(atoi(s.c_str()));
      return Status::Ok();
    }
    if (waitpid(*pid, nullptr, WNOHANG) == *pid) {
      Forget(*pid);
      ts_[i].pid = -1;
      std::string tail = LogTail("ts" + std::to_string(i), 1);
      if (tail.find("Address already in use") != std::string::npos)
        return Status::Error(-EADDRINUSE, "flurry-tractserver " + std::to_string(i) + ": port in use");
      break;
    }
    SleepMs(10);
  }
  return Status::Error(-EIO, "flurry-tractserver " + std::to_string(i) + " did not start:\n" +
                                 LogTail("ts" + std::to_string(i)));
}

Status ProcCluster::KillServer(int i) {
  if (ts_[i].pid < 0) return Status::Ok();
  kill(ts_[i].pid, SIGKILL);
  waitpid(ts_[i].pid, nullptr, 0);
  Forget(ts_[i].pid);
  ts_[i].pid = -1;
  return Status::Ok();
}

Status ProcCluster::RestartServer(int i) {
  if (ts_[i].pid >= 0) return Status::Error(-EBUSY, "tract server " + std::to_string(i) + " is running");
  // Its old port may be briefly (or, if another socket took it as an
  // ephemeral port, lastingly) in use: retry, then take a new port (meta
  // then publishes the new address; the directory keeps its identity).
  Status s;
  for (int attempt = 0; attempt < 20; ++attempt) {
    s = StartServer(i, ts_[i].port);
    if (s.ok() || s.code() != -EADDRINUSE) return s;
    SleepMs(100);
  }
  fprintf(stderr, "flurry-crashtest: port %u of tract server %d stays in use; restarting it on a new port\n",
          ts_[i].port, i);
  return StartServer(i, 0);
}

Status ProcCluster::StartDisk(const std::string& volume, Disk* d, int timeout_ms) {
  std::string name = "disk." + std::to_string(++disk_runs_);
  std::string pf = dir_ + "/" + name + ".port";
  Status why;
  auto pid = Spawn(name, {bins_.disk, "--meta", meta_.ToString(), "--volume", volume, "--listen",
                          "127.0.0.1:0", "--port-file", pf},
                   &why);
  if (!pid) return why;
  d->pid = *pid;
  d->log = name;
  for (int waited = 0; waited < timeout_ms; waited += 5) {
    std::string log = ReadFile(dir_ + "/" + name + ".log");
    if (log.find("\nflurry-disk: ready") != std::string::npos) {
      std::string p = ReadFile(pf);
      d->port = static_cast<uint16_t>(atoi(p.c_str()));
      if (d->port == 0) return Status::Error(-EIO, "flurry-disk is ready but wrote no port to " + pf);
      return Status::Ok();
    }
    int st = 0;
    if (waitpid(*pid, &st, WNOHANG) == *pid) {
      Forget(*pid);
      d->pid = -1;
      log = ReadFile(dir_ + "/" + name + ".log");
      int code = log.find("does not implement") != std::string::npos ? -EOPNOTSUPP : -EIO;
      return Status::Error(code, "flurry-disk exited during start-up (status " + std::to_string(st) + "):\n" +
                                     LogTail(name));
    }
    SleepMs(5);
  }
  KillDisk(d);
  return Status::Error(-ETIMEDOUT, "flurry-disk not ready after " + std::to_string(timeout_ms) + " ms:\n" +
                                       LogTail(name));
}

void ProcCluster::KillDisk(Disk* d) {
  if (d->pid < 0) return;
  kill(d->pid, SIGKILL);
  waitpid(d->pid, nullptr, 0);
  Forget(d->pid);
  d->pid = -1;
}

Status ProcCluster::StopDisk(Disk* d) {
  if (d->pid < 0) return Status::Ok();
  kill(d->pid, SIGTERM);
  int st = WaitExit(d->pid, 30000);
  if (st == -1) {
    KillDisk(d);
    return Status::Error(-ETIMEDOUT, "flurry-disk ignored SIGTERM for 30 s");
  }
  Forget(d->pid);
  d->pid = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return Status::Error(-EIO, "flurry-disk exited with status " + std::to_string(st) + " after SIGTERM:\n" +
                                   LogTail(d->log));
  return Status::Ok();
}

std::string ProcCluster::LogTail(const std::string& log, size_t lines) const {
  std::string s = ReadFile(dir_ + "/" + log + ".log");
  size_t pos = s.size();
  if (pos > 0 && s[pos - 1] == '\n') pos--;
  for (size_t n = 0; n < lines && pos > 0; ++n) {
    size_t p = s.rfind('\n', pos - 1);
    if (p == std::string::npos) { pos = 0; break; }
    pos = p;
  }
  std::string t = s.substr(pos);
  if (!t.empty() && t[0] == '\n') t.erase(0, 1);
  std::string out;
  std::istringstream in(t);
  for (std::string l; std::getline(in, l);) out += "    " + log + ": " + l + "\n";
  return out;
}

}  // namespace flurry::crashtest
