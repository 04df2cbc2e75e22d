// SPDX-License-Identifier: Apache-2.0
// The checker against hand-made histories: it must accept what each
// invariant allows and flag planted violations (a missing acknowledged
// write, a sector from a future epoch, garbage, data at the wrong place).
#include <gtest/gtest.h>

#include <vector>

#include "tools/crashtest/checker.h"
#include "tools/crashtest/stamp.h"

namespace flurry::crashtest {
namespace {

// A history over `sectors` sectors; Add() appends a write with the next id
// (ids start at 100), acknowledged unless told otherwise.
struct H {
  History h;
  uint64_t next = 100, acks = 0;
  explicit H(uint64_t sectors) { h.baseline.assign(sectors, kZero); }
  uint64_t Add(uint64_t sector, uint32_t count, int64_t epoch, WriteState st = WriteState::kAcked,
               bool fua = false) {
    WriteRec w;
    w.id = next++;
    w.sector = sector;
    w.sectors = count;
    w.epoch = epoch;
    w.fua = fua;
    w.state = st;
    w.sent_ack_seq = acks;
    if (st == WriteState::kAcked) w.ack_seq = ++acks;
    h.writes.push_back(w);
    h.flushes_acked = epoch;
    return w.id;
  }
};

bool Mentions(const CheckResult& r, const std::string& what) {
  for (const auto& d : r.details)
    if (d.find(what) != std::string::npos) return true;
  return false;
}

TEST(Stamp, RoundTripsAndRejectsDamage) {
  std::vector<uint8_t> buf(4 * kSector);
  StampSectors(7, 42, 10, 4, buf.data());
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(DecodeSector(7, 10 + i, buf.data() + i * kSector), 42u);
  EXPECT_EQ(DecodeSector(7, 11, buf.data()), kGarbage) << "a sector at the wrong place";
  EXPECT_EQ(DecodeSector(8, 10, buf.data()), kGarbage) << "another run's data";
  buf[100] ^= 1;
  EXPECT_EQ(DecodeSector(7, 10, buf.data()), kGarbage) << "a flipped bit";
  std::vector<uint8_t> zero(kSector, 0);
  EXPECT_EQ(DecodeSector(7, 3, zero.data()), kZero);
  // A torn sector: the first half of one write, the second of another.
  std::vector<uint8_t> a(kSector), b(kSector);
  StampSectors(7, 1, 5, 1, a.data());
  StampSectors(7, 2, 5, 1, b.data());
  memcpy(a.data() + 256, b.data() + 256, 256);
  EXPECT_EQ(DecodeSector(7, 5, a.data()), kGarbage);
}

TEST(CheckerWriteThrough, AcceptsAckedAndEitherStateOfUnacked) {
  H t(8);
  uint64_t a = t.Add(0, 4, 0);
  uint64_t b = t.Add(2, 4, 0);
  uint64_t c = t.Add(0, 1, 1, WriteState::kInFlight);
  std::vector<uint64_t> seen = {a, a, b, b, b, b, kZero, kZero};
  CheckResult r = Check(t.h, seen, Invariant::kWriteThrough);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.bytes_lost, 0u);
  EXPECT_EQ(r.epochs_lost, 0);
  seen[0] = c;  // the in-flight write landed
  EXPECT_TRUE(Check(t.h, seen, Invariant::kWriteThrough).ok);
}

TEST(CheckerWriteThrough, FlagsMissingAcknowledgedWrite) {
  H t(8);
  uint64_t a = t.Add(0, 4, 0);
  t.Add(2, 4, 0);
  std::vector<uint64_t> seen = {a, a, a, a, kZero, kZero, kZero, kZero};  // b lost
  CheckResult r = Check(t.h, seen, Invariant::kWriteThrough);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_sectors, 4u);
  EXPECT_EQ(r.bytes_lost, 4u * kSector);
  EXPECT_TRUE(Mentions(r, "is lost")) << r.details[0];
}

