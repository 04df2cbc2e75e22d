// SPDX-License-Identifier: Apache-2.0
#include "fdsclient/fds_client.h"

#include <cstring>
#include <thread>

#include "common/checksum.h"
#include "common/log.h"
#include "common/tract_protocol.h"
#include "fdsclient/conn.h"
#include "meta/meta_client.h"

namespace flurry {

using namespace tractproto;

struct FdsClient::Op {
  uint16_t opcode = 0;
  BlobRef blob;
  uint64_t tract = 0;
  uint32_t off = 0, len = 0, flags = 0;
  const uint8_t* wbuf = nullptr;
  uint8_t* rbuf = nullptr;
  uint64_t payload_sum = 0;
  Done done;
  BitmapDone bdone;
  SumsDone sdone;
  std::vector<uint8_t> bitmap;
  std::vector<ReplicaSums> replica_sums;  // kOpChunkSums: one per target
  uint64_t deadline_ns = 0;
  uint32_t deadline_ms = 0;  // 0 = Options::op_deadline_ms
  int attempt = 0;
  uint64_t gen = 0;          // bumped on each issue; stale replies are ignored
  int refs = 0;              // requests on the wire referring to this op
  bool finished = false;
  // Per-issue state.
  std::vector<std::string> targets;
  size_t outstanding = 0;
  int first_err = 0;
  size_t read_try = 0;
  bool to_all = true;        // every target (write-like), or one after another (read)
  std::string why;           // last failure, for the log
};

namespace {
bool Retryable(int err) {
  // -EPERM: fenced, another writer took the blob over.
  return err != -EINVAL && err != -EOPNOTSUPP && err != -EROFS && err != -ENOSPC && err != -ESHUTDOWN &&
         err != -EPERM;
}
}  // namespace

Result<std::unique_ptr<FdsClient>> FdsClient::Create(Loop* loop, Options opts, Status* why) {
  std::unique_ptr<FdsClient> c(new FdsClient(loop, std::move(opts)));
  MetaClient mc(c->opts_.meta);
  auto t = mc.GetTlt(why);
  if (!t) return Result<std::unique_ptr<FdsClient>>::error(t.err());
  if (t->rows.empty()) {
    *why = Status::Error(-ENOSPC, "the TLT is empty: no tract servers registered");
    return Result<std::unique_ptr<FdsClient>>::error(-ENOSPC);
  }
  c->tlt_ = std::move(*t);
  c->Tick();
  return c;
}

FdsClient::~FdsClient() {
  Shutdown();
  *alive_ = false;
}

void FdsClient::Shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  loop_->CancelTimer(tick_);
  auto all = conns_;
  for (auto& [a, v] : all)
    for (Conn* c : v) c->Break(-ESHUTDOWN);
  conns_.clear();
  // Ops between attempts have no request on the wire: fail them here, and
  // make sure their backoff timers never fire.
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& [op, timer] : waiting) {
    if (timer.valid()) loop_->CancelTimer(timer);
    Finish(op, -ESHUTDOWN);
  }
}

void FdsClient::Tick() {
  uint64_t now = Loop::NowNs();
  std::vector<Conn*> all;
  for (auto& [a, v] : conns_) all.insert(all.end(), v.begin(), v.end());
  for (Conn* c : all) c->ExpireTimeouts(now, static_cast<uint64_t>(opts_.request_timeout_ms) * 1000000);
  tick_ = loop_->AddTimer(100 * 1000000ull, [this] { Tick(); });
}

FdsClient::Conn* FdsClient::GetConn(const std::string& addr) {
  auto& v = conns_[addr];
  if (v.size() < opts_.conns_per_server) {
    Conn* c = new Conn(loop_, addr, opts_.local_sockets, [this](Conn* dead) {
      auto it = conns_.find(dead->addr());
      if (it == conns_.end()) return;
      std::erase(it->second, dead);
    });
    v.push_back(c);
    return c;
  }
  return v[rr_++ % v.size()];
}

void FdsClient::RefreshTlt(std::function<void()> then) {
  after_refresh_.push_back(std::move(then));
  if (refreshing_) return;
  refreshing_ = true;
  stats_.tlt_refreshes++;
  std::thread([this, alive = alive_, meta = opts_.meta, loop = loop_] {
    MetaClient mc(meta, 2000);
    Status why;
    auto t = mc.GetTlt(&why);
    loop->PostFromAnyThread([this, alive, t = std::move(t), why]() mutable {
      if (!*alive) return;
      refreshing_ = false;
      if (t.ok() && !t->rows.empty() && t->version >= tlt_.version) {
        if (t->version > tlt_.version) FLOG_INFO("TLT v%llu", (unsigned long long)t->version);
        tlt_ = std::move(*t);
      } else if (!t.ok()) {
        FLOG_WARN("TLT refresh failed: %s", why.ToString().c_str());
      }
      auto cbs = std::move(after_refresh_);
      after_refresh_.clear();
      for (auto& cb : cbs) cb();
    });
  }).detach();
}

