// SPDX-License-Identifier: Apache-2.0
#include "tractserver/tract_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include "tractserver/tract.h"
#include "tractserver/tract_format.h"

namespace flurry::tractstore {
namespace {

constexpr uint32_t kTract = 256 * 1024;
const TractKey kKey{1, 2, 3};

// Every test runs twice: without a journal (each write syncs its tract
// files) and with a 1 MiB one (group commit, replay).
class StoreTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    char t[] = "/tmp/flurry-store-test-XXXXXX";
    dir_ = mkdtemp(t);
    loop_ = std::move(Loop::Create(64).value());
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);  // kept for inspection on failure
  }
  void Reopen() {
    store_.reset();
    store_ = std::move(TractStore::Open(loop_.get(), {dir_, 8, GetParam()}).value());
  }
  void Wait(bool* done) {
    while (!*done) loop_->RunOnce(1000);
  }
  int Write(uint32_t off, const std::vector<uint8_t>& data, uint32_t flags = 0, const TractKey& k = kKey) {
    AlignedBuffer b(data.size());
    if (!data.empty()) memcpy(b.data(), data.data(), data.size());
    bool done = false;
    int res = 1;
    store_->Write(k, kTract, off, static_cast<uint32_t>(data.size()), std::move(b), flags,
                  [&](int r) { res = r; done = true; });
    Wait(&done);
    return res;
  }
  int Read(uint32_t off, uint32_t len, std::vector<uint8_t>* out, std::vector<uint8_t>* bm = nullptr) {
    bool done = false;
    int res = 1;
    store_->Read(kKey, kTract, off, len, false, [&](int r, TractStore::ReadResult rr) {
      res = r;
      if (r == 0) {
        out->assign(rr.buf.data() + rr.data_off, rr.buf.data() + rr.data_off + len);
        if (bm) *bm = rr.bitmap;
      }
      done = true;
    });
    Wait(&done);
    return res;
  }
  int Checkpoint() {
    bool done = false;
    int res = 1;
    store_->Checkpoint([&](int r) { res = r; done = true; });
    Wait(&done);
    return res;
  }
  int Zero(uint32_t off, uint32_t len, bool keep) {
    bool done = false;
    int res = 1;
    store_->Zero(kKey, kTract, off, len, keep, [&](int r) { res = r; done = true; });
    Wait(&done);
    return res;
  }
  std::string Base() { return dir_ + "/tracts/00000000000000010000000000000002/3"; }

  std::string dir_;
  std::unique_ptr<Loop> loop_;
  std::unique_ptr<TractStore> store_;
};

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

TEST_P(StoreTest, UnwrittenReadsZeroAndUnallocated) {
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, 8192, &out, &bm), 0);
  EXPECT_EQ(out, std::vector<uint8_t>(8192, 0));
  EXPECT_EQ(bm[0], 0);
}

TEST_P(StoreTest, AlignedAndUnalignedWritesReadBack) {
  std::vector<uint8_t> model(kTract, 0);
  auto a = Pattern(16384, 1);
  ASSERT_EQ(Write(4096, a), 0);
  std::copy(a.begin(), a.end(), model.begin() + 4096);
  auto b = Pattern(5000, 9);  // unaligned both ends: read-modify-write
  ASSERT_EQ(Write(6000, b), 0);
  std::copy(b.begin(), b.end(), model.begin() + 6000);
  auto c = Pattern(100, 77);  // inside one chunk of a hole
  ASSERT_EQ(Write(100000, c), 0);
  std::copy(c.begin(), c.end(), model.begin() + 100000);
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, kTract, &out, &bm), 0);
  EXPECT_TRUE(out == model);
  EXPECT_EQ(bm[0], 0b00011110);  // chunks 1..4 allocated
  EXPECT_EQ(store_->stats().rmw, 2u);
  Reopen();
  ASSERT_EQ(Read(0, kTract, &out), 0);
  EXPECT_TRUE(out == model) << "data must survive a restart";
}

TEST_P(StoreTest, TrimDeallocatesWholeChunksAndZeroesPartial) {
  ASSERT_EQ(Write(0, Pattern(32768, 3)), 0);
  ASSERT_EQ(Zero(2048, 16384, false), 0);  // chunks 1..3 freed, 0 and 4 partly zeroed
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, 32768, &out, &bm), 0);
  auto model = Pattern(32768, 3);
  std::fill(model.begin() + 2048, model.begin() + 2048 + 16384, 0);
  EXPECT_TRUE(out == model);
  EXPECT_EQ(bm[0], 0b11110001);
  ASSERT_EQ(Zero(0, 8192, true), 0);  // NO_HOLE keeps allocation
  ASSERT_EQ(Read(0, 8192, &out, &bm), 0);
  EXPECT_EQ(out, std::vector<uint8_t>(8192, 0));
  EXPECT_EQ(bm[0] & 3, 3);
}

TEST_P(StoreTest, CorruptionIsAnErrorNeverData) {
  ASSERT_EQ(Write(0, Pattern(8192, 5)), 0);
  // Checkpointed first: otherwise the journal's replay would (rightly)
  // rewrite the chunk damaged below.
  ASSERT_EQ(Checkpoint(), 0);
  store_.reset();
  int fd = open((Base() + ".data").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t x = 0xff;
  ASSERT_EQ(pwrite(fd, &x, 1, 4100), 1);
  close(fd);
  Reopen();
  std::vector<uint8_t> out;
  EXPECT_EQ(Read(0, 4096, &out), 0);          // chunk 0 is fine
  EXPECT_EQ(Read(4096, 4096, &out), -EIO);    // chunk 1 fails verification
  EXPECT_EQ(Read(0, 8192, &out), -EIO);
  EXPECT_EQ(store_->stats().checksum_errors, 2u);
}

// Simulates a crash after the new checksum became durable (pending) but
// before / after the data write, by editing the files as the write path does.
TEST_P(StoreTest, PendingChunksResolveToOldOrNew) {
  auto a = Pattern(4096, 11), b = Pattern(4096, 22);
  ASSERT_EQ(Write(0, a), 0);
  store_.reset();
  int mfd = open((Base() + ".meta").c_str(), O_RDWR);
  ChunkEntry e;
  ASSERT_EQ(pread(mfd, &e, sizeof e, kMetaHeaderSize), (ssize_t)sizeof e);
  unsigned next = (e.flags & kChunkCur1) ? 0 : 1;
  e.sum[next] = Checksum(b.data(), b.size());
  e.flags |= kChunkPending;
  SealEntry(&e, 0);
  ASSERT_EQ(pwrite(mfd, &e, sizeof e, kMetaHeaderSize), (ssize_t)sizeof e);
  // Case 1: the data write never happened -> old data.
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == a);
  store_.reset();
  // Case 2: the data write happened but the final entry update was lost -> new data.
  ASSERT_EQ(pwrite(mfd, &e, sizeof e, kMetaHeaderSize), (ssize_t)sizeof e);
  int dfd = open((Base() + ".data").c_str(), O_RDWR);
  ASSERT_EQ(pwrite(dfd, b.data(), 4096, 0), 4096);
  close(dfd);
  Reopen();
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == b);
  // And a later write after resolution keeps working across restarts.
  ASSERT_EQ(Write(0, a), 0);
  Reopen();
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == a);
  close(mfd);
}

