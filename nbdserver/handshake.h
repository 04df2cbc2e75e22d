// SPDX-License-Identifier: Apache-2.0
//
// Handshake: the fixed-newstyle NBD negotiation as an explicit, socket-free
// state machine. Bytes from the client go in through Feed(); bytes for the
// client accumulate in output() and the caller sends them. This is what the
// connection code drives and what fuzz_nbd.cc and handshake_test.cc feed
// directly.
//
// States (the only transitions; anything else is a protocol violation):
//
//   kClientFlags --4 bytes--> kOptionHeader            (greeting already queued)
//   kClientFlags --unknown flag bits--------------------------> kClosed
//   kOptionHeader --16 bytes, magic ok, len <= max--> kOptionData
//   kOptionHeader --bad magic / len > max / too many options--> kClosed
//   kOptionData --len bytes--> handle option:
//       EXPORT_NAME known   -> export info (+124 zeroes)      -> kTransmission
//       EXPORT_NAME unknown -> (spec: just disconnect)        -> kClosed
//       GO ok               -> INFO replies + ACK             -> kTransmission
//       ABORT               -> ACK                            -> kClosed
//       INFO / LIST / STRUCTURED_REPLY / *_META_CONTEXT / errors
//                           -> replies                        -> kOptionHeader
//
// Option errors: unknown option -> NBD_REP_ERR_UNSUP; malformed length or
// payload -> NBD_REP_ERR_INVALID; unknown export -> NBD_REP_ERR_UNKNOWN.
// Limits: option payloads above Limits::max_option_len and more than
// Limits::max_options options close the connection (no way to answer
// without reading unbounded data).
//
// Thread-safety: none; one Handshake per connection, used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nbdserver/exports.h"

namespace flurry::nbd {

// What negotiation settled, valid once state() == kTransmission.
struct Negotiated {
  const Export* exp = nullptr;
  bool structured = false;
  bool no_zeroes = false;
  // base:allocation selected with SET_META_CONTEXT for this export.
  bool base_allocation = false;
  uint32_t base_allocation_id = 0;
  uint16_t tx_flags = 0;
  BlockLimits limits;
};

class Handshake {
 public:
  enum class State { kClientFlags, kOptionHeader, kOptionData, kTransmission, kClosed };
  struct Limits {
    uint32_t max_option_len = 64 * 1024;
    uint32_t max_options = 128;
    uint32_t hard_max_payload = 32u << 20;
  };
  static constexpr uint32_t kBaseAllocationId = 1;

  // Queues the server greeting into output() immediately.
  Handshake(const ExportTable* exports, Limits limits);

  // Consumes a prefix of data; stops at kTransmission or kClosed, so bytes
  // after the final option (pipelined requests) are left to the caller.
  size_t Feed(const uint8_t* data, size_t len);

  State state() const { return state_; }
  bool done() const { return state_ == State::kTransmission || state_ == State::kClosed; }
  // Why the handshake moved to kClosed (for logs); empty otherwise.
  const std::string& close_reason() const { return close_reason_; }
  const Negotiated& negotiated() const { return neg_; }
  // Bytes to send to the client, appended in order; the caller drains it.
  std::string& output() { return out_; }

 private:
  void HandleOption();
  void OptExportName();
  void OptInfoGo(bool go);
  void OptList();
  void OptMetaContext(bool set);
  void Reply(uint32_t type, const std::string& data = std::string());
  void Close(const char* why);
  void EnterTransmission(const Export* e);

  const ExportTable* exports_;
  Limits limits_;
  State state_ = State::kClientFlags;
  std::string out_;
  std::string close_reason_;
  std::vector<uint8_t> in_;  // partial header / option data
  uint32_t option_ = 0;
  uint32_t option_len_ = 0;
  uint32_t options_seen_ = 0;
  bool fixed_ = false;
  Negotiated neg_;
  // Export the SET_META_CONTEXT selection applies to.
  std::string meta_export_;
};

}  // namespace flurry::nbd