void FdsClient::Start(Op* op) {
  stats_.ops++;
  if (shutdown_) {
    op->finished = true;
    Finish(op, -ESHUTDOWN);
    return;
  }
  op->deadline_ns = Loop::NowNs() + static_cast<uint64_t>(op->deadline_ms ? op->deadline_ms : opts_.op_deadline_ms) * 1000000;
  Issue(op);
}

void FdsClient::Issue(Op* op) {
  op->gen++;
  const auto& row = tlt_.rows[tlt_.RowOf(op->blob.hi, op->blob.lo, op->tract)];
  op->targets.clear();
  op->first_err = 0;
  if (op->opcode == kOpDeleteBlob || op->opcode == kOpFence) {
    std::vector<std::string> all;
    for (const auto& r : tlt_.rows)
      for (const auto& e : r)
        if (std::find(all.begin(), all.end(), e.addr) == all.end()) all.push_back(e.addr);
    op->targets = all;
  } else {
    if (row.size() < op->blob.replicas) return Finish(op, -EINVAL);
    for (size_t i = 0; i < op->blob.replicas; ++i) {
      // Reads skip replicas that are still being refilled.
      if (!op->to_all && row[i].recovering) continue;
      op->targets.push_back(row[i].addr);
    }
    if (op->targets.empty()) return Retry(op, -EAGAIN);
  }
  if (op->opcode == kOpChunkSums) {
    uint32_t n = op->blob.tract_size / kChunkSize;
    op->replica_sums.assign(op->targets.size(), ReplicaSums{});
    for (size_t i = 0; i < op->targets.size(); ++i) {
      op->replica_sums[i].addr = op->targets[i];
      op->replica_sums[i].sums.assign(n, 0);
    }
  }
  if (op->to_all) {
    op->outstanding = op->targets.size();
    for (size_t i = 0; i < op->targets.size(); ++i) SendTo(op, i);
  } else {
    // Spread reads over replicas, then fail over in order.
    op->read_try = 0;
    op->outstanding = 1;
    size_t start = (op->tract + op->off / (64 * 1024)) % op->targets.size();
    std::rotate(op->targets.begin(), op->targets.begin() + static_cast<long>(start), op->targets.end());
    SendTo(op, 0);
  }
}

void FdsClient::SendTo(Op* op, size_t idx) {
  FdsReq* r = new FdsReq();
  RequestHeader& h = r->hdr;
  h.magic = kRequestMagic;
  h.version = kVersion;
  h.op = op->opcode;
  h.id = next_id_++;
  h.tlt_version = tlt_.version;
  h.blob_hi = op->blob.hi;
  h.blob_lo = op->blob.lo;
  h.tract = op->tract;
  h.offset = op->off;
  h.length = op->len;
  h.flags = op->flags;
  h.tract_size = op->blob.tract_size;
  h.writer_gen = op->blob.writer_gen;
  if (op->opcode == kOpWrite) {
    h.payload_len = op->len;
    h.payload_sum = op->payload_sum;
    r->payload = op->wbuf;
  }
  SealHeader(&h);
  r->deadline_ns = Loop::NowNs() + 6 * static_cast<uint64_t>(opts_.request_timeout_ms) * 1000000;
  if (op->opcode == kOpRead || op->opcode == kOpStatTract) r->aux_sink = &op->bitmap;
  if (op->opcode == kOpChunkSums) {
    ReplicaSums& rs = op->replica_sums[idx];
    r->aux_sink = &rs.bitmap;
    r->data_sink = reinterpret_cast<uint8_t*>(rs.sums.data());
    r->data_len = static_cast<uint32_t>(rs.sums.size() * 8);
  }
  if (op->opcode == kOpRead && !(op->flags & kFlagAllocOnly)) {
    r->data_sink = op->rbuf;
    r->data_len = op->len;
  }
  uint64_t gen = op->gen;
  op->refs++;
  r->done = [this, op, gen, idx](int res) {
    op->refs--;
    if (op->finished || gen != op->gen) {
      if (op->finished && op->refs == 0) delete op;
      return;
    }
    OnReplicaDone(op, idx, res);
  };
  GetConn(op->targets[idx])->Send(r);
}