TEST_P(StoreTest, ConcurrentOverlappingWritesApplyInArrivalOrder) {
  std::mt19937 rng(42);
  std::vector<uint8_t> model(kTract, 0);
  int outstanding = 0, errors = 0;
  std::vector<std::vector<uint8_t>> keep;
  for (int i = 0; i < 200; ++i) {
    uint32_t off = rng() % (kTract - 20000);
    uint32_t len = 1 + rng() % 20000;
    auto d = Pattern(len, static_cast<uint8_t>(i));
    std::copy(d.begin(), d.end(), model.begin() + off);
    AlignedBuffer b(len);
    memcpy(b.data(), d.data(), len);
    outstanding++;
    store_->Write(kKey, kTract, off, len, std::move(b), 0, [&](int r) { errors += r != 0; outstanding--; });
  }
  while (outstanding) loop_->RunOnce(1000);
  EXPECT_EQ(errors, 0);
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, kTract, &out), 0);
  EXPECT_TRUE(out == model);
}

TEST_P(StoreTest, ManyTractsEvictionListAndDelete) {
  for (uint64_t t = 0; t < 20; ++t) ASSERT_EQ(Write(0, Pattern(4096, 1), 0, TractKey{1, 2, t}), 0);
  ASSERT_EQ(Checkpoint(), 0);  // tracts written since the last checkpoint stay open
  EXPECT_LE(store_->stats().open_tracts, 8u);
  auto list = store_->ListTracts(1, 2);
  EXPECT_EQ(list.size(), 20u);
  for (auto& e : list) EXPECT_EQ(e.allocated_chunks, 1u);
  {
    bool done = false;
    int res = 1;
    store_->DeleteBlob(1, 2, [&](int r) { res = r; done = true; });
    Wait(&done);
    EXPECT_EQ(res, 0);
  }
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
}

TEST_P(StoreTest, TractSizeMismatchIsRejected) {
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  bool done = false;
  int res = 0;
  AlignedBuffer b(4096);
  store_->Write(kKey, kTract * 2, 0, 4096, std::move(b), 0, [&](int r) { res = r; done = true; });
  Wait(&done);
  EXPECT_EQ(res, -EINVAL);
}

// With every other open tract busy, opening one more must not evict the
// tract it just opened (the caller holds a pointer to it).
TEST_P(StoreTest, EvictionSparesTheTractJustOpened) {
  store_.reset();
  store_ = std::move(TractStore::Open(loop_.get(), {dir_, 1}).value());
  int pending = 0, failures = 0;
  auto write = [&](const TractKey& k) {
    AlignedBuffer b(4096);
    memset(b.data(), static_cast<int>(k.tract), 4096);
    pending++;
    store_->Write(k, kTract, 0, 4096, std::move(b), 0, [&](int r) {
      failures += r != 0;
      pending--;
    });
  };
  write(TractKey{1, 2, 10});  // busy until the loop runs
  write(TractKey{1, 2, 11});  // over the bound: only this new one is idle
  write(TractKey{1, 2, 12});
  while (pending > 0) loop_->RunOnce(1000);
  EXPECT_EQ(failures, 0);
  for (uint64_t t : {10, 11, 12}) {
    bool done = false;
    store_->Read(TractKey{1, 2, t}, kTract, 0, 4096, false, [&](int r, TractStore::ReadResult rr) {
      EXPECT_EQ(r, 0);
      if (r == 0) {
        EXPECT_EQ(rr.buf.data()[rr.data_off + 100], static_cast<uint8_t>(t)) << "tract " << t;
      }
      done = true;
    });
    Wait(&done);
  }
}

// Re-replication writes with FILL: they fill holes, but never overwrite a
// chunk the server already has or one a client trimmed (tombstone).
TEST_P(StoreTest, FillWritesOnlyFillChunksNeitherWrittenNorTrimmed) {
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);          // chunk 0: client data
  ASSERT_EQ(Write(8192, Pattern(4096, 2)), 0);       // chunk 2: written ...
  ASSERT_EQ(Zero(8192, 4096, false), 0);             // ... then trimmed
  ASSERT_EQ(Write(0, Pattern(16384, 9), tractproto::kFlagFill), 0);  // stale copy of chunks 0..3
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, 16384, &out, &bm), 0);
  auto fill = Pattern(16384, 9);
  auto c0 = Pattern(4096, 1);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + 4096, c0.begin())) << "written chunk kept";
  EXPECT_TRUE(std::equal(out.begin() + 4096, out.begin() + 8192, fill.begin() + 4096)) << "hole filled";
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 8192, out.begin() + 12288), std::vector<uint8_t>(4096, 0))
      << "trimmed chunk must stay a hole";
  EXPECT_EQ(bm[0], 0b1011);
  Reopen();  // the tombstone is durable
  ASSERT_EQ(Write(8192, Pattern(4096, 7), tractproto::kFlagFill), 0);
  ASSERT_EQ(Read(8192, 4096, &out), 0);
  EXPECT_EQ(out, std::vector<uint8_t>(4096, 0));
}

