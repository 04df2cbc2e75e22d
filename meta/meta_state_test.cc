// SPDX-License-Identifier: Apache-2.0
#include "meta/meta_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <set>

#include "meta/meta_client.h"

namespace flurry {
namespace {

std::string TempDir() {
  char t[] = "/tmp/flurry-meta-test-XXXXXX";
  return mkdtemp(t);
}

std::vector<std::string> Lines(const std::string& reply) {
  std::vector<std::string> out;
  size_t p = reply.find('\n') + 1;
  while (p < reply.size()) {
    size_t nl = reply.find('\n', p);
    out.push_back(reply.substr(p, nl - p));
    p = nl + 1;
  }
  return out;
}

TEST(MetaState, TltRowsAreDistinctBalancedAndZoned) {
  MetaState::Options o;
  o.dir = TempDir();
  Status why;
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok()) << why.ToString();
  for (int i = 0; i < 6; ++i)
    ASSERT_EQ((*m)->Handle("REGISTER s" + std::to_string(i) + " 127.0.0.1:" + std::to_string(7001 + i) +
                           " z" + std::to_string(i % 3)).substr(0, 2), "OK");
  auto tlt = ParseTlt(Lines((*m)->Handle("TLT")));
  ASSERT_TRUE(tlt.ok());
  EXPECT_EQ(tlt->rows.size(), 6u * 16);
  std::map<std::string, int> first;
  for (auto& row : tlt->rows) {
    ASSERT_EQ(row.size(), 3u);
    std::set<std::string> addrs, zones;
    for (auto& e : row) {
      addrs.insert(e.addr);
      zones.insert(std::to_string((std::stoi(e.addr.substr(10)) - 7001) % 3));
    }
    EXPECT_EQ(addrs.size(), 3u);
    EXPECT_EQ(zones.size(), 3u) << "each row must span the three zones";
    first[row[0].addr]++;
  }
  for (auto& [a, n] : first) EXPECT_EQ(n, 16) << a;
  // Tracts of a blob spread uniformly over rows.
  std::vector<int> hits(tlt->rows.size());
  for (uint64_t t = 0; t < tlt->rows.size() * 10; ++t) hits[tlt->RowOf(7, 9, t)]++;
  for (int h : hits) EXPECT_EQ(h, 10);
}

TEST(MetaState, VolumesPersistAndValidate) {
  MetaState::Options o;
  o.dir = TempDir();
  Status why;
  {
    auto m = MetaState::Open(o, &why);
    ASSERT_TRUE(m.ok());
    (*m)->Handle("REGISTER a 127.0.0.1:1 z");
    (*m)->Handle("REGISTER b 127.0.0.1:2 z");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v1 size=1G replicas=2").substr(0, 4), "OK 1");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v1 size=1G").substr(0, 10), "ERR EEXIST");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v2 size=1G replicas=3").substr(0, 10), "ERR EINVAL");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE bad/name size=1G").substr(0, 10), "ERR EINVAL");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v3 size=1000").substr(0, 10), "ERR EINVAL");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v4 size=1G tract_size=3M").substr(0, 10), "ERR EINVAL");
    EXPECT_EQ((*m)->Handle("VOLUME CREATE v5 size=1G mode=fast-ack").substr(0, 4), "OK 1");
    EXPECT_EQ((*m)->Handle("NONSENSE").substr(0, 10), "ERR EINVAL");
  }
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok());
  auto v = VolumeInfo::Parse(Lines((*m)->Handle("VOLUME INFO v1"))[0]);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->size, 1ull << 30);
  EXPECT_EQ(v->replicas, 2u);
  auto v5 = VolumeInfo::Parse(Lines((*m)->Handle("VOLUME INFO v5"))[0]);
  EXPECT_EQ(v5->mode, WriteMode::kFastAck);
  EXPECT_EQ((*m)->Handle("VOLUME RESIZE v1 512M").substr(0, 10), "ERR EINVAL");
  EXPECT_EQ((*m)->Handle("VOLUME RESIZE v1 2G").substr(0, 4), "OK 1");
  EXPECT_EQ((*m)->Handle("VOLUME DELETE v1").substr(0, 4), "OK 1");
  EXPECT_EQ((*m)->Handle("VOLUME INFO v1").substr(0, 10), "ERR ENOENT");
}

TEST(MetaState, DeadServerIsReplacedAndMarkedRecovering) {
  MetaState::Options o;
  o.dir = TempDir();
  o.heartbeat_timeout_ms = 100;
  Status why;
  auto m = MetaState::Open(o, &why);
  for (int i = 0; i < 4; ++i)
    (*m)->Handle("REGISTER s" + std::to_string(i) + " 127.0.0.1:" + std::to_string(9001 + i) + " z");
  auto before = ParseTlt(Lines((*m)->Handle("TLT")));
  for (int k = 0; k < 5; ++k) {
    usleep(40000);
    for (int i = 1; i < 4; ++i) (*m)->Handle("HEARTBEAT s" + std::to_string(i));
    (*m)->CheckHeartbeats();
  }
  auto after = ParseTlt(Lines((*m)->Handle("TLT")));
  EXPECT_GT(after->version, before->version);
  int recovering = 0;
  for (auto& row : after->rows)
    for (auto& e : row) {
      EXPECT_NE(e.addr, "127.0.0.1:9001");
      recovering += e.recovering;
    }
  EXPECT_GT(recovering, 0);
}

TEST(VolumeInfo, NameValidation) {
  EXPECT_TRUE(ValidateVolumeName("db-01.data_x").ok());
  EXPECT_FALSE(ValidateVolumeName("").ok());
  EXPECT_FALSE(ValidateVolumeName("-x").ok());
  EXPECT_FALSE(ValidateVolumeName("a b").ok());
  EXPECT_FALSE(ValidateVolumeName(std::string(65, 'a')).ok());
}

}  // namespace
}  // namespace flurry
