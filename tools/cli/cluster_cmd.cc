// SPDX-License-Identifier: Apache-2.0
//
// flurry cluster start | stop  (status is in status_cmd.cc)
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "meta/meta_client.h"
#include "tools/cli/attach.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/process.h"

namespace flurry::cli {
namespace {

int ReadPortFile(const std::string& path) {
  std::ifstream in(path);
  int port = 0;
  return in >> port && port > 0 && port < 65536 ? port : 0;
}

// Addresses that flurry-meta lists as registered and up.
std::set<std::string> UpServers(MetaClient& mc) {
  std::set<std::string> up;
  MetaReply r = mc.Call("SERVERS");
  for (const auto& l : r.lines) {
    std::istringstream in(l);
    std::string uuid, addr, w;
    in >> uuid >> addr;
    while (in >> w)
      if (w == "state=up") up.insert(addr);
  }
  return up;
}

struct StartOptions {
  uint32_t servers = 4, zones = 1, delay_us = 0;
  uint16_t meta_port = 7000;
  int timeout_ms = 30000;
};

Status ParseStartOptions(const Args& a, const ClusterDir& d, StartOptions* o) {
  auto old = ClusterConf::Read(d.Conf());
  if (old.ok()) {  // a restart: same shape unless told otherwise
    o->servers = old.value.servers ? old.value.servers : o->servers;
    o->zones = old.value.zones ? old.value.zones : o->zones;
    o->meta_port = old.value.meta.port;
    o->delay_us = old.value.delay_us;
  }
  struct {
    const char* flag;
    uint64_t lo, hi;
    uint64_t scale;
    std::function<void(uint64_t)> set;
  } nums[] = {
      {"servers", 1, 256, 1, [&](uint64_t v) { o->servers = static_cast<uint32_t>(v); }},
      {"zones", 1, 256, 1, [&](uint64_t v) { o->zones = static_cast<uint32_t>(v); }},
      {"meta-port", 0, 65535, 1, [&](uint64_t v) { o->meta_port = static_cast<uint16_t>(v); }},
      {"delay-us", 0, 10000000, 1, [&](uint64_t v) { o->delay_us = static_cast<uint32_t>(v); }},
      {"timeout", 1, 3600, 1000, [&](uint64_t v) { o->timeout_ms = static_cast<int>(v); }},
  };
  for (auto& n : nums) {
    if (!a.Has(n.flag)) continue;
    auto v = ParseCount(std::string("--") + n.flag, a.Get(n.flag), n.lo, n.hi);
    if (!v.ok()) return v.status;
    n.set(v.value * n.scale);
  }
  if (o->zones > o->servers)
    return Status::Error(-EINVAL, "--zones " + std::to_string(o->zones) + " is more than --servers " +
                                      std::to_string(o->servers) + ": every zone needs a server");
  if (old.ok() && old.value.servers && old.value.servers != o->servers)
    return Status::Error(-EINVAL, d.dir + " holds a cluster of " + std::to_string(old.value.servers) +
                                      " tract servers; restart it with --servers " +
                                      std::to_string(old.value.servers) + ", or use a new --dir");
  if (old.ok() && old.value.zones && old.value.zones != o->zones)
    return Status::Error(-EINVAL, d.dir + " holds a cluster of " + std::to_string(old.value.zones) +
                                      " zones; restart it with --zones " + std::to_string(old.value.zones) +
                                      ", or use a new --dir");
  return Status::Ok();
}

// A directory that holds anything but a cluster's own files is not one to
// start a cluster in (a typo could otherwise fill a home directory).
Status CheckOwnDir(const ClusterDir& d) {
  if (access(d.Conf().c_str(), F_OK) == 0) return Status::Ok();
  DIR* dir = opendir(d.dir.c_str());
  if (!dir) return Status::Ok();  // created below
  std::string foreign;
  while (dirent* e = readdir(dir)) {
    std::string n = e->d_name;
    bool ours = n == "." || n == ".." || n == "cluster.conf" || n == "cluster.conf.tmp" || n == "lock" ||
                n == "meta" || n == "logs" || n == "pids" || n == "run" || n == "attach" ||
                n.rfind("fuse-", 0) == 0 || BinaryForDaemon(n) == "flurry-tractserver";  // ts<i>
    if (!ours && foreign.empty()) foreign = n;
  }
  closedir(dir);
  if (foreign.empty()) return Status::Ok();
  return Status::Error(-EEXIST, d.dir + " is not a flurry cluster directory (it holds '" + foreign +
                                    "', and no cluster.conf); pick a new or empty directory with --dir");
}

std::string Running(const std::vector<Daemon>& ds) {
  std::string s;
  for (const Daemon& d : ds)
    if (d.alive) s += (s.empty() ? "" : ", ") + d.name + " (pid " + std::to_string(d.pid) + ")";
  return s;
}

int ClusterStart(const Args& a) {
  ClusterDir d = DirFor(a);
  StartOptions o;
  Status s = ParseStartOptions(a, d, &o);
  if (!s.ok()) return Fail(s);
  auto meta_bin = FindBinary("flurry-meta");
  if (!meta_bin.ok()) return Fail(meta_bin.status);
  auto ts_bin = FindBinary("flurry-tractserver");
  if (!ts_bin.ok()) return Fail(ts_bin.status);
  if (s = CheckOwnDir(d); !s.ok()) return Fail(s);
  if (s = d.MakeDirs(); !s.ok()) return Fail(s);
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);

