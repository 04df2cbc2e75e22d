// SPDX-License-Identifier: Apache-2.0
#include "striping/striping.h"

#include <random>
#include <set>
#include <utility>

#include <gtest/gtest.h>

namespace flurry {
namespace {

StripeMap Make(uint64_t volume, uint64_t tract, uint32_t s, uint32_t b) {
  auto m = StripeMap::Create({volume, tract, s, b});
  EXPECT_TRUE(m.ok()) << StripeMap::Check({volume, tract, s, b}).ToString();
  return std::move(m).value();
}

// Small layouts that exercise full segments, a partial last segment, a
// partial last unit and S = 1.
std::vector<StripeParams> SmallLayouts() {
  std::vector<StripeParams> out;
  for (uint64_t tract : {4096u, 16384u})
    for (uint32_t s : {1u, 2u, 3u, 5u, 8u})
      for (uint32_t b : {512u, 1024u, 4096u})
        for (uint64_t segs_x4 : {1u, 4u, 7u, 10u}) {  // volume = segs_x4/4 segments (+ 512)
          uint64_t vol = s * tract * segs_x4 / 4;
          out.push_back({vol, tract, s, b});
          out.push_back({vol + 512, tract, s, b});
        }
  return out;
}

std::string Describe(const StripeParams& p) {
  return "volume=" + std::to_string(p.volume_size) + " tract=" + std::to_string(p.tract_size) +
         " S=" + std::to_string(p.segment_tracts) + " B=" + std::to_string(p.stripe_unit);
}

TEST(StripeMap, BijectionAt512Granularity) {
  for (const StripeParams& p : SmallLayouts()) {
    SCOPED_TRACE(Describe(p));
    StripeMap m = Make(p.volume_size, p.tract_size, p.segment_tracts, p.stripe_unit);
    std::set<std::pair<uint64_t, uint64_t>> seen;
    for (uint64_t v = 0; v < p.volume_size; v += 512) {
      auto a = m.ToTract(v);
      ASSERT_TRUE(a.ok());
      ASSERT_LT(a->tract, m.num_tracts());
      ASSERT_LT(a->tract_off, m.tract_used_bytes(a->tract));
      ASSERT_TRUE(seen.insert({a->tract, a->tract_off}).second) << "v=" << v;
      auto back = m.ToVirtual(a->tract, a->tract_off);
      ASSERT_TRUE(back.ok());
      ASSERT_EQ(*back, v);
    }
    // Reverse direction: every used tract byte maps into the volume, every
    // unused one does not.
    uint64_t used_total = 0;
    for (uint64_t t = 0; t < m.num_tracts(); ++t) {
      uint64_t used = m.tract_used_bytes(t);
      ASSERT_GT(used, 0u);
      used_total += used;
      for (uint64_t o = 0; o < p.tract_size; o += 512) {
        auto v = m.ToVirtual(t, o);
        ASSERT_EQ(v.ok(), o < used) << "t=" << t << " o=" << o;
        if (v.ok()) {
          ASSERT_TRUE(seen.count({t, o}));
        }
      }
    }
    EXPECT_EQ(used_total, p.volume_size);
    EXPECT_EQ(m.tract_used_bytes(m.num_tracts()), 0u);
    EXPECT_FALSE(m.ToVirtual(m.num_tracts(), 0).ok());
    EXPECT_FALSE(m.ToVirtual(0, p.tract_size).ok());
    EXPECT_FALSE(m.ToTract(p.volume_size).ok());
  }
}

TEST(StripeMap, DesignFormula) {
  // Unit u of segment g lands in tract g*S + u mod S at (u div S)*B.
  const uint64_t t = 1 << 16;
  const uint32_t s = 4, b = 4096;
  StripeMap m = Make(3 * s * t, t, s, b);
  for (uint64_t g = 0; g < 3; ++g)
    for (uint64_t u = 0; u < s * t / b; ++u) {
      uint64_t v = g * s * t + u * b + 17;
      auto a = m.ToTract(v);
      ASSERT_TRUE(a.ok());
      EXPECT_EQ(a->tract, g * s + u % s);
      EXPECT_EQ(a->tract_off, (u / s) * b + 17);
    }
}

TEST(StripeMap, PiecesCoverRangeInOrder) {
  std::mt19937_64 rng(42);
  for (const StripeParams& p : SmallLayouts()) {
    SCOPED_TRACE(Describe(p));
    StripeMap m = Make(p.volume_size, p.tract_size, p.segment_tracts, p.stripe_unit);
    for (int i = 0; i < 50; ++i) {
      uint64_t off = rng() % p.volume_size;
      uint64_t len = 1 + rng() % (p.volume_size - off);
      auto pieces = m.Map(off, len);
      ASSERT_TRUE(pieces.ok());
      uint64_t pos = 0;
      for (const StripePiece& pc : *pieces) {
        ASSERT_EQ(pc.buf_off, pos);
        ASSERT_GT(pc.length, 0u);
        // Inside one stripe unit.
        ASSERT_EQ(pc.tract_off / p.stripe_unit, (pc.tract_off + pc.length - 1) / p.stripe_unit);
        // First and last byte agree with the byte map.
        auto first = m.ToTract(off + pos);
        auto last = m.ToTract(off + pos + pc.length - 1);
        ASSERT_TRUE(first.ok() && last.ok());
        ASSERT_EQ(*first, (TractAddress{pc.tract, pc.tract_off}));
        ASSERT_EQ(*last, (TractAddress{pc.tract, pc.tract_off + pc.length - 1}));
        pos += pc.length;
      }
      ASSERT_EQ(pos, len);
      // Runs are the coalesced pieces.
      std::vector<StripePiece> runs;
      ASSERT_EQ(m.ForEachRun(off, len, [&](const StripePiece& r) { runs.push_back(r); }), 0);
      ASSERT_EQ(runs, StripeMap::Coalesce(*pieces));
    }
  }
}

TEST(StripeMap, SequentialRangeSpreadsOverMinSK) {
  const uint64_t t = 1 << 20;
  const uint32_t b = 64 << 10;
  for (uint32_t s : {1u, 2u, 8u, 16u}) {
    StripeMap m = Make(2ull * s * t, t, s, b);
    for (uint64_t k : {1u, 2u, 3u, 8u, 16u, 17u, 40u}) {
      if (k * b > s * t) continue;
      for (uint64_t start_unit : {uint64_t{0}, uint64_t{s} * t / b}) {  // segment 0 and 1
        auto pieces = m.Map(start_unit * b, k * b);
        ASSERT_TRUE(pieces.ok());
        std::set<uint64_t> tracts;
        for (const StripePiece& pc : *pieces) tracts.insert(pc.tract);
        EXPECT_EQ(tracts.size(), std::min<uint64_t>(s, k)) << "S=" << s << " k=" << k;
        EXPECT_EQ(pieces->size(), k);
      }
    }
  }
}

TEST(StripeMap, OneTractSegmentIsLinear) {
  const uint64_t t = 16384;
  StripeMap m = Make(5 * t + 1000, t, 1, 4096);
  EXPECT_EQ(m.num_tracts(), 6u);
  for (uint64_t v = 0; v < m.volume_size(); v += 333) {
    auto a = m.ToTract(v);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, (TractAddress{v / t, v % t}));
  }
  // Runs end only at tract boundaries.
  std::vector<StripePiece> runs;
  ASSERT_EQ(m.ForEachRun(100, 3 * t, [&](const StripePiece& r) { runs.push_back(r); }), 0);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0], (StripePiece{0, 100, t - 100, 0}));
  EXPECT_EQ(runs[1], (StripePiece{1, 0, t, t - 100}));
  EXPECT_EQ(runs[2], (StripePiece{2, 0, t, 2 * t - 100}));
  EXPECT_EQ(runs[3], (StripePiece{3, 0, 100, 3 * t - 100}));
}

