// SPDX-License-Identifier: Apache-2.0
#include "tools/cli/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

namespace flurry::cli {
namespace {

bool Executable(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

std::string BuildSubdir(const std::string& name) {
  if (name == "flurry-meta") return "meta";
  if (name == "flurry-tractserver") return "tractserver";
  if (name == "flurry-disk") return "daemon";
  if (name == "flurry-crashtest") return "tools/crashtest";
  return "";
}

// Child side of fork(): never returns. An exec failure is reported on
// stderr and, as an errno, on errpipe when it is not -1.
[[noreturn]] void ExecChild(const std::vector<std::string>& argv, int in, int out, bool path_lookup,
                            int errpipe) {
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<char*> av;
  for (const auto& s : argv) av.push_back(const_cast<char*>(s.c_str()));
  av.push_back(nullptr);
  if (path_lookup) execvp(av[0], av.data());
  else execv(av[0], av.data());
  int e = errno;
  if (errpipe >= 0 && write(errpipe, &e, sizeof e) < 0) {}
  std::string msg = "cannot run " + argv[0] + ": " + strerror(e) + "\n";
  if (write(2, msg.data(), msg.size()) < 0) {}
  _exit(127);
}

}  // namespace

StatusOr<std::string> FindBinary(const std::string& name) {
  std::vector<std::string> tried;
  const char* env = getenv("FLURRY_BIN_DIR");
  if (env && *env) {
    std::string p = std::string(env) + "/" + name;
    if (Executable(p)) return p;
    return Status::Error(-ENOENT, "cannot find " + name + " in $FLURRY_BIN_DIR (" + env +
                                      "); point FLURRY_BIN_DIR at the directory that holds it");
  }
  std::string self = SelfDir();
  tried.push_back(self + "/" + name);
  // In the build tree this binary is build/tools/cli/flurry.
  if (!BuildSubdir(name).empty()) tried.push_back(self + "/../../" + BuildSubdir(name) + "/" + name);
  for (const auto& p : tried) {
    if (!Executable(p)) continue;
    char buf[PATH_MAX];
    return realpath(p.c_str(), buf) ? std::string(buf) : p;
  }
  std::string list;
  for (const auto& p : tried) list += (list.empty() ? "" : ", ") + p;
  return Status::Error(-ENOENT, "cannot find " + name + " (looked at " + list +
                                    "); build it (meson compile) or set FLURRY_BIN_DIR to the directory that holds it");
}

StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv, const std::string& log_file,
                            const std::string& pid_file) {
  int log = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoStatus("cannot open " + log_file);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int errpipe[2];
  if (null < 0 || pipe2(errpipe, O_CLOEXEC) < 0) {
    int e = -errno;
    close(log);
    if (null >= 0) close(null);
    return Status::Error(e, "cannot start " + argv[0] + ": " + errstr(e));
  }
  std::string cmdline;
  for (const auto& a : argv) cmdline += " " + a;
  time_t now = time(nullptr);
  char when[64];
  strftime(when, sizeof when, "%F %T", localtime(&now));
  std::string banner = std::string("=== ") + when + " flurry started:" + cmdline + "\n";
  if (write(log, banner.data(), banner.size()) < 0) {}
  pid_t pid = fork();
  if (pid == 0) {
    close(errpipe[0]);
    setsid();
    if (chdir("/") < 0) {}  // pin no mount point; every path passed is absolute
    ExecChild(argv, null, log, false, errpipe[1]);
  }
  int fork_errno = errno;
  close(log);
  close(null);
  close(errpipe[1]);
  if (pid < 0) {
    close(errpipe[0]);
    return Status::Error(-fork_errno, "fork: " + errstr(-fork_errno));
  }
  int child_errno = 0;
  ssize_t n;
  do n = read(errpipe[0], &child_errno, sizeof child_errno); while (n < 0 && errno == EINTR);
  close(errpipe[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    waitpid(pid, nullptr, 0);
    return Status::Error(-child_errno, "cannot run " + argv[0] + ": " + errstr(-child_errno));
  }
  std::string tmp = pid_file + ".tmp";
  {
    std::ofstream out(tmp);
    out << pid << "\n";
  }
  if (rename(tmp.c_str(), pid_file.c_str()) < 0) {
    int e = -errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Status::Error(e, "cannot write " + pid_file + ": " + errstr(e));
  }
  return pid;
}

bool ProcessAlive(pid_t pid, const std::string& binary, const std::string& mention) {
  if (pid <= 0) return false;
  if (waitpid(pid, nullptr, WNOHANG) == pid) return false;  // our child, now reaped
  std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream stat(proc + "/stat");
  std::string s;
  if (!std::getline(stat, s)) return false;
  size_t rp = s.rfind(')');
  if (rp == std::string::npos || rp + 2 >= s.size()) return false;
  char state = s[rp + 2];
  if (state == 'Z' || state == 'X') return false;
  std::ifstream cmd(proc + "/cmdline");
  std::string argv0, arg;
  std::getline(cmd, argv0, '\0');
  std::string base = argv0.substr(argv0.rfind('/') == std::string::npos ? 0 : argv0.rfind('/') + 1);
  if (base != binary) return false;
  if (mention.empty()) return true;
  while (std::getline(cmd, arg, '\0'))
    if (arg.find(mention) != std::string::npos) return true;
  return false;
}

namespace {
// The cluster directory a pid file belongs to, with a trailing slash.
std::string DirOfPidFile(const std::string& pid_file) {
  std::string pids = pid_file.substr(0, pid_file.rfind('/'));
  return pids.substr(0, pids.rfind('/') + 1);
}
}  // namespace

std::string BinaryForDaemon(const std::string& name) {
  if (name == "meta") return "flurry-meta";
  if (name.size() > 2 && name.rfind("ts", 0) == 0 &&
      std::all_of(name.begin() + 2, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return "flurry-tractserver";
  if (name.rfind("disk-", 0) == 0 || name.rfind("attach-", 0) == 0) return "flurry-disk";
  return "";
}

StatusOr<Daemon> ReadDaemon(const std::string& pids_dir, const std::string& name) {
  Daemon d;
  d.name = name;
  d.binary = BinaryForDaemon(name);
  d.pid_file = pids_dir + "/" + name + ".pid";
  std::ifstream in(d.pid_file);
  long pid = 0;
  if (!(in >> pid)) return Status::Error(-ENOENT, "no pid file " + d.pid_file);
  d.pid = static_cast<pid_t>(pid);
  d.alive = !d.binary.empty() && ProcessAlive(d.pid, d.binary, DirOfPidFile(d.pid_file));
  return d;
}

std::vector<Daemon> ListDaemons(const std::string& pids_dir) {
  std::vector<Daemon> out;
  DIR* dir = opendir(pids_dir.c_str());
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    std::string f = e->d_name;
    if (f.size() <= 4 || f.compare(f.size() - 4, 4, ".pid") != 0) continue;
    auto d = ReadDaemon(pids_dir, f.substr(0, f.size() - 4));
    if (d.ok()) out.push_back(d.value);
  }
  closedir(dir);
  std::sort(out.begin(), out.end(), [](const Daemon& a, const Daemon& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> StopDaemons(const std::vector<Daemon>& ds, int timeout_ms) {
  std::vector<std::string> killed;
  auto alive = [&](const Daemon& d) { return d.alive && ProcessAlive(d.pid, d.binary, DirOfPidFile(d.pid_file)); };
  for (const Daemon& d : ds)
    if (alive(d)) kill(d.pid, SIGTERM);
  WaitUntil(timeout_ms, [&] { return std::none_of(ds.begin(), ds.end(), alive); });
  for (const Daemon& d : ds) {
    if (!alive(d)) continue;
    kill(d.pid, SIGKILL);
    killed.push_back(d.name);
  }
  WaitUntil(5000, [&] { return std::none_of(ds.begin(), ds.end(), alive); });
  for (const Daemon& d : ds) unlink(d.pid_file.c_str());
  return killed;
}

std::string RunResult::Trimmed() const {
  std::string s = output;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

RunResult Run(const std::vector<std::string>& argv) {
  RunResult r;
  // Output goes to a memfd, not a pipe: helpers that daemonize (nbd-client)
  // may keep a pipe open long after they returned.
  int out = memfd_create("flurry-run", MFD_CLOEXEC);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || null < 0) {
    r.output = "cannot run " + argv[0] + ": " + strerror(errno);
    if (out >= 0) close(out);
    if (null >= 0) close(null);
    return r;
  }
  pid_t pid = fork();
  if (pid == 0) ExecChild(argv, null, out, true, -1);
  close(null);
  if (pid < 0) {
    r.output = std::string("fork: ") + strerror(errno);
    close(out);
    return r;
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  char buf[4096];
  ssize_t n;
  off_t off = 0;
  while ((n = pread(out, buf, sizeof buf, off)) > 0 && r.output.size() < (1u << 20)) {
    r.output.append(buf, static_cast<size_t>(n));
    off += n;
  }
  close(out);
  return r;
}

bool InPath(const std::string& program) {
  const char* path = getenv("PATH");
  std::string p = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::istringstream in(p);
  std::string dir;
  while (std::getline(in, dir, ':'))
    if (!dir.empty() && Executable(dir + "/" + program)) return true;
  return false;
}

uint64_t FileSize(const std::string& file) {
  struct stat st;
  return stat(file.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string Tail(const std::string& file, size_t lines, uint64_t from) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  uint64_t size = FileSize(file);
  uint64_t start = std::max<uint64_t>(from, size > 65536 ? size - 65536 : 0);
  in.seekg(static_cast<std::streamoff>(start));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> all;
  std::istringstream ss(text);
  std::string l;
  while (std::getline(ss, l)) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    " + all[i] + "\n";
  return out;
}

bool WaitUntil(int timeout_ms, const std::function<bool()>& cond) {
  for (int waited = 0;; waited += 50) {
    if (cond()) return true;
    if (waited >= timeout_ms) return false;
    usleep(50 * 1000);
  }
}

}  // namespace flurry::cli