  std::vector<Daemon> existing = ListDaemons(d.Pids());
  std::string running = Running(existing);
  if (!running.empty())
    return Fail("a cluster is already running in " + d.dir + ": " + running +
                "; see `flurry cluster status --dir " + d.dir + "`, or stop it with `flurry cluster stop --dir " +
                d.dir + "`");
  for (const Daemon& dm : existing) unlink(dm.pid_file.c_str());  // stale

  std::vector<Daemon> started;
  auto give_up = [&](const std::string& msg) {
    StopDaemons(started, 5000);
    return Fail(msg + "\n(stopped the processes this command started; logs are in " + d.dir + "/logs)");
  };
  auto spawn = [&](const std::string& name, const std::string& binary, const std::vector<std::string>& argv) {
    unlink(d.PortFile(name).c_str());
    auto pid = SpawnDaemon(argv, d.LogFile(name), d.PidFile(name));
    if (pid.ok()) started.push_back(Daemon{name, binary, d.PidFile(name), pid.value, true});
    return pid.status;
  };

  // flurry-meta first: the tract servers need its address.
  s = spawn("meta", "flurry-meta",
            {meta_bin.value, "--dir", d.MetaState(), "--listen", "127.0.0.1:" + std::to_string(o.meta_port),
             "--port-file", d.PortFile("meta")});
  if (!s.ok()) return give_up(s.ToString());
  int meta_port = 0;
  WaitUntil(10000, [&] {
    meta_port = ReadPortFile(d.PortFile("meta"));
    return meta_port || !ProcessAlive(started[0].pid, "flurry-meta");
  });
  if (!meta_port) {
    std::string hint = o.meta_port ? "If port " + std::to_string(o.meta_port) +
                                         " is taken, pick another with --meta-port P (0 = any free port)."
                                   : "";
    return give_up("flurry-meta did not start; the end of " + d.LogFile("meta") + ":\n" +
                   Tail(d.LogFile("meta"), 10) + hint);
  }
  ClusterConf conf{HostPort{"127.0.0.1", static_cast<uint16_t>(meta_port)}, o.servers, o.zones, o.delay_us};
  if (s = conf.Write(d.Conf()); !s.ok()) return give_up(s.ToString());

  for (uint32_t i = 0; i < o.servers; ++i) {
    std::string name = "ts" + std::to_string(i);
    std::vector<std::string> argv = {ts_bin.value, "--dir", d.ServerData(i), "--listen", "127.0.0.1:0",
                                     "--port-file", d.PortFile(name), "--meta", conf.meta.ToString(),
                                     "--zone", "z" + std::to_string(i % o.zones)};
    if (o.delay_us) argv.insert(argv.end(), {"--delay-us", std::to_string(o.delay_us)});
    if (mkdir(d.ServerData(i).c_str(), 0755) < 0 && errno != EEXIST)
      return give_up("cannot create " + d.ServerData(i) + ": " + strerror(errno));
    if (s = spawn(name, "flurry-tractserver", argv); !s.ok()) return give_up(s.ToString());
  }

