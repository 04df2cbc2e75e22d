// SPDX-License-Identifier: Apache-2.0
//
// LogDevice: permutation, formats, IO against a model, checkpoints and
// recovery, backpressure, FUA, trim, failures. The crash-state property
// test is log_crash_test.cc.
#include "epochs/log_device.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "common/checksum.h"
#include "epochs/lcg.h"
#include "epochs/log_format.h"
#include "epochs/log_test_util.h"

namespace flurry {
namespace {

using logtest::OpenDevice;
using logtest::ReadAll;
using logtest::Sync;
using logtest::Vol;

// ---- Permutation ----

TEST(Lcg, ParamsSatisfyHullDobell) {
  for (uint64_t n = 1; n < (1ull << 40); n = n * 3 + 1) {
    auto p = LcgPermutation::ParamsFor(n);
    EXPECT_TRUE(std::has_single_bit(p.m));
    EXPECT_GE(p.m, n);
    EXPECT_LT(p.m, std::max<uint64_t>(2 * n, 5));
    EXPECT_EQ(p.c % 2, 1u);      // (1) c coprime with 2^k
    EXPECT_EQ(p.a % 4, 1u);      // (2), (3)
    EXPECT_LT(p.a, p.m);
    if (p.m > 4) {
      EXPECT_NE(p.a, 1u);
    }
  }
}

TEST(Lcg, FullPeriodExhaustiveForSmallP) {
  // Every n up to 4096 (up to 1500 for runs > 1): one lap visits each of
  // [0, n) once, in runs of consecutive blocks, and the next lap repeats it
  // exactly.
  for (uint64_t run : {1, 2, 3, 7, 64}) {
    for (uint64_t n = 1; n <= (run == 1 ? 4096u : 1500u); ++n) {
      LcgPermutation perm(n, run);
      std::vector<uint64_t> lap;
      std::vector<bool> seen(n, false);
      uint64_t adjacent = 0;
      for (uint64_t i = 0; i < n; ++i) {
        ASSERT_EQ(perm.step(), i);
        ASSERT_LT(perm.value(), n);
        ASSERT_FALSE(seen[perm.value()]) << "n=" << n << " run=" << run << " repeats at step " << i;
        seen[perm.value()] = true;
        if (!lap.empty() && perm.value() == lap.back() + 1) adjacent++;
        if (perm.value() % run != 0) {
          ASSERT_EQ(perm.value(), lap.back() + 1) << "a run is walked in order";
        }
        lap.push_back(perm.value());
        perm.Advance();
      }
      // Within each run every step is adjacent to the one before; only a new
      // run may land anywhere (it may also happen to follow the last one).
      EXPECT_GE(adjacent, n - LcgPermutation::Runs(n, run)) << "n=" << n << " run=" << run;
      for (uint64_t i = 0; i < n; ++i) {
        ASSERT_EQ(perm.value(), lap[i]) << "n=" << n << " run=" << run;
        perm.Advance();
      }
    }
  }
}

TEST(Lcg, ResumesFromSavedPosition) {
  for (uint64_t run : {1, 16}) {
    LcgPermutation a(1000, run);
    for (int i = 0; i < 777; ++i) a.Advance();
    LcgPermutation b(1000, run, a.value(), a.step());
    EXPECT_TRUE(b.Valid());
    for (int i = 0; i < 3000; ++i) {
      ASSERT_EQ(a.value(), b.value());
      a.Advance();
      b.Advance();
    }
  }
}

TEST(LogFormat, ReadsVersion1CheckpointHeadersAsSingleBlockRuns) {
  // A version 1 header as written before runs existed: 128 bytes, the
  // header checksum at offset 120.
  CheckpointHeader h;
  h.block_size = 4096;
  h.vblocks = 10;
  h.pblocks = 74;
  h.seq = 3;
  h.pos_x = 5;
  h.pos_step = 9;
  uint8_t page[kLogPage] = {};
  h.version = 1;
  memcpy(page, &h, 120);
  const uint64_t sum = Checksum(page, 120);
  memcpy(page + 120, &sum, 8);
  auto d = DecodeCheckpointHeader(page);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->run_blocks, 1u);
  EXPECT_EQ(d->seq, 3u);
  EXPECT_EQ(d->pos_step, 9u);
  page[17] ^= 1;  // any flipped bit fails it
  EXPECT_FALSE(DecodeCheckpointHeader(page).ok());
  // Version 2 round trip keeps the run length.
  h.run_blocks = 64;
  EncodeCheckpointHeader(h, page);
  d = DecodeCheckpointHeader(page);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->version, 2u);
  EXPECT_EQ(d->run_blocks, 64u);
  page[130] ^= 1;
  EXPECT_FALSE(DecodeCheckpointHeader(page).ok());
  // Runs of 1 are still written as version 1, byte for byte what older
  // flurry wrote (so it can still open them).
  h.run_blocks = 1;
  uint8_t v1[kLogPage] = {};
  EncodeCheckpointHeader(h, v1);
  uint32_t version = 0;
  memcpy(&version, v1 + 8, 4);
  EXPECT_EQ(version, 1u);
  const uint64_t v1sum = Checksum(v1, 120);
  EXPECT_EQ(memcmp(v1 + 120, &v1sum, 8), 0);
  d = DecodeCheckpointHeader(v1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->run_blocks, 1u);
  // A newer version is refused as such, never taken for a blank slot.
  version = 3;
  memcpy(v1 + 8, &version, 4);
  EXPECT_EQ(DecodeCheckpointHeader(v1).err(), -EPROTONOSUPPORT);
}

// ---- Formats ----

