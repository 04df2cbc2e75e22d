// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace flurry::nbd {
namespace {
constexpr size_t kStagingSize = 256 * 1024;
constexpr size_t kDirectRecvMin = 16 * 1024;  // below this, staging is cheaper
constexpr size_t kMaxIov = 64;
}  // namespace

Connection::Connection(Loop* loop, int fd, const ExportTable* exports, ConnectionOptions opts,
                       std::function<void(Connection*)> on_closed)
    : loop_(loop), fd_(fd), opts_(opts), on_closed_(std::move(on_closed)),
      hs_(exports, opts.handshake), rbuf_(kStagingSize) {}

Connection::~Connection() {
  if (fd_ >= 0) close(fd_);
}

void Connection::Start() {
  std::weak_ptr<Connection> weak = weak_from_this();
  timer_ = loop_->AddTimer(opts_.handshake_timeout_ms * 1000000ull, [weak] {
    if (auto self = weak.lock(); self && !self->tx_) self->Abort("handshake timeout");
  });
  Enqueue(OutMsg{std::move(hs_.output())});
  hs_.output().clear();
  Pump();
}

bool Connection::Paused() const {
  if (!tx_ || inflight_ == 0) return false;
  return inflight_ >= opts_.max_inflight ||
         inflight_bytes_ + sendq_bytes_ >= opts_.max_buffered_bytes;
}

void Connection::Pump() {
  if (processing_) return;
  ProcessInput();
  StartRecv();
  MaybeFinish();
}

void Connection::ProcessInput() {
  processing_ = true;
  while (!draining_ && !closing_) {
    if (!tx_) {
      size_t n = hs_.Feed(rbuf_.data() + rstart_, rend_ - rstart_);
      rstart_ += n;
      if (!hs_.output().empty()) {
        Enqueue(OutMsg{std::move(hs_.output())});
        hs_.output().clear();
      }
      if (hs_.state() == Handshake::State::kClosed) {
        Drain(hs_.close_reason());
        break;
      }
      if (hs_.state() == Handshake::State::kTransmission) {
        EnterTransmission();
        continue;
      }
      break;  // need more bytes
    }
    if (parser_->state() == RequestParser::State::kError) {
      FLOG_WARN("nbd: protocol violation: %s", parser_->error().c_str());
      Abort(parser_->error());
      break;
    }
    if (parser_->state() == RequestParser::State::kReady) {
      if (Paused()) break;  // resumed by OnReply / OnSent
      HandleRequest(parser_->Take());
      continue;
    }
    if (rstart_ == rend_) break;
    rstart_ += parser_->Feed(rbuf_.data() + rstart_, rend_ - rstart_);
  }
  processing_ = false;
}

void Connection::EnterTransmission() {
  loop_->CancelTimer(timer_);
  const Negotiated& n = hs_.negotiated();
  parser_.emplace(n.limits.max_payload, opts_.handshake.hard_max_payload);
  tx_.emplace(n);
  FLOG_DEBUG("nbd: client entered transmission on export '%s'", n.exp->name.c_str());
}

void Connection::StartRecv() {
  if (recv_pending_ || draining_ || closing_ || Paused()) return;
  if (tx_ && parser_->state() != RequestParser::State::kPayload &&
      parser_->state() != RequestParser::State::kHeader) {
    return;  // a complete request is waiting to be admitted
  }
  uint8_t* dst;
  size_t len;
  std::span<uint8_t> win = tx_ ? parser_->PayloadWindow() : std::span<uint8_t>();
  if (rstart_ == rend_ && win.size() >= kDirectRecvMin) {
    dst = win.data();
    len = win.size();
    recv_direct_ = true;
  } else {
    if (rstart_ > 0) {
      memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
      rend_ -= rstart_;
      rstart_ = 0;
    }
    if (rend_ == rbuf_.size()) return;  // full: ProcessInput must make room first
    dst = rbuf_.data() + rend_;
    len = rbuf_.size() - rend_;
    recv_direct_ = false;
  }
  recv_pending_ = true;
  loop_->Recv(fd_, dst, len, [self = shared_from_this()](int r) { self->OnRecv(r); });
}