TEST_P(StoreTest, SecondServerOnSameDirIsRefused) {
  auto other = TractStore::Open(loop_.get(), {dir_, 8});
  EXPECT_EQ(other.err(), -EBUSY);
}


// ---- journal ----

namespace fs = std::filesystem;

void Scribble(const std::string& path, off_t off, size_t len, uint8_t seed) {
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk = Pattern(len, seed);
  ASSERT_EQ(pwrite(fd, junk.data(), len, off), static_cast<ssize_t>(len));
  close(fd);
}

// A crash after writes were journaled and acknowledged, but their unsynced
// tract-file writes never reached the disk (and one chunk was torn): the
// replay must bring back every acknowledged byte.
TEST_P(StoreTest, JournalReplayRestoresWritesTheTractFilesLost) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto a = Pattern(32768, 1);
  ASSERT_EQ(Write(0, a), 0);
  ASSERT_EQ(Checkpoint(), 0);
  fs::copy_file(Base() + ".meta", dir_ + "/meta.ckpt");
  // Journaled after the checkpoint: an aligned 8 KiB write and an
  // unaligned one (read-modify-write: the journal holds whole chunks).
  auto b = Pattern(8192, 2), c = Pattern(100, 3);
  ASSERT_EQ(Write(4096, b), 0);
  ASSERT_EQ(Write(20000, c), 0);
  std::vector<uint8_t> want = a;
  std::copy(b.begin(), b.end(), want.begin() + 4096);
  std::copy(c.begin(), c.end(), want.begin() + 20000);
  store_.reset();  // crash: no checkpoint
  // The tract files lose the journaled writes: the meta file goes back to
  // the checkpoint, and chunks 1, 2 and 4 hold garbage (torn).
  fs::copy_file(dir_ + "/meta.ckpt", Base() + ".meta", fs::copy_options::overwrite_existing);
  Scribble(Base() + ".data", 4096, 8192, 99);
  Scribble(Base() + ".data", 16384, 4096, 98);
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 2u);
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, 32768, &out), 0);
  EXPECT_TRUE(out == want);
  // Replay is idempotent and leaves an empty journal: crash again at once.
  store_.reset();
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 0u);
  ASSERT_EQ(Read(0, 32768, &out), 0);
  EXPECT_TRUE(out == want);
}

// The last batch's sync never completed (torn data): it was never
// acknowledged, so the replay stops before it; batches before it replay,
// recreating a tract whose files were lost altogether.
TEST_P(StoreTest, JournalDropsATornLastBatch) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto w1 = Pattern(4096, 5), w2 = Pattern(4096, 6);
  ASSERT_EQ(Write(0, w1), 0);     // batch 1 at 8192: header page + 1 chunk
  ASSERT_EQ(Write(8192, w2), 0);  // batch 2 at 16384
  store_.reset();
  fs::remove_all(dir_ + "/tracts/00000000000000010000000000000002");
  Scribble(dir_ + "/journal", 16384 + 4096 + 100, 16, 7);
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 1u);
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, 12288, &out, &bm), 0);
  EXPECT_TRUE(std::equal(w1.begin(), w1.end(), out.begin()));
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 8192, out.end()), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(bm[0], 0b001);
  // The journal goes on after the replay: a new write survives a crash.
  ASSERT_EQ(Write(8192, w2), 0);
  store_.reset();
  Scribble(Base() + ".data", 8192, 4096, 77);  // its unsynced tract write was lost
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 1u);
  ASSERT_EQ(Read(0, 12288, &out), 0);
  EXPECT_TRUE(std::equal(w1.begin(), w1.end(), out.begin())) << "checkpointed by the first replay";
  EXPECT_TRUE(std::equal(w2.begin(), w2.end(), out.begin() + 8192));
}

TEST_P(StoreTest, JournalReplaysTrimAndDelete) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(16384, 8)), 0);
  ASSERT_EQ(Checkpoint(), 0);
  fs::copy_file(Base() + ".meta", dir_ + "/meta.ckpt");
  fs::copy_file(Base() + ".data", dir_ + "/data.ckpt");
  ASSERT_EQ(Zero(4096, 8192, false), 0);  // trims chunks 1 and 2
  store_.reset();
  // The trim's unsynced effects are lost.
  fs::copy_file(dir_ + "/meta.ckpt", Base() + ".meta", fs::copy_options::overwrite_existing);
  fs::copy_file(dir_ + "/data.ckpt", Base() + ".data", fs::copy_options::overwrite_existing);
  Reopen();
  std::vector<uint8_t> out, bm;
  ASSERT_EQ(Read(0, 16384, &out, &bm), 0);
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 4096, out.begin() + 12288), std::vector<uint8_t>(8192, 0));
  EXPECT_EQ(bm[0], 0b1001);
  // A journaled write, then the blob deleted, then a crash: the replay must
  // not bring the tract back.
  ASSERT_EQ(Write(0, Pattern(4096, 9)), 0);
  bool done = false;
  int res = 1;
  store_->DeleteBlob(1, 2, [&](int r) { res = r; done = true; });
  Wait(&done);
  ASSERT_EQ(res, 0);
  store_.reset();
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 2u);
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
}

// A write that reaches a blob while its delete is being journaled is
// refused: journaled after the delete, it would bring the tract back on
// replay, though the delete removed it at run time. The delete, durable in
// the journal, is carried out and answered 0, never -EBUSY.
TEST_P(StoreTest, JournaledDeleteRefusesIoThatArrivesMeanwhile) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(4096, 3)), 0);
  ASSERT_EQ(Checkpoint(), 0);  // the write's apply is done: the blob is idle
  bool del_done = false, write_done = false;
  int del_res = 1, write_res = 1;
  store_->DeleteBlob(1, 2, [&](int r) { del_res = r; del_done = true; });
  // Idle when the delete was asked for; this write arrives before its
  // journal record is durable.
  AlignedBuffer b(4096);
  memset(b.data(), 7, 4096);
  store_->Write(kKey, kTract, 8192, 4096, std::move(b), 0, [&](int r) { write_res = r; write_done = true; });
  EXPECT_TRUE(write_done);
  EXPECT_EQ(write_res, -ENOENT);
  Wait(&del_done);
  EXPECT_EQ(del_res, 0);
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
  // Once the delete is done the blob id is free again (meta never reuses one).
  EXPECT_EQ(Write(0, Pattern(4096, 5)), 0);
  EXPECT_EQ(store_->ListTracts(1, 2).size(), 1u);
  bool again = false;
  store_->DeleteBlob(1, 2, [&](int r) { del_res = r; again = true; });
  Wait(&again);
  EXPECT_EQ(del_res, 0);
  store_.reset();
  Reopen();
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
}