TEST(LogFormat, Geometry) {
  auto g = LogGeometry::For(10 * 4096 + 4096, 8192);  // last block is short
  ASSERT_TRUE(g);
  EXPECT_EQ(g->vblocks, 6u);
  EXPECT_EQ(g->pblocks, 6u + 64);
  EXPECT_EQ(g->VBlockBytes(5), 4096u);
  EXPECT_EQ(g->expanded, 8192u + 4096);
  EXPECT_EQ(g->slot_bytes % 4096, 0u);
  EXPECT_EQ(g->BlockOffset(0) % 4096, 0u);
  EXPECT_EQ(g->blob_bytes, 2 * g->slot_bytes + g->pblocks * g->expanded);
  auto big = LogGeometry::For(1ull << 40, 65536);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->pblocks, big->vblocks + big->vblocks / 8);
  EXPECT_FALSE(LogGeometry::For(1 << 20, 3000));
  EXPECT_FALSE(LogGeometry::For(1ull << 50, 4096));  // P would not fit a u32

  VolumeInfo v = Vol(1 << 20, 65536);
  EXPECT_EQ(EngineBlobSize(v), LogGeometry::For(1 << 20, 65536)->blob_bytes);
}

TEST(LogFormat, TrailerRoundTripAndCorruption) {
  std::vector<uint8_t> data(4096, 0x5a), page(4096);
  BlockTrailer t;
  t.gen = 3;
  t.step = 12345;
  t.vblock = 7;
  t.epoch = 9;
  EncodeTrailer(t, data.data(), 4096, page.data());
  auto d = DecodeTrailer(page.data());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->step, 12345u);
  EXPECT_TRUE(TrailerMatchesData(*d, data.data(), 4096));
  data[100] ^= 1;
  EXPECT_FALSE(TrailerMatchesData(*d, data.data(), 4096));
  page[40] ^= 1;  // the step field
  EXPECT_FALSE(DecodeTrailer(page.data()));
  std::vector<uint8_t> zeros(4096, 0);
  EXPECT_FALSE(DecodeTrailer(zeros.data()));
}

TEST(LogFormat, CheckpointBodyChecks) {
  auto g = *LogGeometry::For(64 * 4096, 4096);
  LogMaps m = LogMaps::Empty(g);
  m.block_map[3] = 17;
  m.Set(17);
  m.block_map[9] = 0;
  m.Set(0);
  std::vector<uint8_t> body(g.slot_bytes - kLogPage);
  EncodeCheckpointBody(m, g, body.data());
  CheckpointHeader h;
  h.body_bytes = g.body_bytes;
  h.body_sum = Checksum(body.data(), g.body_bytes);
  auto back = DecodeCheckpointBody(body.data(), h, g);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->block_map, m.block_map);
  EXPECT_EQ(back->alloc, m.alloc);
  // A map using a physical block twice, with a "valid" checksum: rejected.
  m.block_map[4] = 17;
  EncodeCheckpointBody(m, g, body.data());
  h.body_sum = Checksum(body.data(), g.body_bytes);
  EXPECT_FALSE(DecodeCheckpointBody(body.data(), h, g));
  // A flipped bit: rejected by the checksum.
  m.block_map[4] = kUnmapped;
  EncodeCheckpointBody(m, g, body.data());
  h.body_sum = Checksum(body.data(), g.body_bytes);
  body[5] ^= 1;
  EXPECT_FALSE(DecodeCheckpointBody(body.data(), h, g));
}

// ---- IO against a model ----

class Model {
 public:
  explicit Model(uint64_t size) : bytes_(size, 0) {}
  void Write(uint64_t off, const std::vector<uint8_t>& d) { memcpy(bytes_.data() + off, d.data(), d.size()); }
  void Zero(uint64_t off, uint64_t len) { memset(bytes_.data() + off, 0, len); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

std::vector<uint8_t> Pattern(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  uint64_t x = rng();
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = static_cast<uint8_t>(x >> 56);
  }
  return v;
}

// Random ranges: byte-granular and unaligned, small and multi-block.
std::pair<uint64_t, uint32_t> RandomRange(std::mt19937_64& rng, uint64_t size, uint32_t block) {
  uint64_t len;
  switch (rng() % 4) {
    case 0: len = 1 + rng() % 700; break;
    case 1: len = block; break;
    case 2: len = 1 + rng() % (3 * block); break;
    default: len = block * (1 + rng() % 4); break;
  }
  len = std::min(len, size);
  uint64_t off = rng() % (size - len + 1);
  if (rng() % 2) off = off / block * block;
  return {off, static_cast<uint32_t>(len)};
}

void RunModelWorkload(uint64_t size, uint32_t block, uint64_t seed, uint64_t cap_blocks) {
  SCOPED_TRACE("size=" + std::to_string(size) + " block=" + std::to_string(block) +
               " seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  VolumeInfo vol = Vol(size, block);
  auto g = *LogGeometry::For(size, block);
  MemoryBlobIo blob(g.blob_bytes, seed);
  blob.set_async_reads(seed % 2);  // early acknowledgement needs reads that take time
  EngineOptions opts;
  opts.max_buffered_bytes = cap_blocks * g.expanded;
  auto dev = OpenDevice(vol, blob, opts);
  ASSERT_TRUE(dev);
  Model model(size);
  for (int i = 0; i < 400; ++i) {
    const int kind = static_cast<int>(rng() % 10);
    auto [off, len] = RandomRange(rng, size, block);
    if (kind < 5) {
      auto d = Pattern(rng, len);
      ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(off, len, d.data(), rng() % 8 == 0, done); }), 0);
      model.Write(off, d);
    } else if (kind < 6) {
      ASSERT_EQ(Sync(blob, [&](auto done) { dev->Trim(off, len, done); }), 0);
      model.Zero(off, len);
    } else if (kind < 7) {
      ASSERT_EQ(Sync(blob, [&](auto done) { dev->Zero(off, len, rng() % 2, false, done); }), 0);
      model.Zero(off, len);
    } else if (kind < 8) {
      ASSERT_EQ(Sync(blob, [&](auto done) { dev->Flush(done); }), 0);
    } else {
      std::vector<uint8_t> got(len);
      ASSERT_EQ(Sync(blob, [&](auto done) { dev->Read(off, len, got.data(), done); }), 0);
      ASSERT_EQ(0, memcmp(got.data(), model.bytes().data() + off, len)) << "read " << off << "+" << len;
    }
    for (uint64_t s = rng() % 4; s > 0; --s) blob.Step();
  }
  EXPECT_EQ(ReadAll(*dev, blob), model.bytes());
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Quiesce(done); }), 0);
  EXPECT_EQ(blob.pending(), 0u);
  // Reopen from what is durable: identical.
  auto dev2 = OpenDevice(vol, blob, opts);
  ASSERT_TRUE(dev2);
  EXPECT_EQ(ReadAll(*dev2, blob), model.bytes());
  EXPECT_NE(dev2->recovery_report().find("rolled forward 0 blocks"), std::string::npos)
      << dev2->recovery_report();
}

