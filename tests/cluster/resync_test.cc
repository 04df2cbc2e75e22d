// SPDX-License-Identifier: Apache-2.0
//
// Replica resync (striping/striped_blob.h, write_intent.h) on a real R=2
// cluster: a tract written through a StripedBlob is marked in the blob's
// write-intent bitmap; make its two replicas differ behind the client's
// back (raw writes/trims to one server, as a write that reached one replica
// before a crash would); a new StripedBlob's Recover() must find the tract
// marked, copy the differing chunks from one replica to both, and leave the
// replicas byte-identical; the marks are then cleared.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <cstring>
#include <map>

#include "meta/meta_client.h"
#include "striping/striped_blob.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/raw_tract_conn.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

constexpr uint32_t kTract = 256u << 10;
constexpr uint32_t kC = tractproto::kChunkSize;

// One replica's copy of [off, off+len) of a tract, read straight from its server.
std::vector<uint8_t> RawRead(const std::string& addr, const VolumeInfo& v, uint64_t tract, uint32_t off,
                             uint32_t len) {
  RawTractConn rc;
  EXPECT_EQ(rc.Connect(addr), 0);
  auto rep = rc.Call(RawTractConn::Header(tractproto::kOpRead, v.blob_hi, v.blob_lo, tract, v.tract_size, off, len));
  EXPECT_EQ(rep.res, 0);
  EXPECT_EQ(rep.hdr.status, 0);
  if (rep.payload.size() < rep.hdr.aux_len + len) return {};
  return std::vector<uint8_t>(rep.payload.begin() + rep.hdr.aux_len, rep.payload.end());
}

int RawOp(const std::string& addr, const VolumeInfo& v, uint16_t op, uint64_t tract, uint32_t off,
          uint32_t len, const uint8_t* data = nullptr) {
  RawTractConn rc;
  if (rc.Connect(addr) != 0) return -ECONNREFUSED;
  auto rep = rc.Call(RawTractConn::Header(op, v.blob_hi, v.blob_lo, tract, v.tract_size, off, len, data,
                                          data ? len : 0),
                     data, data ? len : 0);
  return rep.res < 0 ? rep.res : rep.hdr.status;
}

class ResyncTest : public ClusterTest {
 protected:
  std::unique_ptr<StripedBlob> NewBlob(FdsClient* c, const VolumeInfo& v) {
    auto map = StripeMap::Create({v.size, v.tract_size, v.segment_tracts, v.block_size});
    EXPECT_TRUE(map.ok());
    StripedBlob::Options so;
    so.loop = loop_.get();
    so.dirty_linger_ms = 600000;  // nothing is cleared by time in this test
    return std::make_unique<StripedBlob>(c, Blob(v), std::move(*map), so);
  }
  int Run(const std::function<void(BlobIo::Done)>& op) {
    int res = 1;
    op([&](int r) { res = r; });
    EXPECT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 60000));
    return res;
  }
  std::vector<FdsClient::ReplicaSums> Sums(FdsClient* c, const VolumeInfo& v, uint64_t tract) {
    std::vector<FdsClient::ReplicaSums> out;
    int res = 1;
    c->ChunkSums(Blob(v), tract, [&](int r, std::vector<FdsClient::ReplicaSums> s) {
      res = r;
      out = std::move(s);
    });
    EXPECT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 60000));
    EXPECT_EQ(res, 0);
    return out;
  }
};

