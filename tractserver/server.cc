// SPDX-License-Identifier: Apache-2.0
#include "tractserver/server.h"
#include "common/kv_text.h"
#include "tractserver/journal.h"
#include "tractserver/tract.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "common/log.h"
#include "common/net.h"
#include "common/tract_protocol.h"

namespace flurry {

using namespace tractproto;
using tractstore::TractKey;
using tractstore::TractStore;

namespace {
constexpr size_t kRecvBuf = 256 * 1024;
constexpr size_t kMaxIovPerSend = 64;
}  // namespace

// One client connection. Deletes itself when closed and idle.
class TractServer::Conn {
 public:
  Conn(TractServer* srv, int fd)
      : srv_(srv), loop_(srv->loop_), fd_(fd), seq_(++srv->accept_seq_), rbuf_(kRecvBuf) {}
  uint64_t seq() const { return seq_; }

  void Start() { PostRecv(); }

  void Close() {
    if (closing_) return;
    closing_ = true;
    shutdown(fd_, SHUT_RDWR);
    loop_->CancelFd(fd_);
    MaybeDelete();
  }

 private:
  struct Out {
    ReplyHeader hdr{};
    std::vector<uint8_t> aux;
    AlignedBuffer data;
    uint32_t data_off = 0, data_len = 0;
    std::string text;
  };

  void MaybeDelete() {
    if (closing_ && !recv_in_flight_ && !send_in_flight_ && !flush_posted_ && ops_ == 0) {
      close(fd_);
      srv_->conns_.erase(this);
      delete this;
    }
  }

  // ---- receive path ----
  void PostRecv() {
    if (closing_ || recv_in_flight_ || paused_) return;
    recv_in_flight_ = true;
    if (payload_.size() > 0 && payload_got_ < payload_.size()) {
      // Large payload: receive straight into its aligned buffer.
      loop_->Recv(fd_, payload_.data() + payload_got_, payload_.size() - payload_got_,
                  [this](int res) { OnRecv(res, true); });
      return;
    }
    if (rstart_ > 0 && rstart_ == rend_) rstart_ = rend_ = 0;
    if (rend_ == rbuf_.size()) {  // compact
      memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
      rend_ -= rstart_;
      rstart_ = 0;
    }
    loop_->Recv(fd_, rbuf_.data() + rend_, rbuf_.size() - rend_,
                [this](int res) { OnRecv(res, false); });
  }

  void OnRecv(int res, bool into_payload) {
    recv_in_flight_ = false;
    if (closing_) return MaybeDelete();
    if (res <= 0) {  // EOF, reset or cancelled
      return Close();
    }
    if (into_payload) payload_got_ += static_cast<size_t>(res);
    else rend_ += static_cast<size_t>(res);
    Parse();
    PostRecv();
  }

  void Parse() {
    while (!closing_) {
      if (have_header_) {
        size_t need = payload_.size() - payload_got_;
        size_t avail = rend_ - rstart_;
        size_t take = need < avail ? need : avail;
        if (take > 0) {
          memcpy(payload_.data() + payload_got_, rbuf_.data() + rstart_, take);
          payload_got_ += take;
          rstart_ += take;
        }
        if (payload_got_ < payload_.size()) return;
        have_header_ = false;
        Dispatch(hdr_, std::move(payload_));
        payload_ = AlignedBuffer();
        payload_got_ = 0;
        continue;
      }
      if (rend_ - rstart_ < sizeof(RequestHeader)) return;
      memcpy(&hdr_, rbuf_.data() + rstart_, sizeof hdr_);
      rstart_ += sizeof hdr_;
      int v = ValidateRequest(hdr_);
      if (v == -EPROTO) {
        srv_->counters_.protocol_errors++;
        FLOG_WARN("connection %d: protocol violation (op %u, payload %u); closing", fd_,
                  hdr_.op, hdr_.payload_len);
        return Close();
      }
      if (hdr_.payload_len > 0) {
        payload_ = AlignedBuffer(hdr_.payload_len);
        payload_got_ = 0;
      }
      have_header_ = true;
      if (v < 0) invalid_status_ = v;  // consume the payload, then reply
    }
  }

