// SPDX-License-Identifier: Apache-2.0
//
// Crash-state property test for log mode. Random workloads (mixed sizes,
// overlaps, trims, flushes, FUA, explicit checkpoints, completion
// reordering and backpressure) run on a MemoryBlobIo; at a random point
// the blob is crashed (CrashImage: each 4 KiB chunk of each in-flight write
// old or new) and a fresh engine recovers from the image. Checked:
// - prefix consistency: there is an R >= the engine's last_durable_epoch()
//   at the crash such that every sector holds the newest write of epochs
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
  SCOPED_TRACE("seed=" + std::to_string(seed) + " size=" + std::to_string(size) +
               " B=" + std::to_string(B));

  auto blob = std::make_unique<MemoryBlobIo>(g.blob_bytes, rng());
  auto dev = OpenDevice(vol, *blob, opts);
  ASSERT_TRUE(dev);
  std::vector<uint64_t> ids(size / kSector, 0);
  uint64_t next_id = seed << 20;
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int round = 0; round < rounds && st.states < max_states; ++round) {
    Model model(ids);
    std::deque<std::vector<uint8_t>> bufs;  // alive until the engine is gone
    const int ops = 1 + static_cast<int>(rng() % 80);
    for (int i = 0; i < ops; ++i) {
      const uint64_t r = rng() % 100;
      uint64_t s0 = rng() % (size / kSector);
      uint64_t n = 1 + rng() % (rng() % 4 == 0 ? 3 * B / kSector : B / kSector);
      if (rng() % 3 == 0) s0 = s0 / (B / kSector) * (B / kSector);
      n = std::min(n, size / kSector - s0);
      const uint64_t off = s0 * kSector, len = n * kSector;
      if (r < 60) {
        const uint64_t id = ++next_id;
        bufs.emplace_back(len);
        for (uint64_t k = 0; k < n; ++k) FillSector(bufs.back().data() + k * kSector, id, s0 + k);
        model.Add({id, dev->current_epoch(), s0, s0 + n});
        dev->Write(off, static_cast<uint32_t>(len), bufs.back().data(), rng() % 10 == 0, [](int) {});
        st.writes++;
      } else if (r < 68) {
        model.Add({0, dev->current_epoch(), s0, s0 + n});
        if (rng() % 2) dev->Trim(off, static_cast<uint32_t>(len), [](int) {});
        else dev->Zero(off, static_cast<uint32_t>(len), rng() % 2, false, [](int) {});
      } else if (r < 85) {
        dev->Flush([](int res) { EXPECT_EQ(res, 0); });
      } else if (r < 88) {
        dev->Checkpoint([](int) {});
      }
      for (uint64_t k = rng() % 4; k > 0; --k) blob->Step();
    }
    // Crash now.
    const uint64_t lde = dev->last_durable_epoch();
    auto image = blob->CrashImage(rng);
    dev.reset();
    blob.reset();
    bufs.clear();
    st.states++;

    // Recover; maybe crash during the recovery too.
    auto b2 = std::make_unique<MemoryBlobIo>(std::move(image), rng());
    Status why;
    auto created = LogDevice::Create(vol, b2.get(), opts, &why);
    ASSERT_TRUE(created);
    std::unique_ptr<LogDevice> d2 = std::move(*created);
    std::optional<int> opened;
    d2->Open([&opened](int r) { opened = r; });
    std::vector<uint8_t> mid_image;
    const bool crash_in_recovery = rng() % 2;
    if (crash_in_recovery) {
      for (uint64_t k = rng() % 3; k > 0 && !opened; --k) b2->Step();
      mid_image = b2->CrashImage(rng);
    }
    ASSERT_TRUE(logtest::StepUntil(*b2, opened));
    ASSERT_EQ(*opened, 0) << d2->recovery_report();
    const auto got = ReadAll(*d2, *b2);
    const auto obs = Ids(got);
    for (uint64_t s = 0; s < obs.size(); ++s)
      ASSERT_NE(obs[s], UINT64_MAX) << "garbled sector " << s << "\n" << d2->recovery_report();
    const int64_t R = model.FindR(obs, lde);
    ASSERT_GE(R, 0) << "not prefix consistent (last durable epoch at crash " << lde << ", max epoch "
                    << model.max_epoch << ")\n" << d2->recovery_report();

    // Idempotence: again from the mid-recovery crash, and right after.
    std::vector<std::vector<uint8_t>> again;
    if (crash_in_recovery) again.push_back(std::move(mid_image));
    again.push_back(b2->durable());
    for (auto& img : again) {
      MemoryBlobIo b3(std::move(img), rng());
      auto d3 = OpenDevice(vol, b3, opts);
      ASSERT_TRUE(d3);
      ASSERT_EQ(ReadAll(*d3, b3), got) << "recovery is not idempotent\nfirst: "
                                       << d2->recovery_report() << "\nagain: " << d3->recovery_report();
      st.idempotence_states++;
    }
    ids = obs;
    blob = std::move(b2);
    dev = std::move(d2);
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
  printf("log crash test: %llu crash states (+%llu idempotence re-crashes), %llu writes, %.1f s, "
         "%.0f crash states/minute\n",
         static_cast<unsigned long long>(st.states), static_cast<unsigned long long>(st.idempotence_states),
         static_cast<unsigned long long>(st.writes), s, st.states / s * 60);
  EXPECT_GE(st.states, target);
}

}  // namespace
}  // namespace flurry
