// SPDX-License-Identifier: Apache-2.0
//
// flurry-disk: serves flurry volumes as NBD exports (and FUSE files).
//
// Threads: the loop thread runs NBD, the write-mode engines and fdsclient;
// the main thread owns start-up, the FUSE export's lifetime and signals.
#include <getopt.h>
#include <malloc.h>
#include <signal.h>

#include <chrono>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/units.h"
#include "epochs/volume_device.h"
#include "fdsclient/fds_client.h"
#include "meta/meta_client.h"
#include "daemon/lease.h"
#include "nbdserver/server.h"
#ifdef FLURRY_HAVE_FUSE
#include "daemon/fuse_export.h"
#endif

using namespace flurry;

namespace {
void Usage(FILE* f) {
  fprintf(f,
          "usage: flurry-disk --meta HOST:PORT --volume NAME [--volume NAME ...] [options]\n"
          "\n"
          "Serves flurry volumes as NBD exports named after each volume\n"
          "(nbd://HOST:PORT/NAME) and optionally as files for losetup (--fuse).\n"
          "Each volume uses its own write mode (see `flurry volume info`).\n"
          "\n"
          "  --meta HOST:PORT     the cluster's flurry-meta (required)\n"
          "  --volume NAME        a volume to serve (repeatable; the first is the default export)\n"
          "  --read-only NAME     serve NAME read-only (repeatable)\n"
          "  --listen HOST:PORT   NBD over TCP (default 127.0.0.1:10809; port 0 = any free port)\n"
          "  --no-tcp             do not listen on TCP\n"
          "  --unix PATH          NBD over a unix socket as well\n"
          "  --fuse DIR           expose each volume as the file DIR/NAME (libfuse3)\n"
          "  --port-file FILE     write the bound TCP port to FILE once serving\n"
          "  --max-buffered SIZE  fast-ack/log: acknowledged data not yet durable, per volume,\n"
          "                       before new writes wait (default 256M; 1M..64G): the loss window\n"
          "  --max-unretired-epochs N\n"
          "                       fast-ack/log: flush epochs that may be acknowledged ahead of the\n"
          "                       durable one before new requests wait (default 4096; 1..1048576)\n"
          "  --dirty-linger-ms N  R>1: a tract stays marked in the volume's write-intent bitmap\n"
          "                       this long after its last write (default 10000; 0..3600000). After\n"
          "                       a crash, the marked tracts' replicas are compared and resynced\n"
          "  --lease-ttl-ms N     the write lease each writable volume holds at flurry-meta lapses\n"
          "                       this long after its last renewal (default 10000; 1000..600000);\n"
          "                       a flurry-disk that cannot renew it in time stops writing\n"
          "  --lease-wait-ms N    if another flurry-disk holds a volume's lease, wait up to N ms for\n"
          "                       it to lapse (default: fail at once if that process runs on this\n"
          "                       host, break the lease if it is gone, else wait for its ttl)\n"
          "  --no-local-socket    reach tract servers on this host over TCP, not over their\n"
          "                       local unix sockets (docs/PROTOCOL.md \"Local sockets\")\n"
          "  -v, --verbose        debug logging\n"
          "  -h, --help           this text\n"
          "\n"
          "Prints \"flurry-disk: ready\" on stderr once every export is being served;\n"
          "SIGTERM or SIGINT finish in-flight IO, close connections and exit 0 (during\n"
          "start-up recovery they stop it and exit 1; the next start redoes it).\n"
          "SIGUSR1 logs every volume's engine counters (one line per volume).\n");
}
}  // namespace