  void Dispatch(const RequestHeader& h, AlignedBuffer payload) {
    srv_->counters_.requests++;
    if (invalid_status_ < 0) {
      int st = invalid_status_;
      invalid_status_ = 0;
      return Reply(h.id, st);
    }
    if (srv_->Outdated(h)) {
      srv_->counters_.stale_rejects++;
      return Reply(h.id, -ESTALE);
    }
    if (h.payload_len > 0 && Checksum(payload.data(), h.payload_len) != h.payload_sum) {
      return Reply(h.id, -EBADMSG);
    }
    ops_++;
    if (ops_ >= srv_->opts_.max_inflight) paused_ = true;
    uint32_t delay = srv_->opts_.delay_us;
    if (srv_->opts_.jitter_us) {
      srv_->rng_ = srv_->rng_ * 6364136223846793005ull + 1442695040888963407ull;
      delay += static_cast<uint32_t>((srv_->rng_ >> 33) % srv_->opts_.jitter_us);
    }
    if (delay == 0) return Execute(h, std::move(payload));
    auto holder = std::make_shared<AlignedBuffer>(std::move(payload));
    loop_->AddTimer(static_cast<uint64_t>(delay) * 1000,
                    [this, h, holder] { Execute(h, std::move(*holder)); });
  }

  void OpDone() {
    ops_--;
    if (paused_ && ops_ < srv_->opts_.max_inflight / 2) {
      paused_ = false;
      PostRecv();
    }
    MaybeDelete();
  }

  // Parks a request that must wait: the returned callable runs it again
  // from the checks -- or, if the server has learnt meanwhile that its TLT
  // is outdated, answers -ESTALE (the client refreshes and retries), as at
  // arrival. The connection stays alive while the request counts in ops_.
  std::function<void()> Park(const RequestHeader& h, AlignedBuffer payload) {
    auto holder = std::make_shared<AlignedBuffer>(std::move(payload));
    return [this, h, holder] {
      if (!srv_->Outdated(h)) return Execute(h, std::move(*holder));
      srv_->counters_.stale_rejects++;
      Reply(h.id, -ESTALE);
      OpDone();
    };
  }