TEST_F(ResyncTest, RecoverMakesTheReplicasOfMarkedTractsAgree) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/60000));
  VolumeInfo v = CreateVolume("rs", 64u << 20, kTract, 2);  // two segments of 128 tracts
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  auto blob = NewBlob(c, v);

  // Pattern A over the first 1 MiB, through the blob: its tracts get marked.
  std::vector<uint8_t> a(1u << 20);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob->Write(0, a.size(), a.data(), d); }), 0);
  ASSERT_NE(blob->intent(), nullptr);
  auto pieces = blob->map().Map(0, 1);
  ASSERT_TRUE(pieces.ok());
  const uint64_t t0 = (*pieces)[0].tract;  // holds volume byte 0, at tract offset 0
  EXPECT_TRUE(blob->intent()->Ready(t0));
  // A tract nothing was written to (in the other segment: a write marks its
  // whole segment), for the control below.
  uint64_t t1 = t0;
  for (uint64_t t = 0; t < blob->map().num_tracts(); ++t)
    if (!blob->intent()->Wanted(t)) { t1 = t; break; }
  ASSERT_NE(t1, t0);

  // Copies: a TLT refresh replaces c->tlt().
  const auto row0 = c->tlt().rows[c->tlt().RowOf(v.blob_hi, v.blob_lo, t0)];
  const auto row1 = c->tlt().rows[c->tlt().RowOf(v.blob_hi, v.blob_lo, t1)];
  ASSERT_GE(row0.size(), 2u);
  const std::string r0 = row0[0].addr, r1 = row0[1].addr;

  // Equal replicas have equal sums.
  auto s = Sums(c, v, t0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].sums, s[1].sums);
  EXPECT_EQ(s[0].bitmap, s[1].bitmap);

  // Diverge t0: new data in chunk 1 on replica 0 only; chunk 2 trimmed on
  // replica 1 only; chunk 40 (never written) written on replica 1 only.
  std::vector<uint8_t> b(kC, 0xB5);
  ASSERT_EQ(RawOp(r0, v, tractproto::kOpWrite, t0, 1 * kC, kC, b.data()), 0);
  ASSERT_EQ(RawOp(r1, v, tractproto::kOpTrim, t0, 2 * kC, kC), 0);
  ASSERT_EQ(RawOp(r1, v, tractproto::kOpWrite, t0, 40 * kC, kC, b.data()), 0);
  // And t1, which is not marked, on replica 0 only.
  ASSERT_EQ(RawOp(row1[0].addr, v, tractproto::kOpWrite, t1, 0, kC, b.data()), 0);

  s = Sums(c, v, t0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NE(s[0].sums[1], s[1].sums[1]);
  EXPECT_NE(s[0].sums[2], s[1].sums[2]);
  EXPECT_EQ(s[0].sums[0], s[1].sums[0]);

  // "Restart": a new blob recovers from the bitmap the first one left.
  blob.reset();
  auto blob2 = NewBlob(c, v);
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob2->Recover(d); }), 0);
  const auto& st = blob2->recover_stats();
  EXPECT_GE(st.marked, 1u);
  EXPECT_EQ(st.differing, 1u) << blob2->recover_report();
  EXPECT_EQ(st.chunks_copied, 3u) << blob2->recover_report();

  s = Sums(c, v, t0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].sums, s[1].sums) << "replicas of the marked tract still differ";
  EXPECT_EQ(s[0].bitmap, s[1].bitmap);
  // Byte for byte, from each server directly.
  auto d0 = RawRead(r0, v, t0, 0, 64 * kC), d1 = RawRead(r1, v, t0, 0, 64 * kC);
  ASSERT_EQ(d0.size(), 64u * kC);
  EXPECT_TRUE(d0 == d1);
  // Each chunk is one of the two versions, never anything else.
  EXPECT_TRUE(memcmp(d0.data() + kC, b.data(), kC) == 0 || memcmp(d0.data() + kC, a.data() + kC, kC) == 0);
  std::vector<uint8_t> zeros(kC, 0);
  EXPECT_TRUE(memcmp(d0.data() + 2 * kC, zeros.data(), kC) == 0 ||
              memcmp(d0.data() + 2 * kC, a.data() + 2 * kC, kC) == 0);

  // The unmarked tract is not looked at: a clear bit means no write was in
  // flight there, so the writer never leaves it different.
  auto s1 = Sums(c, v, t1);
  EXPECT_NE(s1[0].sums[0], s1[1].sums[0]);

  // The recovered marks are cleared (lazily, right after Recover).
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return blob2->intent()->idle(); }, 30000));
  blob2.reset();
  auto blob3 = NewBlob(c, v);
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob3->Recover(d); }), 0);
  EXPECT_EQ(blob3->recover_stats().marked, 0u) << blob3->recover_report();
}

