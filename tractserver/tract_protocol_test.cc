// SPDX-License-Identifier: Apache-2.0
#include "common/tract_protocol.h"

#include <gtest/gtest.h>

namespace flurry::tractproto {
namespace {

RequestHeader Good() {
  RequestHeader h{};
  h.magic = kRequestMagic;
  h.version = kVersion;
  h.op = kOpWrite;
  h.id = 7;
  h.tract_size = 8u << 20;
  h.offset = 4096;
  h.length = 8192;
  h.payload_len = 8192;
  SealHeader(&h);
  return h;
}

TEST(TractProtocol, LayoutIsFixed) {
  EXPECT_EQ(sizeof(RequestHeader), 88u);
  EXPECT_EQ(sizeof(ReplyHeader), 48u);
  EXPECT_EQ(offsetof(RequestHeader, blob_hi), 24u);
  EXPECT_EQ(offsetof(RequestHeader, payload_sum), 64u);
  EXPECT_EQ(offsetof(ReplyHeader, payload_sum), 32u);
}

TEST(TractProtocol, ValidatesHeaders) {
  EXPECT_EQ(ValidateRequest(Good()), 0);
  auto mut = [](auto f) { RequestHeader h = Good(); f(h); SealHeader(&h); return ValidateRequest(h); };
  EXPECT_EQ(mut([](RequestHeader& h) { h.magic = 1; }), -EPROTO);
  EXPECT_EQ(mut([](RequestHeader& h) { h.version = 1; }), -EPROTO) << "v1 headers are 8 bytes shorter";
  EXPECT_EQ(mut([](RequestHeader& h) { h.version = kVersion + 1; }), -EPROTO);
  EXPECT_EQ(mut([](RequestHeader& h) { h.payload_len = kMaxPayload + 1; h.length = h.payload_len; }), -EPROTO);
  EXPECT_EQ(mut([](RequestHeader& h) { h.op = 99; }), -EOPNOTSUPP);
  EXPECT_EQ(mut([](RequestHeader& h) { h.offset = (8u << 20) - 4096; }), -EINVAL);  // past tract end
  EXPECT_EQ(mut([](RequestHeader& h) { h.tract_size = 3u << 20; }), -EINVAL);
  EXPECT_EQ(mut([](RequestHeader& h) { h.length = 0; h.payload_len = 0; }), -EINVAL);
  EXPECT_EQ(mut([](RequestHeader& h) { h.length = 4096; }), -EPROTO);  // payload != length
  EXPECT_EQ(mut([](RequestHeader& h) { h.op = kOpRead; }), -EPROTO);   // read with payload
  RequestHeader h = Good();
  h.offset ^= 1;  // not resealed: header checksum catches it
  EXPECT_EQ(ValidateRequest(h), -EPROTO);
}

TEST(TractProtocol, BitmapBytesPadsToWords) {
  EXPECT_EQ(BitmapBytes(1), 8u);
  EXPECT_EQ(BitmapBytes(64), 8u);
  EXPECT_EQ(BitmapBytes(65), 16u);
  EXPECT_EQ(BitmapBytes(2048), 256u);
}

}  // namespace
}  // namespace flurry::tractproto
