// SPDX-License-Identifier: Apache-2.0
//
// LogDevice: creation, reads through the write cache, block status, the
// pump that drives admission and application (log_write.cc), Quiesce and
// counters. See log_device.h for the contract.
#include "epochs/log_device.h"

#include <algorithm>
#include <cstring>

#include "common/kv_text.h"
#include "common/units.h"
#include "epochs/log_internal.h"

namespace flurry {

Result<std::unique_ptr<LogDevice>> LogDevice::Create(const VolumeInfo& vol, BlobIo* blob,
                                                     const EngineOptions& opts, Status* why) {
  using R = Result<std::unique_ptr<LogDevice>>;
  auto g = LogGeometry::For(vol.size, vol.block_size);
  if (!g) {
    *why = Status::Error(-EINVAL, "volume '" + vol.name + "': log mode needs a power-of-two block "
                                  "size of at least 4 KiB and at most 2^32-2 physical blocks");
    return R::error(-EINVAL);
  }
  if (blob->size() < g->blob_bytes) {
    *why = Status::Error(-EINVAL, "volume '" + vol.name + "': log mode needs a blob of " +
                                      std::to_string(g->blob_bytes) + " bytes, this one has " +
                                      std::to_string(blob->size()));
    return R::error(-EINVAL);
  }
  return std::unique_ptr<LogDevice>(new LogDevice(vol, *g, blob, opts));
}

LogDevice::LogDevice(const VolumeInfo& vol, const LogGeometry& g, BlobIo* blob,
                     const EngineOptions& opts)
    : vol_(vol), g_(g), blob_(blob), opts_(opts), maps_(LogMaps::Empty(g)), alloc_(g.pblocks, g.DefaultRun()) {
  info_.size = vol.size;
  info_.min_block = 1;
  info_.max_io = 16u << 20;
  info_.preferred_block = std::min<uint32_t>(g.block, info_.max_io);
  info_.read_only = opts.read_only;
  info_.description = "flurry volume " + vol.name + " (" + FormatSize(vol.size) + ", R=" +
                      std::to_string(vol.replicas) + ", log: prefix consistent, flush is not durable)";
}

LogDevice::~LogDevice() {
  *alive_ = false;  // a posted FlushIssues() may outlive a crashed (destroyed) engine
  if (opts_.loop && timer_.valid()) opts_.loop->CancelTimer(timer_);
}

uint64_t LogDevice::last_durable_epoch() const {
  uint64_t e = cur_epoch_;
  if (!log_.empty()) e = std::min(e, log_.front()->epoch);
  if (!queue_.empty()) e = std::min(e, queue_.front()->epoch);
  return e - 1;
}

// ---- Reads ----

void LogDevice::Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) {
  if (!opened_) return done(-EIO);
  if (len == 0 || off + len > g_.volume_size) return done(-EINVAL);
  c_.reads++;
  c_.bytes_read += len;
  if (EarlyAckedQueuedOverlaps(off, len)) {
    c_.parked_reads++;
    parked_.push_back({off, len, [this, off, len, buf, done = std::move(done)]() mutable {
                         ReadNow(off, len, buf, std::move(done));
                       }});
    return;
  }
  ReadNow(off, len, buf, std::move(done));
}

// Runs the parked reads and block statuses that no early-acked queued
// request overlaps any more.
void LogDevice::RunParked() {
  if (parked_.empty()) return;
  std::vector<std::function<void()>> ready;
  for (auto it = parked_.begin(); it != parked_.end();) {
    if (EarlyAckedQueuedOverlaps(it->off, it->len)) {
      ++it;
    } else {
      ready.push_back(std::move(it->run));
      it = parked_.erase(it);
    }
  }
  for (auto& f : ready) f();
}

void LogDevice::ReadNow(uint64_t off, uint32_t len, uint8_t* buf, Done done) {
  auto j = std::make_shared<LogJoin>();
  j->done = std::move(done);
  const uint64_t B = g_.block;
  for (uint64_t v = off / B; v * B < off + len; ++v) {
    const uint64_t lo = std::max(off, v * B) - v * B, hi = std::min(off + len, (v + 1) * B) - v * B;
    uint8_t* dst = buf + (v * B + lo - off);
    if (auto it = vstate_.find(v); it != vstate_.end()) {
      const BlockOp* op = it->second.latest;
      if (op->unmap) memset(dst, 0, hi - lo);
      else memcpy(dst, op->buf.data() + lo, hi - lo);
      c_.read_cache_hits++;
      continue;
    }
    const uint32_t p = maps_.block_map[v];
    if (p == kUnmapped) {
      memset(dst, 0, hi - lo);
      continue;
    }
    Pin(p);
    j->pending++;
    blob_->Read(g_.BlockOffset(p) + lo, hi - lo, dst, [this, j, p](int res) {
      if (res < 0) c_.errors++;
      Unpin(p);
      j->Arrive(res);
    });
  }
  j->Arrive(0);
}

void LogDevice::Unpin(uint64_t phys) {
  auto it = pins_.find(phys);
  if (--it->second == 0) {
    pins_.erase(it);
    ReleaseHeld(phys);
    if (!queue_.empty()) Pump();
  }
}

