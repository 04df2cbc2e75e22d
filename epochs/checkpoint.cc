// SPDX-License-Identifier: Apache-2.0
//
// LogDevice checkpoints: the applied maps, the permutation position they
// correspond to, the generation and lastDurableEpoch, written to the slot
// not holding the newest durable checkpoint — body first, header (with the
// body's checksum) last, so a torn checkpoint never has a valid header and
// body together and the other slot stays intact. One at a time.
//
// What a checkpoint at position c promises: every step < c is applied
// (durable, in the maps) or was skipped. Roll-forward starts at c. The
// writer never allocates step c + P or later (lap rule, log_device.cc): a
// physical block written at a step >= c is then never overwritten before a
// newer checkpoint is durable, so roll-forward finds every step it needs.
// Recovery may load the newest durable checkpoint or, if it fully landed,
// the one being written — never an older one, because the one being written
// overwrites the older slot; so "c" is the newest durable checkpoint.
#include <cstring>

#include "common/checksum.h"
#include "epochs/log_internal.h"

namespace flurry {

// The position the applied state corresponds to: the first unapplied step,
// or the allocation cursor if everything is applied (the steps between the
// last write and it were skips, which recovery replays the same way).
LogDevice::Position LogDevice::DurablePosition() const {
  if (!log_.empty()) return {log_.front()->phys, log_.front()->step};
  return {alloc_.value(), alloc_.step()};
}

void LogDevice::Checkpoint(Done done) {
  if (info_.read_only) return done(-EROFS);
  if (failed_ < 0) return done(failed_);
  ckpt_waiters_.push_back(std::move(done));
  Pump();
}

void LogDevice::MaybeCheckpoint() {
  if (ckpt_in_flight_ || info_.read_only) return;
  if (failed_ < 0) {
    for (Done& d : ckpt_waiters_) Ack(std::move(d), failed_);
    ckpt_waiters_.clear();
    return;
  }
  const Position pos = DurablePosition();
  const bool progress = pos.step > ckpt_step_;
  const bool half_lap = alloc_.step() - ckpt_step_ >= g_.pblocks / 2;
  if (!ckpt_waiters_.empty() && !progress) {
    for (Done& d : ckpt_waiters_) Ack(std::move(d), 0);  // nothing new to record
    ckpt_waiters_.clear();
    return;
  }
  if (!progress) return;
  // Periodic checkpoints pay for themselves: only once rolling forward over
  // the steps since the last one would read more than a checkpoint writes.
  const bool due = ckpt_timer_due_ && (pos.step - ckpt_step_) * g_.expanded >= g_.slot_bytes;
  if (!ckpt_waiters_.empty() || ckpt_wanted_ || half_lap || due) {
    ckpt_timer_due_ = false;
    std::vector<Done> waiters;
    waiters.swap(ckpt_waiters_);
    StartCheckpoint([this, waiters = std::move(waiters)](int res) mutable {
      for (Done& d : waiters) Ack(std::move(d), res);
      Pump();
    });
  }
}

// Captures the applied state now and writes it; done(res) once durable.
void LogDevice::StartCheckpoint(Done done) {
  ckpt_in_flight_ = true;
  ckpt_wanted_ = false;
  const Position pos = DurablePosition();
  const LcgPermutation::Params lp = alloc_.params();
  CheckpointHeader h;
  h.block_size = g_.block;
  h.geometry_tag = g_.Tag();
  h.vblocks = g_.vblocks;
  h.pblocks = g_.pblocks;
  h.seq = ckpt_seq_ + 1;
  h.gen = gen_;
  h.lcg_a = lp.a;
  h.lcg_c = lp.c;
  h.lcg_m = lp.m;
  h.run_blocks = alloc_.run();
  h.pos_x = pos.x;
  h.pos_step = pos.step;
  h.last_durable_epoch = last_durable_epoch();
  h.body_bytes = g_.body_bytes;
  ckpt_buf_ = AlignedBuffer(g_.slot_bytes);
  uint8_t* body = ckpt_buf_.data() + kLogPage;
  EncodeCheckpointBody(maps_, g_, body);
  h.body_sum = Checksum(body, g_.body_bytes);
  EncodeCheckpointHeader(h, ckpt_buf_.data());
  const unsigned slot = ckpt_slot_ ^ 1;
  const uint64_t off = g_.SlotOffset(slot);
  auto finish = [this, h, slot, done = std::move(done)](int res) mutable {
    ckpt_in_flight_ = false;
    ckpt_buf_ = AlignedBuffer();  // 4V + P/8 bytes: not kept between checkpoints
    if (res < 0) {
      c_.checkpoint_errors++;
      c_.errors++;
      if (++ckpt_failures_ >= kMaxAttempts) failed_ = failed_ < 0 ? failed_ : res;
    } else {
      ckpt_failures_ = 0;
      ckpt_seq_ = h.seq;
      ckpt_slot_ = slot;
      ckpt_step_ = h.pos_step;
      c_.checkpoints++;
    }
    done(res);
  };
  blob_->Write(off + kLogPage, g_.slot_bytes - kLogPage, body,
               [this, off, finish = std::move(finish)](int res) mutable {
                 if (res < 0) return finish(res);
                 blob_->Write(off, kLogPage, ckpt_buf_.data(), std::move(finish));
               });
}

void LogDevice::ArmTimer() {
  if (!opts_.loop || info_.read_only || opts_.checkpoint_interval_ms == 0) return;
  timer_ = opts_.loop->AddTimer(uint64_t{opts_.checkpoint_interval_ms} * 1'000'000, [this] {
    timer_ = {};
    ckpt_timer_due_ = true;
    Pump();
    ArmTimer();
  });
}

}  // namespace flurry
