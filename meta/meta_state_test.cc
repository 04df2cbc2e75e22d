// SPDX-License-Identifier: Apache-2.0
#include "meta/meta_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
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

// A tract server's heartbeat as flurry-tractserver sends it: with the gens
// token of the last report it applied; returns the reply's token (what it
// applies now) in *token.
void Beat(MetaState* m, const std::string& id, std::string* token) {
  auto lines = Lines(m->Handle("HEARTBEAT " + id + " gens " + *token));
  char t[80];
  ASSERT_GE(lines.size(), 2u);
  ASSERT_EQ(sscanf(lines[1].c_str(), "gens %79s", t), 1);
  *token = t;
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
  std::vector<std::string> tokens(4, "-");
  for (int k = 0; k < 5; ++k) {
    usleep(40000);
    for (int i = 1; i < 4; ++i) Beat(m->get(), "s" + std::to_string(i), &tokens[i]);
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

// A dead server's rows are given away at the first check after its timeout,
// even while lease grants keep arriving faster than heartbeats (a
// flurry-disk restart loop), so no server is ever caught up. What keeps a
// superseded writer out instead: the first heartbeat reply that carries the
// new TLT version also carries every generation granted before it, and
// tract servers hold writes of a TLT newer than their last report until
// such a reply is applied (tractserver/server.h).
TEST(MetaState, ReplacementDoesNotWaitForLeaseReports) {
  MetaState::Options o;
  o.dir = TempDir();
  o.heartbeat_timeout_ms = 100;
  Status why;
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 4; ++i)
    (*m)->Handle("REGISTER s" + std::to_string(i) + " 127.0.0.1:" + std::to_string(9201 + i) + " z");
  auto before = ParseTlt(Lines((*m)->Handle("TLT")));
  ASSERT_EQ((*m)->Handle("VOLUME CREATE v size=1G replicas=2").substr(0, 4), "OK 1");
  const std::string vid = VolumeInfo::Parse(Lines((*m)->Handle("VOLUME INFO v"))[0])->IdHex();
  std::vector<std::string> tokens(4, "-");
  uint64_t gen = 0;
  auto grant = [&] {
    if (gen) {
      ASSERT_EQ((*m)->Handle("LEASE RELEASE v " + std::to_string(gen)).substr(0, 4), "OK 1");
    }
    auto r = Lines((*m)->Handle("LEASE ACQUIRE v 60000 w"));
    ASSERT_FALSE(r.empty());
    unsigned long long g = 0;
    ASSERT_EQ(sscanf(r[0].c_str(), "gen %llu", &g), 1) << r[0];
    ASSERT_EQ(g, gen + 1);
    gen = g;
  };
  // s0 stops beating; every other heartbeat is followed by a grant.
  for (int k = 0; k < 5; ++k) {
    usleep(40000);
    for (int i = 1; i < 4; ++i) {
      Beat(m->get(), "s" + std::to_string(i), &tokens[i]);
      grant();
    }
  }
  (*m)->CheckHeartbeats();
  auto t1 = ParseTlt(Lines((*m)->Handle("TLT")));
  ASSERT_GT(t1->version, before->version) << "the replacement waited for a heartbeat newer than every grant";
  for (auto& row : t1->rows)
    for (auto& e : row) EXPECT_NE(e.addr, "127.0.0.1:9201");
  // The next heartbeat of a server that missed the last grant brings it with
  // the new version, in one reply.
  grant();
  auto rep = Lines((*m)->Handle("HEARTBEAT s1 gens " + tokens[1]));
  ASSERT_GE(rep.size(), 3u);
  EXPECT_EQ(rep[0], "tlt_version " + std::to_string(t1->version));
  EXPECT_NE(std::find(rep.begin() + 2, rep.end(), vid + " " + std::to_string(gen)), rep.end());
}

// Write leases: one holder at a time, generations only grow, a lapsed or
// released lease can be taken, a stale generation cannot renew, and a held
// lease survives a restart of flurry-meta.
TEST(MetaState, WriteLeases) {
  MetaState::Options o;
  o.dir = TempDir();
  Status why;
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok()) << why.ToString();
  for (int i = 0; i < 3; ++i)
    (*m)->Handle("REGISTER s" + std::to_string(i) + " 127.0.0.1:" + std::to_string(9101 + i) + " z");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE v size=1G replicas=2").substr(0, 4), "OK 1");
  auto h = [&](const std::string& l) { return (*m)->Handle(l); };
  EXPECT_EQ(h("LEASE ACQUIRE nosuch 1000 a").substr(0, 10), "ERR ENOENT");
  EXPECT_EQ(h("LEASE ACQUIRE v 50 a").substr(0, 10), "ERR EINVAL");  // ttl below 100 ms
  EXPECT_EQ(h("LEASE ACQUIRE v 1000").substr(0, 10), "ERR EINVAL");  // no holder
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder-a"), "OK 1\ngen 1 ttl_ms 1000\n");
  std::string busy = h("LEASE ACQUIRE v 1000 holder-b");
  EXPECT_EQ(busy.substr(0, 9), "ERR EBUSY") << busy;
  EXPECT_NE(busy.find("gen=1 "), std::string::npos) << busy;
  EXPECT_NE(busy.find("holder=holder-a"), std::string::npos) << busy;
  EXPECT_EQ(h("VOLUME DELETE v").substr(0, 9), "ERR EBUSY");
  EXPECT_EQ(h("LEASE RENEW v 1"), "OK 1\nttl_ms 1000\n");
  EXPECT_EQ(h("LEASE RENEW v 7").substr(0, 10), "ERR ESTALE");
  EXPECT_EQ(h("LEASE BREAK v 7").substr(0, 10), "ERR ESTALE");
  // Released: free for the next holder, with the next generation; the old
  // generation can no longer renew.
  EXPECT_EQ(h("LEASE RELEASE v 1"), "OK 1\nreleased\n");
  EXPECT_EQ(h("LEASE RELEASE v 1"), "OK 1\nnot held\n");
  EXPECT_EQ(h("LEASE RENEW v 1").substr(0, 10), "ERR ESTALE");
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder-b"), "OK 1\ngen 2 ttl_ms 1000\n");
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder c").substr(0, 10), "ERR EINVAL");  // 5 words
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder;c").substr(0, 10), "ERR EINVAL");
  EXPECT_EQ(h("LEASE FROB v 1").substr(0, 10), "ERR EINVAL");
  // Lapsed: taken over after its ttl; the lapsed holder's renewal fails.
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder-c").substr(0, 9), "ERR EBUSY");
  usleep(1100 * 1000);
  EXPECT_EQ(h("LEASE INFO v"), "OK 1\ngen=2 remaining_ms=0 holder=holder-b\n");
  EXPECT_EQ(h("LEASE ACQUIRE v 1000 holder-c"), "OK 1\ngen 3 ttl_ms 1000\n");
  EXPECT_EQ(h("LEASE RENEW v 2").substr(0, 10), "ERR ESTALE");
  // A lapsed lease nobody took may still be renewed by its holder.
  EXPECT_EQ(h("LEASE RELEASE v 3"), "OK 1\nreleased\n");
  EXPECT_EQ(h("LEASE ACQUIRE v 100 holder-d"), "OK 1\ngen 4 ttl_ms 100\n");
  usleep(150 * 1000);
  EXPECT_EQ(h("LEASE RENEW v 4"), "OK 1\nttl_ms 100\n");
  EXPECT_EQ(h("LEASE BREAK v 4"), "OK 1\nbroken\n");
  EXPECT_EQ(h("LEASE INFO v"), "OK 1\ngen=4 free\n");
  // Persisted: after a restart the lease is held (for its ttl from then)
  // and the generation goes on from where it was.
  EXPECT_EQ(h("LEASE ACQUIRE v 5000 holder-e"), "OK 1\ngen 5 ttl_ms 5000\n");
  m->reset();
  auto m2 = MetaState::Open(o, &why);
  ASSERT_TRUE(m2.ok()) << why.ToString();
  EXPECT_EQ((*m2)->Handle("LEASE ACQUIRE v 1000 holder-f").substr(0, 9), "ERR EBUSY");
  EXPECT_EQ((*m2)->Handle("LEASE RENEW v 5"), "OK 1\nttl_ms 5000\n");
  EXPECT_EQ((*m2)->Handle("LEASE RELEASE v 5"), "OK 1\nreleased\n");
  EXPECT_EQ((*m2)->Handle("LEASE ACQUIRE v 1000 holder-f"), "OK 1\ngen 6 ttl_ms 1000\n");
  EXPECT_EQ((*m2)->Handle("LEASE RELEASE v 6"), "OK 1\nreleased\n");
  EXPECT_EQ((*m2)->Handle("VOLUME DELETE v").substr(0, 4), "OK 1");
  EXPECT_EQ((*m2)->Handle("LEASE INFO v").substr(0, 10), "ERR ENOENT");
  // Created again under the same name: generations go on, so the old
  // holder's generation never matches a new grant.
  ASSERT_EQ((*m2)->Handle("VOLUME CREATE v size=1G replicas=2").substr(0, 4), "OK 1");
  EXPECT_EQ((*m2)->Handle("LEASE INFO v"), "OK 1\ngen=6 free\n");
  EXPECT_EQ((*m2)->Handle("LEASE ACQUIRE v 1000 holder-g"), "OK 1\ngen 7 ttl_ms 1000\n");
  EXPECT_EQ((*m2)->Handle("LEASE RENEW v 1").substr(0, 10), "ERR ESTALE");
  EXPECT_EQ((*m2)->Handle("LEASE RELEASE v 6"), "OK 1\nnot held\n");
  EXPECT_EQ((*m2)->Handle("LEASE INFO v").substr(0, 16), "OK 1\ngen=7 remai");
}

