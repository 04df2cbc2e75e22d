// SPDX-License-Identifier: Apache-2.0
// Drives the handshake state machine directly: bytes in, bytes out.
#include "nbdserver/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nbdserver/memory_device.h"
#include "nbdserver/nbd_protocol.h"

namespace flurry::nbd {
namespace {

using State = Handshake::State;

struct OptReply {
  uint32_t option, type;
  std::string data;
};

std::string Opt(uint32_t option, const std::string& data) {
  std::string s;
  Append64(&s, kIHaveOpt);
  Append32(&s, option);
  Append32(&s, static_cast<uint32_t>(data.size()));
  return s + data;
}

std::string Flags(uint32_t f) {
  std::string s;
  Append32(&s, f);
  return s;
}

std::string InfoReq(const std::string& name, std::vector<uint16_t> infos) {
  std::string d;
  Append32(&d, static_cast<uint32_t>(name.size()));
  d += name;
  Append16(&d, static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) Append16(&d, i);
  return d;
}

std::string MetaReq(const std::string& name, std::vector<std::string> queries) {
  std::string d;
  Append32(&d, static_cast<uint32_t>(name.size()));
  d += name;
  Append32(&d, static_cast<uint32_t>(queries.size()));
  for (auto& q : queries) {
    Append32(&d, static_cast<uint32_t>(q.size()));
    d += q;
  }
  return d;
}

class HandshakeTest : public ::testing::Test {
 protected:
  HandshakeTest() : disk_(1 << 20, "the disk"), other_(4096) {
    table_.Add("disk", &disk_, false);
    table_.Add("other", &other_, true);
    table_.SetDefault("disk");
  }
  // Feeds bytes, returns the number consumed; strips the greeting once.
  size_t Feed(Handshake& h, const std::string& s) {
    return h.Feed(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  static std::vector<OptReply> Replies(Handshake& h) {
    std::string& o = h.output();
    std::vector<OptReply> out;
    size_t p = 0;
    auto* b = reinterpret_cast<const uint8_t*>(o.data());
    while (o.size() - p >= kOptionReplyHeaderSize) {
      EXPECT_EQ(Get64(b + p), kOptReplyMagic);
      uint32_t len = Get32(b + p + 16);
      if (o.size() - p - 20 < len) break;
      out.push_back({Get32(b + p + 8), Get32(b + p + 12), o.substr(p + 20, len)});
      p += 20 + len;
    }
    o.erase(0, p);
    return out;
  }
  Handshake Start(uint32_t flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes) {
    Handshake h(&table_, Handshake::Limits{});
    EXPECT_EQ(h.output().size(), kGreetingSize);
    h.output().clear();
    Feed(h, Flags(flags));
    EXPECT_EQ(h.state(), State::kOptionHeader);
    return h;
  }

  MemoryBlockDevice disk_, other_;
  ExportTable table_;
};

TEST_F(HandshakeTest, Greeting) {
  Handshake h(&table_, {});
  auto* b = reinterpret_cast<const uint8_t*>(h.output().data());
  ASSERT_EQ(h.output().size(), 18u);
  EXPECT_EQ(Get64(b), kNbdMagic);
  EXPECT_EQ(Get64(b + 8), kIHaveOpt);
  EXPECT_EQ(Get16(b + 16), kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST_F(HandshakeTest, UnknownClientFlagsClose) {
  Handshake h(&table_, {});
  Feed(h, Flags(0x80));
  EXPECT_EQ(h.state(), State::kClosed);
}

TEST_F(HandshakeTest, ListAndUnknownOption) {
  Handshake h = Start();
  Feed(h, Opt(kOptList, "") + Opt(77, "junk") + Opt(kOptList, "x"));
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0].type, kRepServer);
  EXPECT_EQ(r[0].data.substr(4, 4), "disk");
  EXPECT_EQ(r[0].data.substr(8), "the disk");
  EXPECT_EQ(r[1].type, kRepServer);
  EXPECT_EQ(r[2].type, kRepAck);
  EXPECT_EQ(r[3].type, kRepErrUnsup);
  EXPECT_EQ(r[3].option, 77u);
  EXPECT_EQ(r[4].type, kRepErrInvalid);
  EXPECT_EQ(h.state(), State::kOptionHeader);
}

TEST_F(HandshakeTest, GoKnownExport) {
  Handshake h = Start();
  std::string rest = "PIPELINED";
  size_t in = Opt(kOptGo, InfoReq("disk", {kInfoName, kInfoDescription, kInfoBlockSize})).size();
  EXPECT_EQ(Feed(h, Opt(kOptGo, InfoReq("disk", {kInfoName, kInfoDescription, kInfoBlockSize})) + rest), in);
  EXPECT_EQ(h.state(), State::kTransmission);
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 5u);
  auto* e = reinterpret_cast<const uint8_t*>(r[0].data.data());
  EXPECT_EQ(Get16(e), kInfoExport);
  EXPECT_EQ(Get64(e + 2), 1u << 20);
  uint16_t flags = Get16(e + 10);
  EXPECT_TRUE(flags & kTxHasFlags);
  EXPECT_TRUE(flags & kTxSendTrim);
  EXPECT_FALSE(flags & kTxReadOnly);
  EXPECT_FALSE(flags & kTxSendDf);  // no structured replies
  EXPECT_EQ(r[1].data.substr(2), "disk");
  EXPECT_EQ(r[2].data.substr(2), "the disk");
  auto* bs = reinterpret_cast<const uint8_t*>(r[3].data.data());
  EXPECT_EQ(Get16(bs), kInfoBlockSize);
  EXPECT_EQ(Get32(bs + 2), 1u);
  EXPECT_EQ(Get32(bs + 6), 4096u);
  EXPECT_EQ(Get32(bs + 10), 4u << 20);
  EXPECT_EQ(r[4].type, kRepAck);
  EXPECT_EQ(h.negotiated().exp->name, "disk");
}

TEST_F(HandshakeTest, InfoThenGoDefaultReadOnly) {
  Handshake h = Start();
  Feed(h, Opt(kOptInfo, InfoReq("nope", {})));
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepErrUnknown);
  Feed(h, Opt(kOptInfo, InfoReq("other", {})));
  r = Replies(h);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_TRUE(Get16(reinterpret_cast<const uint8_t*>(r[0].data.data()) + 10) & kTxReadOnly);
  EXPECT_EQ(h.state(), State::kOptionHeader);
  Feed(h, Opt(kOptGo, InfoReq("", {})));  // default export
  EXPECT_EQ(h.state(), State::kTransmission);
  EXPECT_EQ(h.negotiated().exp->name, "disk");
}

TEST_F(HandshakeTest, GoMalformed) {
  Handshake h = Start();
  Feed(h, Opt(kOptGo, "abc"));
  std::string bad = InfoReq("disk", {1});
  bad.pop_back();
  Feed(h, Opt(kOptGo, bad));
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].type, kRepErrInvalid);
  EXPECT_EQ(r[1].type, kRepErrInvalid);
}