// Journal mode creates tracts without syncing on the loop: the new blob
// directory and tract files become durable at the next checkpoint. Until
// then a crash may lose them -- all of them (the directory entries), or just
// the meta header page (its size made it to disk, its block did not) -- and
// the replay must bring back every acknowledged write. Without a journal a
// creation syncs at once.
TEST_P(StoreTest, NewTractsAreSyncedByTheNextCheckpointAndACrashBeforeItLosesNothing) {
  const TractKey k1{1, 2, 3}, k2{1, 2, 4}, k3{5, 6, 0};
  auto a = Pattern(8192, 1), b = Pattern(4096, 2), c = Pattern(4096, 3);
  ASSERT_EQ(Write(0, a, 0, k1), 0);
  ASSERT_EQ(Write(4096, b, 0, k2), 0);
  ASSERT_EQ(Write(8192, c, 0, k3), 0);
  if (!GetParam()) {
    EXPECT_EQ(store_->stats().deferred_creates, 0u);
    EXPECT_EQ(store_->stats().dir_syncs, 0u);
    return;
  }
  EXPECT_EQ(store_->stats().deferred_creates, 3u);
  EXPECT_EQ(store_->stats().dir_syncs, 0u) << "nothing synced before the checkpoint";
  auto read_all = [&] {
    std::vector<uint8_t> out;
    bool done = false;
    int n = 0;
    auto check = [&](const TractKey& k, uint32_t off, const std::vector<uint8_t>& want) {
      done = false;
      store_->Read(k, kTract, off, static_cast<uint32_t>(want.size()), false, [&](int r, TractStore::ReadResult rr) {
        EXPECT_EQ(r, 0);
        if (r == 0 && memcmp(rr.buf.data() + rr.data_off, want.data(), want.size()) == 0) ++n;
        done = true;
      });
      Wait(&done);
    };
    check(k1, 0, a);
    check(k2, 4096, b);
    check(k3, 8192, c);
    return n;
  };
  // Crash 1: nothing of the new tracts reached the disk but the journal.
  store_.reset();
  std::filesystem::remove_all(dir_ + "/tracts/00000000000000010000000000000002");
  std::filesystem::remove_all(dir_ + "/tracts/00000000000000050000000000000006");
  Reopen();
  EXPECT_EQ(read_all(), 3) << "replay recreates the lost tracts";
  // Crash 2: k1's meta file kept its size but its header page and entries
  // read as zeros (the state of a deferred creation cut short). Checkpoint
  // first so the journal holds only the new write.
  ASSERT_EQ(Checkpoint(), 0);
  const std::string k1_meta = dir_ + "/tracts/00000000000000010000000000000002/3.meta";
  auto zero_meta = [&] {
    int fd = open(k1_meta.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> z(std::filesystem::file_size(k1_meta), 0);
    ASSERT_EQ(pwrite(fd, z.data(), z.size(), 0), static_cast<ssize_t>(z.size()));
    close(fd);
  };
  store_.reset();
  std::filesystem::remove_all(dir_ + "/tracts/00000000000000010000000000000002");
  Reopen();  // k1 and k2 are created afresh, now with deferred syncs
  ASSERT_EQ(Write(0, a, 0, k1), 0);
  ASSERT_EQ(Write(4096, b, 0, k2), 0);
  store_.reset();
  zero_meta();
  Reopen();
  EXPECT_EQ(read_all(), 3) << "an unfinished creation is redone by the replay";
  // Checkpointed, the directories are synced and the journal lets go.
  const uint64_t syncs0 = store_->stats().dir_syncs;
  ASSERT_EQ(Write(0, a, 0, TractKey{7, 7, 1}), 0);
  ASSERT_EQ(Checkpoint(), 0);
  EXPECT_EQ(store_->stats().dir_syncs, syncs0 + 2) << "tracts/ (new blob) and the blob's directory";
  // A zero header beside a written chunk entry is damage, not an unfinished
  // creation: refused, never silently recreated.
  ASSERT_EQ(Checkpoint(), 0);
  store_.reset();
  {
    int fd = open(k1_meta.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> z(kMetaHeaderSize, 0);
    ASSERT_EQ(pwrite(fd, z.data(), z.size(), 0), static_cast<ssize_t>(z.size()));
    close(fd);
  }
  Reopen();
  bool done = false;
  int res = 1;
  store_->Read(k1, kTract, 0, 4096, false, [&](int r, TractStore::ReadResult) { res = r; done = true; });
  Wait(&done);
  EXPECT_EQ(res, -EIO);
  // Nor is a zero meta file of another tract size than the request's: a
  // request with a smaller size must not truncate the tract to it.
  store_.reset();
  zero_meta();
  const auto data_size = std::filesystem::file_size(dir_ + "/tracts/00000000000000010000000000000002/3.data");
  Reopen();
  done = false;
  res = 1;
  store_->StatTract(k1, kTract / 2, [&](int r, TractStore::ReadResult) { res = r; done = true; });
  Wait(&done);
  EXPECT_EQ(res, -EIO);
  EXPECT_EQ(std::filesystem::file_size(dir_ + "/tracts/00000000000000010000000000000002/3.data"), data_size);
}

// DeleteBlob removes the files through io_uring and answers only once the
// blob's writer generation is erased durably, even when a group commit of
// other generations is under way (the blocking erase used to queue behind
// it and answer before its record was on disk).
TEST_P(StoreTest, DeleteAnswersOnceTheFilesAndTheGenerationAreGone) {
  const TractKey k1{1, 2, 3}, k2{1, 2, 9}, other{4, 4, 0};
  ASSERT_EQ(Write(0, Pattern(8192, 1), 0, k1), 0);
  ASSERT_EQ(Write(0, Pattern(4096, 2), 0, k2), 0);
  ASSERT_EQ(Write(0, Pattern(4096, 3), 0, other), 0);
  ASSERT_EQ(Checkpoint(), 0);
  ASSERT_EQ(store_->writers()->Raise(1, 2, 7), 0);
  // A group commit in flight when the delete reaches the generation table.
  int raised = 1;
  store_->writers()->RaiseAsync(loop_.get(), 4, 4, 3, [&](int r) { raised = r; });
  bool done = false;
  int res = 1;
  store_->DeleteBlob(1, 2, [&](int r) {
    res = r;
    done = true;
    // At the answer, on disk: no files, no generation.
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/tracts/00000000000000010000000000000002"));
    auto w = WriterGens::Open(dir_ + "/writers");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ((*w)->Get(1, 2), 0u) << "the erase must be durable when the delete is answered";
  });
  // Meanwhile the blob refuses IO, and other blobs are served.
  int refused = 1;
  AlignedBuffer wb(4096);
  wb.zero();
  store_->Write(k1, kTract, 0, 4096, std::move(wb), 0, [&](int r) { refused = r; });
  EXPECT_EQ(refused, -ENOENT);
  bool rd = false;
  int rres = 1;
  store_->Read(other, kTract, 0, 4096, false, [&](int r, TractStore::ReadResult) { rres = r; rd = true; });
  Wait(&rd);
  EXPECT_EQ(rres, 0);
  Wait(&done);
  EXPECT_EQ(res, 0);
  while (raised == 1) loop_->RunOnce(100);
  EXPECT_EQ(raised, 0);
  EXPECT_EQ(store_->writers()->Get(1, 2), 0u);
  EXPECT_EQ(store_->writers()->Get(4, 4), 3u);
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
  EXPECT_EQ(store_->ListTracts(4, 4).size(), 1u);
  Reopen();
  EXPECT_TRUE(store_->ListTracts(1, 2).empty());
  EXPECT_EQ(store_->writers()->Get(1, 2), 0u);
}

// With a journal, applies wait in a batch (here up to 2 s): the writes are
// answered at once, and a read of their chunks sends the batch at once
// instead of waiting out the delay; what the read returns is the new data.
TEST_P(StoreTest, WaitingAppliesGoOutWhenTheirChunksAreRead) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  store_.reset();
  store_ = std::move(TractStore::Open(loop_.get(), {dir_, 8, GetParam(), 2000000}).value());
  auto a = Pattern(8192, 4), b = Pattern(4096, 5);
  ASSERT_EQ(Write(0, a), 0);
  ASSERT_EQ(Write(65536, b), 0);
  EXPECT_EQ(store_->stats().applies_deferred, 2u);
  EXPECT_EQ(store_->stats().apply_flushes, 0u);
  const uint64_t t0 = Loop::NowNs();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, 8192, &out), 0);
  EXPECT_LT(Loop::NowNs() - t0, 1000000000ull) << "the read waited for the batch's timer";
  EXPECT_EQ(out, a);
  EXPECT_EQ(store_->stats().apply_flushes, 1u);
  ASSERT_EQ(Read(65536, 4096, &out), 0);
  EXPECT_EQ(out, b);
  // A restart right after a write (the store sends its batch on the way
  // out; after a crash the journal's replay would).
  ASSERT_EQ(Write(4096, b), 0);
  store_.reset();
  Reopen();
  ASSERT_EQ(Read(0, 8192, &out), 0);
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 4096, out.end()), b);
}

