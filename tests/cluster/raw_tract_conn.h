// SPDX-License-Identifier: Apache-2.0
//
// RawTractConn: a blocking, byte-level client of the tract protocol for
// tests. It sends exactly the bytes it is given (well-formed or not) and
// reads whatever comes back, so tests can talk to one tract server
// directly, bypassing the TLT, and send it malformed frames.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/net.h"
#include "common/tract_protocol.h"

namespace flurry::testing {

class RawTractConn {
 public:
  struct Reply {
    int res = 0;  // 0 = a reply arrived; -ECONNRESET = closed; -ETIMEDOUT; -EPROTO = garbage
    tractproto::ReplyHeader hdr{};
    std::vector<uint8_t> payload;
  };

  RawTractConn() = default;
  ~RawTractConn() { Close(); }
  RawTractConn(const RawTractConn&) = delete;
  RawTractConn& operator=(const RawTractConn&) = delete;

  int Connect(const std::string& addr) {
    auto hp = ParseHostPort(addr);
    if (!hp) return hp.err();
    auto fd = ConnectTcp(*hp, 3000);
    if (!fd) return fd.err();
    fd_ = *fd;
    return 0;
  }
  // The server's local unix socket (common/net.h LocalTractSocketName).
  int ConnectLocal(const std::string& addr) {
    auto fd = ConnectAbstract(LocalTractSocketName(addr));
    if (!fd) return fd.err();
    fd_ = *fd;
    return 0;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  // A well-formed request header (sealed); callers may corrupt it after.
  static tractproto::RequestHeader Header(uint16_t op, uint64_t hi, uint64_t lo, uint64_t tract,
                                          uint32_t tract_size, uint32_t off, uint32_t len,
                                          const void* payload = nullptr, uint32_t payload_len = 0) {
    tractproto::RequestHeader h{};
    h.magic = tractproto::kRequestMagic;
    h.version = tractproto::kVersion;
    h.op = op;
    h.id = ++next_id_;
    h.blob_hi = hi;
    h.blob_lo = lo;
    h.tract = tract;
    h.tract_size = tract_size;
    h.offset = off;
    h.length = len;
    h.payload_len = payload_len;
    h.payload_sum = payload_len ? Checksum(payload, payload_len) : 0;
    tractproto::SealHeader(&h);
    return h;
  }

  int SendBytes(const void* p, size_t n) { return WriteAll(fd_, p, n); }
  int Send(const tractproto::RequestHeader& h, const void* payload = nullptr, size_t n = 0) {
    int r = SendBytes(&h, sizeof h);
    if (r == 0 && n) r = SendBytes(payload, n);
    return r;
  }

  // Reads one reply (header, then payload_len bytes).
  Reply Receive(int timeout_ms = 5000) {
    Reply rep;
    rep.res = RecvFull(&rep.hdr, sizeof rep.hdr, timeout_ms);
    if (rep.res < 0) return rep;
    if (rep.hdr.magic != tractproto::kReplyMagic || rep.hdr.header_sum != tractproto::HeaderSum(rep.hdr) ||
        rep.hdr.payload_len > tractproto::kMaxPayload) {
      rep.res = -EPROTO;
      return rep;
    }
    rep.payload.resize(rep.hdr.payload_len);
    if (rep.hdr.payload_len) rep.res = RecvFull(rep.payload.data(), rep.payload.size(), timeout_ms);
    if (rep.res == 0 && rep.hdr.payload_len && Checksum(rep.payload.data(), rep.payload.size()) != rep.hdr.payload_sum)
      rep.res = -EBADMSG;
    return rep;
  }

  // True if the peer closed the connection (EOF or reset) within timeout_ms
  // without sending anything.
  bool ClosedByPeer(int timeout_ms = 5000) {
    uint8_t b;
    int r = RecvFull(&b, 1, timeout_ms);
    return r == -ECONNRESET;
  }

  // Convenience: a request and its reply.
  Reply Call(const tractproto::RequestHeader& h, const void* payload = nullptr, size_t n = 0) {
    Reply rep;
    rep.res = Send(h, payload, n);
    if (rep.res < 0) return rep;
    return Receive();
  }

 private:
  int RecvFull(void* buf, size_t n, int timeout_ms) {
    size_t got = 0;
    while (got < n) {
      pollfd pfd{fd_, POLLIN, 0};
      int pr = poll(&pfd, 1, timeout_ms);
      if (pr == 0) return -ETIMEDOUT;
      if (pr < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      ssize_t r = recv(fd_, static_cast<uint8_t*>(buf) + got, n - got, 0);
      if (r == 0) return -ECONNRESET;
      if (r < 0) {
        if (errno == EINTR) continue;
        return errno == ECONNRESET ? -ECONNRESET : -errno;
      }
      got += static_cast<size_t>(r);
    }
    return 0;
  }

  int fd_ = -1;
  static inline uint64_t next_id_ = 1000;
};

// One counter of a tract server's STAT_SERVER text; UINT64_MAX if the
// server or the key is missing.
inline uint64_t ServerCounter(const std::string& addr, const std::string& key) {
  RawTractConn c;
  if (c.Connect(addr) < 0) return UINT64_MAX;
  auto rep = c.Call(RawTractConn::Header(tractproto::kOpStatServer, 0, 0, 0, 0, 0, 0));
  if (rep.res < 0 || rep.hdr.status != 0) return UINT64_MAX;
  std::string text = "\n" + std::string(rep.payload.begin(), rep.payload.end());
  size_t p = text.find("\n" + key + "=");
  if (p == std::string::npos) return UINT64_MAX;
  return strtoull(text.c_str() + p + key.size() + 2, nullptr, 10);
}

}  // namespace flurry::testing
