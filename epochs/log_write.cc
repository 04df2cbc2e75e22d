// SPDX-License-Identifier: Apache-2.0
//
// LogDevice write path: request admission (read-before-write, backpressure,
// allocation in permutation order), completion and in-order application.
// See log_device.h for the contract.
//
// Allocation rule (what recovery must be able to replay; log_recovery.cc):
// at step s with physical block p = perm(s), let M be the blockMap as it will
// be once every step < s is applied (the applied map, with each virtual
// block that has admitted writes moved to its newest one). Then
//   p in M                                   -> skip step s (no write);
//   p not in M, but still in the applied map -> step s writes p, but the
//     write is held (held_) until the write that frees p is applied: its
//     overwrite is not durable yet, and reusing p sooner could destroy the
//     only durable copy. That write has a lower step, so it never waits for
//     step s;
//   p not in M, being read (pinned)          -> step s writes p, held until
//     the reads are done;
//   otherwise                                -> step s writes p.
// Holding the one write, not the allocation, keeps later requests flowing:
// waiting at allocation stalled the whole queue for a replica round trip or
// more several times a second under random partial-block writes.
// A block is "in M" iff it is allocated in the applied bitmap and not in
// pending_free_ (the applied blocks of virtual blocks with newer writes):
// blocks of unapplied writes are never perm(s) again within P steps, and
// the writer never goes P steps past the durable checkpoint (lap rule), so
// they cannot come up.
#include <algorithm>
#include <cstring>

#include "epochs/log_internal.h"

namespace flurry {

bool LogDevice::QueuedTouches(uint64_t v) const {
  for (const auto& q : queue_)
    if (q->first_v <= v && v <= q->last_v) return true;
  return false;
}

void LogDevice::Submit(uint64_t off, uint32_t len, const uint8_t* data, bool fua, Done done) {
  if (info_.read_only) return done(-EROFS);
  if (!opened_) return done(-EIO);
  if (failed_ < 0) return done(failed_);
  if (len == 0 || off + len > g_.volume_size) return done(-EINVAL);
  if (len > info_.max_io) {
    // Only trims and zeroes get here (writes are at most max_io): split so
    // that no single request needs more than max_io worth of blocks.
    auto j = std::make_shared<LogJoin>();
    j->done = std::move(done);
    for (uint64_t pos = off; pos < off + len; pos += info_.max_io) {
      j->pending++;
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(info_.max_io, off + len - pos));
      Submit(pos, n, data ? data + (pos - off) : nullptr, fua, [j](int res) { j->Arrive(res); });
    }
    return j->Arrive(0);
  }
  auto r = std::make_unique<Request>();
  r->id = ++next_req_id_;
  r->epoch = cur_epoch_;
  if (fua) cur_epoch_++;  // a FUA write closes its epoch, as a flush would
  r->off = off;
  r->len = len;
  r->data = data;
  r->fua = fua;
  r->done = std::move(done);
  const uint64_t B = g_.block;
  r->first_v = off / B;
  r->last_v = (off + len - 1) / B;
  r->bases.reserve(2);
  for (uint64_t v : {r->first_v, r->last_v}) {
    if (!r->bases.empty() && r->bases.back().vblock == v) break;
    const uint64_t lo = std::max(off, v * B) - v * B;
    const uint64_t hi = std::min(off + len, v * B + g_.VBlockBytes(v)) - v * B;
    if (lo == 0 && hi == g_.VBlockBytes(v)) continue;  // whole block: no base
    r->bases.push_back(EdgeBase{});
    r->bases.back().vblock = v;
  }
  // Prefetch bases that nothing admitted or queued ahead can change: the
  // blob copy stays current until this request is admitted (FIFO). Before
  // queueing it: a read completing at once may pump the queue.
  for (EdgeBase& b : r->bases) {
    if (vstate_.count(b.vblock) || QueuedTouches(b.vblock)) {
      b.deferred = true;  // HandBases() fills it when that write is applied
      deferred_bases_.emplace(b.vblock, &b);
      continue;
    }
    if (maps_.block_map[b.vblock] == kUnmapped) continue;
    if (BufferedBytes() + g_.expanded > opts_.max_buffered_bytes) {
      r->base_unplanned = true;  // read at admission, one at a time: no early ack
      continue;
    }
    StartBaseRead(b);
  }
  const uint64_t id = r->id;
  queue_.push_back(std::move(r));
  Pump();
  MaybeAckEarly(id);
}