TEST(LogDevice, MatchesModel) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    RunModelWorkload(64 * 4096, 4096, seed, 1000);
    RunModelWorkload(13 * 8192 + 4096, 8192, seed + 100, 3);  // short last block, tight memory
    RunModelWorkload(40 * 16384, 16384, seed + 200, 1000);
  }
}

TEST(LogDevice, ManyRequestsInFlightKeepArrivalOrder) {
  // Issue many overlapping writes without waiting: admission is FIFO, so the
  // final contents are those of arrival order; reads through the cache too.
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    const uint64_t size = 32 * 4096;
    auto g = *LogGeometry::For(size, 4096);
    MemoryBlobIo blob(g.blob_bytes, seed);
    blob.set_async_reads(seed % 2);
    EngineOptions opts;
    opts.max_buffered_bytes = (1 + seed % 6) * g.expanded;
    auto dev = OpenDevice(Vol(size, 4096), blob, opts);
    ASSERT_TRUE(dev);
    Model model(size);
    std::vector<std::vector<uint8_t>> bufs;
    int acked = 0, issued = 0;
    for (int i = 0; i < 200; ++i) {
      auto [off, len] = RandomRange(rng, size, 4096);
      bufs.push_back(Pattern(rng, len));
      model.Write(off, bufs.back());
      issued++;
      dev->Write(off, len, bufs.back().data(), false, [&acked](int r) {
        EXPECT_EQ(r, 0);
        acked++;
      });
      if (rng() % 3 == 0) blob.Step();
    }
    blob.RunAll();
    EXPECT_EQ(acked, issued);
    EXPECT_EQ(ReadAll(*dev, blob), model.bytes());
  }
}

TEST(LogDevice, PartialWritesReadBeforeWriteAndCountIt) {
  auto g = *LogGeometry::For(16 * 65536, 65536);
  MemoryBlobIo blob(g.blob_bytes);
  auto dev = OpenDevice(Vol(16 * 65536, 65536), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> a(65536, 0xaa), b(100, 0xbb);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(65536, 65536, a.data(), false, d); }), 0);
  // From the cache (the first write is still in flight)...
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(65536 + 10, 100, b.data(), false, d); }), 0);
  blob.RunAll();
  // ... and from the blob, and from nothing (an unmapped block: zeros).
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(65536 + 1000, 100, b.data(), false, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(5 * 65536 + 1, 100, b.data(), false, d); }), 0);
  blob.RunAll();
  const LogCounters& c = dev->counters();
  EXPECT_EQ(c.partial_block_writes, 3u);
  EXPECT_EQ(c.rmw_base_cache, 1u);
  EXPECT_EQ(c.rmw_base_blob, 1u);
  EXPECT_EQ(c.rmw_base_zero, 1u);
  EXPECT_NE(dev->CountersText().find("partial_block_writes=3\n"), std::string::npos);
  std::vector<uint8_t> got(65536);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Read(65536, 65536, got.data(), d); }), 0);
  std::vector<uint8_t> want = a;
  memset(want.data() + 10, 0xbb, 100);
  memset(want.data() + 1000, 0xbb, 100);
  EXPECT_EQ(got, want);
}

TEST(LogDevice, TrimZeroAndBlockStatus) {
  const uint64_t size = 8 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> ones(size, 1);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(0, 6 * 4096, ones.data(), false, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Trim(4096, 2 * 4096, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Zero(4 * 4096 + 100, 50, false, false, d); }), 0);
  auto status = [&] {
    std::vector<BlockExtent> ext;
    dev->BlockStatus(0, size, [&](int r, std::vector<BlockExtent> e) {
      EXPECT_EQ(r, 0);
      ext = std::move(e);
    });
    return ext;
  };
  auto check = [&] {
    auto ext = status();
    ASSERT_EQ(ext.size(), 4u);
    EXPECT_EQ(ext[0].length, 4096u);
    EXPECT_EQ(ext[0].flags, 0u);
    EXPECT_EQ(ext[1].length, 2 * 4096u);
    EXPECT_EQ(ext[1].flags, kExtentHole | kExtentZero);
    EXPECT_EQ(ext[2].length, 3 * 4096u);
    EXPECT_EQ(ext[2].flags, 0u);
    EXPECT_EQ(ext[3].flags, kExtentHole | kExtentZero);
    auto all = ReadAll(*dev, blob);
    std::vector<uint8_t> want(size, 0);
    memset(want.data(), 1, 6 * 4096);
    memset(want.data() + 4096, 0, 2 * 4096);
    memset(want.data() + 4 * 4096 + 100, 0, 50);
    EXPECT_EQ(all, want);
  };
  check();  // from the cache
  blob.RunAll();
  check();  // from the maps
  EXPECT_EQ(dev->counters().unmaps_logged, 2u);
  auto dev2 = OpenDevice(Vol(size, 4096), blob);  // after recovery
  ASSERT_TRUE(dev2);
  dev = std::move(dev2);
  check();
}

