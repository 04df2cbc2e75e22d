// SPDX-License-Identifier: Apache-2.0
//
// LogDevice's private records, shared by log_device.cc, checkpoint.cc and
// log_recovery.cc. Not part of any interface.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "epochs/log_device.h"

namespace flurry {

// Fan-in of several completions into one callback.
struct LogJoin {
  int pending = 1;  // held by the issuer until every part is issued
  int err = 0;
  BlockDevice::Done done;
  void Arrive(int res) {
    if (res < 0 && err == 0) err = res;
    if (--pending == 0) done(err);
  }
};

// One expanded-block write: from admission (a step and a physical block are
// allocated, the write is issued or held) until it is applied to the maps.
struct LogDevice::BlockOp {
  uint64_t req_id = 0;
  uint64_t vblock = 0;
  uint64_t epoch = 0;
  bool unmap = false;    // trailer-only "unmapped" marker (trim/zero)
  uint64_t step = 0, phys = 0;
  bool durable = false;
  bool held = false;     // in held_: not issued until phys is free (allocation rule)
  int attempts = 0;
  AlignedBuffer buf;     // B data + trailer page; unmap: trailer page only
};

// The old contents of a partially written block (read-before-write).
struct LogDevice::EdgeBase {
  enum class State { kNone, kReading, kReady, kFailed };
  enum class Origin { kCache, kZero, kBlob };  // where the base came from
  uint64_t vblock = 0;
  State state = State::kNone;
  Origin origin = Origin::kBlob;
  uint64_t phys = 0;     // the physical block read (or handed, see below)
  AlignedBuffer buf;     // E bytes: data + trailer, checked on arrival
  // Not prefetched at submission because an unapplied or queued write
  // changes the block first: registered in LogDevice::deferred_bases_, so
  // that applying the block's newest write hands this base its image
  // (state kReady, phys = where it was applied) instead of a blob read at
  // admission, which would hold up the whole queue.
  bool deferred = false;
};

// A Write/Trim/Zero: admitted whole and in arrival order.
struct LogDevice::Request {
  uint64_t id = 0, epoch = 0;
  uint64_t off = 0;
  uint32_t len = 0;
  const uint8_t* data = nullptr;  // nullptr: zeros (trim/zero)
  bool fua = false;
  Done done;
  // Acknowledged before admission (log_device.h "Early acknowledgement"):
  // data then points into copy, which lives until the request is built.
  bool acked_early = false;
  bool base_unplanned = false;  // a base needs a blob read not started at submission
  std::unique_ptr<uint8_t[]> copy;
  uint64_t first_v = 0, last_v = 0;
  std::vector<EdgeBase> bases;    // reserved to 2: addresses are stable
  std::vector<std::unique_ptr<BlockOp>> ops;
  size_t next_op = 0;             // ops[< next_op] are admitted
  bool built = false;
  uint64_t ops_bytes = 0;
  bool Reading() const {
    for (const EdgeBase& b : bases)
      if (b.state == EdgeBase::State::kReading) return true;
    return false;
  }
};

// Roll-forward state: a window of speculative reads of the next steps,
// processed strictly in step order.
struct LogDevice::Recovery {
  static constexpr size_t kWindow = 16;
  struct Slot {
    uint64_t step = 0, phys = 0;
    bool done = false;
    int res = 0;
    AlignedBuffer buf;
  };
  std::chrono::steady_clock::time_point start;
  // Checkpoint slots.
  AlignedBuffer hdr[2];
  int hdr_res[2] = {0, 0};
  int hdr_pending = 0;
  std::vector<std::pair<CheckpointHeader, unsigned>> candidates;  // (header, slot), newest first
  bool any_valid_header = false;
  AlignedBuffer body;
  CheckpointHeader ckpt;
  bool formatted = false;
  // Roll forward.
  LcgPermutation cur, ahead;
  uint64_t limit = 0;  // ckpt.pos_step + P: the writer never goes further
  std::deque<std::unique_ptr<Slot>> window;
  size_t outstanding = 0;
  bool stopped = false, pumping = false, again = false, finished = false;
  int err = 0;
  std::string stop_reason;
  uint64_t rolled = 0, unmaps = 0, skipped = 0, reads = 0;
  uint64_t first_epoch = 0, last_epoch = 0;
};

}  // namespace flurry
