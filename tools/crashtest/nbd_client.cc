// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/nbd_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "common/net.h"
#include "nbdserver/nbd_protocol.h"

namespace flurry::crashtest {

using namespace flurry::nbd;

Result<std::unique_ptr<NbdClient>> NbdClient::Connect(const HostPort& addr, const std::string& export_name,
                                                      int timeout_ms, Status* why) {
  using R = Result<std::unique_ptr<NbdClient>>;
  auto fd = ConnectTcp(addr, timeout_ms);
  if (!fd) {
    *why = Status::Error(fd.err(), "NBD connect to " + addr.ToString() + ": " + errstr(fd.err()));
    return R::error(fd.err());
  }
  std::unique_ptr<NbdClient> c(new NbdClient());
  c->fd_ = *fd;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto fail = [&](int err, const std::string& what) {
    *why = Status::Error(err, "NBD handshake with " + addr.ToString() + ": " + what);
    return R::error(err);
  };
  // State 1: greeting.
  uint8_t g[kGreetingSize];
  if (int r = ReadAll(c->fd_, g, sizeof g); r < 0) return fail(r, "reading the greeting: " + errstr(r));
  if (Get64(g) != kNbdMagic || Get64(g + 8) != kIHaveOpt) return fail(-EPROTO, "not a newstyle NBD server");
  uint16_t hflags = Get16(g + 16);
  if (!(hflags & kFlagFixedNewstyle)) return fail(-EPROTO, "server does not speak fixed newstyle");
  // State 2: client flags, then NBD_OPT_GO with no info requests.
  uint8_t cf[4];
  Put32(cf, kClientFlagFixedNewstyle | ((hflags & kFlagNoZeroes) ? kClientFlagNoZeroes : 0));
  std::string opt;
  Append64(&opt, kIHaveOpt);
  Append32(&opt, kOptGo);
  Append32(&opt, static_cast<uint32_t>(4 + export_name.size() + 2));
  Append32(&opt, static_cast<uint32_t>(export_name.size()));
  opt += export_name;
  Append16(&opt, 0);
  if (int r = WriteAll(c->fd_, cf, sizeof cf); r < 0) return fail(r, errstr(r));
  if (int r = WriteAll(c->fd_, opt.data(), opt.size()); r < 0) return fail(r, errstr(r));
  // State 3: option replies until NBD_REP_ACK (or an error).
  bool have_export = false;
  for (;;) {
    uint8_t h[kOptionReplyHeaderSize];
    if (int r = ReadAll(c->fd_, h, sizeof h); r < 0) return fail(r, "reading an option reply: " + errstr(r));
    uint32_t type = Get32(h + 12), len = Get32(h + 16);
    if (Get64(h) != kOptReplyMagic || Get32(h + 8) != kOptGo) return fail(-EPROTO, "bad option reply header");
    if (len > (1u << 20)) return fail(-EPROTO, "option reply of " + std::to_string(len) + " bytes");
    std::vector<uint8_t> d(len);
    if (len > 0)
      if (int r = ReadAll(c->fd_, d.data(), len); r < 0) return fail(r, errstr(r));
    if (type == kRepAck) break;
    if (type & kRepErrBit)
      return fail(-ENOENT, "server refused export '" + export_name + "' (reply type " +
                               std::to_string(type & ~kRepErrBit) + "): " + std::string(d.begin(), d.end()));
    if (type == kRepInfo && len >= 12 && Get16(d.data()) == kInfoExport) {
      c->size_ = Get64(d.data() + 2);
      c->tx_flags_ = Get16(d.data() + 10);
      have_export = true;
    }
  }
  if (!have_export) return fail(-EPROTO, "NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
  timeval zero{0, 0};
  setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
  setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
  return c;
}

NbdClient::~NbdClient() {
  if (fd_ >= 0) close(fd_);
}

void NbdClient::Queue(uint16_t type, uint16_t flags, uint64_t off, uint32_t len, const uint8_t* data,
                      uint8_t* buf, Done done) {
  uint64_t cookie = next_cookie_++;
  uint8_t h[kRequestSize];
  EncodeRequest(Request{flags, type, cookie, off, len}, h);
  out_.insert(out_.end(), h, h + sizeof h);
  if (data) out_.insert(out_.end(), data, data + len);
  if (type != kCmdDisc) pending_.emplace(cookie, Pending{type, len, buf, std::move(done)});
}

void NbdClient::Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) {
  Queue(kCmdRead, 0, off, len, nullptr, buf, std::move(done));
}
void NbdClient::Write(uint64_t off, uint32_t len, const uint8_t* data, bool fua, Done done) {
  Queue(kCmdWrite, fua ? kCmdFlagFua : 0, off, len, data, nullptr, std::move(done));
}
void NbdClient::Flush(Done done) { Queue(kCmdFlush, 0, 0, 0, nullptr, nullptr, std::move(done)); }
void NbdClient::Trim(uint64_t off, uint32_t len, Done done) {
  Queue(kCmdTrim, 0, off, len, nullptr, nullptr, std::move(done));
}
void NbdClient::WriteZeroes(uint64_t off, uint32_t len, bool no_hole, Done done) {
  Queue(kCmdWriteZeroes, no_hole ? kCmdFlagNoHole : 0, off, len, nullptr, nullptr, std::move(done));
}
void NbdClient::Disconnect() { Queue(kCmdDisc, 0, 0, 0, nullptr, nullptr, nullptr); }

int NbdClient::Fail(int err, std::string why) {
  if (dead_ == 0) {
    dead_ = err;
    error_ = std::move(why);
  }
  return dead_;
}

int NbdClient::HandleInput() {
  for (;;) {
    size_t avail = in_len_ - in_pos_;
    if (avail < kSimpleReplySize) break;
    const uint8_t* p = in_.data() + in_pos_;
    if (Get32(p) != kSimpleReplyMagic) return Fail(-EPROTO, "reply with bad magic");
    uint32_t err = Get32(p + 4);
    uint64_t cookie = Get64(p + 8);
    auto it = pending_.find(cookie);
    if (it == pending_.end()) return Fail(-EPROTO, "reply to unknown cookie " + std::to_string(cookie));
    size_t need = kSimpleReplySize;
    if (it->second.type == kCmdRead && err == 0) need += it->second.len;
    if (avail < need) break;
    Pending pd = std::move(it->second);
    pending_.erase(it);
    if (pd.type == kCmdRead && err == 0) memcpy(pd.buf, p + kSimpleReplySize, pd.len);
    in_pos_ += need;
    pd.done(err == 0 ? 0 : -static_cast<int>(err));
  }
  if (in_pos_ == in_len_) {
    in_pos_ = in_len_ = 0;
  } else if (in_pos_ > (1u << 20)) {
    memmove(in_.data(), in_.data() + in_pos_, in_len_ - in_pos_);
    in_len_ -= in_pos_;
    in_pos_ = 0;
  }
  return 0;
}

int NbdClient::Poll(int timeout_ms) {
  if (dead_) return dead_;
  pollfd p{fd_, POLLIN, 0};
  if (out_pos_ < out_.size()) p.events |= POLLOUT;
  int n = poll(&p, 1, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : Fail(-errno, "poll: " + errstr(-errno));
  if (n == 0) return 0;
  if ((p.revents & POLLOUT) && out_pos_ < out_.size()) {
    ssize_t w = send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      out_pos_ += static_cast<size_t>(w);
      if (out_pos_ == out_.size()) {
        out_.clear();
        out_pos_ = 0;
      } else if (out_pos_ > (1u << 20)) {
        out_.erase(out_.begin(), out_.begin() + static_cast<long>(out_pos_));
        out_pos_ = 0;
      }
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      // The server is gone; replies it sent may still be waiting to be read.
      out_.clear();
      out_pos_ = 0;
      p.revents |= POLLIN;
    }
  }
  if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
    for (;;) {
      if (in_.size() - in_len_ < (256u << 10)) in_.resize(in_len_ + (1u << 20));
      ssize_t r = recv(fd_, in_.data() + in_len_, in_.size() - in_len_, MSG_DONTWAIT);
      if (r > 0) {
        in_len_ += static_cast<size_t>(r);
        if (int e = HandleInput(); e < 0) return e;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
      int e = r == 0 ? -ECONNRESET : -errno;
      HandleInput();
      return Fail(e, r == 0 ? "server closed the connection" : "recv: " + errstr(e));
    }
  }
  return 0;
}

int ReadRange(NbdClient* c, uint64_t off, uint64_t len, uint8_t* buf, uint32_t chunk, unsigned depth,
              int timeout_ms) {
  uint64_t next = off, end = off + len;
  unsigned in_flight = 0;
  int err = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while ((next < end || in_flight > 0) && err == 0) {
    while (next < end && in_flight < depth) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chunk, end - next));
      in_flight++;
      c->Read(next, n, buf + (next - off), [&](int r) {
        in_flight--;
        if (r < 0 && err == 0) err = r;
      });
      next += n;
    }
    if (int r = c->Poll(100); r < 0) return r;
    if (std::chrono::steady_clock::now() > deadline) return -ETIMEDOUT;
  }
  return err;
}

}  // namespace flurry::crashtest