// Many concurrent writes to several tracts through a 1 MiB journal: group
// commit, checkpoints, laps around the ring and waits for space, then a
// crash; everything acknowledged must read back.
TEST_P(StoreTest, JournalWrapsUnderConcurrentWritesAndSurvivesACrash) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  constexpr int kTracts = 3;
  std::vector<std::vector<uint8_t>> model(kTracts, std::vector<uint8_t>(kTract, 0));
  std::mt19937 rng(42);
  int outstanding = 0, failures = 0;
  uint64_t bytes = 0;
  for (int i = 0; i < 600; ++i) {
    int t = static_cast<int>(rng() % kTracts);
    uint32_t len = 512 + static_cast<uint32_t>(rng() % 16384);
    uint32_t off = static_cast<uint32_t>(rng() % (kTract - len));
    auto data = Pattern(len, static_cast<uint8_t>(i));
    std::copy(data.begin(), data.end(), model[t].begin() + off);
    AlignedBuffer buf(len);
    memcpy(buf.data(), data.data(), len);
    ++outstanding;
    bytes += len;
    store_->Write(TractKey{1, 2, static_cast<uint64_t>(t)}, kTract, off, len, std::move(buf), 0,
                  [&](int r) { failures += r != 0; --outstanding; });
    if (outstanding >= 16) while (outstanding >= 8) loop_->RunOnce(1000);
  }
  while (outstanding > 0) loop_->RunOnce(1000);
  ASSERT_EQ(failures, 0);
  const auto& js = store_->journal()->stats();
  EXPECT_GT(js.bytes, 2u << 20) << "the ring wrapped at least twice";
  EXPECT_GT(js.checkpoints, 2u);
  EXPECT_LT(js.batches, js.records) << "group commit: batches hold several writes";
  store_.reset();
  Reopen();
  for (int t = 0; t < kTracts; ++t) {
    bool done = false;
    std::vector<uint8_t> out;
    store_->Read(TractKey{1, 2, static_cast<uint64_t>(t)}, kTract, 0, kTract, false,
                 [&](int r, TractStore::ReadResult rr) {
                   EXPECT_EQ(r, 0);
                   if (r == 0) out.assign(rr.buf.data() + rr.data_off, rr.buf.data() + rr.data_off + kTract);
                   done = true;
                 });
    Wait(&done);
    EXPECT_TRUE(out == model[t]) << "tract " << t;
  }
}