void FdsClient::OnReplicaDone(Op* op, size_t idx, int res) {
  if (res == -EBADMSG) stats_.checksum_failures++;
  if (res == -ETIMEDOUT) stats_.timeouts++;
  if (res < 0) op->why = op->targets[idx] + ": " + errstr(res);
  if (op->to_all) {
    if (res < 0 && op->first_err == 0) op->first_err = res;
    if (--op->outstanding > 0) return;
    if (op->first_err == 0) return Finish(op, 0);
    return Retry(op, op->first_err);
  }
  if (res == 0) return Finish(op, 0);
  if (!Retryable(res)) return Finish(op, res);
  // Fail over to the next replica of this row.
  if (++op->read_try < op->targets.size()) {
    stats_.failovers++;
    op->gen++;  // a late reply from the failed replica is ignored
    return SendTo(op, op->read_try);
  }
  Retry(op, res);
}

void FdsClient::Retry(Op* op, int err) {
  if (!Retryable(err) || shutdown_ || Loop::NowNs() > op->deadline_ns) {
    if (err != -ESHUTDOWN)
      FLOG_ERROR("tract op %u on tract %llu failed: %s", op->opcode, (unsigned long long)op->tract,
                 op->why.empty() ? errstr(err).c_str() : op->why.c_str());
    return Finish(op, err);
  }
  stats_.retries++;
  op->attempt++;
  op->gen++;  // replies still on the wire for the old issue are ignored
  uint64_t backoff_ms = std::min<uint64_t>(20ull << std::min(op->attempt, 6), 1000);
  FLOG_DEBUG("retrying tract op after %s (attempt %d)", op->why.c_str(), op->attempt);
  waiting_[op] = loop_->AddTimer(backoff_ms * 1000000, [this, op] {
    waiting_[op] = Loop::TimerId{};  // fired; now waiting for the TLT
    RefreshTlt([this, op] {
      if (waiting_.erase(op) == 0) return;  // failed by Shutdown() meanwhile
      Issue(op);
    });
  });
}

void FdsClient::Finish(Op* op, int res) {
  if (res < 0) stats_.failed_ops++;
  op->finished = true;
  op->gen++;
  Done d = std::move(op->done);
  BitmapDone bd = std::move(op->bdone);
  SumsDone sd = std::move(op->sdone);
  std::vector<uint8_t> bm = std::move(op->bitmap);
  std::vector<ReplicaSums> rs = std::move(op->replica_sums);
  if (op->refs == 0) delete op;
  if (d) d(res);
  if (bd) bd(res, std::move(bm));
  if (sd) sd(res, std::move(rs));
}

void FdsClient::Write(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len,
                      const uint8_t* buf, uint32_t flags, Done done) {
  constexpr uint32_t kC = kChunkSize;
  uint32_t a = off / kC * kC;
  uint64_t e = (static_cast<uint64_t>(off) + len + kC - 1) / kC * kC;
  if (a == off && e == static_cast<uint64_t>(off) + len) return WriteChunks(b, tract, off, len, buf, flags, std::move(done));
  // Replicas only ever receive whole chunks: merge the edge chunks here, from
  // a readable replica, so that a replica being refilled never merges new
  // bytes with a hole it has not been sent yet.
  if (e - a > kMaxIo || e > b.tract_size) return done(-EINVAL);
  auto span = std::make_shared<std::vector<uint8_t>>(e - a);
  bool head = a != off, tail = e != static_cast<uint64_t>(off) + len && (e - kC != a || !head);
  auto pending = std::make_shared<int>(1 + head + tail);
  auto err = std::make_shared<int>(0);
  auto step = [this, b, tract, a, off, len, buf, flags, span, pending, err,
               done = std::move(done)](int res) mutable {
    if (res < 0 && *err == 0) *err = res;
    if (--*pending > 0) return;
    if (*err < 0) return done(*err);
    memcpy(span->data() + (off - a), buf, len);
    WriteChunks(b, tract, a, static_cast<uint32_t>(span->size()), span->data(), flags,
                [span, done = std::move(done)](int r) { done(r); });
  };
  auto shared_step = std::make_shared<decltype(step)>(std::move(step));
  auto arrive = [shared_step](int res) { (*shared_step)(res); };
  if (head) Read(b, tract, a, kC, span->data(), [arrive](int r, std::vector<uint8_t>) { arrive(r); });
  if (tail)
    Read(b, tract, static_cast<uint32_t>(e - kC), kC, span->data() + (e - kC - a),
         [arrive](int r, std::vector<uint8_t>) { arrive(r); });
  arrive(0);
}

void FdsClient::WriteChunks(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len,
                            const uint8_t* buf, uint32_t flags, Done done) {
  Op* op = new Op();
  op->opcode = kOpWrite;
  op->blob = b;
  op->tract = tract;
  op->off = off;
  op->len = len;
  op->flags = flags;
  op->wbuf = buf;
  op->payload_sum = Checksum(buf, len);  // once, shared by every replica
  op->done = std::move(done);
  Start(op);
}

