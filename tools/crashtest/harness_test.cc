// SPDX-License-Identifier: Apache-2.0
// The in-process runner against engines that break their promise on
// purpose: it must catch every one of them, and pass the real write-through
// engine.
#include <gtest/gtest.h>

#include <random>

#include "epochs/engine.h"
#include "tools/crashtest/inproc.h"

namespace flurry::crashtest {
namespace {

// Acknowledges writes before the blob has them, in no order at all: loses
// acknowledged writes (write-through) and breaks prefix consistency.
class EarlyAckEngine : public Engine {
 public:
  EarlyAckEngine(const VolumeInfo& v, BlobIo* b) : blob_(b) {
    info_.size = v.size;
    info_.max_io = 1u << 20;
  }
  const BlockDeviceInfo& info() const override { return info_; }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override { blob_->Read(off, len, buf, done); }
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool, Done done) override {
    blob_->Write(off, len, buf, [](int) {});
    done(0);
  }
  void Flush(Done done) override { done(0); }
  void Trim(uint64_t, uint32_t, Done done) override { done(-EOPNOTSUPP); }
  void Zero(uint64_t, uint32_t, bool, bool, Done done) override { done(-EOPNOTSUPP); }
  void BlockStatus(uint64_t, uint32_t len, ExtentsDone done) override { done(0, {{len, 0}}); }
  void Quiesce(Done done) override { done(0); }
  std::string CountersText() const override { return ""; }

 private:
  BlockDeviceInfo info_;
  BlobIo* blob_;
};

// The real engine of the mode, except that recovery scribbles over one
// random sector of the disk.
class ScribblingEngine : public Engine {
 public:
  ScribblingEngine(std::unique_ptr<Engine> inner, BlobIo* b, uint64_t size, uint64_t seed)
      : in_(std::move(inner)), blob_(b), junk_(512) {
    std::mt19937_64 rng(seed);
    for (auto& x : junk_) x = static_cast<uint8_t>(rng() | 1);
    off_ = rng() % (size / 512) * 512;
  }
  const BlockDeviceInfo& info() const override { return in_->info(); }
  void Read(uint64_t o, uint32_t l, uint8_t* b, Done d) override { in_->Read(o, l, b, d); }
  void Write(uint64_t o, uint32_t l, const uint8_t* b, bool f, Done d) override { in_->Write(o, l, b, f, d); }
  void Flush(Done d) override { in_->Flush(d); }
  void Trim(uint64_t o, uint32_t l, Done d) override { in_->Trim(o, l, d); }
  void Zero(uint64_t o, uint32_t l, bool t, bool f, Done d) override { in_->Zero(o, l, t, f, d); }
  void BlockStatus(uint64_t o, uint32_t l, ExtentsDone d) override { in_->BlockStatus(o, l, d); }
  void Quiesce(Done d) override { in_->Quiesce(d); }
  std::string CountersText() const override { return in_->CountersText(); }
  void Open(Done done) override {
    in_->Open([this, done](int r) {
      if (r < 0) return done(r);
      blob_->Write(off_, 512, junk_.data(), done);
    });
  }

 private:
  std::unique_ptr<Engine> in_;
  BlobIo* blob_;
  std::vector<uint8_t> junk_;
  uint64_t off_;
};

InprocOptions Small(WriteMode m, uint64_t states) {
  InprocOptions o;
  o.mode = m;
  o.states = states;
  o.seed = 3;
  o.size = 1u << 20;
  o.max_actions = 300;
  o.wl.max_write = 64u << 10;
  o.wl.hot_bytes = 64u << 10;
  return o;
}

bool AnyMentions(const CrashStats& st, const std::string& what) {
  for (const auto& v : st.first_violations)
    if (v.find(what) != std::string::npos) return true;
  return false;
}

TEST(Harness, CatchesEarlyAcknowledgementInWriteThrough) {
  InprocOptions o = Small(WriteMode::kWriteThrough, 100);
  o.make_engine = [](const VolumeInfo& v, BlobIo* b, const EngineOptions&, Status*) {
    return Result<std::unique_ptr<Engine>>(std::unique_ptr<Engine>(new EarlyAckEngine(v, b)));
  };
  CrashStats st;
  std::string why;
  ASSERT_EQ(RunInproc(o, &st, &why), 0) << why;
  EXPECT_GT(st.violating, 0u);
  EXPECT_TRUE(AnyMentions(st, "is lost")) << st.Report();
}

TEST(Harness, CatchesBrokenPrefixInFastAck) {
  InprocOptions o = Small(WriteMode::kFastAck, 100);
  o.wl.fua_rate = 0;  // only the prefix rule can catch it then
  o.quiesce_rate = 0;
  o.wl.read_rate = 0;
  o.make_engine = [](const VolumeInfo& v, BlobIo* b, const EngineOptions&, Status*) {
    return Result<std::unique_ptr<Engine>>(std::unique_ptr<Engine>(new EarlyAckEngine(v, b)));
  };
  CrashStats st;
  std::string why;
  ASSERT_EQ(RunInproc(o, &st, &why), 0) << why;
  EXPECT_GT(st.prefix_failures, 0u) << st.Report();
}

TEST(Harness, CatchesGarbageLeftByRecovery) {
  InprocOptions o = Small(WriteMode::kWriteThrough, 20);
  uint64_t seed = 0;
  o.make_engine = [&seed](const VolumeInfo& v, BlobIo* b, const EngineOptions& eo, Status* why) {
    auto e = MakeEngine(v, b, eo, why);
    if (!e) return e;
    return Result<std::unique_ptr<Engine>>(
        std::unique_ptr<Engine>(new ScribblingEngine(std::move(*e), b, v.size, ++seed)));
  };
  CrashStats st;
  std::string why;
  ASSERT_EQ(RunInproc(o, &st, &why), 0) << why;
  EXPECT_EQ(st.violating, st.crashes) << "every recovery scribbled";
  EXPECT_TRUE(AnyMentions(st, "garbage")) << st.Report();
}

TEST(Harness, PassesTheRealWriteThroughEngine) {
  InprocOptions o = Small(WriteMode::kWriteThrough, 200);
  CrashStats st;
  std::string why;
  ASSERT_EQ(RunInproc(o, &st, &why), 0) << why;
  EXPECT_EQ(st.crashes, 200u);
  EXPECT_EQ(st.violating, 0u) << st.Report();
  EXPECT_GT(st.acked_writes, 1000u);
  EXPECT_GT(st.read_checks, 0u);
  EXPECT_EQ(st.idempotence_checks, 200u);
}

}  // namespace
}  // namespace flurry::crashtest