// If request `id` is still queued (it waits for a base, or behind one),
// copies its data and acknowledges it now, within the memory and epoch
// bounds (log_device.h "Early acknowledgement").
void LogDevice::MaybeAckEarly(uint64_t id) {
  if (queue_.empty() || failed_ < 0) return;
  Request* r = nullptr;
  for (auto it = queue_.rbegin(); it != queue_.rend(); ++it) {
    if ((*it)->id == id) {
      r = it->get();
      break;
    }
    if ((*it)->id < id) break;
  }
  if (!r || r->fua || r->acked_early || r->built || r->base_unplanned) return;
  if (early_queued_ >= kMaxEarlyAcked) return;
  const uint64_t copy = r->data ? r->len : 0;
  if (BufferedBytes() + copy > opts_.max_buffered_bytes) return;
  if (r->epoch - last_durable_epoch() > opts_.max_unretired_epochs) return;
  if (copy) {
    r->copy.reset(new uint8_t[copy]);
    memcpy(r->copy.get(), r->data, copy);
    r->data = r->copy.get();
    copy_bytes_ += copy;
  }
  r->acked_early = true;
  early_queued_++;
  c_.early_acks++;
  Done done = std::move(r->done);
  r->done = nullptr;
  done(0);
}

bool LogDevice::EarlyAckedQueuedOverlaps(uint64_t off, uint64_t len) const {
  if (early_queued_ == 0) return false;
  for (const auto& q : queue_)
    if (q->acked_early && q->off < off + len && off < q->off + q->len) return true;
  return false;
}

void LogDevice::StartBaseRead(EdgeBase& b) {
  b.phys = maps_.block_map[b.vblock];
  b.state = EdgeBase::State::kReading;
  if (b.buf.size() == 0) {
    b.buf = AlignedBuffer(g_.expanded);
    prefetch_bytes_ += g_.expanded;
  }
  c_.rmw_base_blob++;
  Pin(b.phys);
  blob_->Read(g_.BlockOffset(b.phys), g_.expanded, b.buf.data(), [this, &b](int res) {
    bool ok = false;
    if (res >= 0) {
      auto t = DecodeTrailer(b.buf.data() + g_.block);
      ok = t && t->vblock == b.vblock && !(t->flags & kTrailerTrim) &&
           TrailerMatchesData(*t, b.buf.data(), g_.block);
    }
    if (!ok) c_.errors++;
    b.state = ok ? EdgeBase::State::kReady : EdgeBase::State::kFailed;
    Unpin(b.phys);
    Pump();
  });
}

// Where the old contents of b's block come from now: *src = nullptr means
// zeros. kWait while a blob read is needed and in flight.
LogDevice::Step LogDevice::ResolveBase(EdgeBase& b, const uint8_t** src) {
  if (auto it = vstate_.find(b.vblock); it != vstate_.end()) {
    const BlockOp* op = it->second.latest;
    *src = op->unmap ? nullptr : op->buf.data();
    b.origin = EdgeBase::Origin::kCache;
    return Step::kGo;
  }
  const uint32_t p = maps_.block_map[b.vblock];
  if (p == kUnmapped) {
    *src = nullptr;
    b.origin = EdgeBase::Origin::kZero;
    return Step::kGo;
  }
  b.origin = EdgeBase::Origin::kBlob;
  using S = EdgeBase::State;
  if (b.state == S::kReading) return Step::kWait;
  if (b.state != S::kNone && b.phys == p) {
    if (b.state == S::kFailed) return Step::kFailed;
    *src = b.buf.data();
    return Step::kGo;
  }
  c_.rmw_base_late++;
  StartBaseRead(b);  // none yet, or a stale one
  if (b.state == S::kReading) return Step::kWait;
  return ResolveBase(b, src);
}

