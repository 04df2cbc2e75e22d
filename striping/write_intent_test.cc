// SPDX-License-Identifier: Apache-2.0
// WriteIntent: a tract's bit is durable before its write may go, clearing
// waits for idleness, a clearing in flight holds new writes back, and a
// failed persist fails the writes that needed it.
#include "striping/write_intent.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>

namespace flurry {
namespace {

// Persists are queued; the test completes them (in order) when it wants.
struct FakeStore {
  struct Pending {
    uint64_t chunk;
    std::vector<uint8_t> data;
    WriteIntent::Done done;
  };
  std::deque<Pending> q;
  std::vector<std::vector<uint8_t>> durable;  // what "replicas" hold, per chunk
  bool sync = false;                          // complete persists at once
  int fail_next = 0;                          // error for the next completion(s)

  WriteIntent::Persist fn() {
    return [this](uint64_t c, const uint8_t* d, WriteIntent::Done done) {
      q.push_back({c, std::vector<uint8_t>(d, d + WriteIntent::kChunk), std::move(done)});
      if (sync) CompleteAll();
    };
  }
  void CompleteOne() {
    Pending p = std::move(q.front());
    q.pop_front();
    int r = fail_next;
    if (r == 0) {
      if (durable.size() <= p.chunk) durable.resize(p.chunk + 1, std::vector<uint8_t>(WriteIntent::kChunk, 0));
      durable[p.chunk] = p.data;
    }
    p.done(r);
  }
  void CompleteAll() {
    while (!q.empty()) CompleteOne();
  }
  bool DurableBit(uint64_t t) const {
    uint64_t c = t / WriteIntent::kTractsPerChunk, i = t % WriteIntent::kTractsPerChunk;
    return c < durable.size() && (durable[c][i / 8] >> (i % 8) & 1);
  }
};

constexpr uint64_t kLinger = 1000;

TEST(WriteIntent, WriteWaitsForItsBitToBeDurable) {
  FakeStore st;
  WriteIntent wi(100000, kLinger, st.fn());
  uint64_t t[] = {5, 70000};  // two chunks
  int went = -1;
  wi.Acquire(t, 2, [&](int r) { went = r; });
  EXPECT_EQ(went, -1);
  ASSERT_EQ(st.q.size(), 2u);
  st.CompleteOne();
  EXPECT_EQ(went, -1) << "went before the second chunk's bit was durable";
  st.CompleteOne();
  EXPECT_EQ(went, 0);
  EXPECT_TRUE(st.DurableBit(5));
  EXPECT_TRUE(st.DurableBit(70000));
  // Hot now: the next write to the same tract goes at once, no persist.
  int again = -1;
  wi.Acquire(t, 1, [&](int r) { again = r; });
  EXPECT_EQ(again, 0);
  EXPECT_TRUE(st.q.empty());
}

TEST(WriteIntent, ClearsOnlyAfterIdleForTheLinger) {
  FakeStore st;
  st.sync = true;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t t = 3;
  wi.Acquire(&t, 1, [](int) {});
  wi.Sweep(10 * kLinger);
  EXPECT_TRUE(st.DurableBit(3)) << "cleared while a write was in flight";
  wi.Release(&t, 1, 100);
  wi.Sweep(100 + kLinger - 1);
  EXPECT_TRUE(st.DurableBit(3)) << "cleared before the linger passed";
  wi.Sweep(100 + kLinger);
  EXPECT_FALSE(st.DurableBit(3));
  EXPECT_EQ(wi.marked_tracts(), 0u);
  EXPECT_TRUE(wi.idle());
}

TEST(WriteIntent, WriteDuringClearingWaitsForTheBitToBeSetAgain) {
  FakeStore st;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t t = 9;
  wi.Acquire(&t, 1, [](int) {});
  st.CompleteAll();
  wi.Release(&t, 1, 0);
  wi.Sweep(kLinger);  // the clearing persist is now in flight
  ASSERT_EQ(st.q.size(), 1u);
  EXPECT_FALSE(wi.Ready(9));
  int went = -1;
  wi.Acquire(&t, 1, [&](int r) { went = r; });
  EXPECT_EQ(went, -1) << "a write went while its bit was being cleared";
  st.CompleteOne();  // the clear lands...
  EXPECT_FALSE(st.DurableBit(9));
  EXPECT_EQ(went, -1);
  ASSERT_EQ(st.q.size(), 1u) << "the bit is not being set again";
  st.CompleteOne();  // ...then the set
  EXPECT_TRUE(st.DurableBit(9));
  EXPECT_EQ(went, 0);
}

TEST(WriteIntent, FailedPersistFailsTheWritesThatNeededIt) {
  FakeStore st;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t a = 1, b = 2;
  int ra = -1, rb = -1;
  wi.Acquire(&a, 1, [&](int r) { ra = r; });
  wi.Acquire(&b, 1, [&](int r) { rb = r; });
  st.fail_next = -EIO;
  st.CompleteOne();  // the persist that carries bit 1 (and perhaps 2)
  EXPECT_EQ(ra, -EIO);
  st.fail_next = 0;
  st.CompleteAll();  // a retry, if b asked for one
  EXPECT_TRUE(rb == -EIO || rb == 0);
  wi.Release(&a, 1, 0);
  wi.Release(&b, 1, 0);
  // A new write to tract 1 tries again and succeeds.
  int again = -1;
  wi.Acquire(&a, 1, [&](int r) { again = r; });
  st.CompleteAll();
  EXPECT_EQ(again, 0);
  EXPECT_TRUE(st.DurableBit(1));
}

TEST(WriteIntent, FailedClearKeepsTheBitCountedAsUnset) {
  FakeStore st;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t t = 4;
  wi.Acquire(&t, 1, [](int) {});
  st.CompleteAll();
  wi.Release(&t, 1, 0);
  wi.Sweep(kLinger);
  st.fail_next = -EIO;
  st.CompleteOne();  // the clear failed: some replicas may have cleared it
  st.fail_next = 0;
  EXPECT_FALSE(wi.Ready(4));
  int went = -1;
  wi.Acquire(&t, 1, [&](int r) { went = r; });
  EXPECT_EQ(went, -1) << "went on a bit that may be cleared on a replica";
  st.CompleteAll();
  EXPECT_EQ(went, 0);
}

TEST(WriteIntent, LoadClearsRecoveredBitsLazilyAndKeepsHotOnes) {
  FakeStore st;
  st.sync = true;
  WriteIntent wi(64, kLinger, st.fn());
  std::vector<uint8_t> image(WriteIntent::kChunk, 0);
  image[0] = 0x0f;  // tracts 0..3 were marked at the crash
  wi.Load(image);
  for (uint64_t t = 0; t < 4; ++t) EXPECT_FALSE(st.DurableBit(t));
  EXPECT_TRUE(wi.idle());
}

TEST(WriteIntent, SuspectTractIsNeverClearedUntilResolved) {
  FakeStore st;
  st.sync = true;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t t = 6;
  wi.Acquire(&t, 1, [](int) {});
  wi.Suspect(6);  // the write failed on some replica
  wi.Release(&t, 1, 0);
  wi.Sweep(100 * kLinger);
  EXPECT_TRUE(st.DurableBit(6)) << "a suspect tract's bit was cleared";
  EXPECT_TRUE(wi.suspect(6));
  wi.Resolved(6);  // resynced
  wi.Sweep(200 * kLinger);
  EXPECT_FALSE(st.DurableBit(6));
  // Suspect on a cold tract sets its bit.
  wi.Suspect(7);
  EXPECT_TRUE(st.DurableBit(7));
}

TEST(WriteIntent, LoadRewritesEveryChunkOnceAndKeepsSuspects) {
  FakeStore st;
  WriteIntent wi(100000, kLinger, st.fn());  // 4 chunks
  std::vector<uint8_t> image(wi.nchunks() * WriteIntent::kChunk, 0);
  image[1] = 0x01;  // tract 8 marked at the crash, could not be compared
  wi.Suspect(8);
  st.CompleteAll();
  wi.Load(image);
  // Every chunk is written once (other replicas may hold stale set bits),
  // and the suspect's bit stays.
  EXPECT_EQ(st.q.size(), wi.nchunks());
  st.CompleteAll();
  EXPECT_TRUE(st.DurableBit(8));
  EXPECT_TRUE(wi.idle());
  EXPECT_TRUE(wi.Ready(8));
}

TEST(WriteIntent, PrewarmedTractsRideAlongAndAreClearedWhenIdle) {
  FakeStore st;
  WriteIntent wi(64, kLinger, st.fn());
  uint64_t warm[] = {10, 11, 12, 13};
  wi.Prewarm(warm, 4, 0);
  uint64_t t = 10;
  int went = -1;
  wi.Acquire(&t, 1, [&](int r) { went = r; });
  ASSERT_EQ(st.q.size(), 1u) << "one persist for the written tract and its neighbours";
  st.CompleteAll();
  EXPECT_EQ(went, 0);
  for (uint64_t u : warm) EXPECT_TRUE(wi.Ready(u));
  // A neighbour's first write goes at once.
  uint64_t n = 12;
  int went2 = -1;
  wi.Acquire(&n, 1, [&](int r) { went2 = r; });
  EXPECT_EQ(went2, 0);
  EXPECT_TRUE(st.q.empty());
  wi.Release(&t, 1, 5);
  wi.Release(&n, 1, 5);
  wi.Sweep(5 + kLinger);
  st.CompleteAll();
  for (uint64_t u : warm) EXPECT_FALSE(st.DurableBit(u)) << u;
  EXPECT_EQ(wi.marked_tracts(), 0u);
}

TEST(WriteIntent, OutOfRangeTractIsRefused) {
  FakeStore st;
  WriteIntent wi(10, kLinger, st.fn());
  uint64_t t = 10;
  int r = 0;
  wi.Acquire(&t, 1, [&](int res) { r = res; });
  EXPECT_EQ(r, -EINVAL);
  wi.Release(&t, 1, 0);  // harmless
  EXPECT_EQ(wi.marked_tracts(), 0u);
}

}  // namespace
}  // namespace flurry
