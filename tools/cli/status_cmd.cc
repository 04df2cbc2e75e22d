// SPDX-License-Identifier: Apache-2.0
//
// flurry cluster status, flurry status
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "meta/meta_client.h"
#include "tools/cli/attach.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/disk_daemon.h"
#include "tools/cli/format.h"
#include "tools/cli/process.h"

namespace flurry::cli {
namespace {

// "key=value" out of a SERVERS line's words.
std::string Field(const std::vector<std::string>& words, const std::string& key) {
  for (const auto& w : words)
    if (w.rfind(key + "=", 0) == 0) return w.substr(key.size() + 1);
  return "";
}

std::string Ago(const std::string& ms) {
  char b[32];
  snprintf(b, sizeof b, "%.1f s ago", strtod(ms.c_str(), nullptr) / 1000);
  return b;
}

void PrintDaemons(const ClusterDir& d, const std::vector<Daemon>& ds) {
  std::vector<const Daemon*> disks;
  for (const Daemon& dm : ds)
    if (dm.binary == "flurry-disk") disks.push_back(&dm);
  if (disks.empty()) return;
  printf("flurry-disk daemons\n");
  Table t({"NAME", "PID", "STATE", "PORT", "LOG"});
  for (const Daemon* dm : disks) {
    std::ifstream pf(d.PortFile(dm->name));
    std::string port;
    if (!(pf >> port)) port = "-";
    t.Add({dm->name, std::to_string(dm->pid), dm->alive ? "running" : "exited", port, d.LogFile(dm->name)});
  }
  t.Print("  ");
}

void PrintAttachments(const ClusterDir& d) {
  auto recs = ListAttachments(d);
  if (recs.empty()) {
    printf("attached   none\n");
    return;
  }
  printf("attached   %zu\n", recs.size());
  Table t({"VOLUME", "MOUNTPOINT", "DEVICE", "VIA", "FS", "STATE"});
  for (const auto& r : recs) {
    auto dm = ReadDaemon(d.Pids(), r.daemon);
    bool daemon_ok = dm.ok() && dm.value.alive;
    std::string state = !r.mounted ? "incomplete (run `flurry detach " + r.volume + "`)"
                        : !daemon_ok ? "broken: flurry-disk is gone (run `flurry detach " + r.volume + "`)"
                        : !IsMountPoint(r.mountpoint) ? "not mounted any more"
                                                      : "mounted";
    t.Add({r.volume, r.mountpoint, r.device.empty() ? "-" : r.device, r.method, r.fs.empty() ? "-" : r.fs, state});
  }
  t.Print("  ");
}

int ShowStatus(const Args& a, bool attachments) {
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  ClusterDir d = DirFor(a);
  auto conf = ClusterConf::Read(d.Conf());
  // Local processes are shown only for the directory's own cluster.
  bool local = conf.ok() && conf.value.meta.ToString() == meta.value.ToString();
  std::vector<Daemon> daemons = local ? ListDaemons(d.Pids()) : std::vector<Daemon>{};
  std::map<std::string, const Daemon*> by_name;
  for (const Daemon& dm : daemons) by_name[dm.name] = &dm;

  if (local)
    printf("cluster    %s (%u tract servers, %u zone%s%s)\n", d.dir.c_str(), conf.value.servers, conf.value.zones,
           conf.value.zones == 1 ? "" : "s",
           conf.value.delay_us ? (", " + std::to_string(conf.value.delay_us) + " us injected latency").c_str() : "");
  std::string meta_proc;
  if (local) {
    auto it = by_name.find("meta");
    meta_proc = it == by_name.end() ? " (not running)"
                : it->second->alive ? " (pid " + std::to_string(it->second->pid) + ")"
                                    : " (pid " + std::to_string(it->second->pid) + ", not running)";
  }
  printf("meta       %s%s\n", meta.value.ToString().c_str(), meta_proc.c_str());
  MetaClient mc(meta.value, 2000);
  MetaReply st = mc.Call("STATUS");
  if (!st.status.ok()) {
    PrintDaemons(d, daemons);
    return Fail("flurry-meta at " + meta.value.ToString() + " does not answer (" + errstr(st.status.code()) +
                ")" + (local ? ": the cluster in " + d.dir + " is not running; start it with `flurry cluster start --dir " + d.dir + "`" : ""));
  }
  unsigned long n_servers = 0, n_up = 0, rows = 0, n_vols = 0;
  unsigned long long tlt_version = 0;
  for (const auto& l : st.lines) {
    sscanf(l.c_str(), "servers %lu up %lu", &n_servers, &n_up);
    sscanf(l.c_str(), "tlt_version %llu rows %lu", &tlt_version, &rows);
    sscanf(l.c_str(), "volumes %lu", &n_vols);
  }
  if (rows) printf("TLT        version %llu, %lu rows\n", tlt_version, rows);
  else printf("TLT        not built yet (flurry-meta builds it at the first volume or client request)\n");
  printf("servers    %lu of %lu up%s\n", n_up, n_servers,
         n_up < n_servers ? (" (" + std::to_string(n_servers - n_up) + " down)").c_str() : "");

  // Which local daemon is behind each address: run/ts<i>.port.
  std::map<std::string, std::string> local_of;
  for (const Daemon& dm : daemons) {
    if (dm.binary != "flurry-tractserver") continue;
    std::ifstream pf(d.PortFile(dm.name));
    int port = 0;
    if (pf >> port)
      local_of["127.0.0.1:" + std::to_string(port)] =
          dm.name + (dm.alive ? " pid " + std::to_string(dm.pid) : " (exited)");
  }
  MetaReply sv = mc.Call("SERVERS");
  if (!sv.lines.empty()) {
    Table t({"ID", "ADDRESS", "ZONE", "STATE", "ROWS", "HEARTBEAT", "LOCAL"});
    for (const auto& l : sv.lines) {
      std::istringstream in(l);
      std::vector<std::string> w;
      for (std::string x; in >> x;) w.push_back(x);
      if (w.size() < 2) continue;
      auto lo = local_of.find(w[1]);
      t.Add({w[0], w[1], Field(w, "zone"), Field(w, "state"), Field(w, "rows"), Ago(Field(w, "last_heartbeat_ms")),
             lo == local_of.end() ? "-" : lo->second});
    }
    t.Print("  ");
  }

  auto vols = ListVolumes(mc);
  if (!vols.ok()) return Fail(vols.status);
  printf("volumes    %zu\n", vols.value.size());
  if (!vols.value.empty()) PrintVolumeTable(vols.value, "  ");
  PrintDaemons(d, daemons);
  if (attachments && local) PrintAttachments(d);
  return 0;
}

int StatusCommand(const Args& a) { return ShowStatus(a, true); }

}  // namespace

int ClusterStatusCommand(const Args& a) { return ShowStatus(a, false); }

std::vector<Command> StatusCommands() {
  return {
      {"status", "[--dir DIR | --meta HOST:PORT]",
       "Everything at a glance: `flurry cluster status` plus the attached volumes.",
       "Exits 0 when flurry-meta answers, 1 when it does not.\n", {}, true, 0, 0, StatusCommand},
  };
}

}  // namespace flurry::cli