TEST(StripeMap, PartialLastSegment) {
  // 2.5 units into the second segment, S = 4: only 3 tracts of it exist.
  const uint64_t t = 8192;
  const uint32_t s = 4, b = 1024;
  StripeMap m = Make(s * t + 2 * b + b / 2, t, s, b);
  EXPECT_EQ(m.num_tracts(), s + 3u);
  EXPECT_EQ(m.tract_used_bytes(s + 0), b);
  EXPECT_EQ(m.tract_used_bytes(s + 1), b);
  EXPECT_EQ(m.tract_used_bytes(s + 2), b / 2);
  // The layout of that segment is the same as in a larger volume.
  StripeMap big = Make(4 * s * t, t, s, b);
  for (uint64_t v = s * t; v < m.volume_size(); v += 512) EXPECT_EQ(*m.ToTract(v), *big.ToTract(v));
}

TEST(StripeMap, RejectsBadParameters) {
  struct Case {
    StripeParams p;
    const char* word;  // expected in the message
  } cases[] = {
      {{0, 4096, 1, 4096}, "volume size"},
      {{1 << 20, 3000, 1, 512}, "tract size"},
      {{1 << 20, 0, 1, 512}, "tract size"},
      {{1 << 20, 4096, 0, 512}, "segment tracts"},
      {{1 << 20, 4096, StripeMap::kMaxSegmentTracts + 1, 512}, "segment tracts"},
      {{1 << 20, 4096, 1, 256}, "stripe unit"},
      {{1 << 20, 4096, 1, 1536}, "stripe unit"},
      {{1 << 20, 4096, 1, 8192}, "larger than the tract size"},
      {{~0ull, 1ull << 62, 8, 4096}, "overflows"},
      {{~0ull, 1ull << 40, 1 << 20, 4096}, "overflows"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(Describe(c.p));
    Status st = StripeMap::Check(c.p);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), -EINVAL);
    EXPECT_NE(st.message().find(c.word), std::string::npos) << st.message();
    auto m = StripeMap::Create(c.p);
    EXPECT_FALSE(m.ok());
    EXPECT_EQ(m.err(), -EINVAL);
  }
  EXPECT_TRUE(StripeMap::Check({1 << 20, 4096, 1, 512}).ok());
}

