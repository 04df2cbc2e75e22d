// SPDX-License-Identifier: Apache-2.0
#include "fdsclient/conn.h"

#include <netdb.h>
#include <unistd.h>

#include <cstring>
#include <unordered_set>

#include "common/log.h"
#include "common/net.h"

namespace flurry {

using namespace tractproto;

namespace {
constexpr size_t kRecvBuf = 128 * 1024;
constexpr size_t kMaxIov = 64;
}  // namespace

FdsClient::Conn::Conn(Loop* loop, std::string addr, bool local_socket, std::function<void(Conn*)> on_dead)
    : loop_(loop), addr_(std::move(addr)), on_dead_(std::move(on_dead)), rbuf_(kRecvBuf) {
  Connect(local_socket);
}

void FdsClient::Conn::Connect(bool local_socket) {
  if (local_socket) {
    // A tract server on this host also listens on an abstract unix socket
    // named after its address: half the kernel work of loopback TCP per
    // message. Its absence (a remote server, another network namespace,
    // --no-local-socket) or another user's squatter means TCP.
    auto ufd = ConnectAbstract(LocalTractSocketName(addr_));
    if (ufd) {
      fd_ = *ufd;
      connect_in_flight_ = true;
      FLOG_DEBUG("tract server %s: connected over its local socket", addr_.c_str());
      loop_->Post([this] { OnConnected(0); });
      return;
    }
    if (ufd.err() == -EPERM) {
      // Once per address and process: reconnects would repeat it.
      static std::unordered_set<std::string> warned;
      if (warned.insert(addr_).second)
        FLOG_WARN("tract server %s: its local socket @%s belongs to another user; using TCP", addr_.c_str(),
                  LocalTractSocketName(addr_).c_str());
    }
  }
  auto hp = ParseHostPort(addr_);
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (!hp || getaddrinfo(hp->host.c_str(), std::to_string(hp->port).c_str(), &hints, &res) != 0) {
    loop_->Post([this] { Break(-EHOSTUNREACH); });
    return;
  }
  memcpy(&sa_, res->ai_addr, res->ai_addrlen);
  salen_ = res->ai_addrlen;
  fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  freeaddrinfo(res);
  if (fd_ < 0) {
    loop_->Post([this] { Break(-EMFILE); });
    return;
  }
  SetNoDelay(fd_);
  connect_in_flight_ = true;
  loop_->Connect(fd_, reinterpret_cast<sockaddr*>(&sa_), salen_, [this](int r) { OnConnected(r); });
}

void FdsClient::Conn::OnConnected(int r) {
  connect_in_flight_ = false;
  if (broken_) return MaybeDelete();
  if (r < 0) return Break(r);
  connected_ = true;
  PostRecv();
  Flush();
}

void FdsClient::Conn::Send(FdsReq* r) {
  if (broken_) {
    auto d = std::move(r->done);
    delete r;
    return d(-ECONNRESET);
  }
  if (pending_.empty()) last_progress_ns_ = Loop::NowNs();
  pending_[r->hdr.id] = r;
  sendq_.push_back(r);
  // Requests issued in one loop turn leave in one sendmsg (one TCP segment
  // train, one wake-up of the server) instead of one each.
  if (!flush_posted_ && !send_in_flight_) {
    flush_posted_ = true;
    loop_->Post([this] {
      flush_posted_ = false;
      if (broken_) return MaybeDelete();
      Flush();
    });
  }
}

void FdsClient::Conn::Flush() {
  if (!connected_ || broken_ || send_in_flight_ || sendq_.empty()) return;
  iov_.clear();
  size_t skip = sent_;
  for (FdsReq* r : sendq_) {
    if (iov_.size() + 2 > kMaxIov) break;
    auto add = [&](const void* p, size_t n) {
      if (n == 0) return;
      if (skip >= n) { skip -= n; return; }
      iov_.push_back({const_cast<uint8_t*>(static_cast<const uint8_t*>(p)) + skip, n - skip});
      skip = 0;
    };
    add(&r->hdr, sizeof r->hdr);
    add(r->payload, r->hdr.payload_len);
  }
  msg_ = msghdr{};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  send_in_flight_ = true;
  loop_->Sendmsg(fd_, &msg_, [this](int res) { OnSent(res); });
}

void FdsClient::Conn::OnSent(int res) {
  send_in_flight_ = false;
  if (broken_) return MaybeDelete();
  if (res <= 0) return Break(res == 0 ? -ECONNRESET : res);
  last_progress_ns_ = Loop::NowNs();
  size_t n = static_cast<size_t>(res) + sent_;
  while (!sendq_.empty()) {
    FdsReq* r = sendq_.front();
    size_t sz = sizeof r->hdr + r->hdr.payload_len;
    if (n < sz) break;
    n -= sz;
    sendq_.pop_front();
  }
  sent_ = n;
  Flush();
}

void FdsClient::Conn::PostRecv() {
  if (broken_ || recv_in_flight_) return;
  recv_in_flight_ = true;
  if (in_payload_ && rstart_ == rend_ && seg_ < nsegs_) {
    Seg& s = segs_[seg_];
    loop_->Recv(fd_, s.p + seg_off_, s.n - seg_off_, [this](int r) {
      recv_in_flight_ = false;
      if (broken_) return MaybeDelete();
      if (r <= 0) return Break(r == 0 ? -ECONNRESET : r);
      last_progress_ns_ = Loop::NowNs();
      seg_off_ += static_cast<size_t>(r);
      if (seg_off_ == segs_[seg_].n) { seg_++; seg_off_ = 0; }
      Parse();
      PostRecv();
    });
    return;
  }
  if (rstart_ == rend_) rstart_ = rend_ = 0;
  if (rend_ == rbuf_.size()) {
    memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
    rend_ -= rstart_;
    rstart_ = 0;
  }
  loop_->Recv(fd_, rbuf_.data() + rend_, rbuf_.size() - rend_, [this](int r) { OnRecv(r); });
}

void FdsClient::Conn::OnRecv(int res) {
  recv_in_flight_ = false;
  if (broken_) return MaybeDelete();
  if (res <= 0) return Break(res == 0 ? -ECONNRESET : res);
  last_progress_ns_ = Loop::NowNs();
  rend_ += static_cast<size_t>(res);
  Parse();
  PostRecv();
}

void FdsClient::Conn::Parse() {
  while (!broken_) {
    if (in_payload_) {
      while (seg_ < nsegs_ && rstart_ < rend_) {
        Seg& s = segs_[seg_];
        size_t take = std::min(s.n - seg_off_, rend_ - rstart_);
        memcpy(s.p + seg_off_, rbuf_.data() + rstart_, take);
        rstart_ += take;
        seg_off_ += take;
        if (seg_off_ == s.n) { seg_++; seg_off_ = 0; }
      }
      if (seg_ < nsegs_) return;
      in_payload_ = false;
      FinishReply();
      continue;
    }
    if (rend_ - rstart_ < sizeof(ReplyHeader)) return;
    memcpy(&rh_, rbuf_.data() + rstart_, sizeof rh_);
    rstart_ += sizeof rh_;
    if (rh_.magic != kReplyMagic || rh_.header_sum != HeaderSum(rh_) || rh_.payload_len > kMaxPayload ||
        rh_.aux_len > rh_.payload_len) {
      FLOG_WARN("tract server %s sent a malformed reply; reconnecting", addr_.c_str());
      return Break(-EPROTO);
    }
    auto it = pending_.find(rh_.id);
    cur_ = it == pending_.end() ? nullptr : it->second;
    if (cur_) pending_.erase(it);
    nsegs_ = 0;
    seg_ = 0;
    seg_off_ = 0;
    if (rh_.payload_len > 0) {
      uint32_t data = rh_.payload_len - rh_.aux_len;
      bool want = cur_ && rh_.status == 0 && (cur_->data_sink ? data == cur_->data_len : data == 0);
      if (want && cur_->aux_sink) {
        cur_->aux_sink->resize(rh_.aux_len);
        if (rh_.aux_len) segs_[nsegs_++] = {cur_->aux_sink->data(), rh_.aux_len};
      } else if (want && rh_.aux_len) {
        discard_.resize(rh_.aux_len);
        segs_[nsegs_++] = {discard_.data(), rh_.aux_len};
      }
      if (want && data) {
        segs_[nsegs_++] = {cur_->data_sink, data};
      } else if (!want) {
        discard_.resize(rh_.payload_len);
        segs_[nsegs_++] = {discard_.data(), rh_.payload_len};
      }
      in_payload_ = true;
      continue;
    }
    FinishReply();
  }
}

void FdsClient::Conn::FinishReply() {
  FdsReq* r = cur_;
  cur_ = nullptr;
  last_progress_ns_ = Loop::NowNs();
  if (!r) return;  // a reply nobody waits for (should not happen)
  int st = rh_.status;
  if (st == 0 && rh_.payload_len > 0) {
    ChecksumStream cs;
    for (int i = 0; i < nsegs_; ++i) cs.Update(segs_[i].p, segs_[i].n);
    if (cs.Digest() != rh_.payload_sum) st = -EBADMSG;
    // A sink mismatch (unexpected length) is a protocol error for this request.
    uint32_t data = rh_.payload_len - rh_.aux_len;
    if (r->data_sink ? data != r->data_len : data != 0) st = -EPROTO;
  } else if (st > 0) {
    st = -EPROTO;
  }
  auto d = std::move(r->done);
  delete r;
  d(st);
}

void FdsClient::Conn::ExpireTimeouts(uint64_t now, uint64_t idle_timeout_ns) {
  if (pending_.empty() || broken_) return;
  if (now - last_progress_ns_ > idle_timeout_ns) {
    FLOG_WARN("tract server %s: no progress for %.1f s with %zu requests outstanding; reconnecting",
              addr_.c_str(), (now - last_progress_ns_) / 1e9, pending_.size());
    return Break(-ETIMEDOUT);
  }
  for (auto& [id, r] : pending_) {
    if (r->deadline_ns && r->deadline_ns < now) {
      FLOG_WARN("tract server %s: a request got no reply in %.1f s; reconnecting", addr_.c_str(),
                6 * idle_timeout_ns / 1e9);
      return Break(-ETIMEDOUT);
    }
  }
}

void FdsClient::Conn::Break(int err) {
  if (broken_) return;
  broken_ = true;
  if (fd_ >= 0) {
    shutdown(fd_, SHUT_RDWR);
    loop_->CancelFd(fd_);
  }
  on_dead_(this);
  // Fail everything pending (including the one being received).
  auto pend = std::move(pending_);
  pending_.clear();
  sendq_.clear();
  if (cur_) {
    pend.emplace(cur_->hdr.id, cur_);
    cur_ = nullptr;
  }
  for (auto& [id, r] : pend) {
    auto d = std::move(r->done);
    delete r;
    d(err);
  }
  MaybeDelete();
}

void FdsClient::Conn::MaybeDelete() {
  if (!broken_ || recv_in_flight_ || send_in_flight_ || connect_in_flight_ || flush_posted_ ||
      deleting_) {
    return;
  }
  deleting_ = true;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  loop_->Post([this] { delete this; });
}

}  // namespace flurry
