// SPDX-License-Identifier: Apache-2.0
//
// fuse_memserver MOUNTPOINT [SIZE] [--defer]
//
// Test server: exports, through FuseExport, a RAM disk MOUNTPOINT/disk of
// SIZE bytes (default 256M) and a 1 MiB read-only file MOUNTPOINT/ro whose
// byte i is (i * 7 + 3) & 0xff. Prints "ready" once mounted, serves until
// SIGINT or SIGTERM, then unmounts and exits 0.
//
// --defer: the disk completes every request later, on a timer of 0-200 us
// (so out of order), and takes at most 64 KiB per request, the way a
// networked device behaves; this exercises FuseExport's splitting and its
// asynchronous answers.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/loop.h"
#include "common/units.h"
#include "daemon/fuse_export.h"
#include "nbdserver/memory_device.h"

using namespace flurry;

namespace {

class DeferredDevice : public BlockDevice {
 public:
  DeferredDevice(Loop* loop, BlockDevice* inner) : loop_(loop), inner_(inner), info_(inner->info()) {
    info_.max_io = 64 << 10;
  }
  const BlockDeviceInfo& info() const override { return info_; }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override {
    inner_->Read(off, len, buf, Later(std::move(done)));
  }
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) override {
    inner_->Write(off, len, buf, fua, Later(std::move(done)));
  }
  void Flush(Done done) override { inner_->Flush(Later(std::move(done))); }
  void Trim(uint64_t off, uint32_t len, Done done) override {
    inner_->Trim(off, len, Later(std::move(done)));
  }
  void Zero(uint64_t off, uint32_t len, bool may_trim, bool fast_only, Done done) override {
    inner_->Zero(off, len, may_trim, fast_only, Later(std::move(done)));
  }
  void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) override {
    inner_->BlockStatus(off, len, std::move(done));
  }

 private:
  Done Later(Done done) {
    return [this, done = std::move(done)](int res) {
      seed_ = seed_ * 6364136223846793005ull + 1442695040888963407ull;
      loop_->AddTimer((seed_ >> 33) % 200000, [done, res] { done(res); });
    };
  }
  Loop* loop_;
  BlockDevice* inner_;
  BlockDeviceInfo info_;
  uint64_t seed_ = 1;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  bool defer = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--defer") defer = true;
    else pos.push_back(argv[i]);
  }
  if (pos.empty() || pos.size() > 2) {
    fprintf(stderr, "usage: %s MOUNTPOINT [SIZE] [--defer]\n", argv[0]);
    return 2;
  }
  uint64_t size = 256ull << 20;
  if (pos.size() == 2) {
    auto s = ParseSize(pos[1]);
    if (!s.ok() || *s == 0) {
      fprintf(stderr, "%s: bad size '%s'\n", argv[0], pos[1].c_str());
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
  DeferredDevice deferred(l, &disk);
  BlockDevice* exported = defer ? static_cast<BlockDevice*>(&deferred) : &disk;
  std::thread loop_thread([l] { l->Run(); });

  auto fx = FuseExport::Start(l, pos[0], {{"disk", exported, false}, {"ro", &ro, true}});
  if (!fx.ok()) {
    fprintf(stderr, "fuse export on %s: %s\n", pos[0].c_str(), errstr(fx.err()).c_str());
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