TEST(CheckerWriteThrough, FlagsFailedWriteOnlyIfNeitherOldNorNew) {
  H t(2);
  uint64_t a = t.Add(0, 2, 0);
  uint64_t f = t.Add(0, 2, 0, WriteState::kFailed);
  EXPECT_TRUE(Check(t.h, {a, f}, Invariant::kWriteThrough).ok);
  EXPECT_FALSE(Check(t.h, {kZero, f}, Invariant::kWriteThrough).ok) << "a (acked) vanished under a failed write";
}

TEST(Checker, FlagsGarbageInEveryMode) {
  H t(4);
  uint64_t a = t.Add(0, 4, 0);
  std::vector<uint64_t> seen = {a, a, kGarbage, a};
  for (Invariant inv : {Invariant::kWriteThrough, Invariant::kPrefix}) {
    CheckResult r = Check(t.h, seen, inv);
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(Mentions(r, "garbage"));
  }
  // Garbage where nothing was ever written, too.
  H u(2);
  EXPECT_FALSE(Check(u.h, {kZero, kGarbage}, Invariant::kPrefix).ok);
}

TEST(Checker, FlagsDataOfAWriteThatNeverTouchedTheSector) {
  H t(4);
  uint64_t a = t.Add(0, 2, 0);
  t.Add(2, 2, 0);
  CheckResult r = Check(t.h, {a, a, a, kZero}, Invariant::kPrefix);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(Mentions(r, "never wrote this sector"));
}

TEST(Checker, BaselineMustSurviveUnlessOverwritten) {
  H t(3);
  t.h.baseline = {7, 8, 9};  // ids of an earlier generation
  uint64_t a = t.Add(1, 1, 0, WriteState::kInFlight);
  EXPECT_TRUE(Check(t.h, {7, 8, 9}, Invariant::kWriteThrough).ok);
  EXPECT_TRUE(Check(t.h, {7, a, 9}, Invariant::kWriteThrough).ok);
  EXPECT_FALSE(Check(t.h, {kZero, 8, 9}, Invariant::kPrefix).ok) << "old data vanished";
  EXPECT_FALSE(Check(t.h, {8, 8, 9}, Invariant::kPrefix).ok) << "another old sector's data";
}

TEST(CheckerPrefix, AcceptsADurablePrefixAndMeasuresTheLoss) {
  H t(4);
  uint64_t a = t.Add(0, 1, 0);
  uint64_t b = t.Add(1, 1, 1);
  t.Add(3, 1, 1);
  t.Add(2, 1, 2);
  // Epoch 0 durable, some of epoch 1, nothing of epoch 2.
  CheckResult r = Check(t.h, {a, b, kZero, kZero}, Invariant::kPrefix);
  EXPECT_TRUE(r.ok) << (r.details.empty() ? "" : r.details[0]);
  EXPECT_EQ(r.r, 0);
  EXPECT_EQ(r.durable_epoch, 0);
  EXPECT_EQ(r.last_acked_epoch, 2);
  EXPECT_EQ(r.epochs_lost, 2);
  EXPECT_EQ(r.bytes_lost, 2u * kSector);
  // Nothing at all survived: still a prefix (R = -1).
  r = Check(t.h, {kZero, kZero, kZero, kZero}, Invariant::kPrefix);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.r, -1);
  EXPECT_EQ(r.epochs_lost, 3);
  // But write-through does not allow it.
  EXPECT_FALSE(Check(t.h, {a, b, kZero, kZero}, Invariant::kWriteThrough).ok);
}

TEST(CheckerPrefix, FlagsASectorFromAFutureEpoch) {
  H t(3);
  uint64_t a = t.Add(0, 1, 0);
  t.Add(1, 1, 1);
  uint64_t c = t.Add(2, 1, 2);
  // c (epoch 2) survived although b (epoch 1) did not: no R fits.
  CheckResult r = Check(t.h, {a, kZero, c}, Invariant::kPrefix);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.prefix_consistent);
  EXPECT_TRUE(Mentions(r, "no durable prefix fits"));
  // Write-through does not ask for a prefix, only for acknowledged writes:
  // b is missing, so it fails there too, but for the lost write.
  EXPECT_FALSE(Check(t.h, {a, kZero, c}, Invariant::kWriteThrough).ok);
}

