// SPDX-License-Identifier: Apache-2.0
//
// flurry-tractserver: stores tracts on the local disk and serves them.
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/net.h"
#include "common/units.h"
#include "meta/meta_client.h"
#include "tractserver/server.h"
#include "tractserver/tract.h"

using namespace flurry;

namespace {
void Usage(FILE* f) {
  fprintf(f,
          "usage: flurry-tractserver --dir DIR [--listen HOST:PORT] [--meta HOST:PORT] [options]\n"
          "\n"
          "Stores the tracts of many blobs under DIR and serves them over TCP\n"
          "(io_uring for disk and network; every write durable before its reply).\n"
          "\n"
          "  --dir DIR            data directory (required; one server per directory)\n"
          "  --listen HOST:PORT   address to serve (default 127.0.0.1:0, i.e. any free port)\n"
          "  --advertise HOST:PORT address to register with meta (default: the bound address)\n"
          "  --meta HOST:PORT     flurry-meta to register and heartbeat with (optional)\n"
          "  --zone Z             failure zone (default z0)\n"
          "  --port-file FILE     write the bound port to FILE once listening\n"
          "  --delay-us N         injected service latency per request, to emulate a remote disk\n"
          "  --jitter-us N        plus a uniform random extra of up to N us\n"
          "  --max-conns N        connection limit (default 256)\n"
          "  --no-local-socket    do not also listen on the abstract unix socket\n"
          "                       \"flurry-tract/<advertised address>\", which clients in this\n"
          "                       host's network namespace use instead of TCP when this\n"
          "                       server runs as root or as their user\n"
          "  --max-open-tracts N  open tract limit (default 512)\n"
          "  --journal-size SIZE  write-ahead journal DIR/journal: writes are durable once their\n"
          "                       batch is there, and tract files are synced by checkpoints\n"
          "                       (default 64M; 16M..64G; 0 = none: every write syncs its tract\n"
          "                       files; an existing journal keeps its size and is always replayed)\n"
          "  --apply-delay-us N   with a journal: how long an acknowledged write's copy into its\n"
          "                       tract file may wait to go out with others, sorted so adjacent\n"
          "                       ones merge; IO of the same chunks sends it at once (default\n"
          "                       5000; 0..100000; 0 = at once)\n"
          "  --direct-write-min SIZE  with a journal: writes of at least SIZE whole 4K chunks\n"
          "                       go to their tract file directly (synced in place, after a small\n"
          "                       journal record of their checksums) instead of being written twice\n"
          "                       through the journal (default 64K; 0 = never, else 4K..1G)\n"
          "  -v, --verbose        debug logging\n"
          "  -h, --help           this text\n");
}

std::string ServerUuid(const std::string& dir) {
  std::string path = dir + "/server.id";
  std::ifstream in(path);
  std::string id;
  if (in >> id && id.size() == 16) return id;
  std::random_device rd;
  char b[20];
  snprintf(b, sizeof b, "%08x%08x", rd(), rd());
  std::ofstream(path + ".tmp") << b << "\n";
  rename((path + ".tmp").c_str(), path.c_str());
  return b;
}

// The "gens TOKEN full|delta" line and "<32 hex blob id> <gen>" lines after
// a REGISTER/HEARTBEAT reply's first line (meta/meta_state.h).
struct MetaGensReport {
  std::string token;
  bool full = false;
  std::vector<TractServer::MetaGen> gens;
};
bool ParseMetaGens(const std::vector<std::string>& lines, MetaGensReport* out, std::string* why) {
  char token[80], kind[8];
  if (lines.size() < 2 || sscanf(lines[1].c_str(), "gens %79s %7s", token, kind) != 2 ||
      (strcmp(kind, "full") != 0 && strcmp(kind, "delta") != 0)) {
    *why = "no gens line in the reply";
    return false;
  }
  if (lines.size() - 2 > TractServer::kMaxMetaGens) {
    *why = "more than " + std::to_string(TractServer::kMaxMetaGens) + " blobs reported";
    return false;
  }
  out->token = token;
  out->full = strcmp(kind, "full") == 0;
  for (size_t i = 2; i < lines.size(); ++i) {
    unsigned long long hi, lo, gen;
    int n = 0;
    if (lines[i].size() < 34 || sscanf(lines[i].c_str(), "%16llx%16llx %llu%n", &hi, &lo, &gen, &n) != 3 ||
        static_cast<size_t>(n) != lines[i].size()) {
      *why = "bad line '" + lines[i].substr(0, 80) + "'";
      return false;
    }
    out->gens.push_back({hi, lo, gen});
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, listen = "127.0.0.1:0", meta, zone = "z0", port_file, advertise;
  bool local_socket = true;
  TractServer::Options sopts;
  size_t max_open = 512;
  uint64_t journal_size = 64ull << 20;
  uint32_t apply_delay_us = tractstore::TractStore::Options{}.apply_delay_us;
  uint32_t direct_write_min = tractstore::TractStore::Options{}.direct_write_min;
  static const option longopts[] = {
      {"dir", required_argument, nullptr, 'd'},        {"listen", required_argument, nullptr, 'l'},
      {"meta", required_argument, nullptr, 'm'},       {"zone", required_argument, nullptr, 'z'},
      {"port-file", required_argument, nullptr, 'p'},  {"delay-us", required_argument, nullptr, 'D'},
      {"jitter-us", required_argument, nullptr, 'J'},  {"max-conns", required_argument, nullptr, 'C'},
      {"max-open-tracts", required_argument, nullptr, 'O'},
      {"advertise", required_argument, nullptr, 'a'},  {"journal-size", required_argument, nullptr, 'j'},
      {"verbose", no_argument, nullptr, 'v'},          {"help", no_argument, nullptr, 'h'},
      {"no-local-socket", no_argument, nullptr, 'U'},  {"apply-delay-us", required_argument, nullptr, 'A'},
      {"direct-write-min", required_argument, nullptr, 'W'},
      {nullptr, 0, nullptr, 0}};
  int c;
  auto num = [](const char* s, unsigned long max, const char* what) -> unsigned long {
    char* end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max) {
      fprintf(stderr, "flurry-tractserver: bad %s '%s' (0..%lu)\n", what, s, max);
      exit(2);
    }
    return v;
  };
  while ((c = getopt_long(argc, argv, "vh", longopts, nullptr)) != -1) {
    switch (c) {
      case 'd': dir = optarg; break;
      case 'l': listen = optarg; break;
      case 'm': meta = optarg; break;
      case 'z': zone = optarg; break;
      case 'p': port_file = optarg; break;
      case 'a': advertise = optarg; break;
      case 'D': sopts.delay_us = static_cast<uint32_t>(num(optarg, 10000000, "--delay-us")); break;
      case 'J': sopts.jitter_us = static_cast<uint32_t>(num(optarg, 10000000, "--jitter-us")); break;
      case 'C': sopts.max_connections = static_cast<uint32_t>(num(optarg, 65536, "--max-conns")); break;
      case 'O': max_open = num(optarg, 1 << 20, "--max-open-tracts"); break;
      case 'A': apply_delay_us = static_cast<uint32_t>(num(optarg, 100000, "--apply-delay-us")); break;
      case 'j': {
        auto v = ParseSize(optarg);
        if (!v || (*v != 0 && (*v < (16ull << 20) || *v > (64ull << 30)))) {
          fprintf(stderr, "flurry-tractserver: bad --journal-size '%s' (0, or 16M..64G)\n", optarg);
          return 2;
        }
        journal_size = *v;
        break;
      }
      case 'W': {
        auto v = ParseSize(optarg);
        if (!v || (*v != 0 && (*v < 4096 || *v > (1ull << 30)))) {
          fprintf(stderr, "flurry-tractserver: bad --direct-write-min '%s' (0, or 4K..1G)\n", optarg);
          return 2;
        }
        direct_write_min = static_cast<uint32_t>(*v);
        break;
      }
      case 'U': local_socket = false; break;
      case 'v': SetLogLevel(LogLevel::kDebug); break;
      case 'h': Usage(stdout); return 0;
      default: Usage(stderr); return 2;
    }
  }
  if (dir.empty() || optind != argc) { Usage(stderr); return 2; }
  if (zone.empty() || zone.size() > 64 || zone.find(' ') != std::string::npos) {
    fprintf(stderr, "flurry-tractserver: bad --zone\n");
    return 2;
  }
  auto hp = ParseHostPort(listen, true);
  if (!hp) { fprintf(stderr, "flurry-tractserver: bad --listen '%s' (want HOST:PORT)\n", listen.c_str()); return 2; }
  signal(SIGPIPE, SIG_IGN);
  // Two descriptors per open tract (--max-open-tracts) plus connections:
  // use the whole hard limit, not the usual soft 1024.
  if (rlimit rl; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  auto loop = Loop::Create(1024, /*single_thread=*/true);
  if (!loop) { fprintf(stderr, "flurry-tractserver: io_uring: %s\n", errstr(loop.err()).c_str()); return 1; }
  auto store = tractstore::TractStore::Open(loop->get(), {dir, max_open, journal_size, apply_delay_us, direct_write_min});
  if (!store) {
    fprintf(stderr, "flurry-tractserver: cannot open store %s: %s%s\n", dir.c_str(), errstr(store.err()).c_str(),
            store.err() == -EBUSY ? " (another tract server is using this directory)" : "");
    return 1;
  }
  auto lfd = ListenTcp(*hp);
  if (!lfd) { fprintf(stderr, "flurry-tractserver: cannot listen on %s: %s\n", listen.c_str(), errstr(lfd.err()).c_str()); return 1; }
  uint16_t port = BoundPort(*lfd).value();
  std::string addr = advertise.empty() ? (hp->host + ":" + std::to_string(port)) : advertise;
  SetLogPrefix(("tractserver[" + addr + "]").c_str());
  TractServer server(loop->get(), store->get(), sopts);
  if (!meta.empty()) server.RequireMetaGens();  // writes wait for meta's lease generations
  server.Start(*lfd);
  std::string local_name;
  if (local_socket) {
    local_name = LocalTractSocketName(addr);
    auto ufd = ListenAbstract(local_name);
    if (ufd) {
      server.Start(*ufd);
    } else if (ufd.err() == -EADDRINUSE) {
      // Local clients of this address would reach whoever holds the name:
      // refuse to run beside it rather than let them write elsewhere.
      fprintf(stderr,
              "flurry-tractserver: the local socket @%s is taken: another process (a tract server\n"
              "advertising %s?) serves it; stop that process or start with --no-local-socket\n",
              local_name.c_str(), addr.c_str());
      return 1;
    } else {
      FLOG_WARN("no local socket for %s: %s (clients on this host use TCP)", addr.c_str(),
                errstr(ufd.err()).c_str());
      local_name.clear();
    }
  }
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  FLOG_INFO("serving %s on %s%s%s (zone %s, delay %u us)", dir.c_str(), addr.c_str(),
            local_name.empty() ? "" : " and @", local_name.c_str(), zone.c_str(), sopts.delay_us);

  // Block SIGTERM/SIGINT before any thread starts, so every thread inherits
  // the mask and the signal is only ever consumed by the loop's signalfd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  // Heartbeats on their own thread: blocking control-path IO never stalls the loop.
  std::atomic<bool> stop{false};
  // The gens token of the last report the loop has applied: heartbeats send
  // it, so it must name what is in force, not what is posted (a report that
  // did not parse is asked for again in full).
  std::mutex applied_mu;
  std::string applied_token = "-";  // "-": report every leased blob
  // A write of a TLT newer than the last report waits for meta: beat now.
  std::condition_variable beat_cv;
  bool beat_now = false;  // under applied_mu
  server.set_report_wanted([&] {
    std::lock_guard<std::mutex> g(applied_mu);
    beat_now = true;
    beat_cv.notify_one();
  });
  std::thread hb;
  if (!meta.empty()) {
    auto mhp = ParseHostPort(meta);
    if (!mhp) { fprintf(stderr, "flurry-tractserver: bad --meta '%s'\n", meta.c_str()); return 2; }
    std::string uuid = ServerUuid(dir);
    hb = std::thread([&, mhp = *mhp, uuid] {
      MetaClient mc(mhp, 2000);
      bool registered = false;
      int failures = 0;
      bool want_full = false;  // the last report did not parse: ask for all again
      while (!stop) {
        std::string gens_token = "-";
        if (!want_full) {
          std::lock_guard<std::mutex> g(applied_mu);
          gens_token = applied_token;
        }
        MetaReply r = mc.Call((registered ? "HEARTBEAT " + uuid : "REGISTER " + uuid + " " + addr + " " + zone) +
                              " gens " + gens_token);
        unsigned long long v = 0;
        if (r.status.ok() && !r.lines.empty() && sscanf(r.lines[0].c_str(), "tlt_version %llu", &v) == 1) {
          if (!registered) FLOG_INFO("registered with meta %s as %s", mhp.ToString().c_str(), uuid.c_str());
          registered = true;
          failures = 0;
          server.set_tlt_version(v);
          MetaGensReport rep;
          std::string why;
          if (ParseMetaGens(r.lines, &rep, &why)) {
            want_full = false;
            (*loop)->PostFromAnyThread([&server, &applied_mu, &applied_token, rep = std::move(rep), v] {
              server.ApplyMetaGens(rep.full, rep.gens, v);
              std::lock_guard<std::mutex> g(applied_mu);
              applied_token = rep.token;
            });
          } else {
            FLOG_WARN("meta's lease generations: %s", why.c_str());
            want_full = true;
          }
        } else {
          if (r.status.code() == -ENOENT) registered = false;
          if (failures++ % 20 == 0) FLOG_WARN("meta: %s", r.status.ToString().c_str());
        }
        // Every 500 ms, or sooner when asked (but 20 ms apart at least, so a
        // client sending bogus TLT versions cannot make this spin).
        usleep(20 * 1000);
        std::unique_lock<std::mutex> g(applied_mu);
        beat_cv.wait_for(g, std::chrono::milliseconds(480), [&] { return beat_now || stop.load(); });
        beat_now = false;
      }
    });
  }

  // SIGTERM/SIGINT through a signalfd read on the loop (blocked above).
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  signalfd_siginfo si;
  (*loop)->Read(sfd, &si, sizeof si, 0, [&](int) {
    FLOG_INFO("shutting down");
    server.Shutdown();
    (*store)->FlushApplies();
    (*loop)->AddTimer(200 * 1000000ull, [&] { (*loop)->Stop(); });
  });
  (*loop)->Run();
  int cr = (*store)->Close();
  if (cr < 0 && cr != -EBUSY) FLOG_WARN("journal checkpoint at shutdown: %s", errstr(cr).c_str());
  {
    std::lock_guard<std::mutex> g(applied_mu);
    stop = true;
  }
  beat_cv.notify_one();
  if (hb.joinable()) hb.join();
  return 0;
}
