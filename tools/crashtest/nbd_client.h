// SPDX-License-Identifier: Apache-2.0
//
// NbdClient: a minimal NBD client for the crash harness — fixed newstyle
// handshake with NBD_OPT_GO (spec: NetworkBlockDevice/nbd doc/proto.md;
// wire layouts in nbdserver/nbd_protocol.h), simple replies only (it never
// asks for structured replies), pipelined READ/WRITE/FLUSH/TRIM/WRITE_ZEROES.
//
// Contract
// - Connect() is blocking (with a timeout) and fails with a sentence.
// - After it, IO is asynchronous: Read/Write/Flush queue a request (Write
//   copies the data at once; Read's buffer must stay valid until its
//   callback runs) and Poll() sends, receives and runs callbacks. A
//   callback gets 0 or the negative errno of the reply's error.
// - When the connection ends (EOF, reset, protocol error) Poll() returns a
//   negative errno, and the callbacks of requests still pending never run:
//   those requests are unacknowledged. Replies already in the socket when
//   the server died are still delivered first (Poll() reads until EOF).
// - Not thread-safe: one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/units.h"

namespace flurry::crashtest {

class NbdClient {
 public:
  using Done = std::function<void(int res)>;

  static Result<std::unique_ptr<NbdClient>> Connect(const HostPort& addr, const std::string& export_name,
                                                    int timeout_ms, Status* why);
  ~NbdClient();
  NbdClient(const NbdClient&) = delete;
  NbdClient& operator=(const NbdClient&) = delete;

  uint64_t size() const { return size_; }
  uint16_t transmission_flags() const { return tx_flags_; }

  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done);
  void Write(uint64_t off, uint32_t len, const uint8_t* data, bool fua, Done done);
  void Flush(Done done);
  void Trim(uint64_t off, uint32_t len, Done done);
  // NBD_CMD_WRITE_ZEROES; no_hole sets NBD_CMD_FLAG_NO_HOLE.
  void WriteZeroes(uint64_t off, uint32_t len, bool no_hole, Done done);
  // Sends NBD_CMD_DISC once everything queued is sent (then Poll() until
  // it returns an error, or just destroy the client).
  void Disconnect();

  // Makes progress for up to timeout_ms (0: only what is ready). Returns 0,
  // or a negative errno once the connection is gone.
  int Poll(int timeout_ms);
  size_t pending() const { return pending_.size(); }
  bool alive() const { return fd_ >= 0 && dead_ == 0; }
  const std::string& error() const { return error_; }

 private:
  struct Pending {
    uint16_t type;
    uint32_t len;
    uint8_t* buf;
    Done done;
  };
  NbdClient() = default;
  void Queue(uint16_t type, uint16_t flags, uint64_t off, uint32_t len, const uint8_t* data, uint8_t* buf, Done done);
  int Fail(int err, std::string why);
  int HandleInput();

  int fd_ = -1;
  int dead_ = 0;
  std::string error_;
  uint64_t size_ = 0;
  uint16_t tx_flags_ = 0;
  uint64_t next_cookie_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  std::vector<uint8_t> in_;  // received bytes: [in_pos_, in_len_) not yet parsed
  size_t in_pos_ = 0, in_len_ = 0;
};

// Blocking helper: reads [off, off+len) with up to `depth` requests of at
// most `chunk` bytes in flight. 0 or a negative errno.
int ReadRange(NbdClient* c, uint64_t off, uint64_t len, uint8_t* buf, uint32_t chunk = 1u << 20,
              unsigned depth = 8, int timeout_ms = 60000);

}  // namespace flurry::crashtest