int main(int argc, char** argv) {
  std::string meta, listen = "127.0.0.1:10809", unix_path, fuse_dir, port_file;
  std::vector<std::string> volumes, read_only;
  bool no_tcp = false, local_socket = true;
  EngineOptions engine_defaults;
  VolumeLease::Options lease_opts;
  static const option longopts[] = {
      {"lease-ttl-ms", required_argument, nullptr, 't'},
      {"lease-wait-ms", required_argument, nullptr, 'w'},
      {"max-buffered", required_argument, nullptr, 'B'},
      {"max-unretired-epochs", required_argument, nullptr, 'E'},
      {"dirty-linger-ms", required_argument, nullptr, 'L'},
      {"meta", required_argument, nullptr, 'm'},      {"volume", required_argument, nullptr, 'V'},
      {"read-only", required_argument, nullptr, 'r'}, {"listen", required_argument, nullptr, 'l'},
      {"no-tcp", no_argument, nullptr, 'T'},          {"unix", required_argument, nullptr, 'u'},
      {"fuse", required_argument, nullptr, 'f'},      {"port-file", required_argument, nullptr, 'p'},
      {"verbose", no_argument, nullptr, 'v'},         {"help", no_argument, nullptr, 'h'},
      {"no-local-socket", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "vh", longopts, nullptr)) != -1) {
    switch (c) {
      case 'm': meta = optarg; break;
      case 'V': volumes.push_back(optarg); break;
      case 'r': read_only.push_back(optarg); break;
      case 'l': listen = optarg; break;
      case 'T': no_tcp = true; break;
      case 'U': local_socket = false; break;
      case 'u': unix_path = optarg; break;
      case 'f': fuse_dir = optarg; break;
      case 'p': port_file = optarg; break;
      case 'B': {
        auto v = ParseSize(optarg);
        if (!v || *v < (1ull << 20) || *v > (64ull << 30)) {
          fprintf(stderr, "flurry-disk: bad --max-buffered '%s' (want a size from 1M to 64G)\n", optarg);
          return 2;
        }
        engine_defaults.max_buffered_bytes = *v;
        break;
      }
      case 'E': {
        char* end = nullptr;
        errno = 0;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (errno || end == optarg || *end || v < 1 || v > (1ull << 20)) {
          fprintf(stderr, "flurry-disk: bad --max-unretired-epochs '%s' (want 1 to 1048576)\n", optarg);
          return 2;
        }
        engine_defaults.max_unretired_epochs = v;
        break;
      }
      case 'L': {
        char* end = nullptr;
        errno = 0;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (errno || end == optarg || *end || v > 3600000) {
          fprintf(stderr, "flurry-disk: bad --dirty-linger-ms '%s' (want 0 to 3600000)\n", optarg);
          return 2;
        }
        engine_defaults.dirty_linger_ms = static_cast<uint32_t>(v);
        break;
      }
      case 't':
      case 'w': {
        char* end = nullptr;
        errno = 0;
        unsigned long long v = strtoull(optarg, &end, 10);
        bool ttl = c == 't';
        if (errno || end == optarg || *end || (ttl && (v < 1000 || v > 600000)) || (!ttl && v > 3600000)) {
          fprintf(stderr, "flurry-disk: bad --%s '%s' (want %s)\n", ttl ? "lease-ttl-ms" : "lease-wait-ms", optarg,
                  ttl ? "1000 to 600000" : "0 to 3600000");
          return 2;
        }
        if (ttl) lease_opts.ttl_ms = static_cast<uint32_t>(v);
        else lease_opts.wait_ms = static_cast<int64_t>(v);
        break;
      }
      case 'v': SetLogLevel(LogLevel::kDebug); break;
      case 'h': Usage(stdout); return 0;
      default: Usage(stderr); return 2;
    }
  }
  for (auto& r : read_only)
    if (std::find(volumes.begin(), volumes.end(), r) == volumes.end()) volumes.push_back(r);
  if (meta.empty() || volumes.empty() || optind != argc) { Usage(stderr); return 2; }
  if (no_tcp && unix_path.empty() && fuse_dir.empty()) {
    fprintf(stderr, "flurry-disk: --no-tcp needs --unix or --fuse, or nothing would be served\n");
    return 2;
  }
#ifndef FLURRY_HAVE_FUSE
  if (!fuse_dir.empty()) {
    fprintf(stderr, "flurry-disk: built without libfuse3; --fuse is unavailable\n");
    return 2;
  }