// An explicit checkpoint completes while writes keep coming: it covers what
// was appended before it, not "everything, once the journal is idle".
TEST_P(StoreTest, CheckpointCompletesUnderContinuousWrites) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  int completed = 0, failures = 0;
  bool stop = false;
  std::function<void(int)> chain = [&](int i) {
    if (stop) return;
    auto data = Pattern(4096, static_cast<uint8_t>(i));
    AlignedBuffer buf(4096);
    memcpy(buf.data(), data.data(), 4096);
    store_->Write(kKey, kTract, static_cast<uint32_t>((i % 64) * 4096), 4096, std::move(buf), 0, [&, i](int r) {
      failures += r != 0;
      ++completed;
      chain(i + 16);
    });
  };
  for (int i = 0; i < 16; ++i) chain(i);  // sixteen writers, each with one write in flight
  while (completed < 40) loop_->RunOnce(1000);
  bool done = false;
  int res = 1, at = completed;
  store_->Checkpoint([&](int r) { res = r; done = true; });
  while (!done && completed < at + 4000) loop_->RunOnce(1000);
  stop = true;
  EXPECT_TRUE(done) << "the checkpoint did not complete within 4000 more writes";
  EXPECT_EQ(res, 0);
  while (completed < at + 16 && !HasFailure()) loop_->RunOnce(1000);
  for (int k = 0; k < 50; ++k) loop_->RunOnce(10);  // the last writes of each chain
  EXPECT_EQ(failures, 0);
}

// Replaying writes to more tracts than the open-tract bound (8 here) keeps
// the open tracts bounded: replayed tracts are synced early and closed.
TEST_P(StoreTest, JournalReplayOfManyTractsStaysWithinTheOpenBound) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  // Written with a bound of 64, so no early checkpoint syncs them.
  store_.reset();
  store_ = std::move(TractStore::Open(loop_.get(), {dir_, 64, GetParam()}).value());
  for (uint64_t t = 0; t < 20; ++t) ASSERT_EQ(Write(0, Pattern(4096, static_cast<uint8_t>(t)), 0, TractKey{1, 2, t}), 0);
  store_.reset();  // crash: the 20 writes are only durable in the journal
  for (uint64_t t = 0; t < 20; ++t)  // and their unsynced tract-file writes are lost
    Scribble(dir_ + "/tracts/00000000000000010000000000000002/" + std::to_string(t) + ".data", 0, 4096, 200);
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 20u);
  EXPECT_LE(store_->stats().open_tracts, 9u);
  for (uint64_t t = 0; t < 20; ++t) {
    bool done = false;
    std::vector<uint8_t> out;
    store_->Read(TractKey{1, 2, t}, kTract, 0, 4096, false, [&](int r, TractStore::ReadResult rr) {
      EXPECT_EQ(r, 0);
      if (r == 0) out.assign(rr.buf.data() + rr.data_off, rr.buf.data() + rr.data_off + 4096);
      done = true;
    });
    Wait(&done);
    EXPECT_TRUE(out == Pattern(4096, static_cast<uint8_t>(t))) << "tract " << t;
  }
}

// A failed batch write or checkpoint sync stops the journal: that write and
// every later one fail (never a retry that could hide batches or trust a
// failed fsync); a restart replays everything acknowledged.
TEST_P(StoreTest, JournalFailStopsOnAWriteErrorAndRecoversOnRestart) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto a = Pattern(4096, 31), b = Pattern(4096, 32), c = Pattern(4096, 33);
  ASSERT_EQ(Write(0, a), 0);
  store_->journal_for_test()->InjectWriteErrorForTest(-EIO);
  EXPECT_EQ(Write(4096, b), -EIO);
  EXPECT_EQ(Write(8192, c), -EIO) << "fail-stop: no write after a failed batch";
  EXPECT_EQ(Checkpoint(), -EIO);
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == a);
  store_.reset();
  Reopen();
  ASSERT_EQ(Read(0, 12288, &out), 0);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin())) << "acknowledged: must survive";
  // b failed but its batch did reach the journal: either outcome is allowed.
  EXPECT_TRUE(std::equal(b.begin(), b.end(), out.begin() + 4096) ||
              std::all_of(out.begin() + 4096, out.begin() + 8192, [](uint8_t x) { return x == 0; }));
  EXPECT_TRUE(std::all_of(out.begin() + 8192, out.end(), [](uint8_t x) { return x == 0; }))
      << "refused before the journal: never applied";
  EXPECT_EQ(Write(8192, c), 0) << "writes work again after the restart";
}

// A write is acknowledged once journaled; if applying it to the tract file
// then fails, the journal stops without passing it, its chunk fails reads
// (never older data), and a restart replays it.
TEST_P(StoreTest, JournalFailStopsWhenAnAcknowledgedWriteCannotBeApplied) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto a = Pattern(4096, 51), b = Pattern(4096, 52), b2 = Pattern(4096, 53), c = Pattern(4096, 54);
  ASSERT_EQ(Write(0, a), 0);
  ASSERT_EQ(Write(4096, b), 0);
  ASSERT_EQ(Checkpoint(), 0);
  store_->InjectApplyErrorForTest(-EIO);
  ASSERT_EQ(Write(4096, b2), 0) << "durable in the journal: acknowledged";
  std::vector<uint8_t> out;
  EXPECT_EQ(Read(4096, 4096, &out), -EIO) << "must not read the older data";
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == a);
  EXPECT_EQ(Write(8192, c), -EIO) << "fail-stop";
  EXPECT_NE(Checkpoint(), 0);
  store_.reset();
  Reopen();
  EXPECT_GE(store_->journal()->stats().replayed_records, 1u);
  ASSERT_EQ(Read(0, 12288, &out), 0);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin()));
  EXPECT_TRUE(std::equal(b2.begin(), b2.end(), out.begin() + 4096)) << "acknowledged: replayed";
  EXPECT_TRUE(std::all_of(out.begin() + 8192, out.end(), [](uint8_t x) { return x == 0; }));
  EXPECT_EQ(Write(8192, c), 0) << "writes work again after the restart";
}