TEST(LogDevice, BackpressureQueuesAndNeverDrops) {
  const uint64_t size = 32 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  EngineOptions opts;
  opts.max_buffered_bytes = 2 * g.expanded;
  auto dev = OpenDevice(Vol(size, 4096), blob, opts);
  ASSERT_TRUE(dev);
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<int> res(10, 1);
  for (int i = 0; i < 10; ++i) {
    bufs.emplace_back(4096, static_cast<uint8_t>(i + 1));
    dev->Write(uint64_t(i) * 4096, 4096, bufs.back().data(), false, [&res, i](int r) { res[i] = r; });
  }
  EXPECT_EQ(res[0], 0);
  EXPECT_EQ(res[1], 0);
  EXPECT_EQ(res[2], 1);  // waiting for memory
  EXPECT_LE(blob.pending(), 2u);
  EXPECT_GT(dev->counters().memory_waits, 0u);
  blob.RunAll();
  for (int r : res) EXPECT_EQ(r, 0);
  auto all = ReadAll(*dev, blob);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(all[uint64_t(i) * 4096], i + 1);

  // The epoch bound: two unretired epochs at most.
  opts.max_unretired_epochs = 2;
  MemoryBlobIo blob2(g.blob_bytes);
  auto dev2 = OpenDevice(Vol(size, 4096), blob2, opts);
  ASSERT_TRUE(dev2);
  std::vector<int> r2(4, 1);
  for (int i = 0; i < 4; ++i) {
    dev2->Write(0, 100, bufs[0].data(), false, [&r2, i](int r) { r2[i] = r; });
    dev2->Flush([](int r) { EXPECT_EQ(r, 0); });
  }
  EXPECT_EQ(r2[0], 0);
  EXPECT_EQ(r2[1], 0);
  EXPECT_EQ(r2[2], 1);
  EXPECT_GT(dev2->counters().epoch_waits, 0u);
  blob2.RunAll();
  for (int r : r2) EXPECT_EQ(r, 0);
}

TEST(LogDevice, FuaWaitsForItsEpochAndSurvivesCrash) {
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes, 7);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> a(4096, 0xa1), b(4096, 0xb2);
  std::optional<int> ra, rb;
  dev->Write(0, 4096, a.data(), false, [&](int r) { ra = r; });
  const uint64_t e = dev->current_epoch();
  dev->Write(4096, 4096, b.data(), true, [&](int r) { rb = r; });
  EXPECT_TRUE(ra);
  EXPECT_FALSE(rb);  // not durable yet
  EXPECT_EQ(dev->current_epoch(), e + 1);  // the FUA write closed its epoch
  while (!rb) ASSERT_TRUE(blob.Step());
  EXPECT_EQ(*rb, 0);
  EXPECT_GE(dev->last_durable_epoch(), e);
  std::mt19937_64 rng(1);
  MemoryBlobIo crashed(blob.CrashImage(rng), 2);
  auto dev2 = OpenDevice(Vol(size, 4096), crashed);
  ASSERT_TRUE(dev2);
  auto all = ReadAll(*dev2, crashed);
  EXPECT_EQ(all[0], 0xa1);  // same epoch, earlier: present too
  EXPECT_EQ(all[4096], 0xb2);
}

TEST(LogDevice, ManyLapsAndCheckpointsThenRecover) {
  // A small volume overwritten many times: the writer laps the permutation,
  // checkpoints keep up (lap rule), recovery finds the same contents.
  const uint64_t size = 8 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes, 3);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::mt19937_64 rng(5);
  Model model(size);
  for (int i = 0; i < 3000; ++i) {
    auto [off, len] = RandomRange(rng, size, 4096);
    auto d = Pattern(rng, len);
    ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(off, len, d.data(), false, done); }), 0);
    model.Write(off, d);
    if (rng() % 5 == 0) blob.Step();
  }
  blob.RunAll();
  EXPECT_GT(dev->position(), 20 * g.pblocks);
  EXPECT_GT(dev->counters().checkpoints, 20u);
  EXPECT_EQ(ReadAll(*dev, blob), model.bytes());
  std::mt19937_64 crng(9);
  MemoryBlobIo image(blob.CrashImage(crng), 4);
  auto dev2 = OpenDevice(Vol(size, 4096), image);
  ASSERT_TRUE(dev2) << "open failed";
  EXPECT_EQ(ReadAll(*dev2, image), model.bytes());
}

TEST(LogDevice, CheckpointRoundTrip) {
  const uint64_t size = 32 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes, 3);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  EXPECT_NE(dev->recovery_report().find("formatted"), std::string::npos);
  std::vector<uint8_t> d(5 * 4096 + 77, 0x42);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(3000, static_cast<uint32_t>(d.size()), d.data(), false, done); }), 0);
  blob.RunAll();  // a checkpoint records applied (durable) writes only
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Checkpoint(done); }), 0);
  const uint64_t pos = dev->checkpoint_position();
  EXPECT_EQ(pos, dev->position());
  // Another write after the checkpoint: found by roll-forward.
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 10, d.data(), false, done); }), 0);
  blob.RunAll();
  const auto want = ReadAll(*dev, blob);
  auto dev2 = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev2);
  EXPECT_EQ(ReadAll(*dev2, blob), want);
  EXPECT_NE(dev2->recovery_report().find("rolled forward 1 blocks"), std::string::npos)
      << dev2->recovery_report();
  EXPECT_EQ(dev2->generation(), dev->generation() + 1);
  // Nothing new: a checkpoint request completes without IO.
  const uint64_t writes = blob.writes();
  ASSERT_EQ(Sync(blob, [&](auto done) { dev2->Checkpoint(done); }), 0);
  EXPECT_EQ(blob.writes(), writes);
}

TEST(LogDevice, CorruptOrForeignCheckpointsFailOpen) {
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  ASSERT_TRUE(OpenDevice(Vol(size, 4096), blob));  // formats slot 0
  ASSERT_TRUE(OpenDevice(Vol(size, 4096), blob));  // recovery checkpoint in slot 1
  std::vector<uint8_t> img = blob.durable();
  for (unsigned s = 0; s < 2; ++s) img[g.SlotOffset(s) + kLogPage + 1] ^= 0xff;  // both bodies
  MemoryBlobIo bad(img, 1);
  int res = 0;
  EXPECT_FALSE(OpenDevice(Vol(size, 4096), bad, {}, &res));
  EXPECT_EQ(res, -EIO);
  // One body bad: the other slot is used.
  img = blob.durable();
  img[g.SlotOffset(1) + kLogPage + 1] ^= 0xff;
  MemoryBlobIo half(img, 1);
  EXPECT_TRUE(OpenDevice(Vol(size, 4096), half));
  // Another geometry (the blob is big enough for both): -EINVAL.
  MemoryBlobIo other(blob.durable(), 1);
  EXPECT_FALSE(OpenDevice(Vol(size - 4096, 4096), other, {}, &res));
  EXPECT_EQ(res, -EINVAL);
}

