// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/request_parser.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace flurry::nbd {
namespace {

std::string Req(uint16_t type, uint64_t cookie, uint64_t off, uint32_t len, uint16_t flags = 0) {
  Request r{flags, type, cookie, off, len};
  std::string s(kRequestSize, '\0');
  EncodeRequest(r, reinterpret_cast<uint8_t*>(s.data()));
  return s;
}

size_t Feed(RequestParser& p, const std::string& s) {
  return p.Feed(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(RequestParser, ReadThenWrite) {
  RequestParser p(1 << 20, 32 << 20);
  std::string in = Req(kCmdRead, 7, 4096, 512) + Req(kCmdWrite, 8, 0, 4, kCmdFlagFua) + "abcd";
  size_t used = Feed(p, in);
  EXPECT_EQ(used, kRequestSize);
  ASSERT_EQ(p.state(), RequestParser::State::kReady);
  ParsedRequest a = p.Take();
  EXPECT_EQ(a.req.type, kCmdRead);
  EXPECT_EQ(a.req.cookie, 7u);
  EXPECT_EQ(a.req.offset, 4096u);
  EXPECT_EQ(a.req.length, 512u);
  used += Feed(p, in.substr(used));
  EXPECT_EQ(used, in.size());
  ASSERT_EQ(p.state(), RequestParser::State::kReady);
  ParsedRequest b = p.Take();
  EXPECT_EQ(b.req.flags, kCmdFlagFua);
  EXPECT_EQ(memcmp(b.payload.data(), "abcd", 4), 0);
}

TEST(RequestParser, ZeroCopyWindow) {
  RequestParser p(1 << 20, 32 << 20);
  Feed(p, Req(kCmdWrite, 1, 0, 100000) + "xy");
  ASSERT_EQ(p.state(), RequestParser::State::kPayload);
  auto w = p.PayloadWindow();
  ASSERT_EQ(w.size(), 100000u - 2);
  memset(w.data(), 'z', w.size());
  p.PayloadFilled(w.size());
  ASSERT_EQ(p.state(), RequestParser::State::kReady);
  ParsedRequest r = p.Take();
  EXPECT_EQ(r.payload.data()[0], 'x');
  EXPECT_EQ(r.payload.data()[99999], 'z');
}

TEST(RequestParser, OversizedPayloadDroppedOrFatal) {
  RequestParser p(1024, 4096);
  Feed(p, Req(kCmdWrite, 1, 0, 2048) + std::string(2048, 'q'));
  ASSERT_EQ(p.state(), RequestParser::State::kReady);
  EXPECT_TRUE(p.Take().payload_dropped);
  Feed(p, Req(kCmdWrite, 2, 0, 8192));
  EXPECT_EQ(p.state(), RequestParser::State::kError);
}

TEST(RequestParser, BadMagic) {
  RequestParser p(1024, 4096);
  std::string r = Req(kCmdRead, 1, 0, 512);
  r[0] ^= 1;
  Feed(p, r);
  EXPECT_EQ(p.state(), RequestParser::State::kError);
}

}  // namespace
}  // namespace flurry::nbd
