// SPDX-License-Identifier: Apache-2.0
//
// Crash-state property test for log mode. Random workloads (mixed sizes,
// overlaps, trims, flushes, FUA, explicit checkpoints, completion
// reordering and backpressure) run on a MemoryBlobIo; at a random point
// the blob is crashed (CrashImage: each 4 KiB chunk of each in-flight write
// old or new) and a fresh engine recovers from the image. Checked:
// - prefix consistency: there is an R >= the engine's last_durable_epoch()
//   at the crash (and >= the epoch of every acknowledged FUA write) such that every sector holds the newest write of epochs
//   <= R (or the state before the round), or some write of epoch R+1 —
//   never a write of a later epoch, never a mix (every 512-byte sector of a
//   write carries the write's id and sector number);
// - idempotence: crashing during the recovery (its checkpoint write in
//   flight), or right after it, and recovering again gives the same
//   contents.
// Each recovered state starts the next round, so generations, laps and
// stale blocks from discarded futures pile up.
//
// FLURRY_LOG_CRASH_STATES (default 2000) sets how many crash states to run;
// FLURRY_LOG_CRASH_SEED the first seed. The rate is printed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>

#include "epochs/log_device.h"
#include "epochs/log_test_util.h"

namespace flurry {
namespace {

using logtest::OpenDevice;
using logtest::ReadAll;
using logtest::Vol;

constexpr uint64_t kSector = 512;

void FillSector(uint8_t* s, uint64_t id, uint64_t sector) {
  memcpy(s, &id, 8);
  memcpy(s + 8, &sector, 8);
  uint64_t x = id * 0x9E3779B97F4A7C15ull ^ sector;
  for (uint64_t i = 16; i < kSector; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s[i] = static_cast<uint8_t>(x >> 56);
  }
}

// The id of the write a sector holds: 0 for zeros, UINT64_MAX if garbled.
uint64_t SectorId(const uint8_t* s, uint64_t sector) {
  static const std::vector<uint8_t> zeros(kSector, 0);
  if (memcmp(s, zeros.data(), kSector) == 0) return 0;
  uint64_t id;
  memcpy(&id, s, 8);
  std::vector<uint8_t> want(kSector);
  FillSector(want.data(), id, sector);
  return memcmp(want.data(), s, kSector) == 0 ? id : UINT64_MAX;
}

struct WriteRec {
  uint64_t id;  // 0 for trim/zero (the value the sectors take)
  uint64_t epoch;
  uint64_t s0, s1;  // sectors [s0, s1)
};

// Per-sector history since the round started: (epoch, value) in arrival order.
struct Model {
  std::vector<uint64_t> base;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> hist;
  uint64_t max_epoch = 0;
  explicit Model(std::vector<uint64_t> b) : base(std::move(b)), hist(base.size()) {}
  void Add(const WriteRec& w) {
    for (uint64_t s = w.s0; s < w.s1; ++s) hist[s].emplace_back(w.epoch, w.id);
    max_epoch = std::max(max_epoch, w.epoch);
  }
  bool Allowed(uint64_t s, uint64_t obs, uint64_t R) const {
    uint64_t expected = base[s];
    for (auto [e, v] : hist[s]) {
      if (e <= R) expected = v;
      else if (e == R + 1 && v == obs) return true;
    }
    return obs == expected;
  }
  // The largest R >= min_r for which obs is prefix consistent, or -1.
  int64_t FindR(const std::vector<uint64_t>& obs, uint64_t min_r) const {
    for (int64_t R = static_cast<int64_t>(std::max(max_epoch, min_r)); R >= static_cast<int64_t>(min_r); --R) {
      bool ok = true;
      for (uint64_t s = 0; s < obs.size() && ok; ++s) ok = Allowed(s, obs[s], static_cast<uint64_t>(R));
      if (ok) return R;
    }
    return -1;
  }
};

std::vector<uint64_t> Ids(const std::vector<uint8_t>& img) {
  std::vector<uint64_t> ids(img.size() / kSector);
  for (uint64_t s = 0; s < ids.size(); ++s) ids[s] = SectorId(img.data() + s * kSector, s);
  return ids;
}

uint64_t EnvOr(const char* name, uint64_t def) {
  const char* v = getenv(name);
  return v && *v ? strtoull(v, nullptr, 10) : def;
}

struct Stats {
  uint64_t states = 0, idempotence_states = 0, writes = 0;
  uint64_t in_flight = 0;   // states with block writes in flight at the crash
  uint64_t lost_tail = 0;   // states where recovery kept less than every write (R < max epoch)
  uint64_t rolled = 0;      // states where roll-forward applied blocks
};

// A BlobIo in front of a MemoryBlobIo that may hold checkpoint writes back
// (they stay in flight: a crash drops them), so that the writer runs far
// ahead of its last durable checkpoint and laps meet their limit.
class SlowCheckpoints : public BlobIo {
 public:
  SlowCheckpoints(MemoryBlobIo* inner, uint64_t region_end, uint64_t seed)
      : inner_(inner), region_end_(region_end), rng_(seed) {}
  uint64_t size() const override { return inner_->size(); }
  void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) override {
    inner_->Read(off, len, buf, std::move(done));
  }
  void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) override {
    if (holding_ && off < region_end_ && rng_() % 4 != 0) held_.push_back({off, len, buf, std::move(done)});
    else inner_->Write(off, len, buf, std::move(done));
  }
  void Zero(uint64_t off, uint64_t len, bool keep, Done done) override {
    inner_->Zero(off, len, keep, std::move(done));
  }
  void Allocation(uint64_t off, uint64_t len, ExtentsDone done) override {
    inner_->Allocation(off, len, std::move(done));
  }
  void Tick() {
    if (!held_.empty() && rng_() % 8 == 0) Release(rng_() % held_.size());
  }
  void Hold(bool on) {
    holding_ = on;
    while (!on && !held_.empty()) Release(0);
  }