// Makes the head request's block images (merging read-before-write bases),
// once memory and the epoch bound allow.
LogDevice::Step LogDevice::Build(Request& r) {
  const uint64_t B = g_.block;
  uint64_t need = 0;
  for (uint64_t v = r.first_v; v <= r.last_v; ++v) {
    const bool whole = r.off <= v * B && v * B + g_.VBlockBytes(v) <= r.off + r.len;
    need += (whole && !r.data) ? kLogPage : g_.expanded;
  }
  if (!log_.empty() && r.epoch - last_durable_epoch() > opts_.max_unretired_epochs) {
    c_.epoch_waits++;
    return Step::kWait;
  }
  if (ops_bytes_ > 0 && ops_bytes_ + need > opts_.max_buffered_bytes) {
    c_.memory_waits++;
    return Step::kWait;
  }
  if (r.Reading()) return Step::kWait;
  const uint8_t* src[2] = {nullptr, nullptr};
  for (size_t i = 0; i < r.bases.size(); ++i) {
    Step s = ResolveBase(r.bases[i], &src[i]);
    if (s != Step::kGo) return s;
  }
  for (uint64_t v = r.first_v; v <= r.last_v; ++v) {
    const uint64_t lo = std::max(r.off, v * B) - v * B;
    const uint64_t hi = std::min<uint64_t>(r.off + r.len, v * B + g_.VBlockBytes(v)) - v * B;
    auto op = std::make_unique<BlockOp>();
    op->req_id = r.id;
    op->vblock = v;
    op->epoch = r.epoch;
    const bool whole = lo == 0 && hi == g_.VBlockBytes(v);
    if (whole && !r.data) {
      op->unmap = true;
      op->buf = AlignedBuffer(kLogPage);
    } else {
      op->buf = AlignedBuffer(g_.expanded);
      uint8_t* d = op->buf.data();
      if (whole) {
        memset(d + hi, 0, B - hi);  // padding past the end of the volume
      } else {
        c_.partial_block_writes++;
        const size_t bi = (!r.bases.empty() && r.bases[0].vblock == v) ? 0 : 1;
        if (src[bi]) memcpy(d, src[bi], B);
        else memset(d, 0, B);
      }
      if (r.data) memcpy(d + lo, r.data + (v * B + lo - r.off), hi - lo);
      else memset(d + lo, 0, hi - lo);
    }
    r.ops_bytes += op->buf.size();
    r.ops.push_back(std::move(op));
  }
  ops_bytes_ += r.ops_bytes;
  if (r.copy) {
    copy_bytes_ -= r.len;
    r.copy.reset();
  }
  r.data = nullptr;  // copied into the block images
  for (EdgeBase& b : r.bases) {
    ForgetBase(b);
    if (b.origin == EdgeBase::Origin::kCache) c_.rmw_base_cache++;
    if (b.origin == EdgeBase::Origin::kZero) c_.rmw_base_zero++;
    prefetch_bytes_ -= b.buf.size();
  }
  r.bases.clear();
  r.built = true;
  return Step::kGo;
}

// Gives op the next usable step (see the allocation rule at the top).
LogDevice::Step LogDevice::Allocate(BlockOp& op) {
  for (;;) {
    if (alloc_.step() >= ckpt_step_ + g_.pblocks) {  // lap rule
      c_.lap_waits++;
      ckpt_wanted_ = true;
      return Step::kWait;
    }
    const uint64_t p = alloc_.value();
    if (maps_.Allocated(p) && !pending_free_.count(p)) {
      c_.steps_skipped++;
      alloc_.Advance();
      continue;
    }
    op.step = alloc_.step();
    op.phys = p;
    op.held = maps_.Allocated(p) || pins_.count(p);
    alloc_.Advance();
    return Step::kGo;
  }
}