  // Wait until every tract server is listening and registered with meta.
  MetaClient mc(conf.meta, 2000);
  std::string dead;
  size_t registered = 0;
  WaitUntil(o.timeout_ms, [&] {
    std::set<std::string> up = UpServers(mc);
    registered = 0;
    for (uint32_t i = 0; i < o.servers; ++i) {
      const Daemon& dm = started[i + 1];
      if (!ProcessAlive(dm.pid, dm.binary)) {
        dead = dm.name;
        return true;
      }
      int port = ReadPortFile(d.PortFile(dm.name));
      registered += port && up.count("127.0.0.1:" + std::to_string(port));
    }
    return registered == o.servers;
  });
  if (!dead.empty())
    return give_up(dead + " (flurry-tractserver) exited during start-up; the end of " + d.LogFile(dead) + ":\n" +
                   Tail(d.LogFile(dead), 10));
  if (registered != o.servers)
    return give_up("only " + std::to_string(registered) + " of " + std::to_string(o.servers) +
                   " tract servers registered with flurry-meta within " + std::to_string(o.timeout_ms / 1000) +
                   " s; see " + d.dir + "/logs/ts*.log and " + d.LogFile("meta") +
                   " (a slow machine may need a longer --timeout)");
  // Build the TLT now, over all servers, rather than at the first client.
  MetaReply tlt = mc.Call("TLT");
  unsigned long long tlt_version = 0;
  unsigned long rows = 0;
  std::string tlt_text = tlt.status.ToString();
  if (tlt.status.ok() && !tlt.lines.empty() && sscanf(tlt.lines[0].c_str(), "version %llu rows %lu", &tlt_version, &rows) == 2)
    tlt_text = "version " + std::to_string(tlt_version) + ", " + std::to_string(rows) + " rows";

  printf("cluster running in %s\n", d.dir.c_str());
  printf("  flurry-meta      %s (pid %d)\n", conf.meta.ToString().c_str(), started[0].pid);
  printf("  tract servers    %u in %u zone%s%s\n", o.servers, o.zones, o.zones == 1 ? "" : "s",
         o.delay_us ? (", " + std::to_string(o.delay_us) + " us injected latency").c_str() : "");
  printf("  TLT              %s\n", tlt_text.c_str());
  printf("  logs             %s/logs\n", d.dir.c_str());
  printf("next: flurry volume create NAME --size 10G --dir %s\n", d.dir.c_str());
  return 0;
}

int ClusterStop(const Args& a) {
  ClusterDir d = DirFor(a);
  bool force = a.Has("force");
  int timeout_ms = 10000;
  if (a.Has("timeout")) {
    auto t = ParseCount("--timeout", a.Get("timeout"), 1, 3600);
    if (!t.ok()) return Fail(t.status);
    timeout_ms = static_cast<int>(t.value * 1000);
  }
  if (access(d.Conf().c_str(), F_OK) != 0 && access(d.Pids().c_str(), F_OK) != 0)
    return Fail("no cluster in " + d.dir + " (no cluster.conf there); pick one with --dir DIR or $FLURRY_DIR");
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);

