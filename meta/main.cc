// SPDX-License-Identifier: Apache-2.0
//
// flurry-meta: the cluster manager (membership, heartbeats, TLT, volumes).
#include <getopt.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/net.h"
#include "meta/meta_state.h"

using namespace flurry;

namespace {
constexpr size_t kMaxLine = 4096;
constexpr int kMaxConns = 128;
std::atomic<int> g_conns{0};

void Usage(FILE* f) {
  fprintf(f,
          "usage: flurry-meta --dir DIR [--listen HOST:PORT] [options]\n"
          "\n"
          "The flurry cluster manager: tract server membership and heartbeats, the\n"
          "tract locator table (TLT) and the volume registry. State is kept durably\n"
          "in DIR/state (replaced atomically on every change).\n"
          "\n"
          "  --dir DIR                 state directory (required)\n"
          "  --listen HOST:PORT        address to serve (default 127.0.0.1:7000; port 0 = any)\n"
          "  --port-file FILE          write the bound port to FILE once listening\n"
          "  --tlt-width N             servers per TLT row, i.e. the largest replication (default 3)\n"
          "  --rows-per-server N       TLT rows per server (default 16)\n"
          "  --heartbeat-timeout-ms N  declare a tract server dead after N ms of silence (default 5000)\n"
          "  -v, --verbose             debug logging\n"
          "  -h, --help                this text\n");
}

void Serve(MetaState* st, int fd) {
  std::string buf;
  char tmp[4096];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) == std::string::npos) {
      if (buf.size() > kMaxLine) {
        std::string e = "ERR EINVAL request line too long\n";
        WriteAll(fd, e.data(), e.size());
        goto out;
      }
      ssize_t n = read(fd, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) goto out;
      buf.append(tmp, static_cast<size_t>(n));
    }
    {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string reply = st->Handle(line);
      if (WriteAll(fd, reply.data(), reply.size()) < 0) goto out;
    }
  }
out:
  close(fd);
  g_conns--;
}
}  // namespace

int main(int argc, char** argv) {
  MetaState::Options opts;
  std::string listen = "127.0.0.1:7000", port_file;
  static const option longopts[] = {
      {"dir", required_argument, nullptr, 'd'},       {"listen", required_argument, nullptr, 'l'},
      {"port-file", required_argument, nullptr, 'p'}, {"tlt-width", required_argument, nullptr, 'w'},
      {"rows-per-server", required_argument, nullptr, 'r'},
      {"heartbeat-timeout-ms", required_argument, nullptr, 't'},
      {"verbose", no_argument, nullptr, 'v'},         {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "vh", longopts, nullptr)) != -1) {
    switch (c) {
      case 'd': opts.dir = optarg; break;
      case 'l': listen = optarg; break;
      case 'p': port_file = optarg; break;
      case 'w': opts.tlt_width = static_cast<uint32_t>(atoi(optarg)); break;
      case 'r': opts.rows_per_server = static_cast<uint32_t>(atoi(optarg)); break;
      case 't': opts.heartbeat_timeout_ms = strtoull(optarg, nullptr, 10); break;
      case 'v': SetLogLevel(LogLevel::kDebug); break;
      case 'h': Usage(stdout); return 0;
      default: Usage(stderr); return 2;
    }
  }
  if (opts.dir.empty() || optind != argc) { Usage(stderr); return 2; }
  if (opts.tlt_width < 1 || opts.tlt_width > 3 || opts.rows_per_server < 1 || opts.rows_per_server > 1024 ||
      opts.heartbeat_timeout_ms < 100) {
    fprintf(stderr, "flurry-meta: --tlt-width must be 1..3, --rows-per-server 1..1024, --heartbeat-timeout-ms >= 100\n");
    return 2;
  }
  SetLogPrefix("flurry-meta");
  auto hp = ParseHostPort(listen, true);
  if (!hp) { fprintf(stderr, "flurry-meta: bad --listen address '%s' (want HOST:PORT)\n", listen.c_str()); return 2; }
  Status why;
  auto st = MetaState::Open(opts, &why);
  if (!st) { fprintf(stderr, "flurry-meta: %s\n", why.ToString().c_str()); return 1; }
  auto lfd = ListenTcp(*hp);
  if (!lfd) { fprintf(stderr, "flurry-meta: cannot listen on %s: %s\n", listen.c_str(), errstr(lfd.err()).c_str()); return 1; }
  uint16_t port = BoundPort(*lfd).value();
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  signal(SIGPIPE, SIG_IGN);
  FLOG_INFO("serving on %s:%u, state in %s", hp->host.c_str(), port, opts.dir.c_str());
  MetaState* state = st->get();
  // SIGTERM/SIGINT: every change is already durable, so just exit cleanly.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  std::thread([mask] {
    int sig = 0;
    sigwait(&mask, &sig);
    FLOG_INFO("signal %d: exiting", sig);
    _exit(0);
  }).detach();
  std::thread([state] {
    for (;;) {
      usleep(250 * 1000);
      state->CheckHeartbeats();
    }
  }).detach();
  std::thread([state] {
    for (;;) {
      sleep(1);
      state->RepairOnce();
    }
  }).detach();
  for (;;) {
    int fd = accept4(*lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      FLOG_ERROR("accept: %s", strerror(errno));
      sleep(1);
      continue;
    }
    if (g_conns >= kMaxConns) {
      std::string e = "ERR EBUSY too many connections\n";
      WriteAll(fd, e.data(), e.size());
      close(fd);
      continue;
    }
    g_conns++;
    std::thread(Serve, state, fd).detach();
  }
}