 private:
  struct Held {
    uint64_t off, len;
    const uint8_t* buf;
    Done done;
  };
  void Release(size_t i) {
    Held h = std::move(held_[i]);
    held_.erase(held_.begin() + static_cast<long>(i));
    inner_->Write(h.off, h.len, h.buf, std::move(h.done));
  }
  MemoryBlobIo* inner_;
  uint64_t region_end_;
  std::mt19937_64 rng_;
  bool holding_ = false;
  std::deque<Held> held_;
};

// A MemoryBlobIo, the slow-checkpoint wrapper and an engine on top.
struct Disk {
  std::unique_ptr<MemoryBlobIo> mem;
  std::unique_ptr<SlowCheckpoints> io;
  std::unique_ptr<LogDevice> dev;
  std::optional<int> opened;
  Disk(std::vector<uint8_t> image, const VolumeInfo& vol, const EngineOptions& opts, uint64_t seed) {
    const LogGeometry g = *LogGeometry::For(vol.size, vol.block_size);
    mem = image.empty() ? std::make_unique<MemoryBlobIo>(g.blob_bytes, seed)
                        : std::make_unique<MemoryBlobIo>(std::move(image), seed);
    io = std::make_unique<SlowCheckpoints>(mem.get(), 2 * g.slot_bytes, seed + 1);
    Status why;
    auto d = LogDevice::Create(vol, io.get(), opts, &why);
    EXPECT_TRUE(d) << why.ToString();
    if (d) dev = std::move(*d);
  }
  void StartOpen() {
    dev->Open([this](int r) { opened = r; });
  }
  int FinishOpen() {
    if (!logtest::StepUntil(*mem, opened)) return -ETIMEDOUT;
    return *opened;
  }
};

