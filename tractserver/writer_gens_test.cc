// SPDX-License-Identifier: Apache-2.0
//
// WriterGens: generations survive reopen, only ever rise, are forgotten on
// erase; a torn last append is dropped, any other damage refuses to open;
// compaction keeps the file bounded without losing a generation; the blob
// count is bounded.
#include "tractserver/writer_gens.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tractserver/tract_format.h"

namespace flurry::tractstore {
namespace {

class WriterGensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/writer-gens-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/writers";
  }
  void TearDown() override {
    unlink(path_.c_str());
    unlink((path_ + ".tmp").c_str());
    rmdir(dir_.c_str());
  }
  std::unique_ptr<WriterGens> Open(size_t max = WriterGens::kMaxBlobs) {
    auto w = WriterGens::Open(path_, max);
    EXPECT_TRUE(w.ok()) << w.err();
    return w.ok() ? std::move(*w) : nullptr;
  }
  off_t FileSize() {
    struct stat st;
    return stat(path_.c_str(), &st) == 0 ? st.st_size : -1;
  }
  void AppendRaw(const void* p, size_t n) {
    int fd = open(path_.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, p, n), static_cast<ssize_t>(n));
    close(fd);
  }
  std::string dir_, path_;
};

TEST_F(WriterGensTest, GenerationsOnlyRiseAndSurviveReopen) {
  auto w = Open();
  EXPECT_EQ(w->Get(1, 2), 0u);
  EXPECT_EQ(w->Raise(1, 2, 5), 0);
  EXPECT_EQ(w->Raise(3, 4, 3), 0);
  EXPECT_EQ(w->Raise(1, 2, 4), 0);  // older: nothing to do
  EXPECT_EQ(w->Get(1, 2), 5u);
  EXPECT_EQ(w->records(), 2u) << "an older generation must not be written";
  EXPECT_EQ(w->Raise(1, 2, 7), 0);
  w.reset();
  w = Open();
  EXPECT_EQ(w->Get(1, 2), 7u);
  EXPECT_EQ(w->Get(3, 4), 3u);
  EXPECT_EQ(w->Get(1, 3), 0u);
  EXPECT_EQ(w->size(), 2u);
}

TEST_F(WriterGensTest, EraseForgetsTheBlobDurably) {
  auto w = Open();
  ASSERT_EQ(w->Raise(1, 2, 9), 0);
  ASSERT_EQ(w->Raise(5, 6, 1), 0);
  EXPECT_EQ(w->Erase(1, 2), 0);
  EXPECT_EQ(w->Get(1, 2), 0u);
  EXPECT_EQ(w->Erase(7, 7), 0) << "erasing an unknown blob is a no-op";
  w.reset();
  w = Open();
  EXPECT_EQ(w->Get(1, 2), 0u);
  EXPECT_EQ(w->Get(5, 6), 1u);
  EXPECT_EQ(w->Raise(1, 2, 2), 0) << "a deleted blob starts over";
  EXPECT_EQ(w->Get(1, 2), 2u);
}

TEST_F(WriterGensTest, TornLastAppendIsDropped) {
  {
    auto w = Open();
    ASSERT_EQ(w->Raise(1, 2, 5), 0);
  }
  // A partial record (the crash cut the append short).
  const char junk[11] = "0123456789";
  AppendRaw(junk, sizeof junk);
  {
    auto w = Open();
    EXPECT_EQ(w->Get(1, 2), 5u);
    EXPECT_EQ(FileSize(), static_cast<off_t>(sizeof(WriterRecord))) << "the torn bytes are cut off";
    ASSERT_EQ(w->Raise(1, 2, 6), 0);
  }
  // A whole last record that fails its checksum.
  WriterRecord bad{1, 2, 99, kWriterMagic, 0};
  bad.sum = WriterRecordSum(bad) ^ 1;
  AppendRaw(&bad, sizeof bad);
  auto w = Open();
  EXPECT_EQ(w->Get(1, 2), 6u) << "the torn record must not count";
  EXPECT_EQ(FileSize(), static_cast<off_t>(2 * sizeof(WriterRecord)));
}