  // Filesystems first: stopping flurry-disk under a mounted volume would
  // leave a dead mount behind.
  for (const AttachRecord& rec : ListAttachments(d)) {
    Status s = Detach(d, rec, force);
    if (!s.ok())
      return Fail(s.ToString() + "\nThe cluster is still running. Retry when " + rec.mountpoint +
                  " is free, or use `flurry cluster stop --force` to unmount it lazily.");
    printf("detached %s from %s\n", rec.volume.c_str(), rec.mountpoint.c_str());
  }
  std::vector<Daemon> all = ListDaemons(d.Pids()), disks, servers, meta;
  for (const Daemon& dm : all) {
    if (dm.binary == "flurry-disk") disks.push_back(dm);
    else if (dm.binary == "flurry-tractserver") servers.push_back(dm);
    else if (dm.binary == "flurry-meta") meta.push_back(dm);
  }
  auto count_alive = [](const std::vector<Daemon>& v) {
    size_t n = 0;
    for (const Daemon& dm : v) n += dm.alive;
    return n;
  };
  size_t n_disks = count_alive(disks), n_servers = count_alive(servers), n_meta = count_alive(meta);
  // Disks flush to the servers; the servers heartbeat to meta: stop in that order.
  std::vector<std::string> killed;
  for (const auto* group : {&disks, &servers, &meta}) {
    auto k = StopDaemons(*group, timeout_ms);
    killed.insert(killed.end(), k.begin(), k.end());
  }
  for (const Daemon& dm : all) unlink(d.PortFile(dm.name).c_str());
  if (n_disks + n_servers + n_meta == 0) {
    printf("nothing was running in %s\n", d.dir.c_str());
    return 0;
  }
  printf("stopped %zu flurry-meta, %zu tract server%s, %zu flurry-disk in %s\n", n_meta, n_servers,
         n_servers == 1 ? "" : "s", n_disks, d.dir.c_str());
  if (!killed.empty()) {
    std::string names;
    for (const auto& k : killed) names += " " + k;
    printf("(did not exit within %d s of SIGTERM, so were killed:%s; see their logs)\n", timeout_ms / 1000,
           names.c_str());
  }
  printf("data kept in %s; `flurry cluster start --dir %s` starts it again\n", d.dir.c_str(), d.dir.c_str());
  return 0;
}

}  // namespace

int ClusterStatusCommand(const Args& a);  // status_cmd.cc

std::vector<Command> ClusterCommands() {
  return {
      {"cluster start", "[--dir DIR] [options]",
       "Start a local cluster: flurry-meta and N tract servers, as background daemons.",
       "Everything lives in DIR: cluster.conf (the meta address), meta/ and ts<i>/ (state and\n"
       "data), logs/<name>.log, pids/<name>.pid. Tract server i is in zone z<i mod ZONES>.\n"
       "Returns once every tract server has registered with flurry-meta. Refuses if a\n"
       "cluster is already running in DIR. Starting a stopped cluster again keeps its data,\n"
       "servers and zones, and by default its meta port and --delay-us.\n",
       {{"servers", "N", "tract servers to start (default 4)"},
        {"zones", "Z", "failure zones to spread them over (default 1)"},
        {"meta-port", "P", "flurry-meta's port on 127.0.0.1 (default 7000; 0 = any free port)"},
        {"delay-us", "N", "injected service latency per tract request in us, to emulate a remote disk (default 0)"},
        {"timeout", "SECONDS", "how long to wait for the servers to register (default 30)"},
        DirFlag()},
       false, 0, 0, ClusterStart},
      {"cluster stop", "[--dir DIR] [--force] [--timeout SECONDS]",
       "Stop every flurry process of a cluster directory; its data stays.",
       "Detaches attached volumes first (unmount, release the device), then stops the\n"
       "flurry-disk daemons started by `flurry serve --daemon` or `flurry attach`, the tract\n"
       "servers and flurry-meta: SIGTERM, then SIGKILL after --timeout seconds.\n"
       "If a mounted volume is busy, nothing is stopped unless --force is given.\n",
       {{"force", "", "unmount busy attached volumes lazily (umount -l) instead of giving up"},
        {"timeout", "SECONDS", "grace period between SIGTERM and SIGKILL (default 10)"},
        DirFlag()},
       false, 0, 0, ClusterStop},
      {"cluster status", "[--dir DIR | --meta HOST:PORT]",
       "Show the cluster: flurry-meta, tract servers up or down, the TLT, volumes and daemons.",
       "Exits 0 when flurry-meta answers, 1 when it does not.\n", {}, true, 0, 0, ClusterStatusCommand},
  };
}

}  // namespace flurry::cli