void LogDevice::Admit() {
  while (!queue_.empty()) {
    Request& r = *queue_.front();
    if (failed_ < 0 || (!r.built && Build(r) == Step::kFailed)) {
      if (r.Reading()) return;  // its buffers are in use until then
      for (size_t i = r.next_op; i < r.ops.size(); ++i) ops_bytes_ -= r.ops[i]->buf.size();
      for (EdgeBase& b : r.bases) {
        ForgetBase(b);
        prefetch_bytes_ -= b.buf.size();
      }
      if (r.acked_early) {
        // Acknowledged already: the write is lost, so the engine must fail.
        if (failed_ == 0) failed_ = -EIO;
        if (r.copy) copy_bytes_ -= r.len;
        early_queued_--;
      } else {
        Ack(std::move(r.done), failed_ < 0 ? failed_ : -EIO);
      }
      queue_.pop_front();
      continue;
    }
    if (!r.built) return;  // Build() said wait
    while (r.next_op < r.ops.size()) {
      BlockOp& op = *r.ops[r.next_op];
      if (Allocate(op) != Step::kGo) return;
      BlockTrailer t;
      t.flags = op.unmap ? kTrailerTrim : 0;
      t.geometry_tag = g_.Tag();
      t.gen = gen_;
      t.step = op.step;
      t.vblock = op.vblock;
      t.epoch = op.epoch;
      EncodeTrailer(t, op.buf.data(), g_.block, op.unmap ? op.buf.data() : op.buf.data() + g_.block);
      VState& vs = vstate_[op.vblock];
      if (vs.unapplied++ == 0 && maps_.block_map[op.vblock] != kUnmapped)
        pending_free_.insert(maps_.block_map[op.vblock]);
      vs.latest = &op;
      log_.push_back(std::move(r.ops[r.next_op++]));
      if (op.unmap) c_.unmaps_logged++;
      else c_.blocks_logged++;
      if (op.held) {
        c_.held_writes++;
        held_.emplace(op.phys, &op);
      } else {
        Issue(&op);
      }
    }
    if (r.fua) fua_waiters_.push_back({r.epoch, std::move(r.done)});
    else if (r.acked_early) early_queued_--;
    else Ack(std::move(r.done), 0);
    queue_.pop_front();
  }
}

void LogDevice::Issue(BlockOp* op) {
  if (!opts_.loop) return IssueNow(op);
  issue_batch_.push_back(op);
  if (!flush_posted_) {
    flush_posted_ = true;
    opts_.loop->Post([this, alive = alive_] {
      if (!*alive) return;
      flush_posted_ = false;
      FlushIssues();
    });
  }
}

void LogDevice::IssueNow(BlockOp* op) {
  const uint64_t off = op->unmap ? g_.TrailerOffset(op->phys) : g_.BlockOffset(op->phys);
  blob_->Write(off, op->buf.size(), op->buf.data(), [this, op](int res) { OnWritten(op, res); });
}