TEST_F(HandshakeTest, ExportNameNoZeroes) {
  Handshake h = Start();
  Feed(h, Opt(kOptExportName, "disk"));
  EXPECT_EQ(h.state(), State::kTransmission);
  EXPECT_EQ(h.output().size(), 10u);
}

TEST_F(HandshakeTest, ExportNameWithZeroPadding) {
  Handshake h = Start(kClientFlagFixedNewstyle);
  Feed(h, Opt(kOptExportName, ""));
  EXPECT_EQ(h.state(), State::kTransmission);
  EXPECT_EQ(h.output().size(), 134u);
}

TEST_F(HandshakeTest, ExportNameUnknownCloses) {
  Handshake h = Start();
  Feed(h, Opt(kOptExportName, "nope"));
  EXPECT_EQ(h.state(), State::kClosed);
}

TEST_F(HandshakeTest, Abort) {
  Handshake h = Start();
  Feed(h, Opt(kOptAbort, ""));
  EXPECT_EQ(h.state(), State::kClosed);
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepAck);
}

TEST_F(HandshakeTest, MetaContexts) {
  Handshake h = Start();
  Feed(h, Opt(kOptSetMetaContext, MetaReq("disk", {"base:allocation"})));
  auto r = Replies(h);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepErrInvalid);  // needs structured replies first
  Feed(h, Opt(kOptStructuredReply, "x"));
  Feed(h, Opt(kOptStructuredReply, ""));
  r = Replies(h);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].type, kRepErrInvalid);
  EXPECT_EQ(r[1].type, kRepAck);
  Feed(h, Opt(kOptListMetaContext, MetaReq("disk", {})));
  Feed(h, Opt(kOptListMetaContext, MetaReq("disk", {"qemu:dirty"})));
  Feed(h, Opt(kOptListMetaContext, MetaReq("nope", {"base:"})));
  r = Replies(h);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].type, kRepMetaContext);
  EXPECT_EQ(r[0].data.substr(4), "base:allocation");
  EXPECT_EQ(r[1].type, kRepAck);
  EXPECT_EQ(r[2].type, kRepAck);  // no match: just ACK
  EXPECT_EQ(r[3].type, kRepErrUnknown);
  std::string trailing = MetaReq("disk", {"base:allocation"}) + "z";
  Feed(h, Opt(kOptSetMetaContext, trailing));
  Feed(h, Opt(kOptSetMetaContext, MetaReq("disk", {"base:allocation", "x:y"})));
  r = Replies(h);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].type, kRepErrInvalid);
  EXPECT_EQ(r[1].type, kRepMetaContext);
  EXPECT_EQ(Get32(reinterpret_cast<const uint8_t*>(r[1].data.data())), Handshake::kBaseAllocationId);
  Feed(h, Opt(kOptGo, InfoReq("disk", {})));
  ASSERT_EQ(h.state(), State::kTransmission);
  EXPECT_TRUE(h.negotiated().structured);
  EXPECT_TRUE(h.negotiated().base_allocation);
  EXPECT_TRUE(h.negotiated().tx_flags & kTxSendDf);
}

