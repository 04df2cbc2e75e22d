// SPDX-License-Identifier: Apache-2.0
#include "epochs/fast_ack.h"

#include <algorithm>
#include <cstring>

#include "common/kv_text.h"
#include "common/log.h"
#include "common/units.h"

namespace flurry {

FastAckDevice::FastAckDevice(const VolumeInfo& vol, BlobIo* blob, const EngineOptions& opts)
    : blob_(blob), opts_(opts) {
  info_.size = vol.size;
  info_.min_block = 1;
  info_.preferred_block = 4096;
  info_.max_io = 16u << 20;
  info_.read_only = opts.read_only;
  info_.description = "flurry volume " + vol.name + " (" + FormatSize(vol.size) + ", R=" +
                      std::to_string(vol.replicas) +
                      ", fast-ack: FLUSH gives prefix consistency, not durability)";
}

FastAckDevice::~FastAckDevice() { *alive_ = false; }

// ---- admission (backpressure) ----

bool FastAckDevice::HasRoom(const Admit& a) const {
  if (a.flush) return curr_epoch_ - issue_epoch_ < opts_.max_unretired_epochs;
  // A single request larger than the bound is admitted when nothing is buffered.
  return buffered_bytes_ == 0 || buffered_bytes_ + a.len <= opts_.max_buffered_bytes;
}

void FastAckDevice::Submit(Admit a) {
  if (waiting_.empty() && HasRoom(a)) return Accept(std::move(a));
  c_.throttled++;
  waiting_.push_back(std::move(a));
}

void FastAckDevice::Accept(Admit a) {
  if (a.flush) {
    c_.flushes++;
    if (a.fua) {  // DurableFlush: reply when this epoch has retired
      epochs_[curr_epoch_].fua_waiters.push_back(std::move(a.done));
      curr_epoch_++;
      MaybeRetire();
      return;
    }
    curr_epoch_++;
    MaybeRetire();
    return a.done(0);
  }
  auto e = std::make_shared<Entry>();
  e->seq = next_seq_++;
  e->epoch = curr_epoch_;
  e->off = a.off;
  e->len = a.len;
  e->kind = a.kind;
  if (a.kind == Kind::kWrite) e->data.assign(a.buf, a.buf + a.len);
  EntryPtr ep = e;
  cache_.emplace(ep->off, ep);
  max_entry_len_ = std::max(max_entry_len_, ep->len);
  buffered_bytes_ += ep->len;
  c_.max_buffered = std::max(c_.max_buffered, buffered_bytes_);
  Epoch& epoch = epochs_[ep->epoch];
  epoch.entries.push_back(ep);
  if (ep->epoch == issue_epoch_) Issue(ep);
  if (a.fua) {
    // Close the epoch so it can retire; reply when it has.
    c_.fua++;
    epoch.fua_waiters.push_back(std::move(a.done));
    curr_epoch_++;
    MaybeRetire();
    return;
  }
  a.done(0);
}

// ---- issue and retirement ----

void FastAckDevice::Issue(const EntryPtr& e) {
  epochs_[e->epoch].outstanding++;
  // Whole 4 KiB chunks (see StripedBlob: partial chunks merge on the client).
  uint64_t a = e->off / 4096 * 4096, b = (e->off + e->len + 4095) / 4096 * 4096;
  lock_.Acquire(a, b - a, [this, e](RangeLock::Handle* h) {
    auto cb = [this, e, h](int res) { OnDurable(e, res, h); };
    if (e->kind == Kind::kWrite) blob_->Write(e->off, e->len, e->data.data(), cb);
    else blob_->Zero(e->off, e->len, e->kind == Kind::kZero, cb);
  });
}

void FastAckDevice::OnDurable(const EntryPtr& e, int res, RangeLock::Handle* h) {
  if (res < 0) {
    // Acknowledged data must not be dropped: retry, keeping the range lock.
    c_.retries++;
    if (c_.retries % 50 == 1)
      FLOG_ERROR("fast-ack: write of %llu bytes at %llu failed (%s); retrying",
                 (unsigned long long)e->len, (unsigned long long)e->off, errstr(res).c_str());
    auto again = [this, e, h, alive = alive_] {
      if (!*alive) return;
      auto cb = [this, e, h](int r) { OnDurable(e, r, h); };
      if (e->kind == Kind::kWrite) blob_->Write(e->off, e->len, e->data.data(), cb);
      else blob_->Zero(e->off, e->len, e->kind == Kind::kZero, cb);
    };
    if (opts_.loop) opts_.loop->AddTimer(200 * 1000000ull, again);
    else again();
    return;
  }
  lock_.Release(h);
  // Durable: the blob now serves this range, so the entry leaves the cache
  // and frees its buffer space at once (not at epoch retirement, which
  // would deadlock a client that fills the bound within one epoch and waits
  // for replies before flushing). Safe for reads: every older write that
  // overlaps it is durable already (overlapping writes of an epoch are
  // issued in order; older epochs are fully durable before a newer one is
  // issued), and newer ones are still cached and overlay it.
  auto [a, b] = cache_.equal_range(e->off);
  for (auto c = a; c != b; ++c)
    if (c->second == e) { cache_.erase(c); break; }
  buffered_bytes_ -= e->len;
  epochs_[e->epoch].outstanding--;
  MaybeRetire();
}

void FastAckDevice::MaybeRetire() {
  while (issue_epoch_ < curr_epoch_) {
    auto it = epochs_.find(issue_epoch_);
    if (it != epochs_.end()) {
      Epoch& ep = it->second;
      if (ep.outstanding > 0) break;
      // Every entry of the epoch is durable and already out of the cache.
      std::vector<Done> fua = std::move(ep.fua_waiters);
      epochs_.erase(it);
      for (auto& d : fua) d(0);
    }
    issue_epoch_++;
    c_.epochs_retired++;
    // Release the next epoch's writes.
    auto nx = epochs_.find(issue_epoch_);
    if (nx != epochs_.end()) {
      std::vector<EntryPtr> next = nx->second.entries;
      for (const EntryPtr& e : next) Issue(e);
    }
  }
  if (cache_.empty()) max_entry_len_ = 0;
  while (!waiting_.empty() && HasRoom(waiting_.front())) {
    Admit a = std::move(waiting_.front());
    waiting_.pop_front();
    Accept(std::move(a));
  }
  if (issue_epoch_ == curr_epoch_ && epochs_.empty() && !quiesce_waiters_.empty()) {
    auto q = std::move(quiesce_waiters_);
    quiesce_waiters_.clear();
    for (auto& d : q) d(0);
  }
}

// ---- BlockDevice ----

std::vector<FastAckDevice::EntryPtr> FastAckDevice::Overlapping(uint64_t off, uint64_t len) const {
  std::vector<EntryPtr> out;
  uint64_t start = off > max_entry_len_ ? off - max_entry_len_ : 0;
  for (auto it = cache_.lower_bound(start); it != cache_.end() && it->first < off + len; ++it)
    if (it->first + it->second->len > off) out.push_back(it->second);
  std::sort(out.begin(), out.end(), [](const EntryPtr& a, const EntryPtr& b) { return a->seq < b->seq; });
  return out;
}

void FastAckDevice::Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) {
  c_.reads++;
  std::vector<EntryPtr> over = Overlapping(off, len);
  auto overlay = [off, len, buf](const std::vector<EntryPtr>& entries, size_t from) {
    for (size_t i = from; i < entries.size(); ++i) {
      const Entry& e = *entries[i];
      uint64_t a = std::max(off, e.off), b = std::min(off + len, e.off + e.len);
      if (e.kind == Kind::kWrite) memcpy(buf + (a - off), e.data.data() + (a - e.off), b - a);
      else memset(buf + (a - off), 0, b - a);
    }
  };
  // Newest entry covering the whole range: no blob read needed.
  for (size_t i = over.size(); i-- > 0;) {
    if (over[i]->off <= off && over[i]->off + over[i]->len >= off + len) {
      c_.cache_hits++;
      overlay(over, i);
      return done(0);
    }
  }
  blob_->Read(off, len, buf, [over = std::move(over), overlay, done = std::move(done)](int res) {
    if (res == 0) overlay(over, 0);
    done(res);
  });
}