// One volume, several rounds of workload + crash + recovery.
void RunTrial(uint64_t seed, uint64_t max_states, Stats& st) {
  std::mt19937_64 rng(seed);
  const uint32_t B = (rng() % 2) ? 4096 : 8192;
  const uint64_t size = (4 + rng() % 40) * 4096;
  const VolumeInfo vol = Vol(size, B);
  const LogGeometry g = *LogGeometry::For(size, B);
  EngineOptions opts;
  const uint64_t caps[] = {2, 6, 1000};
  opts.max_buffered_bytes = caps[rng() % 3] * g.expanded;
  opts.max_unretired_epochs = (rng() % 3 == 0) ? 2 : 4096;
  const bool slow_checkpoints = rng() % 2;
  SCOPED_TRACE("seed=" + std::to_string(seed) + " size=" + std::to_string(size) +
               " B=" + std::to_string(B));

  auto disk = std::make_unique<Disk>(std::vector<uint8_t>{}, vol, opts, rng());
  ASSERT_TRUE(disk->dev);
  disk->StartOpen();
  ASSERT_EQ(disk->FinishOpen(), 0);
  std::vector<uint64_t> ids(size / kSector, 0);
  uint64_t next_id = seed << 20;
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int round = 0; round < rounds && st.states < max_states; ++round) {
    Model model(ids);
    std::deque<std::vector<uint8_t>> bufs;  // alive until the engine is gone
    LogDevice& dev = *disk->dev;
    uint64_t durable_acked = 0;  // highest epoch of an acknowledged FUA write
    disk->io->Hold(slow_checkpoints);
    // Short rounds crash early in a generation; long ones lap the
    // permutation (P >= V + 64 blocks) several times.
    // (One rng() call per statement: the order of evaluation must not vary.)
    const uint64_t max_ops = rng() % 2 ? 40 : 400;
    const int ops = 1 + static_cast<int>(rng() % max_ops);
    for (int i = 0; i < ops; ++i) {
      const uint64_t r = rng() % 100;
      uint64_t s0 = rng() % (size / kSector);
      const uint64_t max_n = rng() % 4 == 0 ? 3 * B / kSector : B / kSector;
      uint64_t n = 1 + rng() % max_n;
      if (rng() % 3 == 0) s0 = s0 / (B / kSector) * (B / kSector);
      n = std::min(n, size / kSector - s0);
      const uint64_t off = s0 * kSector, len = n * kSector;
      if (r < 60) {
        const uint64_t id = ++next_id;
        bufs.emplace_back(len);
        for (uint64_t k = 0; k < n; ++k) FillSector(bufs.back().data() + k * kSector, id, s0 + k);
        const uint64_t epoch = dev.current_epoch();
        model.Add({id, epoch, s0, s0 + n});
        const bool fua = rng() % 10 == 0;
        dev.Write(off, static_cast<uint32_t>(len), bufs.back().data(), fua,
                  [fua, epoch, &durable_acked](int res) {
                    if (fua && res == 0) durable_acked = std::max(durable_acked, epoch);
                  });
        st.writes++;
      } else if (r < 68) {
        model.Add({0, dev.current_epoch(), s0, s0 + n});
        if (rng() % 2) dev.Trim(off, static_cast<uint32_t>(len), [](int) {});
        else dev.Zero(off, static_cast<uint32_t>(len), rng() % 2, false, [](int) {});
      } else if (r < 85) {
        dev.Flush([](int res) { EXPECT_EQ(res, 0); });
      } else if (r < 88) {
        dev.Checkpoint([](int) {});
      }
      for (uint64_t k = rng() % 4; k > 0; --k) disk->mem->Step();
      disk->io->Tick();
    }
    // Crash now: held checkpoint writes are lost, queued ones land chunk by chunk or not.
    const uint64_t lde = std::max(dev.last_durable_epoch(), durable_acked);
    if (disk->mem->pending() > 0) st.in_flight++;
    auto image = disk->mem->CrashImage(rng);
    disk.reset();
    bufs.clear();
    st.states++;

    // Recover; maybe crash during the recovery too.
    auto d2 = std::make_unique<Disk>(std::move(image), vol, opts, rng());
    ASSERT_TRUE(d2->dev);
    d2->StartOpen();
    std::vector<uint8_t> mid_image;
    const bool crash_in_recovery = rng() % 2;
    if (crash_in_recovery) {
      for (uint64_t k = rng() % 3; k > 0 && !d2->opened; --k) d2->mem->Step();
      mid_image = d2->mem->CrashImage(rng);
    }
    ASSERT_EQ(d2->FinishOpen(), 0) << d2->dev->recovery_report();
    const std::string report = d2->dev->recovery_report();
    const auto got = ReadAll(*d2->dev, *d2->mem);
    const auto obs = Ids(got);
    for (uint64_t s = 0; s < obs.size(); ++s)
      ASSERT_NE(obs[s], UINT64_MAX) << "garbled sector " << s << "\n" << report;
    const int64_t R = model.FindR(obs, lde);
    ASSERT_GE(R, 0) << "not prefix consistent (last durable epoch at crash " << lde << ", max epoch "
                    << model.max_epoch << ")\n" << report;

    // Idempotence: again from the mid-recovery crash, and right after.
    std::vector<std::vector<uint8_t>> again;
    if (crash_in_recovery) again.push_back(std::move(mid_image));
    again.push_back(d2->mem->durable());
    for (auto& img : again) {
      MemoryBlobIo b3(std::move(img), rng());
      auto d3 = OpenDevice(vol, b3, opts);
      ASSERT_TRUE(d3);
      ASSERT_EQ(ReadAll(*d3, b3), got) << "recovery is not idempotent\nfirst: " << report
                                       << "\nagain: " << d3->recovery_report();
      st.idempotence_states++;
    }
    if (static_cast<uint64_t>(R) < model.max_epoch) st.lost_tail++;
    if (report.find("rolled forward 0 blocks") == std::string::npos) st.rolled++;
    ids = obs;
    disk = std::move(d2);
  }
}

TEST(LogCrash, PrefixConsistentAndIdempotent) {
  const uint64_t target = EnvOr("FLURRY_LOG_CRASH_STATES", 2000);
  const uint64_t seed0 = EnvOr("FLURRY_LOG_CRASH_SEED", 1);
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t seed = seed0; st.states < target; ++seed) {
    RunTrial(seed, target, st);
    if (HasFatalFailure() || HasFailure()) {
      ADD_FAILURE() << "reproduce with FLURRY_LOG_CRASH_SEED=" << seed;
      break;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  printf("log crash test: %llu crash states (+%llu idempotence re-crashes), %llu writes, %.1f s, "
         "%.0f crash states/minute\n"
         "  %llu with writes in flight, %llu rolled forward, %llu lost a tail of epochs\n",
         u(st.states), u(st.idempotence_states), u(st.writes), s, st.states / s * 60, u(st.in_flight),
         u(st.rolled), u(st.lost_tail));
  EXPECT_GE(st.states, target);
}

}  // namespace
}  // namespace flurry