// A write that fails after reaching one replica (the other server is dead
// past the client's deadline) leaves the tract suspect: its bit is kept, and
// once the server is back the blob resyncs it in the background.
TEST_F(ResyncTest, FailedWriteIsRepairedInTheBackground) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/60000));
  VolumeInfo v = CreateVolume("rp", 4u << 20, kTract, 2);
  FdsClient* c = Client(/*op_deadline_ms=*/1500, /*request_timeout_ms=*/500);
  ASSERT_NE(c, nullptr);
  auto blob = NewBlob(c, v);
  std::vector<uint8_t> a(64u << 10, 0xA1), b(64u << 10, 0xB2);
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob->Write(0, a.size(), a.data(), d); }), 0);  // marks the tract
  auto pieces = blob->map().Map(0, 1);
  ASSERT_TRUE(pieces.ok());
  const uint64_t t0 = (*pieces)[0].tract;

  ASSERT_TRUE(cluster_->KillServer(1).ok());
  int r = Run([&](BlobIo::Done d) { blob->Write(0, b.size(), b.data(), d); });
  EXPECT_LT(r, 0) << "the write should fail with a replica dead past the deadline";
  EXPECT_EQ(blob->suspects(), 1u);
  EXPECT_TRUE(blob->intent()->suspect(t0));
  ASSERT_TRUE(cluster_->RestartServer(1).ok());
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return blob->suspects() == 0; }, 30000))
      << "the suspect tract was not repaired";
  EXPECT_GE(blob->recover_stats().repaired, 1u);
  EXPECT_GE(blob->recover_stats().differing, 1u) << "the replicas should have differed";
  auto s = Sums(c, v, t0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].sums, s[1].sums);
  // Writes to the tract work again, and it can be cleared.
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob->Write(0, b.size(), b.data(), d); }), 0);
  EXPECT_FALSE(blob->intent()->suspect(t0));
}

// FENCE: connections accepted before it (other than the fencing one) can no
// longer write, trim or zero the blob; reads, FILL writes (re-replication),
// other blobs and newer connections are unaffected. Recover() fences.
TEST_F(ResyncTest, FenceStopsEarlierWritersOfTheBlob) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1));
  VolumeInfo v = CreateVolume("fe", 4u << 20, kTract, 1);
  const std::string addr = cluster_->server_addr(0);
  std::vector<uint8_t> d(kC, 0x5A);
  auto req = [&](RawTractConn& rc, uint16_t op, uint64_t lo, uint32_t flags = 0) {
    bool w = op == tractproto::kOpWrite;
    auto h = RawTractConn::Header(op, v.blob_hi, lo, 0, v.tract_size, 0, kC, w ? d.data() : nullptr, w ? kC : 0);
    h.flags = flags;
    tractproto::SealHeader(&h);
    auto rep = rc.Call(h, w ? d.data() : nullptr, w ? kC : 0);
    return rep.res < 0 ? rep.res : rep.hdr.status;
  };
  RawTractConn old_writer, fencer;
  ASSERT_EQ(old_writer.Connect(addr), 0);
  ASSERT_EQ(req(old_writer, tractproto::kOpWrite, v.blob_lo), 0);
  ASSERT_EQ(fencer.Connect(addr), 0);
  ASSERT_EQ(req(fencer, tractproto::kOpFence, v.blob_lo), 0);
  EXPECT_EQ(req(old_writer, tractproto::kOpWrite, v.blob_lo), -EPERM);
  EXPECT_EQ(req(old_writer, tractproto::kOpTrim, v.blob_lo), -EPERM);
  EXPECT_EQ(req(old_writer, tractproto::kOpZero, v.blob_lo), -EPERM);
  EXPECT_EQ(req(old_writer, tractproto::kOpRead, v.blob_lo), 0);
  EXPECT_EQ(req(old_writer, tractproto::kOpWrite, v.blob_lo, tractproto::kFlagFill), 0);
  EXPECT_EQ(req(old_writer, tractproto::kOpWrite, v.blob_lo + 1), 0) << "another blob is not fenced";
  EXPECT_EQ(req(fencer, tractproto::kOpWrite, v.blob_lo), 0);
  RawTractConn newer;
  ASSERT_EQ(newer.Connect(addr), 0);
  EXPECT_EQ(req(newer, tractproto::kOpWrite, v.blob_lo), 0);

  // A StripedBlob's Recover fences the blob against the connections open
  // before it (here: newer, standing in for a dead flurry-disk's, and a live
  // older writer with its own client).
  FdsClient::Options o;
  o.meta = cluster_->meta();
  Status why;
  auto c_old = FdsClient::Create(loop_.get(), o, &why);
  ASSERT_TRUE(c_old.ok()) << why.ToString();
  auto old_blob = NewBlob(c_old->get(), v);
  std::vector<uint8_t> ob(kC, 0x33);
  ASSERT_EQ(Run([&](BlobIo::Done done) { old_blob->Write(kC, kC, ob.data(), done); }), 0);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  auto blob = NewBlob(c, v);
  ASSERT_EQ(Run([&](BlobIo::Done done) { blob->Recover(done); }), 0);
  EXPECT_EQ(blob->recover_stats().fence_error, 0);
  EXPECT_EQ(req(newer, tractproto::kOpWrite, v.blob_lo), -EPERM);
  EXPECT_EQ(Run([&](BlobIo::Done done) { old_blob->Write(kC, kC, ob.data(), done); }), -EPERM);
  EXPECT_TRUE(old_blob->fenced());
  // Sticky: even over a new connection (which the server would not fence),
  // the superseded writer's writes fail.
  (*c_old)->Shutdown();
  EXPECT_EQ(Run([&](BlobIo::Done done) { old_blob->Write(kC, kC, ob.data(), done); }), -EPERM);
  EXPECT_EQ(old_blob->suspects(), 0u) << "a fenced write is not a divergence to repair";
  std::vector<uint8_t> buf(kC, 0x77);
  EXPECT_EQ(Run([&](BlobIo::Done done) { blob->Write(0, kC, buf.data(), done); }), 0)
      << "the fencing client itself must still write";
}

