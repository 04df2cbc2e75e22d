// SPDX-License-Identifier: Apache-2.0
//
// flurry serve: run flurry-disk for the cluster's volumes.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "meta/meta_client.h"
#include "tools/cli/attach.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/disk_daemon.h"
#include "tools/cli/format.h"

namespace flurry::cli {
namespace {

// Checks every volume exists before flurry-disk is started for it.
Status CheckVolumes(const HostPort& meta, const std::vector<std::string>& vols) {
  MetaClient mc(meta);
  for (const auto& v : vols)
    if (auto r = FetchVolume(mc, v); !r.ok()) return r.status;
  return Status::Ok();
}

int StopServe(const Args& a, const std::vector<std::string>& vols) {
  ClusterDir d = DirFor(a);
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);
  auto served = ServedVolumes(d);
  std::vector<Daemon> victims;
  for (const auto& v : vols) {
    auto it = served.find(v);
    if (it == served.end())
      return Fail("no flurry-disk daemon of " + d.dir + " serves '" + v + "' (see `flurry status`)");
    if (it->second.name.rfind("attach-", 0) == 0)
      return Fail("'" + v + "' is served for an attached filesystem; use `flurry detach " + v + "`");
    if (std::none_of(victims.begin(), victims.end(), [&](const Daemon& x) { return x.name == it->second.name; }))
      victims.push_back(it->second);
  }
  auto killed = StopDaemons(victims, 35000);
  for (const Daemon& v : victims) {
    unlink(d.PortFile(v.name).c_str());
    printf("stopped flurry-disk pid %d (%s)%s\n", v.pid, v.name.c_str(),
           std::count(killed.begin(), killed.end(), v.name) ? ", with SIGKILL after 35 s" : "");
  }
  return 0;
}

int Serve(const Args& a) {
  std::vector<std::string> vols = a.positional();
  if (a.Has("stop")) {
    if (vols.empty()) return Fail("name the volumes whose flurry-disk daemon to stop (see `flurry status`)");
    for (const char* f : {"daemon", "listen", "unix", "fuse", "read-only"})
      if (a.Has(f)) return Fail(std::string("--stop takes only volume names, not --") + f);
    return StopServe(a, vols);
  }
  std::vector<std::string> all = vols;
  for (const auto& r : a.GetAll("read-only"))
    if (std::find(all.begin(), all.end(), r) == all.end()) all.push_back(r);
  if (all.empty()) return Fail("name at least one volume to serve (see `flurry volume list`)");
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  if (Status s = CheckVolumes(meta.value, all); !s.ok()) return Fail(s);

  std::vector<std::string> args;
  for (const auto& v : vols) args.insert(args.end(), {"--volume", v});
  for (const auto& r : a.GetAll("read-only")) args.insert(args.end(), {"--read-only", r});
  if (a.Has("listen")) args.insert(args.end(), {"--listen", a.Get("listen")});
  for (const char* f : {"unix", "fuse"}) {  // absolute: a daemon runs in /
    std::error_code ec;
    if (a.Has(f)) args.insert(args.end(), {std::string("--") + f, std::filesystem::absolute(a.Get(f), ec).string()});
  }

  if (!a.Has("daemon")) {
    auto bin = FindBinary("flurry-disk");
    if (!bin.ok()) return Fail(bin.status);
    std::vector<std::string> argv = {bin.value, "--meta", meta.value.ToString()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> av;
    for (auto& s : argv) av.push_back(s.data());
    av.push_back(nullptr);
    fflush(nullptr);
    execv(av[0], av.data());
    return Fail("cannot run " + argv[0] + ": " + strerror(errno));
  }

  ClusterDir d = DirFor(a);
  if (Status s = d.MakeDirs(); !s.ok()) return Fail(s);
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);
  auto served = ServedVolumes(d);
  for (const auto& v : all) {
    if (auto rec = AttachRecord::Load(d, v); rec.ok())
      return Fail("'" + v + "' is attached at " + rec.value.mountpoint +
                  "; serving it again would give it two writers (run `flurry detach " + v + "` first)");
    if (served.count(v))
      return Fail("'" + v + "' is already served by flurry-disk pid " + std::to_string(served[v].pid) + " (" +
                  served[v].name + "); stop it with `flurry serve --stop " + v + "`");
  }
  std::string name = ServeDaemonName(all);
  if (name.size() > 200) return Fail("too many volumes for one daemon's name; start several `flurry serve --daemon`");
  unlink(d.PortFile(name).c_str());
  args.insert(args.end(), {"--port-file", d.PortFile(name)});
  auto pid = StartDiskDaemon(d, name, meta.value, args, 30000);
  if (!pid.ok()) return Fail(pid.status);
  std::ifstream pf(d.PortFile(name));
  int port = 0;
  pf >> port;
  std::string host = "127.0.0.1";
  if (a.Has("listen")) {
    auto hp = ParseHostPort(a.Get("listen"), true);
    if (hp) host = hp->host;
  }
  printf("flurry-disk pid %d serves (log %s):\n", pid.value, d.LogFile(name).c_str());
  for (const auto& v : all) {
    std::string where;
    if (port) where += "nbd://" + host + ":" + std::to_string(port) + "/" + v;
    if (a.Has("unix")) where += (where.empty() ? "" : "  ") + ("nbd+unix:///" + v + "?socket=" + a.Get("unix"));
    if (a.Has("fuse")) where += (where.empty() ? "" : "  ") + a.Get("fuse") + "/" + v;
    printf("  %s  %s\n", v.c_str(), where.c_str());
  }
  printf("stop it with `flurry serve --stop %s` (or `flurry cluster stop`)\n", all[0].c_str());
  return 0;
}

}  // namespace

std::vector<Command> ServeCommands() {
  return {
      {"serve", "VOLUME... [options] | --stop VOLUME...", "Serve volumes as NBD exports (and FUSE files) with flurry-disk.",
       "Runs flurry-disk against the cluster's flurry-meta. Each volume is an NBD export named\n"
       "after it (nbd://127.0.0.1:10809/VOLUME); the first is also the default export. With\n"
       "--fuse DIR each volume is also the file DIR/VOLUME, for losetup.\n"
       "In the foreground by default (Ctrl-C stops it). With --daemon it runs in the\n"
       "background with its pid in DIR/pids and its log in DIR/logs; this returns once it\n"
       "is serving. `flurry serve --stop VOLUME` stops such a daemon.\n",
       {{"listen", "HOST:PORT", "NBD over TCP here (default 127.0.0.1:10809; port 0 = any free port)"},
        {"unix", "PATH", "NBD over a unix socket as well"},
        {"fuse", "DIR", "expose each volume as the file DIR/VOLUME (DIR must exist)"},
        {"read-only", "VOLUME", "serve VOLUME read-only (repeatable; implies serving it)", true},
        {"daemon", "", "run in the background (pid file in the cluster directory)"},
        {"stop", "", "stop the background flurry-disk serving the named volumes"}},
       true, 0, std::numeric_limits<size_t>::max(), Serve},
  };
}

}  // namespace flurry::cli