void Connection::OnRecv(int r) {
  recv_pending_ = false;
  if (closing_ || draining_) return MaybeFinish();
  if (r == -EAGAIN || r == -EINTR) return Pump();
  if (r <= 0) {
    return Abort(r == 0 ? "client closed the connection" : "recv: " + errstr(r));
  }
  if (recv_direct_) {
    parser_->PayloadFilled(static_cast<size_t>(r));
    recv_direct_ = false;
  } else {
    rend_ += static_cast<size_t>(r);
  }
  Pump();
}

void Connection::HandleRequest(ParsedRequest pr) {
  if (pr.req.type == kCmdDisc) {
    Drain("client sent NBD_CMD_DISC");
    return;
  }
  uint64_t cost = pr.req.type == kCmdRead || pr.req.type == kCmdWrite ? pr.req.length : 0;
  ++inflight_;
  inflight_bytes_ += cost;
  tx_->Execute(std::move(pr), [self = shared_from_this(), cost](OutMsg m) {
    self->OnReply(std::move(m), cost);
  });
}

void Connection::OnReply(OutMsg m, uint64_t cost) {
  --inflight_;
  inflight_bytes_ -= cost;
  if (!closing_) Enqueue(std::move(m));
  Pump();
}

void Connection::Enqueue(OutMsg m) {
  if (m.size() == 0) return;
  sendq_bytes_ += m.size();
  sendq_.push_back(std::move(m));
  // Replies completed in one loop turn leave in one sendmsg.
  if (flush_posted_ || send_pending_) return;
  flush_posted_ = true;
  loop_->Post([self = shared_from_this()] {
    self->flush_posted_ = false;
    self->FlushSend();
    self->MaybeFinish();
  });
}

void Connection::FlushSend() {
  if (send_pending_ || sendq_.empty() || closing_) return;
  iov_.clear();
  size_t skip = front_sent_;
  for (size_t i = 0; i < sendq_.size() && iov_.size() + 2 <= kMaxIov; ++i) {
    OutMsg& m = sendq_[i];
    if (skip < m.head.size()) {
      iov_.push_back({m.head.data() + skip, m.head.size() - skip});
      skip = 0;
    } else {
      skip -= m.head.size();
    }
    if (m.body_len > skip) {
      iov_.push_back({m.body.data() + skip, m.body_len - skip});
    }
    skip = 0;
  }
  msg_ = msghdr{};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  send_pending_ = true;
  loop_->Sendmsg(fd_, &msg_, [self = shared_from_this()](int r) { self->OnSent(r); });
}

void Connection::OnSent(int r) {
  send_pending_ = false;
  if (closing_) return MaybeFinish();
  if (r == -EAGAIN || r == -EINTR) return FlushSend();
  if (r < 0) return Abort("send: " + errstr(r));
  size_t n = static_cast<size_t>(r);
  while (n > 0 && !sendq_.empty()) {
    size_t left = sendq_.front().size() - front_sent_;
    if (n >= left) {
      n -= left;
      sendq_bytes_ -= sendq_.front().size();
      sendq_.pop_front();
      front_sent_ = 0;
    } else {
      front_sent_ += n;
      n = 0;
    }
  }
  FlushSend();
  Pump();
}

void Connection::Drain(const std::string& why) {
  if (!draining_) FLOG_DEBUG("nbd: closing connection after pending replies: %s", why.c_str());
  draining_ = true;
  MaybeFinish();
}

void Connection::BeginShutdown() {
  if (!tx_) return Abort("server shutting down");
  Drain("server shutting down");
}

void Connection::Abort(const std::string& why) {
  if (!closing_) {
    FLOG_DEBUG("nbd: closing connection: %s", why.c_str());
    closing_ = true;
    shutdown(fd_, SHUT_RDWR);  // pending Recv returns 0, pending Sendmsg fails
  }
  MaybeFinish();
}

void Connection::MaybeFinish() {
  if (finished_) return;
  if (draining_ && !closing_ && inflight_ == 0 && sendq_.empty() && !send_pending_ &&
      !flush_posted_) {
    closing_ = true;
    shutdown(fd_, SHUT_RDWR);
  }
  if (!closing_ || recv_pending_ || send_pending_ || flush_posted_ || inflight_ > 0 || processing_) {
    return;
  }
  finished_ = true;
  loop_->CancelTimer(timer_);
  loop_->Post([self = shared_from_this()] {
    if (self->on_closed_) self->on_closed_(self.get());
  });
}

}  // namespace flurry::nbd