// Block writes waiting in issue_batch_ go out at the end of the loop
// iteration that queued them; those whose physical blocks are adjacent
// (consecutive steps of a run) as one blob write. Only the last group can
// still grow (the next step may be the next block): while kMaxIssuing
// writes are in flight it waits, so that it merges more of what follows
// and batches grow with the load. Every other group is complete and goes
// at once, so a walk that skips often (a nearly full volume) or unmap
// markers (trailer pages, never adjacent) are not held back. A group's
// copy counts in ops_bytes_ (the memory bound) until it completes.
// Re-entrant calls (a blob write may complete synchronously, e.g. fenced)
// only ask the running one for another pass.
void LogDevice::FlushIssues() {
  if (flushing_) {
    flush_again_ = true;
    return;
  }
  flushing_ = true;
  std::shared_ptr<bool> alive = alive_;
  do {
    flush_again_ = false;
    // Cut the batch into groups first, so that nothing below sees a group
    // twice whatever the callbacks do.
    std::vector<std::vector<BlockOp*>> groups;
    size_t i = 0;
    while (i < issue_batch_.size()) {
      size_t j = i + 1;
      uint64_t bytes = issue_batch_[i]->buf.size();
      if (!issue_batch_[i]->unmap)
        while (j < issue_batch_.size() && !issue_batch_[j]->unmap &&
               issue_batch_[j]->phys == issue_batch_[j - 1]->phys + 1 &&
               bytes + issue_batch_[j]->buf.size() <= kMaxCoalesceBytes)
          bytes += issue_batch_[j++]->buf.size();
      if (j == issue_batch_.size() && issuing_ + groups.size() >= kMaxIssuing) {
        const BlockOp& last = *issue_batch_[j - 1];
        const bool may_grow = !last.unmap && bytes + last.buf.size() <= kMaxCoalesceBytes &&
                              (last.phys + 1) % alloc_.run() != 0 && last.phys + 1 < g_.pblocks;
        if (may_grow) break;
      }
      groups.emplace_back(issue_batch_.begin() + static_cast<long>(i), issue_batch_.begin() + static_cast<long>(j));
      i = j;
    }
    issue_batch_.erase(issue_batch_.begin(), issue_batch_.begin() + static_cast<long>(i));
    for (std::vector<BlockOp*>& ops : groups) {
      const BlockOp& first = *ops.front();
      const uint64_t off = first.unmap ? g_.TrailerOffset(first.phys) : g_.BlockOffset(first.phys);
      issuing_++;
      if (ops.size() == 1) {
        BlockOp* op = ops.front();
        blob_->Write(off, op->buf.size(), op->buf.data(), [this, op, alive](int res) {
          issuing_--;
          OnWritten(op, res);
          if (*alive && !issue_batch_.empty()) FlushIssues();
        });
      } else {
        uint64_t bytes = 0;
        for (BlockOp* op : ops) bytes += op->buf.size();
        auto group = std::make_shared<std::pair<AlignedBuffer, std::vector<BlockOp*>>>(AlignedBuffer(bytes),
                                                                                        std::move(ops));
        uint8_t* p = group->first.data();
        for (BlockOp* op : group->second) {
          memcpy(p, op->buf.data(), op->buf.size());
          p += op->buf.size();
        }
        ops_bytes_ += bytes;
        c_.coalesced_writes++;
        blob_->Write(off, bytes, group->first.data(), [this, group, bytes, alive](int res) {
          issuing_--;
          ops_bytes_ -= bytes;
          // A reply made in OnWritten (a failed Quiesce) may destroy the engine.
          for (BlockOp* op : group->second) {
            if (!*alive) return;
            OnWritten(op, res);
          }
          if (*alive && !issue_batch_.empty()) FlushIssues();
        });
      }
      if (!*alive) return;
    }
  } while (flush_again_);
  flushing_ = false;
}

void LogDevice::OnWritten(BlockOp* op, int res) {
  if (res < 0) {
    c_.errors++;
    if (++op->attempts >= kMaxAttempts || failed_ < 0) return Fail(res);
    c_.write_retries++;
    if (opts_.loop) opts_.loop->AddTimer(1'000'000ull << op->attempts, [this, op] { Issue(op); });
    else Issue(op);
    return;
  }
  op->durable = true;
  Pump();
}

void LogDevice::Fail(int err) {
  if (failed_ == 0) failed_ = err;
  Pump();
}