void FastAckDevice::Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) {
  if (info_.read_only) return done(-EROFS);
  c_.writes++;
  c_.bytes_written += len;
  Submit(Admit{Kind::kWrite, false, fua, off, len, buf, std::move(done)});
}

void FastAckDevice::Flush(Done done) { Submit(Admit{Kind::kWrite, true, false, 0, 0, nullptr, std::move(done)}); }

void FastAckDevice::DurableFlush(Done done) {
  Submit(Admit{Kind::kWrite, true, true, 0, 0, nullptr, std::move(done)});
}

void FastAckDevice::Trim(uint64_t off, uint32_t len, Done done) {
  if (info_.read_only) return done(-EROFS);
  c_.trims++;
  Submit(Admit{Kind::kTrim, false, false, off, len, nullptr, std::move(done)});
}

void FastAckDevice::Zero(uint64_t off, uint32_t len, bool may_trim, bool, Done done) {
  if (info_.read_only) return done(-EROFS);
  c_.zeroes++;
  Submit(Admit{may_trim ? Kind::kTrim : Kind::kZero, false, false, off, len, nullptr, std::move(done)});
}

void FastAckDevice::BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) {
  std::vector<EntryPtr> over = Overlapping(off, len);
  blob_->Allocation(off, len, [off, over = std::move(over), done = std::move(done)](
                                  int res, std::vector<BlockExtent> ext) {
    if (res < 0 || over.empty()) return done(res, std::move(ext));
    // Per-4 KiB flags over the prefix the blob answered for, then overlay
    // the cache (writes are data, trims holes, zeroes zero) and compress.
    constexpr uint64_t kG = 4096;
    uint64_t total = 0;
    for (auto& e : ext) total += e.length;
    uint64_t first = off / kG, last = (off + total + kG - 1) / kG;
    std::vector<uint32_t> g(last - first, kExtentHole | kExtentZero);
    uint64_t pos = off;
    for (auto& e : ext) {
      for (uint64_t x = pos / kG; x * kG < pos + e.length; ++x) g[x - first] = e.flags;
      pos += e.length;
    }
    for (const EntryPtr& e : over) {
      uint32_t f = e->kind == Kind::kWrite ? 0 : e->kind == Kind::kZero ? kExtentZero
                                                                        : (kExtentHole | kExtentZero);
      uint64_t a = std::max(e->off, off), b = std::min(e->off + e->len, off + total);
      for (uint64_t x = a / kG; x * kG < b; ++x) g[x - first] = e->kind == Kind::kWrite ? 0 : (g[x - first] & f);
    }
    std::vector<BlockExtent> out;
    pos = off;
    for (uint64_t x = first; x < last && pos < off + total; ++x) {
      uint64_t next = std::min((x + 1) * kG, off + total);
      if (!out.empty() && out.back().flags == g[x - first]) out.back().length += next - pos;
      else out.push_back({next - pos, g[x - first]});
      pos = next;
    }
    done(0, std::move(out));
  });
}