// Writer generations (tract protocol v2, writer_gen; tractserver/writer_gens.h)
// do what the per-connection fence cannot: a superseded writer is refused
// over connections made after the fence and after the server restarts.
// Every write carries its own byte pattern; what the server refused must
// not be on disk.
TEST_F(ResyncTest, WriterGenerationsOutliveConnectionsAndRestarts) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1));
  VolumeInfo v = CreateVolume("wg", 4u << 20, kTract, 1);
  const std::string addr = cluster_->server_addr(0);
  uint8_t pattern = 0, last_landed = 0;
  // op on tract 0's first chunk over a connection made for it (always after
  // the fences below, so only the generation can refuse it).
  auto req = [&](uint16_t op, uint64_t gen, uint32_t flags = 0) {
    bool w = op == tractproto::kOpWrite;
    std::vector<uint8_t> d(kC, ++pattern);
    auto h = RawTractConn::Header(op, v.blob_hi, v.blob_lo, 0, v.tract_size, 0, kC, w ? d.data() : nullptr,
                                  w ? kC : 0);
    h.flags = flags;
    h.writer_gen = gen;
    tractproto::SealHeader(&h);
    RawTractConn rc;
    if (rc.Connect(addr) != 0) return -ECONNREFUSED;
    auto rep = rc.Call(h, w ? d.data() : nullptr, w ? kC : 0);
    int r = rep.res < 0 ? rep.res : rep.hdr.status;
    if (r == 0 && w) last_landed = pattern;
    return r;
  };
  auto on_disk = [&] {
    auto b = RawRead(addr, v, 0, 0, kC);
    return b.empty() ? -1 : static_cast<int>(b[0]);
  };
  ASSERT_EQ(req(tractproto::kOpWrite, 5), 0) << "a first generation is recorded by its write";
  ASSERT_EQ(req(tractproto::kOpFence, 6), 0);
  EXPECT_EQ(req(tractproto::kOpWrite, 5), -EPERM) << "a new connection of the old writer";
  EXPECT_EQ(req(tractproto::kOpTrim, 5), -EPERM);
  EXPECT_EQ(req(tractproto::kOpZero, 5), -EPERM);
  EXPECT_EQ(req(tractproto::kOpWrite, 0), -EPERM) << "a writer without a lease";
  EXPECT_EQ(req(tractproto::kOpRead, 5), 0) << "reads are not refused";
  EXPECT_EQ(req(tractproto::kOpFence, 4), -EPERM) << "an older writer cannot fence";
  EXPECT_EQ(on_disk(), last_landed);
  EXPECT_EQ(req(tractproto::kOpWrite, 6), 0);
  EXPECT_EQ(req(tractproto::kOpWrite, 7), 0) << "a newer writer whose FENCE this server missed";
  EXPECT_EQ(req(tractproto::kOpWrite, 6), -EPERM) << "its first write recorded 7";
  EXPECT_EQ(on_disk(), last_landed);
  EXPECT_EQ(ServerCounter(addr, "writer_generations"), 1u);
  EXPECT_EQ(ServerCounter(addr, "superseded_rejects"), 6u);

  // Durable: the same after kill -9 and a restart (in-memory fences gone).
  ASSERT_TRUE(cluster_->KillServer(0, SIGKILL).ok());
  ASSERT_TRUE(cluster_->RestartServer(0).ok());
  EXPECT_EQ(req(tractproto::kOpWrite, 6), -EPERM) << "generation 7 was lost with the process";
  EXPECT_EQ(req(tractproto::kOpWrite, 0), -EPERM);
  EXPECT_EQ(on_disk(), last_landed);
  EXPECT_EQ(req(tractproto::kOpWrite, 7), 0);
  EXPECT_EQ(req(tractproto::kOpWrite, 0, tractproto::kFlagFill), 0)
      << "FILL (re-replication by flurry-meta) writes only holes and is not refused";
  EXPECT_EQ(on_disk(), last_landed - 1) << "FILL must not overwrite allocated chunks";

  // Through FdsClient and StripedBlob, as flurry-disk sends it: a restarted
  // stale writer (a new client, so new connections) is refused, the newest
  // writes.
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  VolumeInfo v2 = CreateVolume("wg2", 4u << 20, kTract, 1);
  auto with_gen = [&](uint64_t gen) {
    auto map = StripeMap::Create({v2.size, v2.tract_size, v2.segment_tracts, v2.block_size});
    EXPECT_TRUE(map.ok());
    StripedBlob::Options so;
    so.loop = loop_.get();
    BlobRef ref = Blob(v2);
    ref.writer_gen = gen;
    return std::make_unique<StripedBlob>(c, ref, std::move(*map), so);
  };
  std::vector<uint8_t> buf(kC, 0x11);
  auto newer = with_gen(9);
  ASSERT_EQ(Run([&](BlobIo::Done done) { newer->Recover(done); }), 0);
  EXPECT_EQ(newer->recover_stats().fence_error, 0);
  auto stale = with_gen(8);
  EXPECT_EQ(Run([&](BlobIo::Done done) { stale->Write(0, kC, buf.data(), done); }), -EPERM);
  EXPECT_TRUE(stale->fenced());
  buf.assign(kC, 0x22);
  EXPECT_EQ(Run([&](BlobIo::Done done) { newer->Write(0, kC, buf.data(), done); }), 0);
  auto got = RawRead(addr, v2, 0, 0, kC);
  ASSERT_EQ(got.size(), kC);
  EXPECT_EQ(got[0], 0x22);

  // DELETE_BLOB forgets the blob's generation.
  int del = 1;
  c->DeleteBlob(Blob(v), [&](int r) { del = r; });
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return del != 1; }, 30000));
  ASSERT_EQ(del, 0);
  EXPECT_EQ(ServerCounter(addr, "writer_generations"), 1u) << "only wg2's is left";
  EXPECT_EQ(req(tractproto::kOpWrite, 0), 0);
}