TEST(LogDevice, WriteErrorsAreRetriedThenFailTheEngine) {
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> d(4096, 9);
  blob.FailNext(2, -EIO);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 4096, d.data(), true, done); }), 0);
  EXPECT_EQ(dev->counters().write_retries, 2u);
  blob.FailNext(100, -EIO);
  std::optional<int> fua;
  dev->Write(4096, 4096, d.data(), true, [&](int r) { fua = r; });
  blob.RunAll();
  ASSERT_TRUE(fua);
  EXPECT_EQ(*fua, -EIO);
  EXPECT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 1, d.data(), false, done); }), -EIO);
  EXPECT_EQ(Sync(blob, [&](auto done) { dev->Flush(done); }), -EIO);
  EXPECT_EQ(Sync(blob, [&](auto done) { dev->Quiesce(done); }), -EIO);
  std::vector<uint8_t> got(4096);
  EXPECT_EQ(Sync(blob, [&](auto done) { dev->Read(0, 4096, got.data(), done); }), 0);
  EXPECT_EQ(got, d);
}

TEST(LogDevice, CorruptBaseFailsThePartialWrite) {
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> d(4096, 7);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 4096, d.data(), false, done); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Quiesce(done); }), 0);
  // Flip a data byte of every physical block: the one holding block 0 now
  // fails its checksum when read before a partial write.
  std::vector<uint8_t> img = blob.durable();
  for (uint64_t p = 0; p < g.pblocks; ++p) img[g.BlockOffset(p) + 5] ^= 0xff;
  {
    // A FUA write is never acknowledged early: it fails alone...
    MemoryBlobIo bad(img, 1);
    auto dev2 = OpenDevice(Vol(size, 4096), bad);
    ASSERT_TRUE(dev2);
    EXPECT_EQ(Sync(bad, [&](auto done) { dev2->Write(100, 10, d.data(), true, done); }), -EIO);
    EXPECT_EQ(dev2->counters().errors, 1u);
    // ... and whole-block writes need no base and go on.
    EXPECT_EQ(Sync(bad, [&](auto done) { dev2->Write(0, 4096, d.data(), false, done); }), 0);
    EXPECT_EQ(Sync(bad, [&](auto done) { dev2->Flush(done); }), 0);
  }
  {
    // A plain partial write is acknowledged before its base arrives; when
    // the base turns out corrupt the write is lost, so the engine fails:
    // the next flush (and write) reports it, reads go on.
    MemoryBlobIo bad(img, 1);
    bad.set_async_reads(true);
    auto dev2 = OpenDevice(Vol(size, 4096), bad);
    ASSERT_TRUE(dev2);
    std::optional<int> w;
    dev2->Write(100, 10, d.data(), false, [&](int r) { w = r; });
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, 0);
    EXPECT_EQ(dev2->counters().early_acks, 1u);
    bad.RunAll();
    EXPECT_EQ(dev2->counters().errors, 1u);
    EXPECT_EQ(Sync(bad, [&](auto done) { dev2->Flush(done); }), -EIO);
    EXPECT_EQ(Sync(bad, [&](auto done) { dev2->Write(0, 4096, d.data(), false, done); }), -EIO);
    EXPECT_NE(dev2->CountersText().find("failed=1\n"), std::string::npos);
  }
}

TEST(LogDevice, PartialWritesAreAcknowledgedEarlyAndReadsWaitForThem) {
  const uint64_t size = 16 * 65536;
  auto g = *LogGeometry::For(size, 65536);
  MemoryBlobIo blob(g.blob_bytes);
  blob.set_async_reads(true);
  auto dev = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> a(65536, 0xaa), b(4096, 0xbb), c(4096, 0xcc);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(0, 65536, a.data(), false, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  // Block 0 is durable and out of the cache: a 4 KiB write into it needs
  // its base from the blob, yet is acknowledged at once; the caller's buffer
  // may be reused right away.
  std::optional<int> w1, w2;
  dev->Write(8192, 4096, b.data(), false, [&](int r) { w1 = r; });
  b.assign(4096, 0x11);  // reuse
  dev->Write(20000, 4096, c.data(), false, [&](int r) { w2 = r; });
  ASSERT_TRUE(w1 && w2);
  EXPECT_EQ(*w1, 0);
  EXPECT_EQ(*w2, 0);
  EXPECT_EQ(dev->counters().early_acks, 2u);
  // A read of the written bytes waits for the writes; one elsewhere in the
  // block does not.
  std::vector<uint8_t> got(65536), other(100);
  std::optional<int> r1, r2;
  dev->Read(0, 65536, got.data(), [&](int r) { r1 = r; });
  dev->Read(30000, 100, other.data(), [&](int r) { r2 = r; });
  EXPECT_FALSE(r1);
  EXPECT_EQ(dev->counters().parked_reads, 1u);
  blob.RunAll();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(*r1, 0);
  EXPECT_EQ(*r2, 0);
  std::vector<uint8_t> want = a;
  memset(want.data() + 8192, 0xbb, 4096);
  memset(want.data() + 20000, 0xcc, 4096);
  EXPECT_EQ(got, want);
  EXPECT_EQ(other, std::vector<uint8_t>(100, 0xaa));
  // Both are durable once quiesced, and survive a reopen.
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  auto dev2 = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev2);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev2->Read(0, 65536, got.data(), d); }), 0);
  EXPECT_EQ(got, want);
}

