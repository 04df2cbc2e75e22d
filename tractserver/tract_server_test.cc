// SPDX-License-Identifier: Apache-2.0
//
// TractServer in this process (its loop on a thread of its own), driven
// over loopback TCP by RawTractConn; flurry-meta's reports are fed to it by
// hand, as main.cc's heartbeat thread would.
#include "tractserver/server.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "common/net.h"
#include "tests/cluster/raw_tract_conn.h"
#include "tractserver/tract.h"

namespace flurry {
namespace {

using testing::RawTractConn;
constexpr uint32_t kTract = 1u << 20, kC = 4096;
constexpr uint64_t kHi = 0x1111, kLo = 0x2222;

class TractServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flurry-ts-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::promise<uint16_t> port;
    auto got = port.get_future();
    // Everything of the server lives on the loop thread.
    thread_ = std::thread([this, &port] {
      auto loop = Loop::Create(256, /*single_thread=*/true);
      auto store = loop ? tractstore::TractStore::Open(loop->get(), {dir_, 64, 1u << 20})
                        : Result<std::unique_ptr<tractstore::TractStore>>::error(loop.err());
      auto lfd = ListenTcp(*ParseHostPort("127.0.0.1:0", true));
      if (!loop || !store || !lfd) return port.set_value(0);
      loop_ = loop->get();
      server_ = std::make_unique<TractServer>(loop_, store->get(), TractServer::Options{});
      server_->RequireMetaGens();
      server_->Start(*lfd);
      port.set_value(BoundPort(*lfd).value());
      loop_->Run();
      server_.reset();
      (*store)->Close();
      store->reset();
      loop->reset();
    });
    uint16_t p = got.get();
    ASSERT_NE(p, 0) << "the server did not start";
    addr_ = "127.0.0.1:" + std::to_string(p);
  }
  void TearDown() override {
    if (loop_) {
      OnLoop([this] {
        server_->Shutdown();
        loop_->Stop();
      });
    }
    if (thread_.joinable()) thread_.join();
    std::filesystem::remove_all(dir_);
  }
  // Runs fn on the loop thread and waits for it.
  template <typename F>
  void OnLoop(F fn) {
    std::promise<void> done;
    loop_->PostFromAnyThread([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
  void Report(bool full, std::vector<TractServer::MetaGen> gens, uint64_t tlt) {
    OnLoop([&] { server_->ApplyMetaGens(full, gens, tlt); });
  }
  TractServer::Counters Counters() {
    TractServer::Counters c;
    OnLoop([&] { c = server_->counters(); });
    return c;
  }
  tractproto::RequestHeader Write(uint64_t gen, uint64_t tlt, const std::vector<uint8_t>& d) {
    auto h = RawTractConn::Header(tractproto::kOpWrite, kHi, kLo, 0, kTract, 0, kC, d.data(), kC);
    h.writer_gen = gen;
    h.tlt_version = tlt;
    tractproto::SealHeader(&h);
    return h;
  }

  std::string dir_, addr_;
  std::thread thread_;
  Loop* loop_ = nullptr;
  std::unique_ptr<TractServer> server_;
};

// A server given a dead server's rows may not have heard of a grant made
// before that TLT, so a writer it superseded would pass. It holds writes of
// a TLT newer than its last report from meta until a report at least that
// new (which carries every generation granted before it) is applied, and
// then judges them; with no such report in 2 s it answers -EAGAIN.
TEST_F(TractServerTest, WritesOfANewerTltWaitForMetasReportOfIt) {
  std::vector<uint8_t> d(kC, 0x5a);
  RawTractConn c;
  ASSERT_EQ(c.Connect(addr_), 0);
  Report(true, {}, 5);
  auto r = c.Call(Write(1, 5, d), d.data(), kC);
  ASSERT_EQ(r.res, 0);
  ASSERT_EQ(r.hdr.status, 0) << "a write of the TLT meta reported";

  // Generation 2 was granted before TLT 6, which added this server to a row.
  // The superseded writer (generation 1) already uses TLT 6.
  ASSERT_EQ(c.Send(Write(1, 6, d), d.data(), kC), 0);
  r = c.Receive(300);
  EXPECT_EQ(r.res, -ETIMEDOUT) << "answered before meta's report of TLT 6 (status " << r.hdr.status << ")";
  EXPECT_EQ(Counters().tlt_waits, 1u);
  Report(false, {{kHi, kLo, 2}}, 6);
  r = c.Receive(2000);
  ASSERT_EQ(r.res, 0);
  EXPECT_EQ(r.hdr.status, -EPERM) << "the superseded writer landed a write";
  r = c.Call(Write(2, 6, d), d.data(), kC);
  ASSERT_EQ(r.res, 0);
  EXPECT_EQ(r.hdr.status, 0);

  // No report of TLT 7 comes: -EAGAIN after 2 s; reads are not held.
  uint64_t t0 = Loop::NowNs();
  ASSERT_EQ(c.Send(Write(2, 7, d), d.data(), kC), 0);
  auto rd = RawTractConn::Header(tractproto::kOpRead, kHi, kLo, 0, kTract, 0, kC);
  rd.tlt_version = 7;
  tractproto::SealHeader(&rd);
  RawTractConn c2;
  ASSERT_EQ(c2.Connect(addr_), 0);
  auto rr = c2.Call(rd);
  ASSERT_EQ(rr.res, 0);
  EXPECT_EQ(rr.hdr.status, 0);
  ASSERT_EQ(rr.payload.size(), tractproto::BitmapBytes(1) + kC);  // the chunk bitmap, then the data
  EXPECT_EQ(rr.payload.back(), 0x5a);
  r = c.Receive(5000);
  ASSERT_EQ(r.res, 0);
  EXPECT_EQ(r.hdr.status, -EAGAIN);
  EXPECT_GE((Loop::NowNs() - t0) / 1000000, 1900u);
  auto k = Counters();
  EXPECT_EQ(k.tlt_waits, 2u);
  EXPECT_EQ(k.unsynced_rejects, 1u);
  EXPECT_EQ(k.superseded_rejects, 1u);
}

// A held write whose TLT turns out outdated by the report that releases it
// gets -ESTALE (its client refreshes the TLT and retries), as it would have
// on arrival: it does not run under a TLT the server knows is old.
TEST_F(TractServerTest, AWriteReleasedUnderANewerTltIsStale) {
  std::vector<uint8_t> d(kC, 0x44);
  Report(true, {}, 1);
  RawTractConn c;
  ASSERT_EQ(c.Connect(addr_), 0);
  ASSERT_EQ(c.Send(Write(1, 2, d), d.data(), kC), 0);
  EXPECT_EQ(c.Receive(200).res, -ETIMEDOUT);
  OnLoop([&] { server_->set_tlt_version(3); });  // as the heartbeat thread does before the report is applied
  Report(false, {}, 3);
  auto r = c.Receive(2000);
  ASSERT_EQ(r.res, 0);
  EXPECT_EQ(r.hdr.status, -ESTALE);
  EXPECT_EQ(Counters().stale_rejects, 1u);
}

// A report releases the held writes it covers and leaves the others waiting
// out their own 2 s (a later one is not given up with an earlier one).
TEST_F(TractServerTest, AReportReleasesOnlyTheWritesItCovers) {
  std::vector<uint8_t> d(kC, 0x33);
  Report(true, {}, 1);
  RawTractConn a, b, c;
  ASSERT_EQ(a.Connect(addr_), 0);
  ASSERT_EQ(b.Connect(addr_), 0);
  ASSERT_EQ(c.Connect(addr_), 0);
  ASSERT_EQ(a.Send(Write(1, 3, d), d.data(), kC), 0);
  usleep(1000 * 1000);
  ASSERT_EQ(b.Send(Write(1, 2, d), d.data(), kC), 0);
  ASSERT_EQ(c.Send(Write(1, 4, d), d.data(), kC), 0);
  usleep(100 * 1000);
  Report(false, {}, 2);
  auto rb = b.Receive(1000);
  ASSERT_EQ(rb.res, 0);
  EXPECT_EQ(rb.hdr.status, 0) << "the report of TLT 2 covers b's write";
  EXPECT_EQ(a.Receive(200).res, -ETIMEDOUT) << "a's write needs TLT 3";
  auto ra = a.Receive(2000);  // its 2 s end about 0.7 s from now
  ASSERT_EQ(ra.res, 0);
  EXPECT_EQ(ra.hdr.status, -EAGAIN);
  EXPECT_EQ(c.Receive(300).res, -ETIMEDOUT) << "c's write, sent 1 s after a's, was given up with it";
  auto rc = c.Receive(2000);
  ASSERT_EQ(rc.res, 0);
  EXPECT_EQ(rc.hdr.status, -EAGAIN);
  Report(false, {}, 3);
  ra = a.Call(Write(1, 3, d), d.data(), kC);
  ASSERT_EQ(ra.res, 0);
  EXPECT_EQ(ra.hdr.status, 0);
}

// A new writer's generation is recorded durably before its FENCE (or first
// write) proceeds, group-committed: 150 FENCEs of 150 blobs sent at once
// (a flurry-disk opening 150 volumes) cost a few syncs, not 150 in a row on
// the loop. A superseded writer is refused as soon as the newer generation
// is being recorded.
TEST_F(TractServerTest, NewWriterGenerationsAreGroupCommitted) {
  Report(true, {}, 1);
  RawTractConn c;
  ASSERT_EQ(c.Connect(addr_), 0);
  const int n = 150;
  for (int i = 0; i < n; ++i) {
    auto h = RawTractConn::Header(tractproto::kOpFence, kHi, static_cast<uint64_t>(i), 0, kTract, 0, 0);
    h.writer_gen = 4;
    tractproto::SealHeader(&h);
    ASSERT_EQ(c.Send(h), 0);
  }
  // Behind them, a writer of generation 3 of the last blob: refused.
  std::vector<uint8_t> d(kC, 1);
  auto old = RawTractConn::Header(tractproto::kOpWrite, kHi, n - 1, 0, kTract, 0, kC, d.data(), kC);
  old.writer_gen = 3;
  tractproto::SealHeader(&old);
  ASSERT_EQ(c.Send(old, d.data(), kC), 0);
  int ok = 0, eperm = 0, eperm_at = -1;
  for (int i = 0; i < n + 1; ++i) {
    auto r = c.Receive(5000);
    ASSERT_EQ(r.res, 0);
    if (r.hdr.status == 0) ok++;
    if (r.hdr.status == -EPERM) eperm++, eperm_at = i;
  }
  EXPECT_EQ(ok, n);
  EXPECT_EQ(eperm, 1);
  EXPECT_LT(eperm_at, n) << "the superseded write waited for the newer generation's record";
  const uint64_t syncs = testing::ServerCounter(addr_, "writer_syncs");
  EXPECT_EQ(testing::ServerCounter(addr_, "writer_generations"), static_cast<uint64_t>(n));
  EXPECT_LE(syncs, 15u) << "one sync per FENCE";
  printf("%d FENCEs of new writers: %llu syncs\n", n, (unsigned long long)syncs);
}

}  // namespace
}  // namespace flurry