// A server down during the new writer's FENCE has not recorded its
// generation; the writer fences again (every 2 s) until every server has,
// without having to write there first.
TEST_F(ResyncTest, AFenceMissedByADownServerIsRetriedUntilItLands) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/600000));
  VolumeInfo v = CreateVolume("rf", 4u << 20, kTract, 1);
  const std::string addr1 = cluster_->server_addr(1);
  ASSERT_TRUE(cluster_->KillServer(1, SIGKILL).ok());
  FdsClient* c = Client(/*op_deadline_ms=*/3000, /*request_timeout_ms=*/1000);
  ASSERT_NE(c, nullptr);
  auto map = StripeMap::Create({v.size, v.tract_size, v.segment_tracts, v.block_size});
  ASSERT_TRUE(map.ok());
  StripedBlob::Options so;
  so.loop = loop_.get();
  BlobRef ref = Blob(v);
  ref.writer_gen = 5;
  auto blob = std::make_unique<StripedBlob>(c, ref, std::move(*map), so);
  ASSERT_EQ(Run([&](BlobIo::Done done) { blob->Recover(done); }), 0) << "the open goes on without server 1";
  EXPECT_LT(blob->recover_stats().fence_error, 0);
  ASSERT_TRUE(cluster_->RestartServer(1).ok());
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return blob->recover_stats().fence_error == 0; }, 20000))
      << "the FENCE never reached the restarted server: " << blob->recover_stats().fence_error;
  std::vector<uint8_t> d(kC, 0x5A);
  for (uint64_t gen : {4ull, 0ull}) {
    RawTractConn rc;
    ASSERT_EQ(rc.Connect(addr1), 0);
    auto h = RawTractConn::Header(tractproto::kOpWrite, v.blob_hi, v.blob_lo, 1, v.tract_size, 0, kC, d.data(), kC);
    h.writer_gen = gen;
    tractproto::SealHeader(&h);
    auto rep = rc.Call(h, d.data(), kC);
    ASSERT_EQ(rep.res, 0);
    EXPECT_EQ(rep.hdr.status, -EPERM) << "an older writer (gen " << gen << ") at the restarted server";
  }
}

