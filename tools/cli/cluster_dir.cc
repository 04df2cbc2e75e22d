// SPDX-License-Identifier: Apache-2.0
#include "tools/cli/cluster_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace flurry::cli {

Status ClusterDir::MakeDirs() const {
  for (const std::string& d : {dir, dir + "/logs", dir + "/pids", dir + "/run", dir + "/attach"}) {
    if (mkdir(d.c_str(), 0755) < 0 && errno != EEXIST)
      return ErrnoStatus("cannot create directory " + d);
  }
  return Status::Ok();
}

Status ClusterConf::Write(const std::string& path) const {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "# written by `flurry cluster start`\n"
        << "meta=" << meta.ToString() << "\n"
        << "servers=" << servers << "\n"
        << "zones=" << zones << "\n"
        << "delay_us=" << delay_us << "\n";
    if (!out.flush()) return Status::Error(-EIO, "cannot write " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) < 0)
    return ErrnoStatus("cannot write " + path);
  return Status::Ok();
}

StatusOr<ClusterConf> ClusterConf::Read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Error(-ENOENT, "cannot read " + path);
  ClusterConf c;
  bool have_meta = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    auto num = [&](uint32_t* out) { *out = static_cast<uint32_t>(strtoul(v.c_str(), nullptr, 10)); };
    if (k == "meta") {
      auto hp = ParseHostPort(v);
      if (!hp) return Status::Error(-EINVAL, path + ": bad meta address '" + v + "'");
      c.meta = *hp;
      have_meta = true;
    } else if (k == "servers") {
      num(&c.servers);
    } else if (k == "zones") {
      num(&c.zones);
    } else if (k == "delay_us") {
      num(&c.delay_us);
    }
  }
  if (!have_meta) return Status::Error(-EINVAL, path + " names no meta address (meta=HOST:PORT)");
  return c;
}

ClusterDir DirFor(const Args& a) {
  std::string d = a.Get("dir");
  if (d.empty()) {
    const char* env = getenv("FLURRY_DIR");
    d = env && *env ? env : "flurry-cluster";
  }
  std::error_code ec;
  auto abs = std::filesystem::absolute(d, ec);
  return ClusterDir{ec ? d : abs.lexically_normal().string()};
}

StatusOr<HostPort> MetaFor(const Args& a) {
  if (a.Has("meta")) {
    auto hp = ParseHostPort(a.Get("meta"));
    if (!hp) return Status::Error(-EINVAL, "bad --meta '" + a.Get("meta") + "': want HOST:PORT, e.g. 127.0.0.1:7000");
    return *hp;
  }
  ClusterDir d = DirFor(a);
  auto conf = ClusterConf::Read(d.Conf());
  if (conf.ok()) return conf.value.meta;
  if (conf.status.code() == -ENOENT)
    return Status::Error(-ENOENT, "no cluster in " + d.dir + " (no cluster.conf there): start one with "
                                  "`flurry cluster start --dir " + d.dir +
                                  "`, or pick one with --dir DIR, $FLURRY_DIR or --meta HOST:PORT");
  return conf.status;
}

StatusOr<std::shared_ptr<DirLock>> DirLock::Acquire(const ClusterDir& d) {
  std::string path = d.dir + "/lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot open " + path);
  for (int i = 0; i < 300; ++i) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return std::shared_ptr<DirLock>(new DirLock(fd));
    if (errno != EWOULDBLOCK && errno != EINTR) break;
    usleep(100 * 1000);
  }
  close(fd);
  return Status::Error(-EBUSY, "another flurry command has been working on " + d.dir +
                                   " for 30 s (it holds " + path + "); retry when it has finished");
}

DirLock::~DirLock() { close(fd_); }

}  // namespace flurry::cli