// A partial write queued behind another write of its block takes its base
// from that write's image when it is applied, not from a blob read at
// admission (which would hold up every request behind it).
TEST(LogDevice, AQueuedPartialWriteTakesItsBaseFromTheAppliedWriteBeforeIt) {
  const uint64_t size = 16 * 65536;
  auto g = *LogGeometry::For(size, 65536);
  MemoryBlobIo blob(g.blob_bytes);
  blob.set_async_reads(true);
  auto dev = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> a(65536, 0xaa), b(4096, 0xbb), x(4096, 0xee), c(4096, 0xcc);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(0, 65536, a.data(), false, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(65536, 65536, a.data(), false, d); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  const uint64_t reads0 = blob.reads();
  // W1 into block 0: its base is read from the blob, then it is admitted
  // (its block write is queued in the blob, not complete).
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Write(8192, 4096, b.data(), false, d); }), 0);
  ASSERT_TRUE(blob.Step());  // the base read, the only thing queued
  blob.set_hold_reads(true);
  // X into block 1 waits for its base read, which the blob holds back; W2
  // into block 0 queues behind X, its base to come from W1.
  std::optional<int> wx, w2;
  dev->Write(65536 + 100, 4096, x.data(), false, [&](int r) { wx = r; });
  dev->Write(20000, 4096, c.data(), false, [&](int r) { w2 = r; });
  ASSERT_TRUE(wx && w2);  // acknowledged early
  blob.RunAll();          // W1's block write completes and is applied; X's read still held
  EXPECT_EQ(dev->counters().rmw_base_handed, 1u);
  blob.set_hold_reads(false);
  blob.RunAll();
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  EXPECT_EQ(dev->counters().rmw_base_late, 0u);
  EXPECT_EQ(blob.reads() - reads0, 2u);  // W1's and X's bases only
  std::vector<uint8_t> want(2 * 65536, 0xaa), got(2 * 65536);
  memset(want.data() + 8192, 0xbb, 4096);
  memset(want.data() + 20000, 0xcc, 4096);
  memset(want.data() + 65536 + 100, 0xee, 4096);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Read(0, 2 * 65536, got.data(), d); }), 0);
  EXPECT_EQ(got, want);
  auto dev2 = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev2);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev2->Read(0, 2 * 65536, got.data(), d); }), 0);
  EXPECT_EQ(got, want);
}

// Writes every 64 KiB block of dev once, block v filled with round * 16 + v,
// into *img if given. Whole blocks are admitted (and acknowledged) at once.
void WriteRound(LogDevice& dev, uint64_t blocks, uint8_t round, std::vector<uint8_t>* img) {
  for (uint64_t v = 0; v < blocks; ++v) {
    std::vector<uint8_t> d(65536, static_cast<uint8_t>(round * 16 + v));
    if (img) memcpy(img->data() + v * 65536, d.data(), d.size());
    std::optional<int> res;
    dev.Write(v * 65536, 65536, d.data(), false, [&](int r) { res = r; });
    ASSERT_TRUE(res);
    ASSERT_EQ(*res, 0);
  }
}

// When the walk reaches a block whose virtual block has a newer write not yet
// applied, that step's write is held until the newer one is applied, and
// the requests behind it are admitted meanwhile.
TEST(LogDevice, AStepOntoABlockStillInUseHoldsOnlyItsOwnWrite) {
  const uint64_t V = 16, size = V * 65536;
  auto g = *LogGeometry::For(size, 65536);
  MemoryBlobIo blob(g.blob_bytes, 7);
  auto dev = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> img(size);
  auto write_all = [&](uint8_t round) { WriteRound(*dev, V, round, &img); };
  // Round 1 (steps 0-15) is durable and applied. Rounds 2-6 walk the next
  // lap (steps 16-95) with no block write completing: rounds 2-5 take the
  // P - V = 64 spare blocks, then round 6 comes upon round 1's blocks again,
  // each the applied copy of a virtual block with newer writes in flight:
  // each of its steps takes the block and holds its write. (Waiting there
  // instead stalled the queue until a newer write was applied.)
  write_all(1);
  blob.RunAll();
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  ASSERT_EQ(g.pblocks - V, 64u);
  for (uint8_t round = 2; round <= 6; ++round) write_all(round);
  const std::string t = dev->CountersText();
  EXPECT_NE(t.find("queued_requests=0\n"), std::string::npos) << t;
  EXPECT_EQ(dev->counters().held_writes, V);
  EXPECT_EQ(blob.pending(), 64u);  // rounds 2-5 in flight; round 6 held, not issued
  blob.RunAll();
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  std::vector<uint8_t> got(size);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Read(0, size, got.data(), d); }), 0);
  EXPECT_EQ(got, img);
  auto dev2 = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev2);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev2->Read(0, size, got.data(), d); }), 0);
  EXPECT_EQ(got, img);
}

// A step onto a block that a read still has in flight holds its write
// until the read is done, even once the block is free in the maps.
TEST(LogDevice, AStepOntoABlockBeingReadHoldsItsWriteUntilTheReadIsDone) {
  const uint64_t V = 16, size = V * 65536;
  auto g = *LogGeometry::For(size, 65536);
  MemoryBlobIo blob(g.blob_bytes, 11);
  auto dev = OpenDevice(Vol(size, 65536), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> img1(size);
  auto write_all = [&](uint8_t round, std::vector<uint8_t>* img) { WriteRound(*dev, V, round, img); };
  write_all(1, &img1);
  blob.RunAll();
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  // A read of the whole volume from round 1's blocks, held in the blob.
  blob.set_async_reads(true);
  blob.set_hold_reads(true);
  std::vector<uint8_t> got(size);
  std::optional<int> rd;
  dev->Read(0, size, got.data(), [&](int r) { rd = r; });
  ASSERT_FALSE(rd);
  // Rounds 2-5 take the spare blocks and are applied: round 1's blocks are
  // free in the maps, yet still being read. Round 6's steps come upon them
  // (see the test above): its writes are held, and the read stays intact.
  for (uint8_t round = 2; round <= 5; ++round) write_all(round, nullptr);
  blob.RunAll();  // everything but the held read
  EXPECT_EQ(dev->counters().held_writes, 0u);
  write_all(6, nullptr);
  EXPECT_EQ(dev->counters().held_writes, V);
  blob.RunAll();
  EXPECT_FALSE(rd);
  EXPECT_GT(blob.pending(), 0u);
  const uint64_t writes_before = blob.writes();
  blob.set_hold_reads(false);
  blob.RunAll();
  ASSERT_TRUE(rd);
  EXPECT_EQ(*rd, 0);
  EXPECT_EQ(got, img1);
  EXPECT_GE(blob.writes() - writes_before, 1u);  // round 6 went out after the read
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Quiesce(d); }), 0);
  std::vector<uint8_t> want(size);
  for (uint64_t v = 0; v < V; ++v) memset(want.data() + v * 65536, 6 * 16 + static_cast<int>(v), 65536);
  ASSERT_EQ(Sync(blob, [&](auto d) { dev->Read(0, size, got.data(), d); }), 0);
  EXPECT_EQ(got, want);
}

