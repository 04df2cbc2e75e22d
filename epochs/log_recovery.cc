// SPDX-License-Identifier: Apache-2.0
//
// LogDevice::Open(): load the newest valid checkpoint, roll forward in
// permutation order, start a new generation.
//
// 1. Read both slot headers. A header with a good checksum but another
//    geometry fails Open (-EINVAL: wrong blob or a resized volume). Try the
//    bodies newest first; the first whose checksum and consistency checks
//    pass is loaded. No valid header at all: a fresh blob — format it. Valid
//    headers but no valid body: -EIO (never format over a volume).
// 2. Roll forward from the checkpoint's position c with generation G, step
//    s = c, c+1, ... while s < c + P, with p = perm(s) and M the maps so far:
//      p allocated in M -> the writer skipped step s (allocation rule,
//                          log_device.cc): continue without looking;
//      trailer valid, gen == G, step == s, epoch > checkpoint's
//        lastDurableEpoch, epoch >= the previous block's, data checksum ok
//                       -> apply it (map its virtual block to p, or unmap)
//                          and continue;
//      otherwise        -> stop: step s was never written, or torn.
//    Reads are issued a window ahead and checked strictly in step order.
// 3. Resume at the stop step with generation G+1 and current epoch =
//    max(lastDurableEpoch, last applied epoch) + 1, and write a checkpoint
//    of the recovered state (new generation, next sequence, other slot)
//    before serving IO. Read-only opens skip 3's write.
//
// Why the result is prefix consistent in epochs (Blizzard §2.5/§2.7):
// - Steps are allocated in arrival order (requests are admitted FIFO) and
//   epochs only grow with arrival, so epochs are non-decreasing in step
//   order.
// - The skip decisions replay exactly: the writer skips step s iff perm(s)
//   is in the map as it is after every step < s; roll-forward computes the
//   same map, having applied exactly the steps < s. (Blocks whose write
//   was held are not skipped, and are not in that map.)
// - Every step in [c, stop) was written and is intact: a block written at a
//   step >= c is not overwritten before a checkpoint newer than that step is
//   durable (lap rule: the writer stays below c + P; and a block is
//   rewritten only once the write that freed it is applied, i.e. durable:
//   a step may take it earlier, but its write is held until then).
// - So the recovered state is the checkpoint (steps < c) plus exactly the
//   steps in [c, stop): a prefix of all writes in arrival order. A prefix in
//   arrival order is a prefix in epochs: with e the epoch of step `stop`,
//   every write of epochs < e is present, some of epoch e, none later.
// - Later blocks that did land (out of order, in the crash window) are
//   ignored, and can never come back: the recovery checkpoint moves to
//   generation G+1, and only blocks of the checkpoint's generation are
//   accepted, so a stale G block at a later step cannot pass for a G+1 one.
// - Nothing acknowledged as durable is lost: a FUA reply (and
//   last_durable_epoch()) only covers applied steps, and every applied step
//   is < stop (it was written and is intact, and every step before it is).
// Idempotence: until the recovery checkpoint is durable the blob is exactly
// as the crash left it (no block is written before), so a crash then makes
// the next recovery do the same thing; once it is durable, the next
// recovery loads it, and at its position finds no block of the new
// generation — the same state again.
#include <algorithm>
#include <cstring>

#include "epochs/log_internal.h"

