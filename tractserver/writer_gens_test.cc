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
    ASSERT_EQ(w->Raise(3, 4, 6), 0);
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

}  // namespace
}  // namespace flurry::tractstore