TEST(LogDevice, DurableFlushWaitsForEveryEarlierWriteAndTrim) {
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  blob.set_async_reads(true);
  auto dev = OpenDevice(Vol(size, 4096), blob);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> a(4096, 0x5a);
  std::optional<int> w, t, f;
  dev->Write(0, 4096, a.data(), false, [&](int r) { w = r; });
  dev->Trim(8192, 100, [&](int r) { t = r; });  // partial: needs a base
  dev->DurableFlush([&](int r) { f = r; });
  ASSERT_TRUE(w && t);
  EXPECT_FALSE(f) << "replied before anything was durable";
  const uint64_t e = dev->current_epoch();
  logtest::StepUntil(blob, f);
  ASSERT_TRUE(f);
  EXPECT_EQ(*f, 0);
  EXPECT_GE(dev->last_durable_epoch(), e - 1);
  // Durable: a crash now loses nothing of it.
  std::mt19937_64 rng(1);
  MemoryBlobIo after(blob.CrashImage(rng), 2);
  auto dev2 = OpenDevice(Vol(size, 4096), after);
  ASSERT_TRUE(dev2);
  std::vector<uint8_t> got(4096);
  ASSERT_EQ(Sync(after, [&](auto d) { dev2->Read(0, 4096, got.data(), d); }), 0);
  EXPECT_EQ(got, a);
}

TEST(LogDevice, HugeTrimIsSplit) {
  const uint64_t size = 8192ull * 4096;  // 32 MiB, 8192 blocks
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  EngineOptions opts;
  opts.max_buffered_bytes = 1 << 20;
  auto dev = OpenDevice(Vol(size, 4096), blob, opts);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> d(4096, 7);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(size - 4096, 4096, d.data(), false, done); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Trim(0, static_cast<uint32_t>(size), done); }), 0);
  blob.RunAll();
  EXPECT_EQ(dev->counters().unmaps_logged, 8192u);
  EXPECT_EQ(ReadAll(*dev, blob), std::vector<uint8_t>(size, 0));
}

TEST(LogDevice, ReadOnlyOpenAndMakeEngine) {
  const uint64_t size = 16 * 4096;
  VolumeInfo vol = Vol(size, 4096);
  MemoryBlobIo blob(EngineBlobSize(vol));
  Status why;
  auto e = MakeEngine(vol, &blob, {}, &why);
  ASSERT_TRUE(e) << why.ToString();
  Engine& eng = **e;
  ASSERT_EQ(Sync(blob, [&](auto done) { eng.Open(done); }), 0);
  std::vector<uint8_t> d(4096, 3);
  ASSERT_EQ(Sync(blob, [&](auto done) { eng.Write(8192, 4096, d.data(), false, done); }), 0);
  ASSERT_EQ(Sync(blob, [&](auto done) { eng.Quiesce(done); }), 0);
  EngineOptions ro;
  ro.read_only = true;
  const uint64_t writes = blob.writes();
  auto dev = OpenDevice(vol, blob, ro);
  ASSERT_TRUE(dev);
  EXPECT_EQ(blob.writes(), writes);  // a read-only open writes nothing
  EXPECT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 1, d.data(), false, done); }), -EROFS);
  EXPECT_EQ(ReadAll(*dev, blob)[8192], 3);
  MemoryBlobIo small(size);
  EXPECT_FALSE(MakeEngine(vol, &small, {}, &why));  // blob too small for the log
}

TEST(LogDevice, PeriodicCheckpointsOnTheLoop) {
  auto loop = Loop::Create();
  if (!loop) GTEST_SKIP() << "io_uring unavailable: " << errstr(loop.err());
  const uint64_t size = 16 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes);
  EngineOptions opts;
  opts.loop = loop->get();
  opts.checkpoint_interval_ms = 5;
  auto dev = OpenDevice(Vol(size, 4096), blob, opts);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> d(100, 1);
  ASSERT_EQ(Sync(blob, [&](auto done) { dev->Write(0, 100, d.data(), false, done); }), 0);
  blob.RunAll();
  const uint64_t before = dev->counters().checkpoints;
  const uint64_t deadline = Loop::NowNs() + 2'000'000'000ull;
  while (dev->counters().checkpoints == before && Loop::NowNs() < deadline) {
    (*loop)->RunOnce(10);
    blob.RunAll();
  }
  EXPECT_GT(dev->counters().checkpoints, before);
  EXPECT_EQ(dev->checkpoint_position(), dev->position());
}

TEST(LogDevice, AdjacentBlockWritesMergeAndTornMergesRecoverAPrefix) {
  auto loop = Loop::Create();
  if (!loop) GTEST_SKIP() << "io_uring unavailable: " << errstr(loop.err());
  const uint64_t size = 256 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  ASSERT_EQ(g.DefaultRun(), kLogRunBytes / (2 * 4096));
  MemoryBlobIo blob(g.blob_bytes, 5);
  EngineOptions opts;
  opts.loop = loop->get();
  auto dev = OpenDevice(Vol(size, 4096), blob, opts);
  ASSERT_TRUE(dev);
  blob.RunAll();
  // 24 single-block writes, each in its own epoch, submitted in one loop
  // iteration: consecutive steps of one run, so a few blob writes at most
  // (a fresh blob starts at the start of a run).
  const uint64_t before = blob.writes();
  int acked = 0;
  for (int i = 0; i < 24; ++i) {
    std::vector<uint8_t> d(4096, static_cast<uint8_t>(i + 1));
    dev->Write(static_cast<uint64_t>(i) * 4096 * 3, 4096, d.data(), false, [&](int r) { acked += r == 0; });
    dev->Flush([](int) {});
  }
  EXPECT_EQ(acked, 24);
  EXPECT_EQ(blob.writes(), before);  // issued at the end of the loop iteration
  (*loop)->RunOnce(0);
  EXPECT_EQ(blob.writes(), before + 1);
  EXPECT_EQ(dev->counters().coalesced_writes, 1u);
  // A crash now tears the merged write at 4 KiB: recovery keeps the writes
  // of a prefix of the epochs and drops the rest, as it would for separate
  // block writes.
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    MemoryBlobIo crashed(blob.CrashImage(rng), seed);
    auto dev2 = OpenDevice(Vol(size, 4096), crashed);
    ASSERT_TRUE(dev2);
    auto all = ReadAll(*dev2, crashed);
    int present = 0;
    while (present < 24 && all[static_cast<size_t>(present) * 4096 * 3] == present + 1) present++;
    for (int i = present; i < 24; ++i)
      ASSERT_EQ(all[static_cast<size_t>(i) * 4096 * 3], 0) << "seed " << seed << ": epoch of write " << i
                                                            << " survived after a lost one";
  }
  blob.RunAll();
  auto all = ReadAll(*dev, blob);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(all[static_cast<size_t>(i) * 4096 * 3], i + 1);
}