TEST(CheckerPrefix, FlagsAnOlderWriteUnderANewerEpoch) {
  // Sector 0 is written in epochs 0, 1 and 2. Seeing epoch 0's data there
  // while epoch 2's write elsewhere survived means epoch 1 was lost.
  H t(2);
  t.Add(0, 1, 0);
  uint64_t a0 = t.h.writes.back().id;
  t.Add(0, 1, 1);
  uint64_t z = t.Add(1, 1, 2);
  t.Add(0, 1, 2);
  EXPECT_FALSE(Check(t.h, {a0, z}, Invariant::kPrefix).ok);
  EXPECT_TRUE(Check(t.h, {a0, kZero}, Invariant::kPrefix).ok);
}

TEST(CheckerPrefix, AllowsAnyWriteOfEpochRPlusOne) {
  // Within epoch 1, the sector may hold either of its writes (or epoch 0's).
  H t(1);
  uint64_t a = t.Add(0, 1, 0);
  uint64_t b1 = t.Add(0, 1, 1);
  uint64_t b2 = t.Add(0, 1, 1);
  for (uint64_t v : {a, b1, b2}) EXPECT_TRUE(Check(t.h, {v}, Invariant::kPrefix).ok) << v;
}

TEST(CheckerPrefix, FuaAcknowledgedWritesMustSurvive) {
  H t(3);
  t.Add(0, 1, 0);
  uint64_t f = t.Add(1, 1, 0, WriteState::kAcked, /*fua=*/true);
  t.h.protect_ack_seq = t.h.writes.back().sent_ack_seq;  // what Workload does on the FUA reply
  t.Add(2, 1, 1);
  // Nothing survived: a prefix (R = -1), but the FUA write and the write
  // acknowledged before it were promised durable.
  CheckResult r = Check(t.h, {kZero, kZero, kZero}, Invariant::kPrefix);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_sectors, 2u);
  EXPECT_TRUE(Mentions(r, "promised durable"));
  uint64_t a = t.h.writes[0].id;
  EXPECT_TRUE(Check(t.h, {a, f, kZero}, Invariant::kPrefix).ok);
}

TEST(Checker, TrimsAndZeroesReadBackAsZeros) {
  H t(2);
  uint64_t a = t.Add(0, 2, 0);
  t.Add(0, 1, 0);
  t.h.writes.back().kind = WriteKind::kTrim;
  EXPECT_TRUE(Check(t.h, {kZero, a}, Invariant::kWriteThrough).ok);
  CheckResult r = Check(t.h, {a, a}, Invariant::kWriteThrough);
  EXPECT_FALSE(r.ok) << "the acknowledged trim is lost";
  EXPECT_TRUE(Mentions(r, "trim #"));
}

TEST(CheckerPrefix, ZerosMayBeTheBaselineOrAZeroWrite) {
  // Sector 0: zeros at first, written (epoch 0), zeroed (epoch 1). Zeros
  // there fit R = -1 (nothing) or R >= 1 (the zero landed), not R = 0.
  H t(2);
  t.Add(0, 1, 0);
  t.Add(0, 1, 1);
  t.h.writes.back().kind = WriteKind::kZero;
  uint64_t b = t.Add(1, 1, 1);
  uint64_t c = t.Add(1, 1, 2);
  EXPECT_TRUE(Check(t.h, {kZero, kZero}, Invariant::kPrefix).ok);  // R = -1
  EXPECT_TRUE(Check(t.h, {kZero, b}, Invariant::kPrefix).ok);      // R = 0 or 1: the zero of epoch 1 landed
  CheckResult r = Check(t.h, {kZero, c}, Invariant::kPrefix);      // R >= 1
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.r, 2);
  uint64_t a = t.h.writes[0].id;
  EXPECT_FALSE(Check(t.h, {a, c}, Invariant::kPrefix).ok) << "epoch 1's zero is missing under epoch 2's write";
}

TEST(Checker, SizeMismatchIsAViolation) {
  H t(4);
  EXPECT_FALSE(Check(t.h, {kZero}, Invariant::kPrefix).ok);
}

}  // namespace
}  // namespace flurry::crashtest
