// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "meta/meta_client.h"

namespace flurry {
namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

bool Executable(const std::string& p) { return !p.empty() && access(p.c_str(), X_OK) == 0; }

// Appends how a child ended to its log, so a crash is visible there.
void NoteExit(const std::string& log, pid_t pid, int st) {
  std::ofstream out(log, std::ios::app);
  out << "=== pid " << pid << " ";
  if (WIFSIGNALED(st)) out << "killed by signal " << WTERMSIG(st) << " (" << strsignal(WTERMSIG(st)) << ")";
  else out << "exited with status " << WEXITSTATUS(st);
  out << "\n";
}

}  // namespace

std::string FindFlurryBinary(const char* env_var, const char* subdir, const char* name) {
  if (const char* e = getenv(env_var); e && *e) return e;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    std::filesystem::path p(exe);
    auto cand = p.parent_path() / ".." / ".." / subdir / name;
    if (Executable(cand.string())) return std::filesystem::weakly_canonical(cand).string();
  }
  return name;  // execvp searches $PATH
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(Options opts, Status* why) {
  using R = Result<std::unique_ptr<LocalCluster>>;
  std::unique_ptr<LocalCluster> c(new LocalCluster(std::move(opts)));
  const Options& o = c->opts_;
  std::error_code ec;
  std::filesystem::create_directories(o.root, ec);
  if (ec) {
    *why = Status::Error(-EIO, "cannot create " + o.root + ": " + ec.message());
    return R::error(why->code());
  }
  c->meta_ = Proc{"meta", o.root + "/meta", o.root + "/meta.log", o.root + "/meta.port"};
  Status s = c->Spawn(&c->meta_, {o.meta_bin, "--dir", c->meta_.dir, "--listen", "127.0.0.1:0",
                                  "--port-file", c->meta_.port_file, "--tlt-width",
                                  std::to_string(o.tlt_width), "--heartbeat-timeout-ms",
                                  std::to_string(o.heartbeat_timeout_ms)});
  if (s.ok()) s = c->WaitPort(&c->meta_);
  if (!s.ok()) {
    *why = s;
    return R::error(s.code());
  }
  c->meta_addr_ = HostPort{"127.0.0.1", c->meta_.port};
  for (int i = 0; i < o.servers; ++i) {
    std::string n = "ts" + std::to_string(i);
    c->servers_.push_back(Proc{n, o.root + "/" + n, o.root + "/" + n + ".log", o.root + "/" + n + ".port"});
  }
  for (int i = 0; i < o.servers; ++i) {
    s = c->StartServer(i, 0);
    if (!s.ok()) {
      *why = s;
      return R::error(s.code());
    }
  }
  for (int i = 0; i < o.servers; ++i) {
    s = c->WaitUp(i, UINT64_MAX);
    if (!s.ok()) {
      *why = s;
      return R::error(s.code());
    }
  }
  return c;
}

LocalCluster::~LocalCluster() { StopAll(); }

std::string LocalCluster::server_addr(int i) const {
  return "127.0.0.1:" + std::to_string(servers_.at(static_cast<size_t>(i)).port);
}

std::string LocalCluster::server_dir(int i) const { return servers_.at(static_cast<size_t>(i)).dir; }

bool LocalCluster::server_running(int i) {
  Proc& p = servers_.at(static_cast<size_t>(i));
  if (p.pid <= 0) return false;
  int st;
  if (waitpid(p.pid, &st, WNOHANG) == p.pid) {
    NoteExit(p.log, p.pid, st);
    p.pid = -1;
    return false;
  }
  return true;
}

Status LocalCluster::Spawn(Proc* p, const std::vector<std::string>& argv) {
  // Everything the child needs is prepared before fork(): after it, the child
  // only makes async-signal-safe calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  {
    std::ofstream log(p->log, std::ios::app);
    log << "=== started:";
    for (const auto& a : argv) log << " " << a;
    log << "\n";
  }
  unlink(p->port_file.c_str());
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Status::Error(-errno, "fork: " + errstr(-errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(p->log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul >= 0) dup2(nul, 0);
    execvp(args[0], args.data());
    static const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  p->pid = pid;
  return Status::Ok();
}

Status LocalCluster::WaitPort(Proc* p) {
  uint64_t deadline = NowMs() + static_cast<uint64_t>(opts_.start_timeout_ms);
  while (NowMs() < deadline) {
    std::ifstream in(p->port_file);
    unsigned port = 0;
    if (in >> port && port > 0 && port < 65536) {
      p->port = static_cast<uint16_t>(port);
      return Status::Ok();
    }
    int st;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
      NoteExit(p->log, p->pid, st);
      p->pid = -1;
      return Status::Error(-ECHILD, p->name + " exited during start-up (status " + std::to_string(st) +
                                        "); see " + p->log);
    }
    SleepMs(10);
  }
  return Status::Error(-ETIMEDOUT, p->name + " did not write " + p->port_file + "; see " + p->log);
}

Status LocalCluster::StartServer(int i, uint16_t port) {
  Proc& p = servers_.at(static_cast<size_t>(i));
  std::vector<std::string> argv = {opts_.tractserver_bin, "--dir", p.dir, "--listen",
                                   "127.0.0.1:" + std::to_string(port), "--port-file", p.port_file,
                                   "--meta", meta_addr_.ToString(), "--zone", "z0"};
  if (opts_.delay_us) {
    argv.push_back("--delay-us");
    argv.push_back(std::to_string(opts_.delay_us));
  }
  argv.insert(argv.end(), opts_.server_args.begin(), opts_.server_args.end());
  // Binding the old port can fail briefly after a kill; try a few times.
  Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    s = Spawn(&p, argv);
    if (s.ok()) s = WaitPort(&p);
    if (s.ok() || port == 0) break;
    SleepMs(200);
  }
  return s;
}