// What FENCE and the recorded generations cannot see: a server that was down
// while a new writer took the lease (and never got its FENCE), or one that
// holds no record of the blob at all (as a re-replication target would).
// flurry-meta's report of the generations it granted still refuses the old
// writer there, right after the restart and with no new-writer traffic.
TEST_F(ResyncTest, MetaGenerationsRefuseAWriterSupersededBehindTheServersBack) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, /*heartbeat_timeout_ms=*/600000));
  VolumeInfo v = CreateVolume("mg", 4u << 20, kTract, 1);
  const std::string addr = cluster_->server_addr(0);
  Status why;
  auto acquire = [&](const std::string& vol, const std::string& holder) -> uint64_t {
    auto r = cluster_->MetaCall("LEASE ACQUIRE " + vol + " 600000 " + holder, &why);
    unsigned long long g = 0;
    if (!r.ok() || r->empty() || sscanf((*r)[0].c_str(), "gen %llu", &g) != 1) ADD_FAILURE() << why.ToString();
    return g;
  };
  uint8_t pattern = 0;
  auto write = [&](const VolumeInfo& vol, uint64_t gen) {
    std::vector<uint8_t> d(kC, ++pattern);
    auto h = RawTractConn::Header(tractproto::kOpWrite, vol.blob_hi, vol.blob_lo, 0, vol.tract_size, 0, kC,
                                  d.data(), kC);
    h.writer_gen = gen;
    tractproto::SealHeader(&h);
    RawTractConn rc;
    if (rc.Connect(addr) != 0) return -ECONNREFUSED;
    auto rep = rc.Call(h, d.data(), kC);
    return rep.res < 0 ? rep.res : rep.hdr.status;
  };
  uint64_t g1 = acquire("mg", "old-writer");
  ASSERT_GT(g1, 0u);
  ASSERT_EQ(write(v, g1), 0);
  const uint8_t landed = pattern;
  ASSERT_TRUE(cluster_->KillServer(0, SIGKILL).ok());
  ASSERT_TRUE(cluster_->MetaCall("LEASE RELEASE mg " + std::to_string(g1), &why).ok()) << why.ToString();
  uint64_t g2 = acquire("mg", "new-writer");
  ASSERT_GT(g2, g1);
  ASSERT_TRUE(cluster_->RestartServer(0).ok());
  EXPECT_EQ(write(v, g1), -EPERM) << "the server's own record still says generation " << g1;
  EXPECT_EQ(write(v, 0), -EPERM);
  auto b = RawRead(addr, v, 0, 0, kC);
  ASSERT_EQ(b.size(), kC);
  EXPECT_EQ(b[0], landed) << "a refused write reached the disk";
  EXPECT_EQ(write(v, g2), 0);

  // A blob this server has no generation of: learnt from the next heartbeat.
  VolumeInfo w = CreateVolume("mg2", 4u << 20, kTract, 1);
  uint64_t h1 = acquire("mg2", "old-writer");
  ASSERT_TRUE(cluster_->MetaCall("LEASE RELEASE mg2 " + std::to_string(h1), &why).ok());
  uint64_t h2 = acquire("mg2", "new-writer");
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return ServerCounter(addr, "meta_generations") >= 2; }, 5000))
      << "meta's report of mg2's lease never reached the server";
  EXPECT_EQ(ServerCounter(addr, "writer_generations"), 1u) << "mg2 has no record of its own here";
  EXPECT_EQ(write(w, h1), -EPERM);
  EXPECT_EQ(write(w, h2), 0);
  EXPECT_EQ(ServerCounter(addr, "unsynced_rejects"), 0u);
}