  void Execute(const RequestHeader& h, AlignedBuffer payload) {
    TractStore* st = srv_->store_;
    TractKey key{h.blob_hi, h.blob_lo, h.tract};
    uint64_t id = h.id;
    bool mutation = (h.op == kOpWrite && !(h.flags & kFlagFill)) || h.op == kOpTrim || h.op == kOpZero;
    if ((mutation || h.op == kOpFence) && srv_->MustWaitForMeta(h.tlt_version)) {
      // Until meta has told which generations it granted (before the TLT
      // this writer uses, if that is newer than the last report: this server
      // may just have joined a row), a writer cannot be judged: wait for its
      // report, or give up with -EAGAIN.
      if (srv_->meta_gens_synced_) {
        srv_->counters_.tlt_waits++;
        if (srv_->report_wanted_) srv_->report_wanted_();
      }
      srv_->WaitForMetaGens(h.tlt_version, [this, h, resume = Park(h, std::move(payload))](bool synced) {
        if (synced) return resume();
        srv_->counters_.unsynced_rejects++;
        Reply(h.id, -EAGAIN);
        OpDone();
      });
      return;
    }
    if ((mutation || h.op == kOpFence) && srv_->MustRecordWriter(h)) {
      // A newer writer: record its generation durably first (group commit,
      // off the loop), then run the request again from the checks.
      srv_->RecordWriter(h, [this, h, resume = Park(h, std::move(payload))](int r) {
        if (r == 0) return resume();
        Reply(h.id, r);
        OpDone();
      });
      return;
    }
    if (mutation) {
      int r = srv_->CheckWriter(h, seq_);
      if (r < 0) {
        Reply(id, r);
        return OpDone();
      }
    }
    switch (h.op) {
      case kOpWrite:
        st->Write(key, h.tract_size, h.offset, h.length, std::move(payload), h.flags,
                  [this, id](int r) { Reply(id, r); OpDone(); });
        return;
      case kOpRead:
        st->Read(key, h.tract_size, h.offset, h.length, h.flags & kFlagAllocOnly,
                 [this, id, len = h.length, ao = (h.flags & kFlagAllocOnly) != 0](
                     int r, TractStore::ReadResult rr) {
                   if (r < 0) Reply(id, r);
                   else ReplyData(id, std::move(rr.bitmap), std::move(rr.buf), rr.data_off, ao ? 0 : len);
                   OpDone();
                 });
        return;
      case kOpTrim:
      case kOpZero:
        st->Zero(key, h.tract_size, h.offset, h.length,
                 h.op == kOpZero && (h.flags & kFlagNoHole), [this, id](int r) { Reply(id, r); OpDone(); });
        return;
      case kOpStatTract:
        st->StatTract(key, h.tract_size, [this, id](int r, TractStore::ReadResult rr) {
          if (r < 0) Reply(id, r);
          else ReplyData(id, std::move(rr.bitmap), AlignedBuffer(), 0, 0);
          OpDone();
        });
        return;
      case kOpChunkSums:
        st->ChunkSums(key, h.tract_size, [this, id](int r, TractStore::ReadResult rr) {
          if (r < 0) {
            Reply(id, r);
          } else {
            uint32_t n = static_cast<uint32_t>(rr.buf.size());
            ReplyData(id, std::move(rr.bitmap), std::move(rr.buf), 0, n);
          }
          OpDone();
        });
        return;
      case kOpFence: {
        int r = srv_->CheckGeneration(h);
        Reply(id, r < 0 ? r : srv_->AddFence(h.blob_hi, h.blob_lo, seq_));
        return OpDone();
      }
      case kOpDeleteBlob:
        st->DeleteBlob(h.blob_hi, h.blob_lo, [this, id](int r) { Reply(id, r); OpDone(); });
        return;
      case kOpListTracts: {
        auto v = st->ListTracts(h.blob_hi, h.blob_lo);
        size_t max = kMaxPayload / sizeof(TractEntry);
        if (v.size() > max) v.resize(max);
        std::vector<uint8_t> bytes(v.size() * sizeof(TractEntry));
        memcpy(bytes.data(), v.data(), bytes.size());
        ReplyData(id, std::move(bytes), AlignedBuffer(), 0, 0, /*aux_is_bitmap=*/false);
        return OpDone();
      }
      case kOpStatServer: {
        auto out = std::make_unique<Out>();
        out->text = srv_->StatsText();
        Queue(id, 0, std::move(out));
        return OpDone();
      }
      case kOpPing:
        Reply(id, 0);
        return OpDone();
      default:
        Reply(id, -EOPNOTSUPP);
        return OpDone();
    }
  }

  // ---- send path ----
  void Reply(uint64_t id, int status) { Queue(id, status, std::make_unique<Out>()); }

  void ReplyData(uint64_t id, std::vector<uint8_t> aux, AlignedBuffer data, uint32_t off,
                 uint32_t len, bool aux_is_bitmap = true) {
    auto out = std::make_unique<Out>();
    out->aux = std::move(aux);
    out->data = std::move(data);
    out->data_off = off;
    out->data_len = len;
    out->hdr.aux_len = aux_is_bitmap ? static_cast<uint32_t>(out->aux.size()) : 0;
    Queue(id, 0, std::move(out));
  }