void LogDevice::BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) {
  if (!opened_) return done(-EIO, {});
  if (len == 0 || off + len > g_.volume_size) return done(-EINVAL, {});
  if (EarlyAckedQueuedOverlaps(off, len)) {
    parked_.push_back({off, len, [this, off, len, done = std::move(done)]() mutable {
                         BlockStatusNow(off, len, std::move(done));
                       }});
    return;
  }
  BlockStatusNow(off, len, std::move(done));
}

void LogDevice::BlockStatusNow(uint64_t off, uint32_t len, ExtentsDone done) {
  std::vector<BlockExtent> out;
  const uint64_t B = g_.block;
  for (uint64_t v = off / B; v * B < off + len; ++v) {
    const uint64_t a = std::max(off, v * B), b = std::min<uint64_t>(off + len, (v + 1) * B);
    bool mapped;
    if (auto it = vstate_.find(v); it != vstate_.end()) mapped = !it->second.latest->unmap;
    else mapped = maps_.block_map[v] != kUnmapped;
    const uint32_t f = mapped ? 0 : (kExtentHole | kExtentZero);
    if (!out.empty() && out.back().flags == f) out.back().length += b - a;
    else out.push_back({b - a, f});
  }
  done(0, std::move(out));
}

// ---- Writes ----

void LogDevice::Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) {
  c_.writes++;
  c_.bytes_written += len;
  if (fua) c_.fua_writes++;
  Submit(off, len, buf, fua, std::move(done));
}

void LogDevice::Trim(uint64_t off, uint32_t len, Done done) {
  c_.trims++;
  Submit(off, len, nullptr, false, std::move(done));
}

void LogDevice::Zero(uint64_t off, uint32_t len, bool, bool, Done done) {
  c_.zeroes++;
  Submit(off, len, nullptr, false, std::move(done));
}

void LogDevice::Flush(Done done) {
  c_.flushes++;
  if (failed_ < 0) return done(failed_);
  cur_epoch_++;
  done(0);
}

void LogDevice::DurableFlush(Done done) {
  c_.flushes++;
  if (!opened_) return done(-EIO);
  if (info_.read_only) return done(0);
  if (failed_ < 0) return done(failed_);
  fua_waiters_.push_back({cur_epoch_++, std::move(done)});
  Pump();
}

void LogDevice::Pump() {
  if (pumping_) {
    pump_again_ = true;
    return;
  }
  pumping_ = true;
  do {
    pump_again_ = false;
    if (opened_) {
      ApplyDurable();
      Admit();
      RunParked();
      WakeWaiters();
      MaybeCheckpoint();
    }
    std::vector<std::pair<Done, int>> acks;
    acks.swap(acks_);
    for (auto& [d, res] : acks) d(res);  // may re-enter: pump_again_
  } while (pump_again_ || !acks_.empty());
  pumping_ = false;
}

void LogDevice::Quiesce(Done done) {
  if (info_.read_only || !opened_) return done(0);
  if (failed_ < 0) return done(failed_);
  quiesce_waiters_.push_back({next_req_id_, std::move(done)});
  Pump();
}

std::string LogDevice::CountersText() const {
  std::string t;
  auto kv = [&t](const char* k, uint64_t v) { AppendKv(&t, k, v); };
  kv("reads", c_.reads);
  kv("writes", c_.writes);
  kv("flushes", c_.flushes);
  kv("trims", c_.trims);
  kv("zeroes", c_.zeroes);
  kv("fua_writes", c_.fua_writes);
  kv("bytes_read", c_.bytes_read);
  kv("bytes_written", c_.bytes_written);
  kv("read_cache_hits", c_.read_cache_hits);
  kv("partial_block_writes", c_.partial_block_writes);
  kv("rmw_base_cache", c_.rmw_base_cache);
  kv("rmw_base_blob", c_.rmw_base_blob);
  kv("rmw_base_zero", c_.rmw_base_zero);
  kv("blocks_logged", c_.blocks_logged);
  kv("unmaps_logged", c_.unmaps_logged);
  kv("blocks_applied", c_.blocks_applied);
  kv("steps_skipped", c_.steps_skipped);
  kv("held_writes", c_.held_writes);
  kv("lap_waits", c_.lap_waits);
  kv("memory_waits", c_.memory_waits);
  kv("epoch_waits", c_.epoch_waits);
  kv("checkpoints", c_.checkpoints);
  kv("checkpoint_errors", c_.checkpoint_errors);
  kv("write_retries", c_.write_retries);
  kv("errors", c_.errors);
  kv("early_acks", c_.early_acks);
  kv("parked_reads", c_.parked_reads);
  kv("coalesced_writes", c_.coalesced_writes);
  kv("rmw_base_handed", c_.rmw_base_handed);
  kv("rmw_base_late", c_.rmw_base_late);
  kv("current_epoch", cur_epoch_);
  kv("last_durable_epoch", last_durable_epoch());
  kv("buffered_bytes", BufferedBytes());
  kv("unapplied_blocks", log_.size());
  kv("queued_requests", queue_.size());
  kv("position", alloc_.step());
  kv("checkpoint_position", ckpt_step_);
  kv("generation", gen_);
  kv("failed", failed_ < 0 ? 1 : 0);
  return t;
}

}  // namespace flurry