#endif
  auto mhp = ParseHostPort(meta);
  if (!mhp) { fprintf(stderr, "flurry-disk: bad --meta '%s' (want HOST:PORT)\n", meta.c_str()); return 2; }
  auto lhp = ParseHostPort(listen, true);
  if (!lhp) { fprintf(stderr, "flurry-disk: bad --listen '%s' (want HOST:PORT)\n", listen.c_str()); return 2; }
  SetLogPrefix("flurry-disk");
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);  // inherited by every thread

  // Volumes from meta.
  MetaClient mc(*mhp);
  std::vector<VolumeInfo> infos;
  for (const auto& name : volumes) {
    Status why;
    auto v = mc.GetVolume(name, &why);
    if (!v) {
      fprintf(stderr, "flurry-disk: volume '%s': %s\n", name.c_str(),
              why.ok() ? "malformed reply from meta" : why.ToString().c_str());
      return 1;
    }
    infos.push_back(*v);
  }
  // One writer per volume: the write lease of every writable volume, before
  // anything touches it (a second flurry-disk fails here, wherever it
  // listens). Released on a clean exit (the destructors, after the loop).
  LeaseRenewer renewer(*mhp);  // declared first: outlives the leases
  std::vector<std::unique_ptr<VolumeLease>> leases(infos.size());
  lease_opts.sleep = [](uint32_t ms) {  // SIGTERM/SIGINT stop the wait
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000};
    siginfo_t si;
    int sg = sigtimedwait(&stop, &si, &ts);
    return sg != SIGTERM && sg != SIGINT;
  };
  for (size_t i = 0; i < infos.size(); ++i) {
    if (std::find(read_only.begin(), read_only.end(), infos[i].name) != read_only.end()) continue;
    Status why;
    auto l = VolumeLease::Acquire(&renewer, infos[i].name, lease_opts, &why);
    if (!l) {
      fprintf(stderr, "flurry-disk: %s\n", why.ToString().c_str());
      return 1;
    }
    leases[i] = std::move(*l);
  }

  // Every NBD request allocates its payload buffer (up to 32 MiB) and frees
  // it after the reply. Above glibc's mmap threshold each one was a fresh
  // mmap: ~10 % of flurry-disk's CPU went to page faults and zeroing at
  // 1 MiB writes (perf). Keep such buffers in the heap for reuse.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  auto loop = Loop::Create(1024, /*single_thread=*/true);
  if (!loop) { fprintf(stderr, "flurry-disk: io_uring: %s\n", errstr(loop.err()).c_str()); return 1; }
  Status why;
  FdsClient::Options fds_opts;
  fds_opts.meta = *mhp;
  fds_opts.local_sockets = local_socket;
  auto fds = FdsClient::Create(loop->get(), fds_opts, &why);
  if (!fds) { fprintf(stderr, "flurry-disk: %s\n", why.ToString().c_str()); return 1; }
  std::vector<Volume> devices;
  NbdServer nbd(loop->get(), {});
  for (size_t i = 0; i < infos.size(); ++i) {
    const VolumeInfo& v = infos[i];
    bool ro = std::find(read_only.begin(), read_only.end(), v.name) != read_only.end();
    EngineOptions eo = engine_defaults;
    eo.loop = loop->get();
    eo.read_only = ro;
    eo.gate = leases[i].get();
    auto vol = MakeVolume(v, fds->get(), eo, &why);
    if (!vol) { fprintf(stderr, "flurry-disk: %s\n", why.ToString().c_str()); return 1; }
    nbd.AddExport(v.name, vol->device.get(), ro);
    devices.push_back(std::move(*vol));
  }
  // Bind now, accept after every volume is open: a second flurry-disk on
  // the same address fails here, before it touches (resyncs) the volumes;
  // clients that connect meanwhile wait in the backlog.
  nbd.SetDefaultExport(infos[0].name);
  if (!no_tcp) {
    Status s = nbd.BindTcp(*lhp);
    if (!s.ok()) { fprintf(stderr, "flurry-disk: NBD on %s: %s\n", listen.c_str(), s.ToString().c_str()); return 1; }
  }
  if (!unix_path.empty()) {
    Status s = nbd.BindUnix(unix_path);
    if (!s.ok()) { fprintf(stderr, "flurry-disk: NBD on %s: %s\n", unix_path.c_str(), s.ToString().c_str()); return 1; }
  }
  std::thread loop_thread([&] { (*loop)->Run(); });

  // Open every volume (resync its replicas, recover its engine) before
  // accepting connections.
  for (size_t i = 0; i < devices.size(); ++i) {
    std::promise<int> opened;
    uint64_t t0 = Loop::NowNs();
    // First the replicas (resync what a crash left different), then the
    // engine's own state (log mode: checkpoint + roll forward).
    (*loop)->PostFromAnyThread([&] {
      devices[i].blob->Recover([&](int r) {
        if (r < 0) return opened.set_value(r);
        devices[i].device->Open([&](int r2) { opened.set_value(r2); });
      });
    });
    // Recovery can take long (a replica down: up to 10 s per comparison
    // batch); SIGTERM/SIGINT meanwhile stop it (it is idempotent: the next
    // start redoes it).
    auto fut = opened.get_future();
    bool interrupted = false;
    sigset_t stop_mask;  // SIGUSR1 stays pending for the main loop below
    sigemptyset(&stop_mask);
    sigaddset(&stop_mask, SIGTERM);
    sigaddset(&stop_mask, SIGINT);
    while (fut.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      timespec zero{0, 0};
      siginfo_t si;
      int sg = sigtimedwait(&stop_mask, &si, &zero);
      if (sg == SIGTERM || sg == SIGINT) {
        interrupted = true;
        break;
      }
    }
    if (interrupted) {
      fprintf(stderr, "flurry-disk: signal during the recovery of volume '%s': stopping (it is redone at the next start)\n",
              infos[i].name.c_str());
      (*loop)->Stop();
      loop_thread.join();
      _exit(1);  // the loop's callbacks still reference the open futures
    }
    int r = fut.get();
    if (r < 0) {
      fprintf(stderr, "flurry-disk: volume '%s' could not be opened: %s\n", infos[i].name.c_str(),
              errstr(r).c_str());
      (*loop)->Stop();
      loop_thread.join();
      return 1;
    }
    std::string brep = devices[i].blob->recover_report();
    if (!brep.empty()) FLOG_INFO("volume '%s' replicas: %s", infos[i].name.c_str(), brep.c_str());
    std::string rep = devices[i].device->recovery_report();
    if (!rep.empty())
      FLOG_INFO("volume '%s' recovered in %.1f ms: %s", infos[i].name.c_str(),
                (Loop::NowNs() - t0) / 1e6, rep.c_str());
  }

  {
    // Accepting submits to the ring: on the loop thread.
    std::promise<Status> started;
    (*loop)->PostFromAnyThread([&] { started.set_value(nbd.StartAccepting()); });
    Status s = started.get_future().get();
    if (!s.ok()) {
      fprintf(stderr, "flurry-disk: NBD: %s\n", s.ToString().c_str());
      (*loop)->Stop();
      loop_thread.join();
      return 1;
    }
  }
