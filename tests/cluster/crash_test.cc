// SPDX-License-Identifier: Apache-2.0
//
// Durability across crashes at R=1: tract servers are killed -9 in the
// middle of a stream of writes and restarted on the same directory; the
// client retries what was in flight, and every acknowledged write must read
// back — after the mid-stream crashes, and again after killing and
// restarting every server once the stream has drained.
#include <gtest/gtest.h>

#include <csignal>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

constexpr uint32_t kTract = 256u << 10;

TEST_F(ClusterTest, R1AcknowledgedWritesSurviveKill9) {
  // A long heartbeat timeout: the killed server comes back before meta
  // would replace it (at R=1 its tracts have no other copy).
  ASSERT_NO_FATAL_FAILURE(StartCluster(3, /*heartbeat_timeout_ms=*/20000));
  const uint64_t size = 16ull << 20;
  VolumeInfo v = CreateVolume("crash", size, kTract, 1);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);

  WorkloadOptions o;
  o.ops = 900;
  o.qd = 24;
  o.write_pct = 90;
  o.trim_pct = 4;
  o.zero_pct = 2;
  o.max_len = 512u << 10;
  o.seed = 4242;
  Workload w(loop_.get(), c, Blob(v), size, o);
  // Crash a different server at each of these points of the stream.
  const uint64_t crash_at[] = {200, 450, 700};
  size_t next = 0;
  EXPECT_TRUE(w.Run([&] {
    if (next >= std::size(crash_at) || w.completed() < crash_at[next]) return;
    int victim = static_cast<int>(next % 3);
    next++;
    Status s = cluster_->KillServer(victim, SIGKILL);
    EXPECT_TRUE(s.ok()) << s.ToString();
    s = cluster_->RestartServer(victim);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }));
  EXPECT_EQ(next, std::size(crash_at));
  printf("workload: %s; client retries=%llu\n", w.Summary().c_str(),
         (unsigned long long)c->stats().retries);
  EXPECT_EQ(w.stats().failed, 0u) << "writes interrupted by a crash must succeed on retry";
  EXPECT_GT(c->stats().retries, 0u) << "no write was in flight at a crash";
  EXPECT_TRUE(w.VerifyAll());

  // Everything drained and acknowledged: crash every server, restart, verify.
  for (int i = 0; i < cluster_->servers(); ++i) {
    Status s = cluster_->KillServer(i, SIGKILL);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  for (int i = 0; i < cluster_->servers(); ++i) {
    Status s = cluster_->RestartServer(i);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE(w.VerifyAll()) << "acknowledged data lost across kill -9 of every server";
  for (const auto& e : w.errors()) ADD_FAILURE() << e;
  EXPECT_EQ(w.stats().read_mismatches, 0u);
  EXPECT_EQ(w.stats().bitmap_mismatches, 0u);
}

}  // namespace
}  // namespace flurry::testing