  void Queue(uint64_t id, int status, std::unique_ptr<Out> out) {
    if (status < 0) srv_->counters_.error_replies++;
    ReplyHeader& r = out->hdr;
    r.magic = kReplyMagic;
    r.status = status;
    r.id = id;
    r.tlt_version = srv_->tlt_version();
    r.payload_len = static_cast<uint32_t>(out->aux.size() + out->data_len + out->text.size());
    ChecksumStream cs;
    cs.Update(out->aux.data(), out->aux.size());
    cs.Update(out->data.data() + out->data_off, out->data_len);
    cs.Update(out->text.data(), out->text.size());
    r.payload_sum = r.payload_len ? cs.Digest() : 0;
    SealHeader(&r);
    outq_.push_back(std::move(out));
    ScheduleFlush();
  }

  // Replies completed in one loop turn leave in one sendmsg: fewer TCP
  // segments, so fewer wake-ups on the client side.
  void ScheduleFlush() {
    if (flush_posted_ || send_in_flight_) return;
    flush_posted_ = true;
    loop_->Post([this] {
      flush_posted_ = false;
      if (closing_) return MaybeDelete();
      Flush();
    });
  }

  void Flush() {
    if (send_in_flight_ || closing_ || outq_.empty()) return;
    iov_.clear();
    size_t skip = sent_;  // bytes of the first message already sent
    sending_ = 0;
    for (auto& o : outq_) {
      if (iov_.size() + 4 > kMaxIovPerSend) break;
      auto add = [&](const void* p, size_t n) {
        if (n == 0) return;
        if (skip >= n) { skip -= n; return; }
        iov_.push_back({const_cast<uint8_t*>(static_cast<const uint8_t*>(p)) + skip, n - skip});
        skip = 0;
      };
      add(&o->hdr, sizeof o->hdr);
      add(o->aux.data(), o->aux.size());
      add(o->data.data() + o->data_off, o->data_len);
      add(o->text.data(), o->text.size());
      sending_++;
    }
    msg_ = msghdr{};
    msg_.msg_iov = iov_.data();
    msg_.msg_iovlen = iov_.size();
    send_in_flight_ = true;
    loop_->Sendmsg(fd_, &msg_, [this](int res) { OnSent(res); });
  }

  void OnSent(int res) {
    send_in_flight_ = false;
    if (res <= 0) {
      outq_.clear();
      return Close();
    }
    size_t n = static_cast<size_t>(res) + sent_;
    while (!outq_.empty()) {
      auto& o = outq_.front();
      size_t sz = sizeof o->hdr + o->aux.size() + o->data_len + o->text.size();
      if (n < sz) break;
      n -= sz;
      outq_.pop_front();
    }
    sent_ = n;  // partial progress into the (new) first message
    if (closing_) return MaybeDelete();
    Flush();
  }

  TractServer* srv_;
  Loop* loop_;
  int fd_;
  uint64_t seq_;  // accept order (fences)
  bool closing_ = false, recv_in_flight_ = false, send_in_flight_ = false, paused_ = false;
  bool flush_posted_ = false;
  uint32_t ops_ = 0;
  std::vector<uint8_t> rbuf_;
  size_t rstart_ = 0, rend_ = 0;
  bool have_header_ = false;
  RequestHeader hdr_{};
  int invalid_status_ = 0;
  AlignedBuffer payload_;
  size_t payload_got_ = 0;
  std::deque<std::unique_ptr<Out>> outq_;
  size_t sent_ = 0;
  size_t sending_ = 0;
  std::vector<iovec> iov_;
  msghdr msg_{};
};

TractServer::TractServer(Loop* loop, tractstore::TractStore* store, Options opts)
    : loop_(loop), store_(store), opts_(opts) {
  // Every request allocates its IO buffer (up to kMaxPayload, here and in
  // the tract store) and frees it when the reply is sent. glibc serves
  // blocks above M_MMAP_THRESHOLD (128 KiB, adjusted dynamically) with
  // mmap/munmap, so each 1 MiB read or write faulted in and zeroed 256 fresh
  // pages and unmapped them again: about 15% of a server's CPU at 1 MiB IO.
  // Keep such buffers in the heap, where freed ones are reused.
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 4 * static_cast<int>(kMaxPayload));
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
  });
}