void FdsClient::Read(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, uint8_t* buf,
                     BitmapDone done) {
  Op* op = new Op();
  op->opcode = kOpRead;
  op->blob = b;
  op->tract = tract;
  op->off = off;
  op->len = len;
  op->rbuf = buf;
  op->flags = buf ? 0u : static_cast<uint32_t>(kFlagAllocOnly);
  op->to_all = false;
  op->bdone = std::move(done);
  Start(op);
}

void FdsClient::Zero(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, bool keep_alloc,
                     Done done) {
  // Whole chunks are zeroed (or freed) by the servers; partial chunks at the
  // ends are written as zeros through Write's client-side merge.
  constexpr uint32_t kC = kChunkSize;
  uint64_t end = static_cast<uint64_t>(off) + len;
  uint64_t ma = (off + kC - 1) / kC * kC, mb = end / kC * kC;
  struct Parts {
    int pending = 1, err = 0;
    Done done;
    void Arrive(int r) {
      if (r < 0 && err == 0) err = r;
      if (--pending == 0) done(err);
    }
  };
  auto p = std::make_shared<Parts>();
  p->done = std::move(done);
  // A partial chunk: read it; for a trim a hole already reads as zeros and
  // stays a hole; otherwise overlay zeros and write the whole chunk back
  // (a NO_HOLE zero thus allocates it).
  auto zero_write = [&](uint64_t o, uint64_t n) {
    p->pending++;
    uint32_t c = static_cast<uint32_t>(o / kC * kC);
    auto chunk = std::make_shared<std::vector<uint8_t>>(kC);
    Read(b, tract, c, kC, chunk->data(), [this, b, tract, c, o, n, chunk, p, keep_alloc](int r, std::vector<uint8_t> bm) {
      constexpr uint32_t kChunk = kChunkSize;
      if (r < 0) return p->Arrive(r);
      if (!keep_alloc && (bm.empty() || !(bm[0] & 1))) return p->Arrive(0);
      memset(chunk->data() + (o - c), 0, n);
      WriteChunks(b, tract, c, kChunk, chunk->data(), 0, [chunk, p](int r2) { p->Arrive(r2); });
    });
  };
  if (ma >= mb) {
    // Inside one chunk, or across one chunk boundary with no whole chunk.
    if (ma > off && ma < end) {
      zero_write(off, ma - off);
      zero_write(ma, end - ma);
    } else {
      zero_write(off, len);
    }
    return p->Arrive(0);
  }
  if (off < ma) zero_write(off, ma - off);
  if (mb < end) zero_write(mb, end - mb);
  Op* op = new Op();
  op->opcode = static_cast<uint16_t>(keep_alloc ? kOpZero : kOpTrim);
  op->flags = keep_alloc ? static_cast<uint32_t>(kFlagNoHole) : 0u;
  op->blob = b;
  op->tract = tract;
  op->off = static_cast<uint32_t>(ma);
  op->len = static_cast<uint32_t>(mb - ma);
  p->pending++;
  op->done = [p](int r) { p->Arrive(r); };
  Start(op);
  p->Arrive(0);
}

namespace {
// An op without payload: the callers set the callback (and to_all, deadline).
FdsClient::Op* NewOp(uint16_t opcode, const BlobRef& b, uint64_t tract) {
  auto* op = new FdsClient::Op();
  op->opcode = opcode;
  op->blob = b;
  op->tract = tract;
  return op;
}
}  // namespace

void FdsClient::StatTract(const BlobRef& b, uint64_t tract, BitmapDone done) {
  Op* op = NewOp(kOpStatTract, b, tract);
  op->to_all = false;
  op->bdone = std::move(done);
  Start(op);
}

void FdsClient::ChunkSums(const BlobRef& b, uint64_t tract, SumsDone done, uint32_t deadline_ms) {
  Op* op = NewOp(kOpChunkSums, b, tract);
  op->deadline_ms = deadline_ms;
  op->sdone = std::move(done);
  Start(op);
}

void FdsClient::Fence(const BlobRef& b, Done done, uint32_t deadline_ms) {
  // The fence spares only the connection that carries it: with a pool, our
  // other connections would be fenced too.
  if (opts_.conns_per_server != 1) return done(-EOPNOTSUPP);
  Op* op = NewOp(kOpFence, b, 0);
  op->deadline_ms = deadline_ms;
  op->done = std::move(done);
  Start(op);
}

void FdsClient::DeleteBlob(const BlobRef& b, Done done) {
  Op* op = NewOp(kOpDeleteBlob, b, 0);
  op->done = std::move(done);
  Start(op);
}

}  // namespace flurry
