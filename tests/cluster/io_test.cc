// SPDX-License-Identifier: Apache-2.0
//
// Random IO against a real cluster (flurry-meta + 4 tract servers) through
// FdsClient, checked byte for byte against an in-memory model, at R=1 and
// R=2; trims read back as zeros and StatTract bitmaps match the model.
#include <gtest/gtest.h>

#include <numeric>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/volume_io.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

constexpr uint32_t kTract = 256u << 10;
constexpr uint64_t kHeartbeatMs = 10000;  // no failure detection needed here

class RandomIo : public ClusterTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(RandomIo, MatchesModel) {
  const uint32_t replicas = GetParam();
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, kHeartbeatMs));
  const uint64_t size = 32ull << 20;  // 128 tracts
  VolumeInfo v = CreateVolume("vol", size, kTract, replicas);
  ASSERT_EQ(v.replicas, replicas);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);

  WorkloadOptions o;
  o.ops = 3000;
  o.qd = 16;
  o.seed = 1000 + replicas;
  Workload w(loop_.get(), c, Blob(v), size, o);
  EXPECT_TRUE(w.Run());
  EXPECT_TRUE(w.VerifyAll());
  const auto& s = w.stats();
  printf("R=%u: %s\n", replicas, w.Summary().c_str());
  for (const auto& e : w.errors()) ADD_FAILURE() << e;
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.read_mismatches, 0u);
  EXPECT_EQ(s.bitmap_mismatches, 0u);
  // The workload really covered the ground it claims to.
  EXPECT_GT(s.writes, 1000u);
  EXPECT_GT(s.trims, 100u);
  EXPECT_GT(s.bytes_checked, 2 * size);
  EXPECT_GT(s.bitmap_bits_checked, size / 4096);
  EXPECT_EQ(c->stats().failed_ops, 0u);
}

INSTANTIATE_TEST_SUITE_P(Replicas, RandomIo, ::testing::Values(1u, 2u),
                         [](const auto& info) { return "R" + std::to_string(info.param); });

// Many tracts per server, more than it keeps open (--max-open-tracts 16),
// so tracts are evicted and reopened from their meta files while IO
// continues.
TEST_F(ClusterTest, ManyTractsAreEvictedAndReopened) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, kHeartbeatMs, {"--max-open-tracts", "16"}));
  const uint32_t tract = 64u << 10;
  const uint64_t size = 16ull << 20;  // 256 tracts, ~128 per server at R=2
  VolumeInfo v = CreateVolume("many", size, tract, 2);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  WorkloadOptions o;
  o.ops = 1500;
  o.qd = 32;
  o.write_pct = 60;
  o.max_len = 128u << 10;
  o.seed = 5;
  Workload w(loop_.get(), c, Blob(v), size, o);
  EXPECT_TRUE(w.Run());
  EXPECT_TRUE(w.VerifyAll());
  printf("%s\n", w.Summary().c_str());
  for (const auto& e : w.errors()) ADD_FAILURE() << e;
  EXPECT_EQ(w.stats().failed, 0u);
  EXPECT_EQ(w.stats().read_mismatches, 0u);
  EXPECT_EQ(w.stats().bitmap_mismatches, 0u);
}

// A small deterministic case with readable failure messages: trimmed
// ranges read as zeros, whole chunks are freed, partial ones stay allocated.
TEST_F(ClusterTest, TrimReadsZeroAndFreesWholeChunks) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, kHeartbeatMs));
  VolumeInfo v = CreateVolume("trim", 4 * kTract, kTract, 2);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  VolumeIo io(c, Blob(v));
  const uint64_t off = kTract - 100 * 1024;  // spans tracts 0 and 1
  const uint32_t len = 200 * 1024;
  std::vector<uint8_t> buf(len);
  std::iota(buf.begin(), buf.end(), uint8_t{1});
  int res = 1;
  io.Write(off, len, buf.data(), [&](int r) { res = r; });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 30000));
  ASSERT_EQ(res, 0);

  // Trim [off + 1000, off + 1000 + 150 KiB): partial chunks at both ends.
  const uint64_t toff = off + 1000;
  const uint32_t tlen = 150 * 1024;
  res = 1;
  io.Zero(toff, tlen, false, [&](int r) { res = r; });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 30000));
  ASSERT_EQ(res, 0);

  std::vector<uint8_t> got(len, 0xee);
  std::vector<uint8_t> bitmap;
  res = 1;
  io.Read(off, len, got.data(), [&](int r, std::vector<uint8_t> bm) {
    res = r;
    bitmap = std::move(bm);
  });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 30000));
  ASSERT_EQ(res, 0);
  for (uint64_t i = 0; i < len; ++i) {
    uint64_t x = off + i;
    uint8_t want = (x >= toff && x < toff + tlen) ? 0 : buf[i];
    ASSERT_EQ(got[i], want) << "byte " << x;
  }
  ASSERT_EQ(bitmap.size(), (off + len + 4095) / 4096 - off / 4096);
  for (size_t k = 0; k < bitmap.size(); ++k) {
    uint64_t c0 = (off / 4096 + k) * 4096;
    bool whole = c0 >= toff && c0 + 4096 <= toff + tlen;
    EXPECT_EQ(bitmap[k], whole ? 0 : 1) << "chunk at " << c0;
  }
  // StatTract agrees: tract 0 holds chunks from off/4096 up to its end.
  res = 1;
  std::vector<uint8_t> st;
  c->StatTract(Blob(v), 0, [&](int r, std::vector<uint8_t> bm) {
    res = r;
    st = std::move(bm);
  });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 30000));
  ASSERT_EQ(res, 0);
  ASSERT_EQ(st.size(), kTract / 4096 / 8);
  for (uint32_t i = 0; i < kTract / 4096; ++i) {
    uint64_t c0 = uint64_t{i} * 4096;
    bool written = c0 + 4096 > off;
    bool whole = c0 >= toff && c0 + 4096 <= toff + tlen;
    EXPECT_EQ((st[i / 8] >> (i % 8)) & 1, (written && !whole) ? 1 : 0) << "tract 0 chunk " << i;
  }
}

}  // namespace
}  // namespace flurry::testing