TEST(LogDevice, OnlyAGroupThatCanStillGrowWaitsForIssueSlots) {
  auto loop = Loop::Create();
  if (!loop) GTEST_SKIP() << "io_uring unavailable: " << errstr(loop.err());
  const uint64_t size = 256 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo blob(g.blob_bytes, 9);
  EngineOptions opts;
  opts.loop = loop->get();
  auto dev = OpenDevice(Vol(size, 4096), blob, opts);
  ASSERT_TRUE(dev);
  blob.RunAll();
  // Trims log trailer-only blocks, which never merge: each is a complete
  // group and goes at once, past kMaxIssuing too.
  const int trims = static_cast<int>(LogDevice::kMaxIssuing) + 4;
  int acked = 0;
  for (int i = 0; i < trims; ++i) dev->Trim(static_cast<uint64_t>(i) * 4096, 4096, [&](int r) { acked += r == 0; });
  EXPECT_EQ(acked, trims);
  (*loop)->RunOnce(0);
  EXPECT_EQ(blob.pending(), static_cast<size_t>(trims));
  // Adjacent writes at the end of the batch could still grow: they wait
  // while kMaxIssuing writes are in flight, and merge with later ones.
  std::vector<uint8_t> d(4096, 0x5a);
  for (int i = 0; i < 3; ++i) dev->Write(static_cast<uint64_t>(40 + i) * 4096, 4096, d.data(), false, [](int) {});
  (*loop)->RunOnce(0);
  for (int i = 3; i < 5; ++i) dev->Write(static_cast<uint64_t>(40 + i) * 4096, 4096, d.data(), false, [](int) {});
  (*loop)->RunOnce(0);
  EXPECT_EQ(blob.pending(), static_cast<size_t>(trims));
  EXPECT_EQ(dev->counters().coalesced_writes, 0u);
  // Completions free slots; below kMaxIssuing the group goes, as one write.
  const uint64_t before = blob.writes();
  while (blob.writes() == before) {
    ASSERT_TRUE(blob.Step());
    (*loop)->RunOnce(0);
  }
  EXPECT_EQ(blob.writes(), before + 1);
  EXPECT_EQ(dev->counters().coalesced_writes, 1u);
  EXPECT_EQ(blob.pending(), LogDevice::kMaxIssuing);  // 7 trims left + the merged write
  for (int guard = 0; guard < 1000 && blob.pending() > 0; ++guard) {
    blob.Step();
    (*loop)->RunOnce(0);
  }
  EXPECT_EQ(dev->counters().blocks_applied, static_cast<uint64_t>(trims + 5));
  auto all = ReadAll(*dev, blob);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(all[static_cast<size_t>(40 + i) * 4096], 0x5a);
}

// A BlobIo whose writes fail at once, inside Write() (as StripedBlob's do
// once its writer is fenced): merged issue must not re-enter itself.
class SyncFailingBlob : public BlobIo {
 public:
  explicit SyncFailingBlob(MemoryBlobIo* inner) : inner_(inner) {}
  uint64_t size() const override { return inner_->size(); }
  void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) override { inner_->Read(off, len, buf, std::move(done)); }
  void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) override {
    if (!fail) return inner_->Write(off, len, buf, std::move(done));
    writes_failed++;
    done(-EPERM);
  }
  void Zero(uint64_t off, uint64_t len, bool keep, Done done) override { inner_->Zero(off, len, keep, std::move(done)); }
  void Allocation(uint64_t off, uint64_t len, ExtentsDone done) override { inner_->Allocation(off, len, std::move(done)); }
  bool fail = false;
  int writes_failed = 0;

 private:
  MemoryBlobIo* inner_;
};

TEST(LogDevice, WritesFailingInsideTheBlobCallFailTheEngineCleanly) {
  auto loop = Loop::Create();
  if (!loop) GTEST_SKIP() << "io_uring unavailable: " << errstr(loop.err());
  const uint64_t size = 256 * 4096;
  auto g = *LogGeometry::For(size, 4096);
  MemoryBlobIo mem(g.blob_bytes, 3);
  SyncFailingBlob blob(&mem);
  EngineOptions opts;
  opts.loop = loop->get();
  Status why;
  auto d = LogDevice::Create(Vol(size, 4096), &blob, opts, &why);
  ASSERT_TRUE(d);
  std::unique_ptr<LogDevice> dev = std::move(*d);
  std::optional<int> opened;
  dev->Open([&](int r) { opened = r; });
  while (!opened && mem.Step()) (*loop)->RunOnce(0);
  ASSERT_EQ(opened.value_or(-1), 0);
  blob.fail = true;
  std::vector<uint8_t> data(4096, 1);
  for (int i = 0; i < 40; ++i) dev->Write(static_cast<uint64_t>(i) * 4096, 4096, data.data(), false, [](int) {});
  std::optional<int> flushed;
  const uint64_t deadline = Loop::NowNs() + 5'000'000'000ull;
  while (!flushed && Loop::NowNs() < deadline) {
    (*loop)->RunOnce(5);
    if (dev->counters().errors > 0 && !flushed) dev->DurableFlush([&](int r) { flushed = r; });
  }
  ASSERT_TRUE(flushed);
  EXPECT_EQ(*flushed, -EPERM);  // the engine failed with the blob's error
  // Every write attempt failed once per try: the merged groups were issued
  // once each, not again and again from inside their own callbacks.
  EXPECT_LE(blob.writes_failed, 40 * LogDevice::kMaxAttempts);
}

}  // namespace
}  // namespace flurry
