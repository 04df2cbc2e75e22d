// SPDX-License-Identifier: Apache-2.0
//
// fuse_memserver MOUNTPOINT [SIZE]
//
// Test server: exports, through FuseExport, a RAM disk MOUNTPOINT/disk of
// SIZE bytes (default 256M) and a 1 MiB read-only file MOUNTPOINT/ro whose
// byte i is (i * 7 + 3) & 0xff. Prints "ready" once mounted, serves until
// SIGINT or SIGTERM, then unmounts and exits 0.
#include <csignal>
#include <cstdio>
#include <thread>

#include "common/log.h"
#include "common/loop.h"
#include "common/units.h"
#include "daemon/fuse_export.h"
#include "nbdserver/memory_device.h"

using namespace flurry;

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MOUNTPOINT [SIZE]\n", argv[0]);
    return 2;
  }
  uint64_t size = 256ull << 20;
  if (argc == 3) {
    auto s = ParseSize(argv[2]);
    if (!s.ok() || *s == 0) {
      fprintf(stderr, "%s: bad size '%s'\n", argv[0], argv[2]);
      return 2;
    }
    size = *s;
  }
  SetLogPrefix("fuse_memserver");

  // Signals are taken by sigwait() below, in this thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto loop = Loop::Create();
  if (!loop.ok()) {
    fprintf(stderr, "loop: %s\n", errstr(loop.err()).c_str());
    return 1;
  }
  // Both devices are filled before the loop thread exists, then used only
  // on it.
  MemoryBlockDevice disk(size, "fuse test disk");
  MemoryBlockDevice ro(1 << 20, "fuse test read-only");
  std::vector<uint8_t> pattern(1 << 20);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7 + 3);
  ro.Write(0, static_cast<uint32_t>(pattern.size()), pattern.data(), false, [](int) {});
  ro.mutable_info().read_only = true;

  Loop* l = loop->get();
  std::thread loop_thread([l] { l->Run(); });

  auto fx = FuseExport::Start(l, argv[1], {{"disk", &disk, false}, {"ro", &ro, true}});
  if (!fx.ok()) {
    fprintf(stderr, "fuse export on %s: %s\n", argv[1], errstr(fx.err()).c_str());
    l->Stop();
    loop_thread.join();
    return 1;
  }
  printf("ready\n");
  fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  FLOG_INFO("signal %d: stopping", sig);
  (*fx)->Stop();
  l->Stop();
  loop_thread.join();
  printf("stopped flushes=%llu\n", static_cast<unsigned long long>(disk.flushes()));
  return 0;
}