TractServer::~TractServer() {
  for (const Listener& l : listeners_) close(l.fd);
}

void TractServer::Start(int listen_fd) {
  // Non-blocking, so that DrainAccepts() can empty its queue on the spot
  // (io_uring's accept waits for readiness either way).
  int fl = fcntl(listen_fd, F_GETFL);
  if (fl >= 0) fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  bool local = getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0 && ss.ss_family == AF_UNIX;
  listeners_.push_back({listen_fd, local});
  Accept(listeners_.back());
}

void TractServer::Adopt(int fd, bool local) {
  if (conns_.size() >= opts_.max_connections) {
    counters_.rejected_connections++;
    close(fd);
    return;
  }
  if (local)
    counters_.local_connections++;
  else
    SetNoDelay(fd);
  counters_.connections++;
  Conn* c = new Conn(this, fd);
  conns_.insert(c);
  c->Start();
}

void TractServer::Accept(const Listener& l) {
  if (shutting_down_) return;
  loop_->Accept(l.fd, [this, l](int fd) {
    if (shutting_down_) {
      if (fd >= 0) close(fd);
      return;
    }
    if (fd >= 0) {
      Adopt(fd, l.local);
    } else if (fd != -EINTR && fd != -ECONNABORTED && fd != -EAGAIN) {
      FLOG_WARN("accept: %s", errstr(fd).c_str());
    }
    Accept(l);
  });
}

void TractServer::DrainAccepts() {
  if (shutting_down_) return;
  for (const Listener& l : listeners_) {
    for (;;) {
      int fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) break;  // EAGAIN: empty (or an error the armed accept reports)
      Adopt(fd, l.local);
    }
  }
}

void TractServer::Shutdown() {
  shutting_down_ = true;
  // Cancel the armed accepts; the sockets close in the destructor (closing
  // them now would make the queued cancel miss its descriptor).
  for (const Listener& l : listeners_) loop_->CancelFd(l.fd);
  std::vector<Conn*> all(conns_.begin(), conns_.end());
  for (Conn* c : all) c->Close();
}

int TractServer::AddFence(uint64_t hi, uint64_t lo, uint64_t owner_seq) {
  // Number every connection that reached us before this FENCE first: with
  // two listeners (TCP and the local socket) an older connection may still
  // wait in the other accept queue, and must count as older.
  DrainAccepts();
  // Drop fences that no live connection predates: they can reject nothing.
  uint64_t oldest = UINT64_MAX;
  for (Conn* c : conns_) oldest = std::min(oldest, c->seq());
  for (auto it = fences_.begin(); it != fences_.end();) {
    if (it->second.before_seq < oldest) it = fences_.erase(it);
    else ++it;
  }
  auto key = std::make_pair(hi, lo);
  if (fences_.size() >= kMaxFences && !fences_.count(key)) return -ENOSPC;
  fences_[key] = Fence{accept_seq_, owner_seq};
  FLOG_INFO("blob %016llx%016llx fenced: connections accepted before #%llu (but #%llu) may no longer write it",
            (unsigned long long)hi, (unsigned long long)lo, (unsigned long long)accept_seq_,
            (unsigned long long)owner_seq);
  return 0;
}

void TractServer::WaitForMetaGens(uint64_t need_tlt, std::function<void(bool)> resume) {
  if (unsynced_waiters_.size() >= kMaxUnsyncedWaiters) return resume(false);
  unsynced_waiters_.push_back({need_tlt, Loop::NowNs() + kUnsyncedWaitMs * 1000000ull, std::move(resume)});
  if (!unsynced_timer_.valid()) ArmUnsyncedTimer();
}