TEST(StripeMap, RejectsRangesOutsideVolume) {
  StripeMap m = Make(1 << 20, 1 << 16, 4, 4096);
  EXPECT_EQ(m.Map(0, 0).err(), -EINVAL);
  EXPECT_EQ(m.Map(1 << 20, 1).err(), -EINVAL);
  EXPECT_EQ(m.Map((1 << 20) - 10, 11).err(), -EINVAL);
  EXPECT_EQ(m.Map(5, ~0ull).err(), -EINVAL);  // off + len overflows
  int calls = 0;
  EXPECT_EQ(m.ForEachPiece(1 << 20, 1, [&](const StripePiece&) { ++calls; }), -EINVAL);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(m.Map((1 << 20) - 10, 10).ok());
}

TEST(StripeMap, CoalesceMergesOnlyContiguousInTractAndBuffer) {
  std::vector<StripePiece> in = {
      {3, 0, 512, 0}, {3, 512, 512, 512},  // merge
      {4, 0, 512, 1024},                   // other tract
      {4, 1024, 512, 1536},                // gap in tract
      {4, 1536, 512, 4096},                // gap in buffer
  };
  std::vector<StripePiece> want = {
      {3, 0, 1024, 0}, {4, 0, 512, 1024}, {4, 1024, 512, 1536}, {4, 1536, 512, 4096}};
  EXPECT_EQ(StripeMap::Coalesce(in), want);
  EXPECT_TRUE(StripeMap::Coalesce({}).empty());
}

}  // namespace
}  // namespace flurry