TEST_P(StoreTest, JournalFailStopsOnACheckpointSyncError) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto a = Pattern(4096, 41);
  ASSERT_EQ(Write(0, a), 0);
  store_->InjectSyncErrorForTest(-EIO);
  EXPECT_EQ(Checkpoint(), -EIO);
  EXPECT_EQ(Write(4096, a), -EIO) << "fail-stop after a failed checkpoint sync";
  store_.reset();
  Reopen();
  EXPECT_GE(store_->journal()->stats().replayed_records, 1u);
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == a);
}

// Direct writes (Options::direct_write_min, 64 KiB by default): a large
// write of a tract with no replayable record goes in place after an intent
// record of its checksums; a crash then keeps it, without its data having
// been written to the journal.
TEST_P(StoreTest, LargeWritesGoInPlaceAfterAnIntentRecordAndSurviveACrash) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto head = Pattern(4096, 1), big = Pattern(128 * 1024, 2);
  ASSERT_EQ(Write(0, head), 0);
  ASSERT_EQ(Write(64 * 1024, big), 0);
  EXPECT_EQ(store_->stats().direct_writes, 0u) << "the tract's creation is not durable yet";
  ASSERT_EQ(Checkpoint(), 0);
  const uint64_t jbytes = store_->journal()->stats().bytes;
  auto big2 = Pattern(128 * 1024, 3);
  ASSERT_EQ(Write(64 * 1024, big2), 0);
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  EXPECT_EQ(store_->journal()->stats().bytes - jbytes, 8192u) << "a header page and one page of checksums";
  auto small = Pattern(60 * 1024, 4);  // below the threshold: journaled
  ASSERT_EQ(Write(0, small), 0);
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  store_.reset();  // crash: nothing checkpointed since
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big2);
  ASSERT_EQ(Read(0, 60 * 1024, &out), 0);
  EXPECT_TRUE(out == small);
  // Unaligned: its edge chunks are read-modify-written, and a torn write
  // must not cost their untouched bytes: journaled.
  ASSERT_EQ(Write(64 * 1024 + 512, Pattern(100 * 1024, 5)), 0);
  EXPECT_EQ(store_->stats().direct_writes, 0u);
}

// A replayed WRITE record rewrites its chunks: a direct write of a tract
// whose older write is still replayable would be undone by the replay. So
// such a write goes through the journal until a checkpoint passes the older
// one, and only then in place.
TEST_P(StoreTest, ADirectWriteWaitsUntilTheTractsJournaledWritesAreCheckpointed) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  ASSERT_EQ(Checkpoint(), 0);
  ASSERT_EQ(Write(64 * 1024, Pattern(4096, 5)), 0);  // journaled, replayable
  auto big = Pattern(128 * 1024, 6);
  ASSERT_EQ(Write(64 * 1024, big), 0);
  EXPECT_EQ(store_->stats().direct_writes, 0u);
  store_.reset();
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big) << "the replay must end with the newer write";
  // Everything replayed is checkpointed at open: in place again.
  auto big2 = Pattern(128 * 1024, 7);
  ASSERT_EQ(Write(64 * 1024, big2), 0);
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  // A trim pins the tract like a write.
  ASSERT_EQ(Zero(192 * 1024, 16 * 1024, false), 0);
  ASSERT_EQ(Write(64 * 1024, big), 0);
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  store_.reset();
  Reopen();
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big);
}

// The intent is durable before the data is written, so a crash can leave
// any mix of old and new chunks: each reads as one or the other (never as
// a checksum error), and a chunk that is neither fails its reads.
TEST_P(StoreTest, AnInterruptedDirectWriteLeavesEachChunkOldOrNew) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto old_data = Pattern(64 * 1024, 8), new_data = Pattern(64 * 1024, 9);
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  ASSERT_EQ(Checkpoint(), 0);
  ASSERT_EQ(Write(64 * 1024, old_data), 0);
  ASSERT_EQ(Checkpoint(), 0);
  ASSERT_EQ(Write(64 * 1024, new_data), 0);
  EXPECT_EQ(store_->stats().direct_writes, 2u);
  store_.reset();
  // As if the device had kept only the second half of the new data, and
  // chunk 20 (the fifth of the range) had been torn.
  {
    int fd = open((Base() + ".data").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, old_data.data(), 32 * 1024, 64 * 1024), 32 * 1024);
    std::vector<uint8_t> junk(4096, 0xA5);
    ASSERT_EQ(pwrite(fd, junk.data(), 4096, 80 * 1024), 4096);
    close(fd);
  }
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 16 * 1024, &out), 0);
  EXPECT_TRUE(std::equal(out.begin(), out.end(), old_data.begin()));
  EXPECT_EQ(Read(80 * 1024, 4096, &out), -EIO);
  ASSERT_EQ(Read(84 * 1024, 12 * 1024, &out), 0);
  EXPECT_TRUE(std::equal(out.begin(), out.end(), old_data.begin() + 20 * 1024));
  ASSERT_EQ(Read(96 * 1024, 32 * 1024, &out), 0);
  EXPECT_TRUE(std::equal(out.begin(), out.end(), new_data.begin() + 32 * 1024));
}

// A direct write whose data write fails is answered with the error; its
// intent still counts as applied (the journal goes on), so the chunks it
// settles from what reached the disk must reach the meta file through the
// next checkpoint, or a restart would find the old checksums beside new data.
TEST_P(StoreTest, AFailedDirectWriteSettlesItsChunksDurably) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  ASSERT_EQ(Write(64 * 1024, Pattern(64 * 1024, 2)), 0);
  ASSERT_EQ(Checkpoint(), 0);
  auto next = Pattern(64 * 1024, 3);
  store_->InjectApplyErrorForTest(-EIO);
  EXPECT_EQ(Write(64 * 1024, next), -EIO);  // the data did reach the file
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  ASSERT_EQ(Checkpoint(), 0);
  store_.reset();
  Reopen();
  EXPECT_EQ(store_->journal()->stats().replayed_records, 0u);
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 64 * 1024, &out), 0);
  EXPECT_TRUE(out == next);
}