// Applies completed block writes in step order.
void LogDevice::ApplyDurable() {
  while (!log_.empty() && log_.front()->durable) {
    BlockOp& op = *log_.front();
    const uint32_t old = maps_.block_map[op.vblock];
    if (old != kUnmapped) {
      maps_.Clear(old);
      pending_free_.erase(old);
      ReleaseHeld(old);
    }
    maps_.block_map[op.vblock] = op.unmap ? kUnmapped : static_cast<uint32_t>(op.phys);
    if (!op.unmap) maps_.Set(op.phys);
    auto it = vstate_.find(op.vblock);
    if (--it->second.unapplied == 0) {
      vstate_.erase(it);
      HandBases(op);
    } else if (!op.unmap) {
      pending_free_.insert(op.phys);
    }
    ops_bytes_ -= op.buf.size();
    c_.blocks_applied++;
    log_.pop_front();
  }
}

// Issues the write held for physical block p (see the allocation rule), if
// any, once p is neither applied nor being read.
void LogDevice::ReleaseHeld(uint64_t p) {
  auto it = held_.find(p);
  if (it == held_.end() || maps_.Allocated(p) || pins_.count(p)) return;
  if (failed_ < 0) return;  // a failed engine issues nothing new
  BlockOp* op = it->second;
  held_.erase(it);
  op->held = false;
  Issue(op);
}

void LogDevice::ForgetBase(EdgeBase& b) {
  if (!b.deferred) return;
  b.deferred = false;
  auto [lo, hi] = deferred_bases_.equal_range(b.vblock);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == &b) {
      deferred_bases_.erase(it);
      return;
    }
  }
}

// op, the last unapplied write of its block, was just applied: its image is
// now the block's durable contents, so the deferred bases of later queued
// requests take a copy (within the memory bound) rather than a blob read at
// admission. A later apply of the block hands them its image again; a base
// that cannot take one is reset, so ResolveBase() reads it, as before. One
// being read already (admitted at the head) is left to its read.
void LogDevice::HandBases(const BlockOp& op) {
  auto [lo, hi] = deferred_bases_.equal_range(op.vblock);
  for (auto it = lo; it != hi; ++it) {
    EdgeBase& b = *it->second;
    if (b.state == EdgeBase::State::kReading) continue;
    if (op.unmap) {  // reads as zeros now: ResolveBase() sees kUnmapped
      b.state = EdgeBase::State::kNone;
      continue;
    }
    if (b.buf.size() == 0) {
      if (BufferedBytes() + g_.expanded > opts_.max_buffered_bytes) {
        b.state = EdgeBase::State::kNone;
        continue;
      }
      b.buf = AlignedBuffer(g_.expanded);
      prefetch_bytes_ += g_.expanded;
    }
    memcpy(b.buf.data(), op.buf.data(), g_.block);
    b.state = EdgeBase::State::kReady;
    b.phys = op.phys;
    c_.rmw_base_handed++;
  }
}

void LogDevice::WakeWaiters() {
  const uint64_t lde = last_durable_epoch();
  while (!fua_waiters_.empty() && (failed_ < 0 || fua_waiters_.front().epoch <= lde)) {
    Ack(std::move(fua_waiters_.front().done), failed_ < 0 ? failed_ : 0);
    fua_waiters_.pop_front();
  }
  for (size_t i = 0; i < quiesce_waiters_.size();) {
    QuiesceWaiter& w = quiesce_waiters_[i];
    const bool drained = (queue_.empty() || queue_.front()->id > w.last_req) &&
                         (log_.empty() || log_.front()->req_id > w.last_req);
    if (failed_ < 0) {
      Ack(std::move(w.done), failed_);
    } else if (drained) {
      ckpt_waiters_.push_back(std::move(w.done));
    } else {
      ++i;
      continue;
    }
    quiesce_waiters_.erase(quiesce_waiters_.begin() + static_cast<long>(i));
  }
}

}  // namespace flurry
