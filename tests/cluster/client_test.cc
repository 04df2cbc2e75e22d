// SPDX-License-Identifier: Apache-2.0
//
// FdsClient behaviour that needs real, failing servers.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/raw_tract_conn.h"
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

// A server that stops answering (SIGSTOP: its socket stays open) breaks its
// connection after request_timeout_ms without progress; reads fail over to
// the other replica and still succeed.
TEST_F(ClusterTest, HungServerTimesOutAndReadsFailOver) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/60000));
  VolumeInfo v = CreateVolume("hung", 4 * kTract, kTract, 2);
  FdsClient* c = Client(/*op_deadline_ms=*/20000, /*request_timeout_ms=*/500);
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> buf(kTract);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 7 + 1);
  int res = 1;
  c->Write(Blob(v), 0, 0, kTract, buf.data(), 0, [&](int r) { res = r; });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 10000));
  ASSERT_EQ(res, 0);

  ASSERT_TRUE(cluster_->SignalServer(0, SIGSTOP).ok());
  // Reads start on a replica that depends on the offset: some on the hung one.
  for (uint32_t off = 0; off < kTract; off += 64 * 1024) {
    std::vector<uint8_t> got(4096);
    res = 1;
    uint64_t t0 = Loop::NowNs();
    c->Read(Blob(v), 0, off, 4096, got.data(), [&](int r, std::vector<uint8_t>) { res = r; });
    ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 10000)) << "read at " << off << " hung";
    ASSERT_EQ(res, 0);
    EXPECT_EQ(0, memcmp(got.data(), buf.data() + off, 4096));
    EXPECT_LT(Loop::NowNs() - t0, 3'000'000'000ull);
  }
  EXPECT_GT(c->stats().timeouts, 0u);
  EXPECT_GT(c->stats().failovers, 0u);
  ASSERT_TRUE(cluster_->SignalServer(0, SIGCONT).ok());
}

// A deep queue on a live server is not a timeout: with 100 ms of service
// latency and at most 256 requests in flight per connection (the server's
// bound), 2048 writes take ~0.8 s — far beyond the 300 ms request timeout
// for the last of them — yet replies keep coming, so nothing may break.
TEST_F(ClusterTest, DeepQueueOnALiveServerIsNotATimeout) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, /*heartbeat_timeout_ms=*/60000, {"--delay-us", "100000"}));
  const uint64_t tracts = 32;
  VolumeInfo v = CreateVolume("deep", tracts * kTract, kTract, 1);
  FdsClient* c = Client(/*op_deadline_ms=*/60000, /*request_timeout_ms=*/300);
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> buf(4096, 0x42);
  int done = 0, failed = 0;
  const int n = 2048;
  uint64_t t0 = Loop::NowNs();
  for (int i = 0; i < n; ++i) {
    uint64_t tract = static_cast<uint64_t>(i) % tracts;
    uint32_t off = static_cast<uint32_t>(i / tracts) * 4096;
    c->Write(Blob(v), tract, off, 4096, buf.data(), 0, [&](int r) {
      done++;
      if (r != 0) failed++;
    });
  }
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return done == n; }, 30000));
  EXPECT_EQ(failed, 0);
  EXPECT_GT(Loop::NowNs() - t0, 600'000'000ull) << "the server did not queue: the test proves nothing";
  EXPECT_EQ(c->stats().timeouts, 0u);
  EXPECT_EQ(c->stats().retries, 0u);
}


// Writes a tract-sized pattern through c and reads it back.
void WriteReadBack(Loop* loop, FdsClient* c, const BlobRef& b, uint8_t seed) {
  std::vector<uint8_t> buf(kTract), got(kTract);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 13 + seed);
  int res = 1;
  c->Write(b, 0, 0, kTract, buf.data(), 0, [&](int r) { res = r; });
  ASSERT_TRUE(RunUntil(loop, [&] { return res != 1; }, 10000));
  ASSERT_EQ(res, 0) << errstr(res);
  res = 1;
  c->Read(b, 0, 0, kTract, got.data(), [&](int r, std::vector<uint8_t>) { res = r; });
  ASSERT_TRUE(RunUntil(loop, [&] { return res != 1; }, 10000));
  ASSERT_EQ(res, 0) << errstr(res);
  ASSERT_EQ(0, memcmp(got.data(), buf.data(), kTract));
}

// docs/PROTOCOL.md "Local sockets": a client on the servers' host reaches
// them over their abstract unix sockets (fewer kernel cycles per message);
// with local_sockets off, or against a server started --no-local-socket,
// it uses TCP. Both carry the same protocol and data.
TEST_F(ClusterTest, LocalSocketCarriesIoAndTcpRemainsTheFallback) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/60000));
  VolumeInfo v = CreateVolume("local", 4 * kTract, kTract, 2);
  std::vector<std::string> addrs = {cluster_->server_addr(0), cluster_->server_addr(1)};
  for (auto& a : addrs) ASSERT_EQ(ServerCounter(a, "local_connections_accepted"), 0u) << a;

  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  ASSERT_NO_FATAL_FAILURE(WriteReadBack(loop_.get(), c, Blob(v), 1));
  // R=2: the write reached both servers, each over its local socket.
  for (auto& a : addrs) EXPECT_EQ(ServerCounter(a, "local_connections_accepted"), 1u) << a;

  client_.reset();
  c = Client(60000, 5000, /*local_sockets=*/false);
  ASSERT_NE(c, nullptr);
  uint64_t tcp0 = ServerCounter(addrs[0], "connections_accepted");
  ASSERT_NO_FATAL_FAILURE(WriteReadBack(loop_.get(), c, Blob(v), 2));
  for (auto& a : addrs) EXPECT_EQ(ServerCounter(a, "local_connections_accepted"), 1u) << a;
  // The client's TCP connection plus our counter's own.
  EXPECT_GE(ServerCounter(addrs[0], "connections_accepted"), tcp0 + 2);

  // The same protocol on the raw local socket; nothing listens for a
  // made-up address.
  RawTractConn raw;
  ASSERT_EQ(raw.ConnectLocal(addrs[0]), 0);
  auto rep = raw.Call(RawTractConn::Header(tractproto::kOpPing, 0, 0, 0, 0, 0, 0));
  ASSERT_EQ(rep.res, 0);
  EXPECT_EQ(rep.hdr.status, 0);
  RawTractConn none;
  EXPECT_EQ(none.ConnectLocal("127.0.0.1:1"), -ECONNREFUSED);
}

TEST_F(ClusterTest, ServersWithoutLocalSocketAreReachedOverTcp) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/60000, {"--no-local-socket"}));
  VolumeInfo v = CreateVolume("tcp", 4 * kTract, kTract, 2);
  FdsClient* c = Client();  // would use local sockets, finds none
  ASSERT_NE(c, nullptr);
  ASSERT_NO_FATAL_FAILURE(WriteReadBack(loop_.get(), c, Blob(v), 3));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ServerCounter(cluster_->server_addr(i), "local_connections_accepted"), 0u);
    RawTractConn raw;
    EXPECT_EQ(raw.ConnectLocal(cluster_->server_addr(i)), -ECONNREFUSED);
  }
}

}  // namespace
}  // namespace flurry::testing