// The server validates requests, and the store checks ranges again: no
// caller can write (or read, or zero) past the end of a tract.
TEST_P(StoreTest, RequestsPastTheTractsEndAreRejected) {
  EXPECT_EQ(Write(kTract - 4096, Pattern(8192, 1)), -EINVAL);
  EXPECT_EQ(Write(kTract, Pattern(4096, 1)), -EINVAL);
  EXPECT_EQ(Write(0, {}), -EINVAL);
  std::vector<uint8_t> out;
  EXPECT_EQ(Read(kTract - 512, 1024, &out), -EINVAL);
  EXPECT_EQ(Zero(kTract - 4096, 8192, false), -EINVAL);
  EXPECT_EQ(store_->stats().writes, 0u);
  struct stat st;
  EXPECT_TRUE(stat((Base() + ".data").c_str(), &st) < 0 || st.st_size <= kTract) << "nothing past the end";
  ASSERT_EQ(Write(kTract - 4096, Pattern(4096, 2)), 0);  // the last chunk is fine
}

// A fresh tract (created by a write, its creation not yet durable) makes
// its creation durable on its first large write -- the meta header, both
// files and the two directories -- and that write goes in place, instead of
// every large write of the tract going through the journal until a
// checkpoint passes its first record.
TEST_P(StoreTest, AFreshTractsFirstLargeWriteSyncsItsCreationAndGoesInPlace) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  const uint64_t dir_syncs = store_->stats().dir_syncs, jbytes = store_->journal()->stats().bytes;
  auto big = Pattern(128 * 1024, 2), big2 = Pattern(64 * 1024, 3);
  ASSERT_EQ(Write(64 * 1024, big), 0);  // creates the tract
  EXPECT_EQ(store_->stats().creation_syncs, 1u);
  EXPECT_EQ(store_->stats().dir_syncs - dir_syncs, 2u) << "the blob directory and the tracts directory";
  EXPECT_EQ(store_->stats().direct_writes, 1u);
  EXPECT_EQ(store_->journal()->stats().bytes - jbytes, 8192u) << "an intent record, not the data";
  ASSERT_EQ(Write(192 * 1024, big2), 0);
  EXPECT_EQ(store_->stats().creation_syncs, 1u) << "once per tract";
  EXPECT_EQ(store_->stats().direct_writes, 2u);
  store_.reset();  // crash: no checkpoint since the tract was created
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big);
  ASSERT_EQ(Read(192 * 1024, 64 * 1024, &out), 0);
  EXPECT_TRUE(out == big2);
  ASSERT_EQ(Read(0, 64 * 1024, &out), 0);
  EXPECT_TRUE(out == std::vector<uint8_t>(64 * 1024, 0));
}

// A write after its blob's delete creates the tract again. Until a
// checkpoint passes the DELETE record, a replay would run that delete and
// remove the new files, so such a tract's large writes stay journaled (the
// replay then recreates it after the delete).
TEST_P(StoreTest, AFreshTractAfterAReplayableDeleteOfItsBlobDoesNotWriteInPlace) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  bool done = false;
  int res = 1;
  store_->DeleteBlob(1, 2, [&](int r) { res = r; done = true; });
  Wait(&done);
  ASSERT_EQ(res, 0);
  auto big = Pattern(128 * 1024, 7);
  ASSERT_EQ(Write(64 * 1024, big), 0);
  EXPECT_EQ(store_->stats().direct_writes, 0u);
  store_.reset();  // crash: the DELETE is replayed, then the write
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big);
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == std::vector<uint8_t>(4096, 0)) << "deleted before";
}

// A write journaled for the tract while its creation sync is in flight pins
// it again: the large write that waited for the sync then goes through the
// journal (whichever finished first), and both survive a crash.
TEST_P(StoreTest, AFreshTractsLargeWriteFallsBackToTheJournalIfAWriteWasJournaledMeanwhile) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  auto big = Pattern(128 * 1024, 4), small = Pattern(4096, 5);
  auto put = [&](uint32_t off, const std::vector<uint8_t>& d, int* res) {
    AlignedBuffer b(d.size());
    memcpy(b.data(), d.data(), d.size());
    store_->Write(kKey, kTract, off, static_cast<uint32_t>(d.size()), std::move(b), 0, [res](int r) { *res = r; });
  };
  int r1 = 1, r2 = 1;
  put(64 * 1024, big, &r1);
  put(0, small, &r2);  // another range: runs beside the large write
  while (r1 == 1 || r2 == 1) loop_->RunOnce(1000);
  ASSERT_EQ(r1, 0);
  ASSERT_EQ(r2, 0);
  EXPECT_EQ(store_->stats().creation_syncs, 1u);
  EXPECT_EQ(store_->stats().direct_writes, 0u) << "the small write's record must be checkpointed first";
  store_.reset();
  Reopen();
  std::vector<uint8_t> out;
  ASSERT_EQ(Read(64 * 1024, 128 * 1024, &out), 0);
  EXPECT_TRUE(out == big);
  ASSERT_EQ(Read(0, 4096, &out), 0);
  EXPECT_TRUE(out == small);
  // Checkpointed at open: in place from now on.
  ASSERT_EQ(Write(64 * 1024, Pattern(64 * 1024, 6)), 0);
  EXPECT_EQ(store_->stats().direct_writes, 1u);
}

TEST_P(StoreTest, JournalWithBothSuperblocksCorruptRefusesToStart) {
  if (!GetParam()) GTEST_SKIP() << "journal only";
  ASSERT_EQ(Write(0, Pattern(4096, 1)), 0);
  store_.reset();
  Scribble(dir_ + "/journal", 0, 8192, 3);
  auto s = TractStore::Open(loop_.get(), {dir_, 8, GetParam()});
  EXPECT_EQ(s.err(), -EIO);
}

INSTANTIATE_TEST_SUITE_P(Journal, StoreTest, ::testing::Values(0ull, 1ull << 20),
                         [](const auto& info) { return info.param ? "journal" : "no_journal"; });

}  // namespace
}  // namespace flurry::tractstore