void TractServer::ArmUnsyncedTimer() {
  if (unsynced_waiters_.empty()) return;
  uint64_t now = Loop::NowNs(), due = unsynced_waiters_.front().deadline_ns;
  unsynced_timer_ = loop_->AddTimer(due > now ? due - now : 0, [this] {
    unsynced_timer_ = Loop::TimerId{};
    uint64_t now = Loop::NowNs(), need = 0;
    std::vector<std::function<void(bool)>> expired;
    while (!unsynced_waiters_.empty() && unsynced_waiters_.front().deadline_ns <= now) {
      need = std::max(need, unsynced_waiters_.front().need_tlt);
      expired.push_back(std::move(unsynced_waiters_.front().resume));
      unsynced_waiters_.pop_front();
    }
    if (!expired.empty() && now - unsynced_warned_ns_ >= 5'000'000'000ull) {
      unsynced_warned_ns_ = now;
      if (!meta_gens_synced_)
        FLOG_WARN("no lease generations from meta after %u ms; refusing writes with EAGAIN until they arrive",
                  kUnsyncedWaitMs);
      else
        FLOG_WARN("no report of TLT v%llu from meta after %u ms (last: v%llu); refusing its writes with EAGAIN",
                  (unsigned long long)need, kUnsyncedWaitMs, (unsigned long long)meta_tlt_version_);
    }
    ArmUnsyncedTimer();
    for (auto& f : expired) f(false);
  });
}

void TractServer::ApplyMetaGens(bool full, const std::vector<MetaGen>& gens, uint64_t tlt_version) {
  if (full) meta_gens_.clear();
  size_t dropped = 0;
  for (const auto& g : gens) {
    auto key = std::make_pair(g.blob_hi, g.blob_lo);
    auto it = meta_gens_.find(key);
    if (it != meta_gens_.end()) {
      it->second = std::max(it->second, g.gen);
    } else if (meta_gens_.size() < kMaxMetaGens) {
      meta_gens_.emplace(key, g.gen);
    } else {
      dropped++;
    }
  }
  if (dropped) FLOG_ERROR("meta reported more than %zu leased blobs; %zu not tracked", kMaxMetaGens, dropped);
  if (!meta_gens_synced_ && meta_gens_required_)
    FLOG_INFO("lease generations of %zu blobs from meta; accepting writes", meta_gens_.size());
  meta_gens_synced_ = true;
  meta_tlt_version_ = std::max(meta_tlt_version_, tlt_version);
  std::vector<std::function<void(bool)>> ready;
  for (auto it = unsynced_waiters_.begin(); it != unsynced_waiters_.end();) {
    if (it->need_tlt > meta_tlt_version_) {
      ++it;
      continue;
    }
    ready.push_back(std::move(it->resume));
    it = unsynced_waiters_.erase(it);
  }
  if (unsynced_waiters_.empty() && unsynced_timer_.valid()) {
    loop_->CancelTimer(unsynced_timer_);
    unsynced_timer_ = Loop::TimerId{};
  }
  for (auto& f : ready) f(true);
}

uint64_t TractServer::GenerationFloor(const RequestHeader& h) const {
  // (Conn::Execute holds mutations and FENCEs until meta's first report.)
  // writer_gen 0 (no lease) counts as older than any recorded generation,
  // and than any generation meta granted.
  uint64_t floor = store_->writers()->Newest(h.blob_hi, h.blob_lo);
  if (!meta_gens_.empty()) {
    auto it = meta_gens_.find(std::make_pair(h.blob_hi, h.blob_lo));
    if (it != meta_gens_.end()) floor = std::max(floor, it->second);
  }
  return floor;
}

bool TractServer::MustRecordWriter(const RequestHeader& h) const {
  return h.writer_gen > store_->writers()->Get(h.blob_hi, h.blob_lo) && h.writer_gen >= GenerationFloor(h);
}