namespace flurry {

void LogDevice::Open(Done done) {
  if (opened_ || rec_) return done(-EINVAL);
  open_done_ = std::move(done);
  rec_ = std::make_unique<Recovery>();
  rec_->start = std::chrono::steady_clock::now();
  rec_->hdr_pending = 2;
  for (unsigned i = 0; i < 2; ++i) {
    rec_->hdr[i] = AlignedBuffer(kLogPage);
    blob_->Read(g_.SlotOffset(i), kLogPage, rec_->hdr[i].data(), [this, i](int res) {
      rec_->hdr_res[i] = res;
      if (--rec_->hdr_pending == 0) OnHeaders();
    });
  }
}

void LogDevice::OnHeaders() {
  Recovery& r = *rec_;
  for (unsigned i = 0; i < 2; ++i) {
    if (r.hdr_res[i] < 0) {
      report_ = "log recovery: reading checkpoint slot " + std::to_string(i) + " failed: " +
                errstr(r.hdr_res[i]);
      return FinishOpen(r.hdr_res[i]);
    }
    auto h = DecodeCheckpointHeader(r.hdr[i].data());
    if (!h && h.err() == -EPROTONOSUPPORT) {
      report_ = "log recovery: checkpoint slot " + std::to_string(i) +
                " has a newer format than this flurry-disk reads; use a newer flurry-disk";
      return FinishOpen(-EPROTONOSUPPORT);
    }
    if (!h) continue;
    r.any_valid_header = true;
    if (!CheckpointMatches(*h, g_)) {
      report_ = "log recovery: checkpoint slot " + std::to_string(i) +
                " was written for another volume geometry (block size, size or permutation)";
      return FinishOpen(-EINVAL);
    }
    r.candidates.emplace_back(*h, i);
  }
  std::sort(r.candidates.begin(), r.candidates.end(),
            [](const auto& a, const auto& b) { return a.first.seq > b.first.seq; });
  LoadSlot(0);
}

void LogDevice::LoadSlot(size_t candidate) {
  Recovery& r = *rec_;
  if (candidate >= r.candidates.size()) {
    if (r.any_valid_header) {
      report_ = "log recovery: no checkpoint slot is valid (bodies fail their checksums)";
      return FinishOpen(-EIO);
    }
    // Fresh blob: an empty log at position 0, generation 0 (so the first
    // writer is generation 1).
    r.formatted = true;
    r.ckpt = CheckpointHeader{};
    maps_ = LogMaps::Empty(g_);
    r.cur = LcgPermutation(g_.pblocks, g_.DefaultRun());
    r.ckpt.pos_x = r.cur.value();
    r.ckpt.run_blocks = r.cur.run();
    ckpt_seq_ = 0;
    ckpt_slot_ = 1;
    r.stop_reason = "fresh blob";
    r.stopped = true;
    return FinishRoll();
  }
  const auto [h, slot] = r.candidates[candidate];
  r.body = AlignedBuffer(g_.slot_bytes - kLogPage);
  blob_->Read(g_.SlotOffset(slot) + kLogPage, g_.slot_bytes - kLogPage, r.body.data(),
              [this, candidate, h, slot](int res) {
                Recovery& r = *rec_;
                if (res < 0) {
                  report_ = "log recovery: reading checkpoint slot " + std::to_string(slot) +
                            " failed: " + errstr(res);
                  return FinishOpen(res);
                }
                auto maps = DecodeCheckpointBody(r.body.data(), h, g_);
                if (!maps) return LoadSlot(candidate + 1);
                maps_ = std::move(*maps);
                r.body = AlignedBuffer();
                r.ckpt = h;
                ckpt_seq_ = h.seq;
                ckpt_slot_ = slot;
                StartRoll();
              });
}

void LogDevice::StartRoll() {
  Recovery& r = *rec_;
  r.cur = LcgPermutation(g_.pblocks, r.ckpt.run_blocks, r.ckpt.pos_x, r.ckpt.pos_step);
  r.ahead = r.cur;
  r.limit = r.ckpt.pos_step + g_.pblocks;
  RollPump();
}

void LogDevice::RollPump() {
  Recovery& r = *rec_;
  if (r.pumping) {
    r.again = true;
    return;
  }
  r.pumping = true;
  do {
    r.again = false;
    RollProcess();
    while (!r.stopped && r.window.size() < Recovery::kWindow && r.ahead.step() < r.limit) {
      auto s = std::make_unique<Recovery::Slot>();
      s->step = r.ahead.step();
      s->phys = r.ahead.value();
      s->buf = AlignedBuffer(g_.expanded);
      Recovery::Slot* sp = s.get();
      r.window.push_back(std::move(s));
      r.ahead.Advance();
      r.outstanding++;
      r.reads++;
      blob_->Read(g_.BlockOffset(sp->phys), g_.expanded, sp->buf.data(), [this, sp](int res) {
        sp->done = true;
        sp->res = res;
        rec_->outstanding--;
        RollPump();
      });
    }
    if (!r.stopped && r.window.empty() && r.cur.step() >= r.limit) {
      r.stopped = true;
      r.stop_reason = "a full lap past the checkpoint (the writer never goes further)";
    }
  } while (r.again);
  r.pumping = false;
  if (r.stopped && r.outstanding == 0) FinishRoll();
}

void LogDevice::RollProcess() {
  Recovery& r = *rec_;
  while (!r.stopped && !r.window.empty() && r.window.front()->done) {
    const Recovery::Slot& s = *r.window.front();
    if (maps_.Allocated(s.phys)) {  // the writer skipped this step
      r.skipped++;
    } else {
      if (s.res < 0) {
        r.err = s.res;
        r.stopped = true;
        r.stop_reason = "read error: " + errstr(s.res);
        return;
      }
      const uint8_t* data = s.buf.data();
      auto t = DecodeTrailer(data + g_.block);
      const char* why = nullptr;
      if (!t) why = "no valid trailer (never written, or torn)";
      else if (t->geometry_tag != g_.Tag()) why = "trailer of another geometry";
      else if (t->gen != r.ckpt.gen) why = "block of another generation";
      else if (t->step != s.step) why = "block of another step (an earlier lap)";
      else if (t->vblock >= g_.vblocks) why = "virtual block out of range";
      else if (t->epoch <= r.ckpt.last_durable_epoch) why = "epoch not newer than the checkpoint's";
      else if (t->epoch < r.last_epoch) why = "epoch older than the previous block's";
      else if (!TrailerMatchesData(*t, data, g_.block)) why = "data checksum mismatch (torn write)";
      if (why) {
        r.stopped = true;
        r.stop_reason = why;
        return;
      }
      const uint32_t old = maps_.block_map[t->vblock];
      if (old != kUnmapped) maps_.Clear(old);
      if (t->flags & kTrailerTrim) {
        maps_.block_map[t->vblock] = kUnmapped;
        r.unmaps++;
      } else {
        maps_.block_map[t->vblock] = static_cast<uint32_t>(s.phys);
        maps_.Set(s.phys);
      }
      if (r.rolled++ == 0) r.first_epoch = t->epoch;
      r.last_epoch = t->epoch;
    }
    r.window.pop_front();
    r.cur.Advance();
  }
}

void LogDevice::FinishRoll() {
  Recovery& r = *rec_;
  if (r.finished) return;
  r.finished = true;
  r.window.clear();  // no reads are outstanding
  if (r.err < 0) {
    report_ = "log recovery: roll-forward failed at step " + std::to_string(r.cur.step()) + ": " +
              r.stop_reason;
    return FinishOpen(r.err);
  }
  alloc_ = r.cur;
  cur_epoch_ = std::max(r.ckpt.last_durable_epoch, r.last_epoch) + 1;
  ckpt_step_ = r.ckpt.pos_step;
  gen_ = r.ckpt.gen + 1;
  if (info_.read_only) {
    gen_ = r.ckpt.gen;
    return FinishOpen(0);
  }
  StartCheckpoint([this](int res) {
    if (res < 0) report_ = "log recovery: writing the recovery checkpoint failed: " + errstr(res);
    FinishOpen(res);
  });
}

void LogDevice::FinishOpen(int res) {
  Recovery& r = *rec_;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r.start).count();
  if (res == 0) {
    std::string t = "log recovery: ";
    if (r.formatted) {
      t += "no checkpoint, formatted an empty log (V=" + std::to_string(g_.vblocks) +
           " P=" + std::to_string(g_.pblocks) + " B=" + std::to_string(g_.block) + ")";
    } else {
      t += "checkpoint seq=" + std::to_string(r.ckpt.seq) + " gen=" + std::to_string(r.ckpt.gen) +
           " position=" + std::to_string(r.ckpt.pos_step) +
           " last_durable_epoch=" + std::to_string(r.ckpt.last_durable_epoch) + "; rolled forward " +
           std::to_string(r.rolled) + " blocks (" + std::to_string(r.unmaps) + " unmaps, " +
           std::to_string(r.skipped) + " steps skipped, " + std::to_string(r.reads) +
           " reads) to position " + std::to_string(alloc_.step());
      if (r.rolled) {
        t += ", epochs " + std::to_string(r.first_epoch) + ".." + std::to_string(r.last_epoch);
      }
      t += "; stopped: " + r.stop_reason;
    }
    t += "; now gen=" + std::to_string(gen_) + " epoch=" + std::to_string(cur_epoch_) +
         (info_.read_only ? " (read-only)" : "") + "; took " + std::to_string(ms) + " ms";
    report_ = t;
    opened_ = true;
    ArmTimer();
  }
  r.body = AlignedBuffer();
  Done d = std::move(open_done_);
  d(res);
}

}  // namespace flurry