Status LocalCluster::WaitUp(int i, uint64_t max_age_ms) {
  std::string addr = server_addr(i);
  MetaClient mc(meta_addr_, 2000);
  uint64_t deadline = NowMs() + static_cast<uint64_t>(opts_.start_timeout_ms);
  std::string last;
  while (NowMs() < deadline) {
    MetaReply r = mc.Call("SERVERS");
    if (r.status.ok()) {
      for (const auto& l : r.lines) {
        std::istringstream in(l);
        std::string uuid, a, kv;
        in >> uuid >> a;
        if (a != addr) continue;
        bool up = false;
        uint64_t age = UINT64_MAX;
        while (in >> kv) {
          if (kv == "state=up") up = true;
          if (kv.rfind("last_heartbeat_ms=", 0) == 0) age = strtoull(kv.c_str() + 18, nullptr, 10);
        }
        last = l;
        if (up && age <= max_age_ms) return Status::Ok();
      }
    } else {
      last = r.status.ToString();
    }
    if (!server_running(i))
      return Status::Error(-ECHILD, servers_[static_cast<size_t>(i)].name +
                                        " exited before registering; see " + servers_[static_cast<size_t>(i)].log);
    SleepMs(50);
  }
  return Status::Error(-ETIMEDOUT, "tract server " + addr + " did not register with meta (last: " + last + ")");
}

void LocalCluster::Reap(Proc* p, int grace_ms) {
  if (p->pid <= 0) return;
  int st;
  uint64_t deadline = NowMs() + static_cast<uint64_t>(grace_ms);
  for (;;) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
      NoteExit(p->log, p->pid, st);
      break;
    }
    if (r < 0 && errno == ECHILD) break;
    if (NowMs() >= deadline) {
      kill(p->pid, SIGKILL);
      if (waitpid(p->pid, &st, 0) == p->pid) NoteExit(p->log, p->pid, st);
      break;
    }
    SleepMs(5);
  }
  p->pid = -1;
}

Status LocalCluster::KillServer(int i, int sig) {
  Proc& p = servers_.at(static_cast<size_t>(i));
  if (p.pid <= 0) return Status::Error(-ESRCH, p.name + " is not running");
  if (kill(p.pid, sig) < 0) return Status::Error(-errno, "kill " + p.name + ": " + errstr(-errno));
  Reap(&p, 10000);
  return Status::Ok();
}

Status LocalCluster::SignalServer(int i, int sig) {
  Proc& p = servers_.at(static_cast<size_t>(i));
  if (p.pid <= 0) return Status::Error(-ESRCH, p.name + " is not running");
  if (kill(p.pid, sig) < 0) return Status::Error(-errno, "kill " + p.name + ": " + errstr(-errno));
  return Status::Ok();
}

Status LocalCluster::RestartServer(int i) {
  Proc& p = servers_.at(static_cast<size_t>(i));
  if (server_running(i)) return Status::Error(-EBUSY, p.name + " is still running");
  uint64_t t0 = NowMs();
  Status s = StartServer(i, p.port);
  if (!s.ok()) return s;
  // A heartbeat younger than the restart can only come from the new process.
  return WaitUp(i, NowMs() - t0);
}

Result<std::vector<std::string>> LocalCluster::MetaCall(const std::string& request, Status* why) {
  MetaClient mc(meta_addr_, 5000);
  MetaReply r = mc.Call(request);
  if (!r.status.ok()) {
    *why = r.status;
    return Result<std::vector<std::string>>::error(r.status.code());
  }
  return std::move(r.lines);
}

Result<VolumeInfo> LocalCluster::CreateVolume(const std::string& name, uint64_t size,
                                              uint32_t tract_size, uint32_t replicas, Status* why) {
  auto lines = MetaCall("VOLUME CREATE " + name + " size=" + std::to_string(size) +
                            " tract_size=" + std::to_string(tract_size) +
                            " replicas=" + std::to_string(replicas),
                        why);
  if (!lines) return Result<VolumeInfo>::error(lines.err());
  if (lines->empty()) {
    *why = Status::Error(-EPROTO, "VOLUME CREATE returned nothing");
    return Result<VolumeInfo>::error(-EPROTO);
  }
  auto v = VolumeInfo::Parse((*lines)[0]);
  if (!v) *why = Status::Error(-EPROTO, "cannot parse volume: " + (*lines)[0]);
  return v;
}

void LocalCluster::StopAll(int grace_ms) {
  std::vector<Proc*> all;
  for (auto& p : servers_) all.push_back(&p);
  all.push_back(&meta_);
  for (Proc* p : all)
    if (p->pid > 0) kill(p->pid, SIGTERM);
  for (Proc* p : all) Reap(p, grace_ms);
}

std::string LocalCluster::LogTails(size_t lines) const {
  std::string out;
  std::vector<const Proc*> all = {&meta_};
  for (const auto& p : servers_) all.push_back(&p);
  for (const Proc* p : all) {
    std::ifstream in(p->log);
    std::deque<std::string> tail;
    std::string l;
    while (std::getline(in, l)) {
      tail.push_back(l);
      if (tail.size() > lines) tail.pop_front();
    }
    out += "--- " + p->log + " (last " + std::to_string(tail.size()) + " lines)\n";
    for (const auto& t : tail) out += t + "\n";
  }
  return out;
}

}  // namespace flurry