void TractServer::RecordWriter(const RequestHeader& h, std::function<void(int)> then) {
  // (WriterGens logs each generation it records, once.)
  store_->writers()->RaiseAsync(loop_, h.blob_hi, h.blob_lo, h.writer_gen, [then = std::move(then)](int r) {
    then(r < 0 && r != -ENOSPC ? -EIO : r);
  });
}

int TractServer::CheckGeneration(const RequestHeader& h) {
  if (h.writer_gen < GenerationFloor(h)) {
    counters_.superseded_rejects++;
    return -EPERM;
  }
  return 0;
}

int TractServer::CheckWriter(const RequestHeader& h, uint64_t conn_seq) {
  // Generations first: they hold across connections and restarts. A writer
  // whose FENCE this server missed (it was down) records its generation
  // with its first write here (MustRecordWriter/RecordWriter, before this).
  if (h.writer_gen != 0 || store_->writers()->size() != 0 || !meta_gens_.empty()) {
    int r = CheckGeneration(h);
    if (r < 0) return r;
  }
  if (!fences_.empty() && Fenced(h.blob_hi, h.blob_lo, conn_seq)) {
    counters_.fenced_rejects++;
    return -EPERM;
  }
  return 0;
}

bool TractServer::Fenced(uint64_t hi, uint64_t lo, uint64_t conn_seq) const {
  auto it = fences_.find(std::make_pair(hi, lo));
  return it != fences_.end() && conn_seq <= it->second.before_seq && conn_seq != it->second.owner_seq;
}

std::string TractServer::StatsText() const {
  const auto& s = store_->stats();
  std::string t;
  auto kv = [&t](const char* k, uint64_t v) { AppendKv(&t, k, v); };
  kv("tlt_version", tlt_version());
  kv("connections", conns_.size());
  kv("meta_generations", meta_gens_.size());
  kv("meta_tlt_version", meta_tlt_version_);
  kv("connections_accepted", counters_.connections);
  kv("local_connections_accepted", counters_.local_connections);
  kv("requests", counters_.requests);
  kv("error_replies", counters_.error_replies);
  kv("protocol_errors", counters_.protocol_errors);
  kv("stale_rejects", counters_.stale_rejects);
  kv("fenced_rejects", counters_.fenced_rejects);
  kv("superseded_rejects", counters_.superseded_rejects);
  kv("unsynced_rejects", counters_.unsynced_rejects);
  kv("tlt_waits", counters_.tlt_waits);
  kv("writer_generations", store_->writers()->size());
  kv("writer_syncs", store_->writers()->syncs());
  kv("writes", s.writes);
  kv("reads", s.reads);
  kv("trims", s.trims);
  kv("bytes_written", s.bytes_written);
  kv("bytes_read", s.bytes_read);
  kv("rmw", s.rmw);
  kv("checksum_errors", s.checksum_errors);
  kv("io_errors", s.io_errors);
  kv("meta_syncs", s.meta_syncs);
  kv("delete_waits", s.delete_waits);
  kv("open_tracts", s.open_tracts);
  kv("torn_chunks_found", s.torn_chunks_found);
  kv("deferred_creates", s.deferred_creates);
  kv("dir_syncs", s.dir_syncs);
  kv("applies_deferred", s.applies_deferred);
  kv("apply_flushes", s.apply_flushes);
  kv("direct_writes", s.direct_writes);
  kv("creation_syncs", s.creation_syncs);
  if (const auto* j = store_->journal()) {
    const auto& js = j->stats();
    kv("journal_size", j->size());
    kv("journal_used", j->used());
    kv("journal_batches", js.batches);
    kv("journal_records", js.records);
    kv("journal_bytes", js.bytes);
    kv("journal_checkpoints", js.checkpoints);
    kv("journal_space_waits", js.space_waits);
    kv("journal_replayed_records", js.replayed_records);
  }
  return t;
}

}  // namespace flurry