#ifdef FLURRY_HAVE_FUSE
  std::unique_ptr<FuseExport> fuse;
  if (!fuse_dir.empty()) {
    std::vector<FuseFile> files;
    for (size_t i = 0; i < infos.size(); ++i) {
      bool ro = std::find(read_only.begin(), read_only.end(), infos[i].name) != read_only.end();
      files.push_back({infos[i].name, devices[i].device.get(), ro});
    }
    auto f = FuseExport::Start(loop->get(), fuse_dir, std::move(files));
    if (!f) {
      fprintf(stderr, "flurry-disk: FUSE mount on %s failed: %s (is /dev/fuse present, are you root?)\n",
              fuse_dir.c_str(), errstr(f.err()).c_str());
      (*loop)->Stop();
      loop_thread.join();
      return 1;
    }
    fuse = std::move(*f);
  }
#endif

  uint16_t port = nbd.tcp_port();
  if (!port_file.empty() && !no_tcp) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  for (size_t i = 0; i < infos.size(); ++i) {
    const VolumeInfo& v = infos[i];
    bool relaxed = v.mode != WriteMode::kWriteThrough;
    std::string lease = leases[i] ? ", write lease generation " + std::to_string(leases[i]->gen()) : ", read-only";
    FLOG_INFO("export '%s': %s, R=%u, tract %s, segment %u, block %s, mode %s%s%s", v.name.c_str(),
              FormatSize(v.size).c_str(), v.replicas, FormatSize(v.tract_size).c_str(), v.segment_tracts,
              FormatSize(v.block_size).c_str(), WriteModeName(v.mode),
              relaxed ? " (FLUSH means prefix consistency, not durability)" : "", lease.c_str());
  }
  fprintf(stderr, "flurry-disk: ready (nbd://%s:%u/%s%s%s%s%s)\n", lhp->host.c_str(), port, infos[0].name.c_str(),
          unix_path.empty() ? "" : ", unix ", unix_path.c_str(), fuse_dir.empty() ? "" : ", fuse ",
          fuse_dir.c_str());

  int sig = 0;
  for (;;) {
    sigwait(&mask, &sig);
    if (sig != SIGUSR1) break;
    // Counters of every volume's engine, one log line each.
    std::promise<void> logged;
    (*loop)->PostFromAnyThread([&] {
      for (size_t i = 0; i < devices.size(); ++i) {
        std::string t = devices[i].device->CountersText();
        std::replace(t.begin(), t.end(), '\n', ' ');
        FLOG_INFO("counters '%s': %s", infos[i].name.c_str(), t.c_str());
      }
      logged.set_value();
    });
    logged.get_future().wait();
  }
  FLOG_INFO("signal %d: finishing in-flight IO and shutting down", sig);
#ifdef FLURRY_HAVE_FUSE
  if (fuse) fuse->Stop();
#endif
  std::promise<void> stopped;
  (*loop)->PostFromAnyThread([&] {
    nbd.Shutdown([&] {
      // Make everything acknowledged durable (fast-ack/log buffer writes).
      auto left = std::make_shared<size_t>(devices.size());
      for (auto& d : devices) {
        d.device->Quiesce([&, left](int r) {
          if (r < 0) FLOG_ERROR("quiesce failed: %s", errstr(r).c_str());
          if (--*left == 0) {
            (*fds)->Shutdown();
            stopped.set_value();
          }
        });
      }
    });
  });
  if (stopped.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    FLOG_WARN("in-flight IO did not finish within 30 s; exiting anyway");
  (*loop)->Stop();
  loop_thread.join();
  return 0;
}
