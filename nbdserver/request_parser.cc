// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/request_parser.h"

#include <algorithm>
#include <cstring>

namespace flurry::nbd {

size_t RequestParser::Feed(const uint8_t* data, size_t len) {
  size_t used = 0;
  while (used < len) {
    if (state_ == State::kHeader) {
      size_t take = std::min(kRequestSize - hdr_have_, len - used);
      memcpy(hdr_ + hdr_have_, data + used, take);
      hdr_have_ += take;
      used += take;
      if (hdr_have_ == kRequestSize) HeaderDone();
    } else if (state_ == State::kPayload) {
      uint32_t want = cur_.req.length - payload_have_;
      size_t take = std::min<size_t>(want, len - used);
      if (!cur_.payload_dropped) memcpy(cur_.payload.data() + payload_have_, data + used, take);
      used += take;
      payload_have_ += static_cast<uint32_t>(take);
      if (payload_have_ == cur_.req.length) state_ = State::kReady;
    } else {
      break;  // kReady / kError: caller must act first
    }
  }
  return used;
}

void RequestParser::HeaderDone() {
  hdr_have_ = 0;
  cur_ = ParsedRequest{};
  payload_have_ = 0;
  if (!DecodeRequest(hdr_, &cur_.req)) {
    state_ = State::kError;
    error_ = "bad request magic";
    return;
  }
  if (cur_.req.type != kCmdWrite || cur_.req.length == 0) {
    state_ = State::kReady;
    return;
  }
  if (cur_.req.length > hard_max_) {
    state_ = State::kError;
    error_ = "write payload of " + std::to_string(cur_.req.length) + " bytes exceeds hard limit";
    return;
  }
  if (cur_.req.length > max_payload_) {
    cur_.payload_dropped = true;
  } else {
    cur_.payload = AlignedBuffer(cur_.req.length);
  }
  state_ = State::kPayload;
}

std::span<uint8_t> RequestParser::PayloadWindow() {
  if (state_ != State::kPayload || cur_.payload_dropped) return {};
  return {cur_.payload.data() + payload_have_, cur_.req.length - payload_have_};
}

void RequestParser::PayloadFilled(size_t n) {
  if (n == 0 || state_ != State::kPayload) return;
  payload_have_ += static_cast<uint32_t>(n);
  if (payload_have_ >= cur_.req.length) state_ = State::kReady;
}

ParsedRequest RequestParser::Take() {
  state_ = State::kHeader;
  return std::move(cur_);
}

}  // namespace flurry::nbd