TEST_F(WriterGensTest, DamageBeforeTheLastRecordRefusesToOpen) {
  {
    auto w = Open();
    ASSERT_EQ(w->Raise(1, 2, 5), 0);
    // Past the file's first 4 KiB (group commits never cross a 4 KiB
    // boundary; bad records in the last 4 KiB are a torn last append).
    for (uint64_t b = 0; b < WriterGens::kMaxBatch; ++b) ASSERT_EQ(w->Raise(3, b, 6), 0);
  }
  int fd = open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(pread(fd, &b, 1, 16), 1);
  b ^= 0x40;  // record 0's generation
  ASSERT_EQ(pwrite(fd, &b, 1, 16), 1);
  close(fd);
  auto w = WriterGens::Open(path_);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.err(), -EIO) << "a lost generation could let a superseded writer in";
}

TEST_F(WriterGensTest, CompactionBoundsTheFileAndKeepsEveryGeneration) {
  auto w = Open();
  for (uint64_t b = 1; b <= 10; ++b) ASSERT_EQ(w->Raise(b, b, 1), 0);
  for (uint64_t g = 2; g <= 1500; ++g) ASSERT_EQ(w->Raise(3, 3, g), 0);
  EXPECT_GE(w->compactions(), 1u);
  EXPECT_LE(w->records(), 2 * w->size() + 1024 + 1);
  EXPECT_LT(FileSize(), static_cast<off_t>(1100 * sizeof(WriterRecord)));
  ASSERT_EQ(w->Raise(4, 4, 77), 0);  // appended after the compaction
  w.reset();
  w = Open();
  EXPECT_EQ(w->size(), 10u);
  EXPECT_EQ(w->Get(3, 3), 1500u);
  EXPECT_EQ(w->Get(4, 4), 77u);
  for (uint64_t b : {1, 2, 5, 10}) EXPECT_EQ(w->Get(b, b), 1u) << b;
}

TEST_F(WriterGensTest, BlobCountIsBounded) {
  auto w = Open(/*max=*/4);
  for (uint64_t b = 1; b <= 4; ++b) ASSERT_EQ(w->Raise(b, 0, 1), 0);
  EXPECT_EQ(w->Raise(5, 0, 1), -ENOSPC);
  EXPECT_EQ(w->Get(5, 0), 0u);
  EXPECT_EQ(w->Raise(2, 0, 2), 0) << "a known blob may still rise";
  ASSERT_EQ(w->Erase(1, 0), 0);
  EXPECT_EQ(w->Raise(5, 0, 1), 0) << "room again after an erase";
}


// A power loss during a group commit may keep some of its sectors and not
// others (a zeroed record with good ones after it): in the file's last
// 4 KiB, which no batch crosses, that is dropped from the first bad record
// on, and the table opens with everything before it.
TEST_F(WriterGensTest, TornLastGroupCommitIsDropped) {
  {
    auto w = Open();
    for (uint64_t b = 0; b < WriterGens::kMaxBatch + 2; ++b) ASSERT_EQ(w->Raise(1, b, 3), 0);
  }
  WriterRecord recs[3] = {{9, 1, 7, kWriterMagic, 0}, {}, {9, 3, 7, kWriterMagic, 0}};
  recs[0].sum = WriterRecordSum(recs[0]);
  recs[2].sum = WriterRecordSum(recs[2]);
  AppendRaw(recs, sizeof recs);
  auto w = Open();
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Get(1, WriterGens::kMaxBatch + 1), 3u);
  EXPECT_EQ(w->Get(9, 1), 7u) << "a good record before the tear is kept";
  EXPECT_EQ(w->Get(9, 3), 0u) << "records after the tear are dropped";
  EXPECT_EQ(FileSize(), static_cast<off_t>((WriterGens::kMaxBatch + 3) * sizeof(WriterRecord)));
}

// RaiseAsync through a loop: raises that arrive while a record is being
// written go out together in the next write, with one fdatasync; each
// completes only once durable (a reopened table has it); Newest() shows a
// generation being recorded, Get() only durable ones.
TEST_F(WriterGensTest, AsyncRaisesAreGroupCommitted) {
  auto loop = Loop::Create(64);
  ASSERT_TRUE(loop.ok());
  auto w = Open();
  const int n = 150;  // a flurry-disk opening 150 volumes fences each once
  int done = 0, failed = 0;
  for (int i = 1; i <= n; ++i)
    w->RaiseAsync(loop->get(), 7, static_cast<uint64_t>(i), 3, [&](int r) {
      done++;
      if (r != 0) failed++;
    });
  EXPECT_EQ(done, 0) << "a raise completed before its record was durable";
  EXPECT_EQ(w->Get(7, 1), 0u);
  EXPECT_EQ(w->Newest(7, 1), 3u);
  EXPECT_EQ(w->Newest(7, n), 3u);
  EXPECT_EQ(w->Raise(8, 1, 1), -EBUSY) << "a blocking raise beside a group commit";
  for (int i = 0; i < 1000 && done < n; ++i) (*loop)->RunOnce(100);
  ASSERT_EQ(done, n);
  EXPECT_EQ(failed, 0);
  // The first raise alone, then the rest up to the file's 4 KiB boundary
  // (127), then the other 22.
  EXPECT_EQ(w->syncs(), 3u);
  EXPECT_EQ(w->records(), static_cast<uint64_t>(n));
  EXPECT_EQ(w->Get(7, 77), 3u);
  w.reset();
  w = Open();
  for (int i = 1; i <= n; ++i) ASSERT_EQ(w->Get(7, static_cast<uint64_t>(i)), 3u) << i;
}