// A dead server is replaced while lease grants keep coming faster than
// heartbeats (here every 50 ms, as from a flurry-disk restart loop): meta no
// longer waits for a server that has heard of every grant (none ever has),
// and the writes that follow on the new rows succeed and read back.
TEST_F(ResyncTest, AStreamOfLeaseGrantsDoesNotHoldOffAReplacement) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, /*heartbeat_timeout_ms=*/1000));
  const uint64_t tracts = 16;
  VolumeInfo v = CreateVolume("data", tracts * kTract, kTract, 2);
  VolumeInfo churn = CreateVolume("churn", 4u << 20, kTract, 1);
  (void)churn;
  FdsClient* c = Client(/*op_deadline_ms=*/30000);
  ASSERT_NE(c, nullptr);
  Status why;
  uint64_t gen = 0;
  auto grant = [&] {
    if (gen) (void)cluster_->MetaCall("LEASE RELEASE churn " + std::to_string(gen), &why);
    auto r = cluster_->MetaCall("LEASE ACQUIRE churn 600000 loop", &why);
    unsigned long long g = 0;
    ASSERT_TRUE(r.ok() && !r->empty() && sscanf((*r)[0].c_str(), "gen %llu", &g) == 1) << why.ToString();
    gen = g;
  };
  const std::string victim = cluster_->server_addr(0);
  ASSERT_TRUE(cluster_->KillServer(0, SIGKILL).ok());
  uint64_t t0 = Loop::NowNs();
  bool replaced = false;
  while (!replaced && Loop::NowNs() - t0 < 10'000'000'000ull) {
    ASSERT_NO_FATAL_FAILURE(grant());
    usleep(50 * 1000);
    auto t = cluster_->MetaCall("TLT", &why);
    ASSERT_TRUE(t.ok()) << why.ToString();
    auto tlt = flurry::ParseTlt(*t);
    ASSERT_TRUE(tlt.ok());
    replaced = true;
    for (auto& row : tlt->rows)
      for (auto& e : row) replaced = replaced && e.addr != victim;
  }
  uint64_t ms = (Loop::NowNs() - t0) / 1000000;
  printf("replaced after %llu ms, %llu lease grants\n", (unsigned long long)ms, (unsigned long long)gen);
  ASSERT_TRUE(replaced) << "the dead server was still in the TLT after " << ms << " ms of lease grants";
  // Writes to every tract (some rows now hold the replacement) while grants
  // go on, then read back.
  std::vector<std::vector<uint8_t>> d(tracts);  // a write's buffer stays put until it completes
  int done = 0, failed = 0;
  for (uint64_t t = 0; t < tracts; ++t) {
    d[t].assign(kC, static_cast<uint8_t>(0x40 + t));
    c->Write(Blob(v), t, 0, kC, d[t].data(), 0, [&](int r) {
      done++;
      if (r != 0) failed++;
    });
    ASSERT_NO_FATAL_FAILURE(grant());
  }
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return done == static_cast<int>(tracts); }, 30000));
  EXPECT_EQ(failed, 0);
  uint64_t waits = 0;
  for (int i = 1; i < 4; ++i) waits += ServerCounter(cluster_->server_addr(i), "tlt_waits");
  printf("writes held for meta's report of a newer TLT: %llu\n", (unsigned long long)waits);
  for (uint64_t t = 0; t < tracts; ++t) {
    std::vector<uint8_t> got(kC);
    int res = 1;
    c->Read(Blob(v), t, 0, kC, got.data(), [&](int r, std::vector<uint8_t>) { res = r; });
    ASSERT_TRUE(RunUntil(loop_.get(), [&] { return res != 1; }, 30000));
    ASSERT_EQ(res, 0);
    EXPECT_EQ(got[0], 0x40 + t);
    EXPECT_EQ(got[kC - 1], 0x40 + t);
  }
}

