// SPDX-License-Identifier: Apache-2.0
//
// R=2 with a tract server killed -9 while writes are in flight:
// - every write acknowledged before or after the kill reads back correctly
//   (reads fail over; meta replaces the dead server in the TLT and the
//   client retries the interrupted writes on the new rows);
// - restarted on its directory, the killed server still holds, byte for
//   byte, what had been acknowledged on its tracts before the kill (read
//   from it directly with the raw protocol, bypassing the TLT).
#include <gtest/gtest.h>

#include <csignal>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/raw_tract_conn.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

constexpr uint32_t kTract = 256u << 10;

TEST_F(ClusterTest, R2SurvivesKill9AndRestartedServerKeepsItsTracts) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, /*heartbeat_timeout_ms=*/1500));
  const uint64_t size = 32ull << 20;  // 128 tracts
  VolumeInfo v = CreateVolume("fo", size, kTract, 2);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  const Tlt before = c->tlt();
  const int victim = 1;
  const std::string victim_addr = cluster_->server_addr(victim);

  WorkloadOptions o;
  o.ops = 1400;
  o.qd = 16;
  o.write_pct = 65;
  o.trim_pct = 5;
  o.zero_pct = 2;
  o.max_len = 256u << 10;
  o.seed = 77;
  Workload w(loop_.get(), c, Blob(v), size, o);

  // At the kill: what had been acknowledged, and (from then on) which bytes
  // a write in flight or issued later may have changed.
  std::vector<uint8_t> at_kill, known_at_kill, dirty(size, 0);
  bool killed = false;
  uint64_t kill_ns = 0;
  // Right after the kill, whole-tract reads that try the dead server first
  // (FdsClient spreads reads by tract parity over the row); each must fail
  // over to the survivor and return the data as of the kill, except bytes
  // written since (dirty by the time the read completes).
  std::vector<std::vector<uint8_t>> fo_bufs;
  size_t fo_sent = 0, fo_done = 0, fo_bad = 0;
  uint64_t failovers_at_kill = 0;
  auto failover_reads = [&] {
    failovers_at_kill = c->stats().failovers;
    fo_bufs.resize(size / kTract);
    for (uint64_t t = 0; t < size / kTract; ++t) {
      const auto& row = before.rows[before.RowOf(v.blob_hi, v.blob_lo, t)];
      if (row[t % 2].addr != victim_addr) continue;
      fo_bufs[t].resize(kTract);
      fo_sent++;
      c->Read(Blob(v), t, 0, kTract, fo_bufs[t].data(), [&, t](int res, std::vector<uint8_t>) {
        fo_done++;
        EXPECT_EQ(res, 0) << "failover read of tract " << t;
        for (uint64_t i = 0; res == 0 && i < kTract; ++i) {
          uint64_t x = t * kTract + i;
          if (!dirty[x] && known_at_kill[x] && fo_bufs[t][i] != at_kill[x] && fo_bad++ < 5)
            ADD_FAILURE() << "failover read, tract " << t << " byte " << i;
        }
      });
    }
  };
  EXPECT_TRUE(w.Run([&] {
    if (killed || w.completed() < 600) return;
    at_kill = w.data();
    known_at_kill = w.known();
    w.TrackDirty(&dirty);
    Status s = cluster_->KillServer(victim, SIGKILL);
    EXPECT_TRUE(s.ok()) << s.ToString();
    killed = true;
    kill_ns = Loop::NowNs();
    failover_reads();
  }));
  ASSERT_TRUE(killed);
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return fo_done == fo_sent; }, 60000));
  printf("failover reads: %zu tracts, %zu bad, client failovers %llu\n", fo_sent, fo_bad,
         (unsigned long long)(c->stats().failovers - failovers_at_kill));
  EXPECT_GT(fo_sent, 4u);
  EXPECT_EQ(fo_bad, 0u);
  EXPECT_GT(c->stats().failovers, failovers_at_kill) << "no read failed over from the dead server";
  printf("workload: %s; ran %.1f s past the kill\n", w.Summary().c_str(),
         static_cast<double>(Loop::NowNs() - kill_ns) / 1e9);
  EXPECT_TRUE(w.VerifyAll()) << "acknowledged data lost or wrong after the kill";
  for (const auto& e : w.errors()) ADD_FAILURE() << e;
  EXPECT_EQ(w.stats().failed, 0u);
  EXPECT_EQ(w.stats().read_mismatches, 0u);

  // Meta replaced the dead server and the client saw the new TLT.
  const auto& fs = c->stats();
  printf("client: retries=%llu failovers=%llu tlt_refreshes=%llu tlt v%llu -> v%llu\n",
         (unsigned long long)fs.retries, (unsigned long long)fs.failovers,
         (unsigned long long)fs.tlt_refreshes, (unsigned long long)before.version,
         (unsigned long long)c->tlt().version);
  EXPECT_GT(c->tlt().version, before.version);
  for (const auto& row : c->tlt().rows)
    for (const auto& e : row) EXPECT_NE(e.addr, victim_addr) << "dead server still in the TLT";
  EXPECT_GT(fs.retries, 0u);

  // Restart the victim on its directory and read its tracts directly.
  Status s = cluster_->RestartServer(victim);
  ASSERT_TRUE(s.ok()) << s.ToString();
  RawTractConn raw;
  ASSERT_EQ(raw.Connect(victim_addr), 0);
  uint64_t tracts_checked = 0, bytes_checked = 0, bad = 0;
  for (uint64_t t = 0; t < size / kTract; ++t) {
    const auto& row = before.rows[before.RowOf(v.blob_hi, v.blob_lo, t)];
    if (row[0].addr != victim_addr && row[1].addr != victim_addr) continue;
    auto h = RawTractConn::Header(tractproto::kOpRead, v.blob_hi, v.blob_lo, t, kTract, 0, kTract);
    auto rep = raw.Call(h);
    ASSERT_EQ(rep.res, 0);
    ASSERT_EQ(rep.hdr.status, 0) << "tract " << t;
    ASSERT_EQ(rep.hdr.payload_len, rep.hdr.aux_len + kTract);
    const uint8_t* data = rep.payload.data() + rep.hdr.aux_len;
    tracts_checked++;
    for (uint64_t i = 0; i < kTract; ++i) {
      uint64_t x = t * kTract + i;
      if (dirty[x] || !known_at_kill[x]) continue;
      bytes_checked++;
      if (data[i] != at_kill[x] && bad++ < 5)
        ADD_FAILURE() << "restarted server, tract " << t << " byte " << i << ": got " << int(data[i])
                      << ", acknowledged before the kill: " << int(at_kill[x]);
    }
  }
  printf("restarted server: %llu tracts, %llu bytes checked, %llu wrong\n",
         (unsigned long long)tracts_checked, (unsigned long long)bytes_checked, (unsigned long long)bad);
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(tracts_checked, 8u);
  EXPECT_GT(bytes_checked, uint64_t{kTract});  // more than a tract's worth
}

}  // namespace
}  // namespace flurry::testing
