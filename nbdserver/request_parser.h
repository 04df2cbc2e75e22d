// SPDX-License-Identifier: Apache-2.0
//
// RequestParser: turns the transmission-phase byte stream into requests,
// without sockets (fuzz_nbd.cc feeds it directly).
//
// Contract
// - Feed() consumes a prefix of the input and stops as soon as one request
//   is complete (state kReady) or the stream is invalid (kError). The caller
//   then Take()s the request, which returns the parser to kHeader.
// - WRITE payloads: a length <= max_payload is stored in the request;
//   a length up to hard_max_payload is read and discarded (payload_dropped,
//   the validator then answers EINVAL); anything larger, or a bad request
//   magic, is a protocol violation (kError): the connection must close
//   because the stream can no longer be framed safely.
// - Zero-copy receive: in kPayload, PayloadWindow() is the unfilled part of
//   the payload buffer; the caller may recv straight into it and report the
//   count with PayloadFilled().
// - Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/buffer.h"
#include "nbdserver/nbd_protocol.h"

namespace flurry::nbd {

struct ParsedRequest {
  Request req;
  AlignedBuffer payload;        // WRITE data when stored
  bool payload_dropped = false; // WRITE payload read and discarded
};

class RequestParser {
 public:
  enum class State { kHeader, kPayload, kReady, kError };

  RequestParser(uint32_t max_payload, uint32_t hard_max_payload)
      : max_payload_(max_payload), hard_max_(hard_max_payload) {}

  size_t Feed(const uint8_t* data, size_t len);
  State state() const { return state_; }
  const std::string& error() const { return error_; }

  std::span<uint8_t> PayloadWindow();
  void PayloadFilled(size_t n);

  // Valid in kReady only.
  ParsedRequest Take();

 private:
  void HeaderDone();

  uint32_t max_payload_;
  uint32_t hard_max_;
  State state_ = State::kHeader;
  uint8_t hdr_[kRequestSize];
  size_t hdr_have_ = 0;
  ParsedRequest cur_;
  uint32_t payload_have_ = 0;
  std::string error_;
};

}  // namespace flurry::nbd
