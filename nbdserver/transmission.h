// SPDX-License-Identifier: Apache-2.0
//
// Transmission: executes validated NBD requests against an export's
// BlockDevice and encodes each reply, without touching sockets. The
// connection (or the fuzzer) supplies the parsed requests and a Reply sink.
//
// Contract
// - Execute() validates the request (validate.h), runs it and calls reply
//   exactly once with the complete reply for that cookie -- possibly before
//   Execute() returns (synchronous devices), otherwise later on the
//   device's loop thread. Replies to different requests may come back in any
//   order; the caller serialises them onto the wire.
// - NBD_CMD_DISC is not handled here (it has no reply); callers intercept it.
// - Replies: simple replies unless structured replies were negotiated; then
//   READ answers with one NBD_REPLY_TYPE_OFFSET_DATA chunk (so DF always
//   holds) and READ/BLOCK_STATUS failures with NBD_REPLY_TYPE_ERROR; other
//   commands keep simple replies, as the spec allows.
// - TRIM/WRITE_ZEROES longer than the device's max_io are split into
//   sequential pieces; FUA on them becomes a Flush() afterwards. BLOCK_STATUS
//   is clamped to max_io (the reply may cover a prefix, per spec).
// - Counters in the export's ExportStats are updated on completion.
// - Not thread-safe: one per connection, on the device's loop thread. The
//   export and device must outlive every outstanding Execute().
#pragma once

#include <functional>
#include <string>

#include "common/buffer.h"
#include "nbdserver/handshake.h"
#include "nbdserver/request_parser.h"
#include "nbdserver/validate.h"

namespace flurry::nbd {

// One reply: head (headers and small payloads) then body_len bytes of body.
struct OutMsg {
  std::string head;
  AlignedBuffer body;
  size_t body_len = 0;
  size_t size() const { return head.size() + body_len; }
};

class Transmission {
 public:
  using Reply = std::function<void(OutMsg)>;

  explicit Transmission(const Negotiated& neg);
  void Execute(ParsedRequest pr, Reply reply);
  const ValidationContext& context() const { return ctx_; }

 private:
  void DoRead(const Request& r, Reply reply);
  void DoBlockStatus(const Request& r, Reply reply);
  void DoRanged(const Request& r, Reply reply);
  OutMsg ErrorReply(const Request& r, uint32_t nbd_err, const char* msg) const;
  OutMsg OkReply(const Request& r) const;
  void Count(const Request& r, uint32_t nbd_err) const;

  Negotiated neg_;
  ValidationContext ctx_;
  BlockDevice* dev_;
};

}  // namespace flurry::nbd