void FastAckDevice::Quiesce(Done done) {
  // Close the open epoch (an implicit flush) and wait for everything.
  auto it = epochs_.find(curr_epoch_);
  if (it != epochs_.end() && !it->second.entries.empty()) curr_epoch_++;
  quiesce_waiters_.push_back(std::move(done));
  MaybeRetire();
}

std::string FastAckDevice::CountersText() const {
  std::string t;
  auto kv = [&t](const char* k, uint64_t v) { AppendKv(&t, k, v); };
  kv("mode_fast_ack", 1);
  kv("reads", c_.reads);
  kv("writes", c_.writes);
  kv("flushes", c_.flushes);
  kv("trims", c_.trims);
  kv("zeroes", c_.zeroes);
  kv("fua_writes", c_.fua);
  kv("bytes_written", c_.bytes_written);
  kv("curr_epoch", curr_epoch_);
  kv("issue_epoch", issue_epoch_);
  kv("unretired_epochs", curr_epoch_ - issue_epoch_);
  kv("buffered_bytes", buffered_bytes_);
  kv("max_buffered_bytes", c_.max_buffered);
  kv("epochs_retired", c_.epochs_retired);
  kv("throttled_requests", c_.throttled);
  kv("write_retries", c_.retries);
  kv("cache_hits", c_.cache_hits);
  return t;
}

}  // namespace flurry
