// SPDX-License-Identifier: Apache-2.0
//
// FdsClient behaviour that needs real, failing servers.
#include <gtest/gtest.h>

#include <csignal>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

constexpr uint32_t kTract = 256u << 10;

// fds_client.h: "Shutdown(): pending requests fail with -ESHUTDOWN". That
// includes an operation that is waiting out a retry backoff because its
// server is down: its callback must run once, with -ESHUTDOWN, when the
// client shuts down or is destroyed — and nothing may touch the client
// afterwards (its retry timer must not fire on freed memory).
TEST_F(ClusterTest, ShutdownFailsOperationsWaitingToRetry) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, /*heartbeat_timeout_ms=*/60000));
  VolumeInfo v = CreateVolume("sd", 4 * kTract, kTract, 1);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> buf(4096, 7);
  int res = 1;
  c->Write(Blob(v), 0, 0, 4096, buf.data(), 0, [&](int r) { res = r; });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 10000));
  ASSERT_EQ(res, 0);

  ASSERT_TRUE(cluster_->KillServer(0, SIGKILL).ok());
  int calls = 0;
  res = 1;
  c->Write(Blob(v), 0, 0, 4096, buf.data(), 0, [&](int r) {
    calls++;
    res = r;
  });
  // Long enough for a few failed attempts; the op is now between retries.
  RunUntil(loop_.get(), [] { return false; }, 500);
  ASSERT_EQ(calls, 0) << "failed early: " << errstr(res);
  EXPECT_GT(c->stats().retries, 0u);

  client_->Shutdown();
  EXPECT_EQ(calls, 1) << "an op waiting to retry was not failed by Shutdown()";
  EXPECT_EQ(res, -ESHUTDOWN);
  client_.reset();
  RunUntil(loop_.get(), [] { return false; }, 2500);  // any stale retry timer fires here
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace flurry::testing