// A server that cannot reach flurry-meta cannot tell a superseded writer
// from the current one: it holds writes (up to 2 s) and then answers
// -EAGAIN, never accepting them; reads go on.
TEST_F(ResyncTest, WithoutMetaWritesWaitThenGetEagain) {
  std::filesystem::create_directories(root_);
  const std::string dir = root_ + "/lonely", pf = root_ + "/lonely.port";
  std::filesystem::create_directories(dir);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Port 1 on loopback: nothing listens there.
    execl(ts_bin_.c_str(), ts_bin_.c_str(), "--dir", dir.c_str(), "--meta", "127.0.0.1:1", "--listen",
          "127.0.0.1:0", "--port-file", pf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string port;
  for (int i = 0; i < 500 && port.empty(); ++i) {
    usleep(10000);
    FILE* f = fopen(pf.c_str(), "r");
    if (!f) continue;
    char b[16] = {};
    if (fgets(b, sizeof b, f) && strchr(b, '\n')) port = std::string(b, strcspn(b, "\n"));
    fclose(f);
  }
  ASSERT_FALSE(port.empty()) << "the tract server did not start";
  const std::string addr = "127.0.0.1:" + port;
  std::vector<uint8_t> d(kC, 0x77);
  RawTractConn rc;
  ASSERT_EQ(rc.Connect(addr), 0);
  auto h = RawTractConn::Header(tractproto::kOpWrite, 1, 2, 0, kTract, 0, kC, d.data(), kC);
  h.writer_gen = 3;
  tractproto::SealHeader(&h);
  uint64_t t0 = Loop::NowNs();
  auto rep = rc.Call(h, d.data(), kC);
  uint64_t waited_ms = (Loop::NowNs() - t0) / 1000000;
  ASSERT_EQ(rep.res, 0);
  EXPECT_EQ(rep.hdr.status, -EAGAIN);
  EXPECT_GE(waited_ms, 1500u) << "it should wait for meta's report first";
  auto rd = rc.Call(RawTractConn::Header(tractproto::kOpStatTract, 1, 2, 0, kTract, 0, 0));
  ASSERT_EQ(rd.res, 0);
  EXPECT_NE(rd.hdr.status, -EAGAIN) << "only writes wait for meta";
  EXPECT_EQ(ServerCounter(addr, "unsynced_rejects"), 1u);
  EXPECT_EQ(ServerCounter(addr, "writes"), 0u);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// The case FENCE exists for: writes an old writer sent that the server had
// received but not yet run (here: queued in the socket behind the server's
// per-connection limit of 256, with 200 ms of injected service time) are
// rejected when they run after the fence, and never reach the disk.
TEST_F(ResyncTest, WritesQueuedBeforeTheFenceNeverLand) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, 60000, {"--delay-us", "200000"}));
  VolumeInfo v = CreateVolume("fq", 4u << 20, kTract, 1);
  const std::string addr = cluster_->server_addr(0);
  const int n = 300;
  const uint32_t per_tract = kTract / kC;
  RawTractConn old_writer, fencer;
  ASSERT_EQ(old_writer.Connect(addr), 0);
  std::map<uint64_t, int> by_id;
  for (int i = 0; i < n; ++i) {
    std::vector<uint8_t> d(kC, static_cast<uint8_t>(i % 251 + 1));
    auto h = RawTractConn::Header(tractproto::kOpWrite, v.blob_hi, v.blob_lo, i / per_tract, v.tract_size,
                                  (i % per_tract) * kC, kC, d.data(), kC);
    by_id[h.id] = i;
    ASSERT_EQ(old_writer.Send(h, d.data(), kC), 0);
  }
  ASSERT_EQ(fencer.Connect(addr), 0);
  auto f = fencer.Call(RawTractConn::Header(tractproto::kOpFence, v.blob_hi, v.blob_lo, 0, v.tract_size, 0, 0));
  ASSERT_EQ(f.res, 0);
  ASSERT_EQ(f.hdr.status, 0);
  std::vector<int> status(n, 1);
  for (int k = 0; k < n; ++k) {
    auto rep = old_writer.Receive(10000);
    ASSERT_EQ(rep.res, 0) << "reply " << k;
    ASSERT_TRUE(by_id.count(rep.hdr.id));
    status[by_id[rep.hdr.id]] = rep.hdr.status;
  }
  int ok = 0, fenced = 0;
  for (int i = 0; i < n; ++i) {
    ok += status[i] == 0;
    fenced += status[i] == -EPERM;
  }
  EXPECT_EQ(ok + fenced, n);
  EXPECT_GE(fenced, 1) << "no queued write ran after the fence";
  // What was rejected is not there; what was accepted is.
  std::vector<std::vector<uint8_t>> tracts;  // one read per tract (each costs the 200 ms delay)
  for (uint32_t t = 0; t * per_tract < static_cast<uint32_t>(n); ++t) {
    tracts.push_back(RawRead(addr, v, t, 0, kTract));
    ASSERT_EQ(tracts.back().size(), kTract);
  }
  for (int i = 0; i < n; ++i) {
    uint8_t got = tracts[i / per_tract][(i % per_tract) * kC];
    uint8_t want = status[i] == 0 ? static_cast<uint8_t>(i % 251 + 1) : 0;
    EXPECT_EQ(got, want) << "write " << i << " status " << status[i];
    if (got != want) break;
  }
  printf("%d writes ran before the fence, %d were rejected after it\n", ok, fenced);
}

TEST_F(ResyncTest, SingleReplicaBlobsKeepNoBitmap) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(1));
  VolumeInfo v = CreateVolume("r1", 4u << 20, kTract, 1);
  FdsClient* c = Client();
  ASSERT_NE(c, nullptr);
  auto blob = NewBlob(c, v);
  EXPECT_EQ(blob->intent(), nullptr);
  ASSERT_EQ(Run([&](BlobIo::Done d) { blob->Recover(d); }), 0);
  EXPECT_EQ(blob->recover_report(), "");
}

}  // namespace
}  // namespace flurry::testing