// A raise to a generation already being recorded (or an older one) waits
// for that record instead of writing another; an erase that comes during a
// group commit is queued behind it.
TEST_F(WriterGensTest, AsyncRaisesShareRecordsAndErasesQueueBehind) {
  auto loop = Loop::Create(64);
  ASSERT_TRUE(loop.ok());
  auto w = Open();
  ASSERT_EQ(w->Raise(2, 2, 9), 0);
  const uint64_t recs0 = w->records();
  std::vector<int> res;
  w->RaiseAsync(loop->get(), 1, 1, 5, [&](int r) { res.push_back(r); });
  w->RaiseAsync(loop->get(), 1, 1, 4, [&](int r) { res.push_back(r); });
  w->RaiseAsync(loop->get(), 1, 1, 5, [&](int r) { res.push_back(r); });
  EXPECT_EQ(w->Erase(2, 2), 0);
  EXPECT_EQ(w->Get(2, 2), 9u) << "queued, not yet written";
  for (int i = 0; i < 1000 && (res.size() < 3 || w->Get(2, 2) != 0); ++i) (*loop)->RunOnce(100);
  EXPECT_EQ(res, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(w->records(), recs0 + 2) << "one record for generation 5, one for the erase";
  EXPECT_EQ(w->Get(1, 1), 5u);
  EXPECT_EQ(w->Get(2, 2), 0u);
  w.reset();
  w = Open();
  EXPECT_EQ(w->Get(1, 1), 5u);
  EXPECT_EQ(w->Get(2, 2), 0u);
}

// An async erase queued behind a group commit, then a raise of the same
// blob: the raise is recorded after the erase, not answered by the
// generation the erase is about to remove.
TEST_F(WriterGensTest, ARaiseAfterAQueuedEraseIsRecordedAfterIt) {
  auto loop = Loop::Create(64);
  ASSERT_TRUE(loop.ok());
  auto w = Open();
  ASSERT_EQ(w->Raise(3, 3, 9), 0);
  std::vector<int> res;
  w->RaiseAsync(loop->get(), 1, 1, 5, [&](int r) { res.push_back(r); });  // a group commit under way
  w->EraseAsync(loop->get(), 3, 3, [&](int r) { res.push_back(r); });
  w->RaiseAsync(loop->get(), 3, 3, 4, [&](int r) { res.push_back(r); });  // older than 9, but 9 is going
  for (int i = 0; i < 1000 && res.size() < 3; ++i) (*loop)->RunOnce(100);
  EXPECT_EQ(res, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(w->Get(3, 3), 4u);
  w.reset();
  w = Open();
  EXPECT_EQ(w->Get(3, 3), 4u);
  EXPECT_EQ(w->Get(1, 1), 5u);
}

TEST_F(WriterGensTest, AsyncBlobCountIsBoundedCountingRecordsInFlight) {
  auto loop = Loop::Create(64);
  ASSERT_TRUE(loop.ok());
  auto w = Open(/*max=*/2);
  std::vector<int> res(3, 1);
  for (int i = 0; i < 3; ++i)
    w->RaiseAsync(loop->get(), 1, static_cast<uint64_t>(i), 1, [&res, i](int r) { res[i] = r; });
  EXPECT_EQ(res[2], -ENOSPC) << "two blobs are being recorded already";
  for (int i = 0; i < 1000 && (res[0] == 1 || res[1] == 1); ++i) (*loop)->RunOnce(100);
  EXPECT_EQ(res[0], 0);
  EXPECT_EQ(res[1], 0);
}

}  // namespace
}  // namespace flurry::tractstore