TEST_F(HandshakeTest, MetaContextForOtherExportDropped) {
  Handshake h = Start();
  Feed(h, Opt(kOptStructuredReply, "") +
              Opt(kOptSetMetaContext, MetaReq("other", {"base:allocation"})) +
              Opt(kOptGo, InfoReq("disk", {})));
  ASSERT_EQ(h.state(), State::kTransmission);
  EXPECT_FALSE(h.negotiated().base_allocation);
}

TEST_F(HandshakeTest, BadMagicCloses) {
  Handshake h = Start();
  std::string o = Opt(kOptList, "");
  o[0] = 'X';
  Feed(h, o);
  EXPECT_EQ(h.state(), State::kClosed);
}

TEST_F(HandshakeTest, OversizedOptionCloses) {
  Handshake h = Start();
  std::string o;
  Append64(&o, kIHaveOpt);
  Append32(&o, kOptGo);
  Append32(&o, 1u << 30);
  Feed(h, o);
  EXPECT_EQ(h.state(), State::kClosed);
}

TEST_F(HandshakeTest, TooManyOptionsClose) {
  Handshake h = Start();
  for (int i = 0; i < 200 && h.state() != State::kClosed; ++i) Feed(h, Opt(99, ""));
  EXPECT_EQ(h.state(), State::kClosed);
}

TEST_F(HandshakeTest, ByteAtATimeMatchesBulk) {
  std::string in = Flags(3) + Opt(kOptList, "") + Opt(kOptStructuredReply, "") +
                   Opt(kOptGo, InfoReq("disk", {kInfoBlockSize}));
  Handshake a(&table_, {}), b(&table_, {});
  Feed(a, in);
  for (char c : in) Feed(b, std::string(1, c));
  EXPECT_EQ(a.state(), State::kTransmission);
  EXPECT_EQ(b.state(), State::kTransmission);
  EXPECT_EQ(a.output(), b.output());
}

}  // namespace
}  // namespace flurry::nbd
