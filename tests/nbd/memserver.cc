// SPDX-License-Identifier: Apache-2.0
//
// flurry-nbd-memserver: an NbdServer serving MemoryBlockDevice exports, for
// end-to-end tests with real NBD clients (nbdinfo, qemu-io, nbdcopy, fio).
//
//   flurry-nbd-memserver [--listen HOST:PORT] [--unix PATH]
//                        [--export NAME:SIZE[:ro][:minblock=N]]... [--default NAME]
//
// Prints "PORT=<n>" (and "READY") on stdout once listening; runs until
// SIGINT/SIGTERM, then shuts down gracefully and prints per-export counters.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/loop.h"
#include "common/units.h"
#include "nbdserver/memory_device.h"
#include "nbdserver/server.h"

using namespace flurry;

namespace {

struct ExportSpec {
  std::string name;
  uint64_t size = 0;
  bool ro = false;
  uint32_t min_block = 1;
};

bool ParseExport(const std::string& arg, ExportSpec* e) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= arg.size(); ++i) {
    if (i == arg.size() || arg[i] == ':') {
      parts.push_back(arg.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.size() < 2) return false;
  e->name = parts[0];
  auto sz = ParseSize(parts[1]);
  if (!sz) return false;
  e->size = *sz;
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i] == "ro") e->ro = true;
    else if (parts[i].rfind("minblock=", 0) == 0) e->min_block = static_cast<uint32_t>(std::stoul(parts[i].substr(9)));
    else return false;
  }
  return true;
}

int Usage() {
  fprintf(stderr,
          "usage: flurry-nbd-memserver [--listen HOST:PORT] [--unix PATH]\n"
          "         [--export NAME:SIZE[:ro][:minblock=N]]... [--default NAME] [--verbose]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", unix_path, def;
  bool tcp = true;
  std::vector<ExportSpec> specs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--listen") listen = next();
    else if (a == "--unix") unix_path = next();
    else if (a == "--no-tcp") tcp = false;
    else if (a == "--default") def = next();
    else if (a == "--verbose") SetLogLevel(LogLevel::kDebug);
    else if (a == "--export") {
      ExportSpec e;
      if (!ParseExport(next(), &e)) return Usage();
      specs.push_back(e);
    } else return Usage();
  }
  if (specs.empty()) specs.push_back({"mem", 64ull << 20, false, 1});

  // Signals go to a waiter thread that hands shutdown to the loop.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto loop_r = Loop::Create(512);
  if (!loop_r) {
    fprintf(stderr, "io_uring: %s\n", errstr(loop_r.err()).c_str());
    return 1;
  }
  std::unique_ptr<Loop> loop = std::move(*loop_r);
  std::vector<std::unique_ptr<MemoryBlockDevice>> devs;
  NbdServer server(loop.get(), NbdServerOptions{});
  for (const ExportSpec& s : specs) {
    devs.push_back(std::make_unique<MemoryBlockDevice>(s.size, "flurry memory export " + s.name));
    devs.back()->mutable_info().min_block = s.min_block;
    server.AddExport(s.name, devs.back().get(), s.ro);
  }
  server.SetDefaultExport(def.empty() ? specs[0].name : def);

  if (tcp) {
    auto hp = ParseHostPort(listen, true);
    if (!hp) return Usage();
    Status st = server.ListenTcp(*hp);
    if (!st.ok()) {
      fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    printf("PORT=%u\n", server.tcp_port());
  }
  if (!unix_path.empty()) {
    Status st = server.ListenUnix(unix_path);
    if (!st.ok()) {
      fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    printf("UNIX=%s\n", unix_path.c_str());
  }
  printf("READY\n");
  fflush(stdout);

  Loop* lp = loop.get();
  std::thread waiter([set, lp, &server] {
    int sig = 0;
    sigwait(&set, &sig);
    lp->PostFromAnyThread([lp, &server] { server.Shutdown([lp] { lp->Stop(); }); });
  });
  loop->Run();
  for (const auto& [name, s] : server.Stats()) {
    fprintf(stderr,
            "export %s: reads=%lu writes=%lu bytes_read=%lu bytes_written=%lu flushes=%lu "
            "trims=%lu zeroes=%lu block_status=%lu errors=%lu\n",
            name.c_str(), (unsigned long)s.reads, (unsigned long)s.writes,
            (unsigned long)s.bytes_read, (unsigned long)s.bytes_written, (unsigned long)s.flushes,
            (unsigned long)s.trims, (unsigned long)s.zeroes, (unsigned long)s.block_status,
            (unsigned long)s.errors);
  }
  waiter.join();
  return 0;
}
