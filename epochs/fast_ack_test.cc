// SPDX-License-Identifier: Apache-2.0
#include "epochs/fast_ack.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "epochs/memory_blob_io.h"

namespace flurry {
namespace {

constexpr uint64_t kSize = 1 << 20;
constexpr uint64_t kSector = 512;

VolumeInfo Vol() {
  VolumeInfo v;
  v.name = "t";
  v.size = kSize;
  v.mode = WriteMode::kFastAck;
  return v;
}

std::vector<uint8_t> Filled(uint64_t len, uint32_t id) {
  std::vector<uint8_t> d(len);
  for (uint64_t i = 0; i + 4 <= len; i += 4) memcpy(&d[i], &id, 4);
  return d;
}

int WriteSync(FastAckDevice& d, uint64_t off, const std::vector<uint8_t>& data, bool fua = false) {
  int res = 1;
  d.Write(off, static_cast<uint32_t>(data.size()), data.data(), fua, [&](int r) { res = r; });
  return res;
}

std::vector<uint8_t> ReadSync(FastAckDevice& d, uint64_t off, uint64_t len) {
  std::vector<uint8_t> out(len, 0xEE);
  int res = 1;
  d.Read(off, static_cast<uint32_t>(len), out.data(), [&](int r) { res = r; });
  EXPECT_EQ(res, 0);
  return out;
}

TEST(FastAck, AcksAtOnceAndReadsSeeTheCacheWithPartialOverlaps) {
  MemoryBlobIo blob(kSize);
  FastAckDevice d(Vol(), &blob, {});
  std::vector<uint8_t> model(kSize, 0);
  std::mt19937 rng(3);
  for (int i = 1; i <= 300; ++i) {
    uint64_t off = rng() % (kSize - 70000), len = 1 + rng() % 70000;
    auto data = Filled(len, static_cast<uint32_t>(i * 2654435761u));
    ASSERT_EQ(WriteSync(d, off, data), 0) << "fast-ack must acknowledge at once";
    memcpy(&model[off], data.data(), len);
    if (i % 7 == 0) {
      int r = 1;
      d.Flush([&](int x) { r = x; });
      ASSERT_EQ(r, 0);
    }
    if (i % 3 == 0) blob.Step();  // some writes become durable, out of order
    if (i % 10 == 0) {
      uint64_t ro = rng() % (kSize - 100000);
      ASSERT_TRUE(ReadSync(d, ro, 100000) == std::vector<uint8_t>(model.begin() + ro, model.begin() + ro + 100000));
    }
  }
  EXPECT_TRUE(ReadSync(d, 0, kSize) == model);
  int q = 1;
  d.Quiesce([&](int r) { q = r; });
  blob.RunAll();
  ASSERT_EQ(q, 0);
  EXPECT_TRUE(blob.durable() == model) << "after Quiesce everything acknowledged is durable";
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FastAck, OnlyTheOldestEpochIsIssued) {
  MemoryBlobIo blob(kSize);
  FastAckDevice d(Vol(), &blob, {});
  ASSERT_EQ(WriteSync(d, 0, Filled(4096, 1)), 0);
  d.Flush([](int) {});
  ASSERT_EQ(WriteSync(d, 8192, Filled(4096, 2)), 0);
  ASSERT_EQ(WriteSync(d, 16384, Filled(4096, 3)), 0);
  EXPECT_EQ(blob.pending(), 1u) << "epoch 1 must wait for epoch 0";
  ASSERT_TRUE(blob.Step());
  EXPECT_EQ(d.issue_epoch(), 1u);
  EXPECT_EQ(blob.pending(), 2u) << "epoch 1 released once epoch 0 retired";
}

TEST(FastAck, FuaWaitsForItsEpoch) {
  MemoryBlobIo blob(kSize);
  FastAckDevice d(Vol(), &blob, {});
  ASSERT_EQ(WriteSync(d, 0, Filled(4096, 1)), 0);
  ASSERT_EQ(WriteSync(d, 4096, Filled(4096, 2), /*fua=*/true), 1) << "FUA reply must wait";
  int res = 1;
  d.Write(8192, 4096, Filled(4096, 3).data(), true, [&](int r) { res = r; });
  blob.Step();
  blob.Step();
  blob.RunAll();
  EXPECT_EQ(res, 0);
}

TEST(FastAck, BackpressureBoundsBufferedBytes) {
  MemoryBlobIo blob(kSize);
  EngineOptions o;
  o.max_buffered_bytes = 64 * 1024;
  FastAckDevice d(Vol(), &blob, o);
  int acked = 0;
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < 40; ++i) bufs.push_back(Filled(4096, static_cast<uint32_t>(i + 1)));
  for (int i = 0; i < 40; ++i) {
    d.Write(static_cast<uint64_t>(i) * 4096, 4096, bufs[i].data(), false, [&](int r) { acked += r == 0; });
    if (i % 5 == 4) d.Flush([](int) {});
  }
  EXPECT_EQ(acked, 16) << "only 64 KiB may be acknowledged and not yet durable";
  EXPECT_LE(d.buffered_bytes(), 64u * 1024);
  blob.RunAll();
  EXPECT_EQ(acked, 40);
}

// Prefix consistency under crashes: sector ids reveal which write landed.
TEST(FastAck, CrashStatesArePrefixConsistent) {
  int states = getenv("FLURRY_CRASH_STATES") ? atoi(getenv("FLURRY_CRASH_STATES")) : 2000;
  constexpr uint64_t kSmall = 64 * 1024;
  std::mt19937_64 rng(7);
  for (int s = 0; s < states; ++s) {
    VolumeInfo v = Vol();
    v.size = kSmall;
    MemoryBlobIo blob(kSmall, rng());
    FastAckDevice d(v, &blob, {});
    struct W { uint64_t off, len, epoch; uint32_t id; };
    std::vector<W> acked;
    uint64_t epoch = 0;
    int nops = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < nops; ++i) {
      if (rng() % 5 == 0) {
        d.Flush([](int) {});
        epoch++;
      } else {
        uint64_t off = (rng() % (kSmall / kSector)) * kSector;
        uint64_t len = std::min<uint64_t>(kSmall - off, (1 + rng() % 16) * kSector);
        uint32_t id = static_cast<uint32_t>(acked.size() + 1);
        auto data = Filled(len, id);
        ASSERT_EQ(WriteSync(d, off, data), 0);
        acked.push_back({off, len, epoch, id});
      }
      for (uint64_t k = rng() % 3; k > 0; --k) blob.Step();
    }
    auto img = blob.CrashImage(rng);
    // Find R: every sector = last write of epochs <= R, or a later write of epoch R+1.
    bool found = false;
    // R = -1: not even epoch 0 is complete.
    for (int64_t R = -1; R <= static_cast<int64_t>(epoch) + 1 && !found; ++R) {
      bool ok = true;
      for (uint64_t sec = 0; sec < kSmall / kSector && ok; ++sec) {
        uint32_t got;
        memcpy(&got, &img[sec * kSector], 4);
        uint32_t base = 0;
        std::vector<uint32_t> next;
        for (const W& w : acked) {
          if (w.off > sec * kSector || w.off + w.len <= sec * kSector) continue;
          int64_t we = static_cast<int64_t>(w.epoch);
          if (we <= R) { base = w.id; next.clear(); }
          else if (we == R + 1) next.push_back(w.id);
        }
        ok = got == base || std::find(next.begin(), next.end(), got) != next.end();
      }
      found = ok;
    }
    ASSERT_TRUE(found) << "crash state " << s << " is not prefix consistent";
  }
}

TEST(FastAck, DurableFlushWaitsForEveryEarlierWriteAndTrim) {
  // nbdserver's FUA on TRIM / WRITE_ZEROES: durable, unlike Flush().
  MemoryBlobIo blob(kSize);
  FastAckDevice d(Vol(), &blob, {});
  auto a = Filled(8192, 7);
  ASSERT_EQ(WriteSync(d, 0, a), 0);
  int t = 1;
  d.Trim(65536, 4096, [&](int r) { t = r; });
  ASSERT_EQ(t, 0);
  int f = 1;
  d.DurableFlush([&](int r) { f = r; });
  EXPECT_EQ(f, 1) << "replied before anything was durable";
  while (f == 1 && blob.Step()) {
  }
  ASSERT_EQ(f, 0);
  EXPECT_EQ(blob.pending(), 0u);
  EXPECT_EQ(0, memcmp(blob.durable().data(), a.data(), a.size()));
  // With nothing outstanding it replies at once.
  int g = 1;
  d.DurableFlush([&](int r) { g = r; });
  EXPECT_EQ(g, 0);
}

}  // namespace
}  // namespace flurry