TEST(MetaState, DefaultBlockDependsOnModeAndTractSize) {
  MetaState::Options o;
  o.dir = TempDir();
  Status why;
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok());
  (*m)->Handle("REGISTER a 127.0.0.1:1 z");
  auto block_of = [&](const std::string& name) {
    auto v = VolumeInfo::Parse(Lines((*m)->Handle("VOLUME INFO " + name))[0]);
    return v.ok() ? v->block_size : 0u;
  };
  ASSERT_EQ((*m)->Handle("VOLUME CREATE wt size=1G").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE fa size=1G mode=fast-ack").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE lg size=1G mode=log").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE small size=1G tract_size=256K").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE named size=1G block=128K").substr(0, 4), "OK 1");
  EXPECT_EQ(block_of("wt"), 1u << 20);
  EXPECT_EQ(block_of("fa"), 1u << 20);
  EXPECT_EQ(block_of("lg"), 64u << 10);
  EXPECT_EQ(block_of("small"), 256u << 10);  // never above the tract size
  EXPECT_EQ(block_of("named"), 128u << 10);
}

TEST(MetaState, HeartbeatsReportLeaseGenerationsFullThenDelta) {
  MetaState::Options o;
  o.dir = TempDir();
  Status why;
  auto m = MetaState::Open(o, &why);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ((*m)->Handle("REGISTER s1 127.0.0.1:1 z").substr(0, 2), "OK");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE a size=1G").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("VOLUME CREATE b size=1G").substr(0, 4), "OK 1");
  auto id = [&](const std::string& n) { return VolumeInfo::Parse(Lines((*m)->Handle("VOLUME INFO " + n))[0])->IdHex(); };
  ASSERT_EQ((*m)->Handle("LEASE ACQUIRE a 60000 x").substr(0, 10), "OK 1\ngen 1");
  // Without "gens": the old reply, one line.
  EXPECT_EQ(Lines((*m)->Handle("HEARTBEAT s1")).size(), 1u);
  auto full = Lines((*m)->Handle("HEARTBEAT s1 gens -"));
  ASSERT_EQ(full.size(), 3u);
  EXPECT_EQ(full[0].substr(0, 12), "tlt_version ");
  char token[80], kind[8];
  ASSERT_EQ(sscanf(full[1].c_str(), "gens %79s %7s", token, kind), 2);
  EXPECT_STREQ(kind, "full");
  EXPECT_EQ(full[2], id("a") + " 1");
  // Nothing granted since: an empty delta with the same token.
  auto none = Lines((*m)->Handle(std::string("HEARTBEAT s1 gens ") + token));
  ASSERT_EQ(none.size(), 2u);
  EXPECT_EQ(none[1], std::string("gens ") + token + " delta");
  ASSERT_EQ((*m)->Handle("LEASE RELEASE a 1").substr(0, 4), "OK 1");
  ASSERT_EQ((*m)->Handle("LEASE ACQUIRE a 60000 y").substr(0, 10), "OK 1\ngen 2");
  ASSERT_EQ((*m)->Handle("LEASE ACQUIRE b 60000 y").substr(0, 10), "OK 1\ngen 1");
  auto delta = Lines((*m)->Handle(std::string("REGISTER s1 127.0.0.1:1 z gens ") + token));
  ASSERT_EQ(delta.size(), 4u);
  EXPECT_NE(delta[1].find(" delta"), std::string::npos);
  std::set<std::string> got(delta.begin() + 2, delta.end());
  EXPECT_EQ(got, (std::set<std::string>{id("a") + " 2", id("b") + " 1"}));
  // Another incarnation's token (or garbage) gets everything again.
  auto other = Lines((*m)->Handle("HEARTBEAT s1 gens 0123456789abcdef:5"));
  ASSERT_EQ(other.size(), 4u);
  EXPECT_NE(other[1].find(" full"), std::string::npos);
  // A restarted meta is a new incarnation and still knows every generation.
  m->reset();
  auto m2 = MetaState::Open(o, &why);
  ASSERT_TRUE(m2.ok());
  ASSERT_EQ((*m2)->Handle("REGISTER s1 127.0.0.1:1 z").substr(0, 2), "OK");
  auto again = Lines((*m2)->Handle(std::string("HEARTBEAT s1 gens ") + token));
  ASSERT_EQ(again.size(), 4u);
  EXPECT_NE(again[1].find(" full"), std::string::npos);
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
