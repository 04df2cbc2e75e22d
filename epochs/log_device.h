// SPDX-License-Identifier: Apache-2.0
//
// LogDevice: the `log` write mode (DESIGN.md "Write modes"; Blizzard §2.5
// "out-of-order commits"). Formats: epochs/log_format.h and
// docs/DISK_FORMAT.md "Log mode (expanded blocks and checkpoints)".
//
// Model
// - The volume is V virtual blocks of B = vol.block_size bytes, kept in
//   P = V + max(64, V/8) physical blocks of the blob. Physical blocks are
//   used in the order of a fixed permutation (LcgPermutation, lcg.h); a
//   position in it is a step number. Every write of a virtual block goes to
//   a fresh physical block as an expanded block (data + trailer: virtual
//   block, epoch, step, generation, checksums) and is issued at once, in
//   whatever epoch it is (with a loop: at the end of the loop iteration,
//   merged with adjacent block writes; see FlushIssues() in log_write.cc).
// - Epochs: the engine's current epoch counts Flush()es; each write is
//   tagged with the epoch current when it arrives. Flush() is acknowledged
//   at once. last_durable_epoch() is the highest E such that every write of
//   epochs <= E is durable.
// - The durable state — blockMap (virtual -> physical) and the allocation
//   bitmap — changes only in step order: a block write that completes out
//   of order waits until every earlier step has completed, then is applied.
//   Until applied, the newest write of each virtual block serves reads (the
//   write cache; it holds whole blocks, so partial overlaps are exact).
//
// Contract (Engine's, plus)
// - Write() done(0) when the write is in the cache and its block writes are
//   issued, or held until their physical blocks are free (allocation rule,
//   log_write.cc); FUA: a FUA write closes its epoch (as Flush() does) and replies
//   only when last_durable_epoch() >= its epoch, i.e. once it and every
//   earlier write is durable. Flush() always done(0) (prefix consistency,
//   not durability) unless the engine has failed.
// - Early acknowledgement: a non-FUA Write/Trim/Zero that cannot be admitted
//   at once (it waits for a read-before-write base, or queues behind one
//   that does) is copied and acknowledged while queued, if the copy fits
//   in opts.max_buffered_bytes, its epoch is within
//   opts.max_unretired_epochs of last_durable_epoch(), its bases are
//   already being read (prefetched at submission) or come from the cache,
//   and fewer than kMaxEarlyAcked requests are acknowledged and queued —
//   so early-acked work is always in flight in parallel, never a long
//   serial backlog. Its epoch is the one
//   it arrived in, as always, so prefix consistency is unchanged; a Read()
//   or BlockStatus() overlapping such a queued request waits until it is
//   admitted (read-your-writes). Should its base read then fail, the write
//   can no longer be refused, so the engine fails (-EIO) instead.
// - Writes smaller than B, or not block aligned, read the rest of their edge
//   blocks first (from the cache, else the blob) — counted as
//   partial_block_writes / rmw_base_* in CountersText(). The blob read is
//   started at submission when nothing queued or unapplied changes the
//   block first; otherwise the base is handed the image of the block's
//   newest write when that is applied (rmw_base_handed), and only if it
//   was not is it read at admission (rmw_base_late). A failed base read
//   fails its write (-EIO), or the engine if the write was acknowledged
//   early.
// - Trim() and Zero() log, for each whole block, an "unmapped" marker (a
//   trailer-only block write); partial blocks are written with zeros. Both
//   read back as zeros; BlockStatus() reports unmapped blocks as holes.
//   Zero(may_trim=false) unmaps too: every physical block is reserved in
//   the blob already, so a later write can never fail for lack of space,
//   which is all NBD_CMD_FLAG_NO_HOLE promises; fast_only is always honoured.
// - Bounded memory: data of admitted, not yet applied blocks plus prefetched
//   read-before-write bases stay under opts.max_buffered_bytes (a single
//   request larger than that is admitted alone), and writes more than
//   opts.max_unretired_epochs epochs ahead of last_durable_epoch() wait.
//   Waiting requests are queued in arrival order, never dropped. Outside
//   that bound: the maps (4V + P/8 bytes), and while a checkpoint is being
//   written a copy of them.
// - Checkpoints (checkpoint.cc): when the writer has gone half a lap of the
//   permutation past the last one, in Quiesce(), on request (Checkpoint()),
//   and every opts.checkpoint_interval_ms when opts.loop is set — the
//   periodic one only once the steps applied since the last checkpoint hold
//   more bytes than a checkpoint (4V + P/8), so that it shortens recovery
//   by more than it costs. They only describe applied (durable) state.
// - Open() (log_recovery.cc) loads the newest valid checkpoint and rolls
//   forward (see there for the prefix-consistency and idempotence
//   argument), then writes a checkpoint with a new generation before any
//   IO. A blob with no checkpoint at all is formatted.
// - Errors: a block write is retried (kMaxAttempts); if it still fails the
//   engine fails: further writes, flushes and Quiesce() return the error,
//   reads go on. A read-before-write that fails fails its write (-EIO).
// Loop thread only, like every BlockDevice. Destroy it only with no IO in
// flight (after Quiesce() and the last reply).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/buffer.h"
#include "epochs/engine.h"
#include "epochs/lcg.h"
#include "epochs/log_format.h"

namespace flurry {

struct LogCounters {
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0, fua_writes = 0;
  uint64_t bytes_read = 0, bytes_written = 0, read_cache_hits = 0;
  uint64_t partial_block_writes = 0;  // blocks written read-before-write
  uint64_t rmw_base_cache = 0, rmw_base_blob = 0, rmw_base_zero = 0;
  uint64_t blocks_logged = 0, unmaps_logged = 0, blocks_applied = 0, steps_skipped = 0;
  uint64_t held_writes = 0, lap_waits = 0, memory_waits = 0, epoch_waits = 0;
  uint64_t checkpoints = 0, checkpoint_errors = 0, write_retries = 0, errors = 0;
  uint64_t early_acks = 0, parked_reads = 0;
  uint64_t coalesced_writes = 0;  // blob writes that carried several adjacent blocks
  uint64_t rmw_base_handed = 0;   // bases filled from a block image as it was applied
  uint64_t rmw_base_late = 0;     // bases read from the blob only at admission
};

class LogDevice : public Engine {
 public:
  static constexpr int kMaxAttempts = 4;  // per block write
  // At most this many early-acknowledged requests wait for admission.
  static constexpr uint64_t kMaxEarlyAcked = 1024;
  // Adjacent block writes issued together are merged up to this many bytes.
  static constexpr uint64_t kMaxCoalesceBytes = 1u << 20;
  static constexpr uint64_t kMaxIssuing = 8;
  // Checks geometry and blob size; does no IO (Open() does).
  static Result<std::unique_ptr<LogDevice>> Create(const VolumeInfo& vol, BlobIo* blob,
                                                   const EngineOptions& opts, Status* why);
  ~LogDevice() override;

  const BlockDeviceInfo& info() const override { return info_; }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override;
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) override;
  void Flush(Done done) override;
  // Closes the current epoch and replies once last_durable_epoch() covers it.
  void DurableFlush(Done done) override;
  void Trim(uint64_t off, uint32_t len, Done done) override;
  void Zero(uint64_t off, uint32_t len, bool may_trim, bool fast_only, Done done) override;
  void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) override;

  void Open(Done done) override;
  void Quiesce(Done done) override;
  std::string recovery_report() const override { return report_; }
  std::string CountersText() const override;

  // Writes a checkpoint of the applied state, started after this call (the
  // one in flight, if any, does not count). done(0) at once if nothing was
  // applied since the last one.
  void Checkpoint(Done done);

  const LogGeometry& geometry() const { return g_; }
  const LogCounters& counters() const { return c_; }
  uint64_t current_epoch() const { return cur_epoch_; }
  uint64_t last_durable_epoch() const;
  uint64_t generation() const { return gen_; }
  uint64_t position() const { return alloc_.step(); }
  uint64_t checkpoint_position() const { return ckpt_step_; }

 private:
  struct BlockOp;
  struct EdgeBase;
  struct Request;
  struct VState {  // a virtual block with admitted, unapplied writes
    BlockOp* latest = nullptr;
    uint32_t unapplied = 0;
  };
  struct QuiesceWaiter {
    uint64_t last_req;
    Done done;
  };
  struct FuaWaiter {
    uint64_t epoch;
    Done done;
  };
  struct Recovery;
  struct Parked {  // a read or block status waiting for early-acked writes
    uint64_t off, len;
    std::function<void()> run;
  };

  LogDevice(const VolumeInfo& vol, const LogGeometry& g, BlobIo* blob, const EngineOptions& opts);

  // IO path (log_device.cc).
  void Submit(uint64_t off, uint32_t len, const uint8_t* data, bool fua, Done done);
  void Pump();
  void Admit();
  void MaybeAckEarly(uint64_t id);
  bool EarlyAckedQueuedOverlaps(uint64_t off, uint64_t len) const;
  void RunParked();
  void ReadNow(uint64_t off, uint32_t len, uint8_t* buf, Done done);
  void BlockStatusNow(uint64_t off, uint32_t len, ExtentsDone done);
  enum class Step { kGo, kWait, kFailed };
  Step Build(Request& r);
  Step ResolveBase(EdgeBase& b, const uint8_t** src);
  void StartBaseRead(EdgeBase& b);
  Step Allocate(BlockOp& op);
  void Issue(BlockOp* op);
  void IssueNow(BlockOp* op);
  void FlushIssues();
  void OnWritten(BlockOp* op, int res);
  void ApplyDurable();
  void WakeWaiters();
  void Fail(int err);
  void Ack(Done done, int res) { acks_.emplace_back(std::move(done), res); }
  void Pin(uint64_t phys) { pins_[phys]++; }
  void Unpin(uint64_t phys);
  bool QueuedTouches(uint64_t v) const;
  // Bytes counted against opts_.max_buffered_bytes (log_device.h "Bounded memory").
  uint64_t BufferedBytes() const { return ops_bytes_ + prefetch_bytes_ + copy_bytes_; }
  void ForgetBase(EdgeBase& b);
  void ReleaseHeld(uint64_t p);
  void HandBases(const BlockOp& op);

  // Checkpoints (checkpoint.cc).
  struct Position {
    uint64_t x, step;
  };
  Position DurablePosition() const;
  void MaybeCheckpoint();
  void StartCheckpoint(Done done);
  void ArmTimer();

  // Recovery (log_recovery.cc).
  void OnHeaders();
  void LoadSlot(size_t candidate);
  void StartRoll();
  void RollPump();
  void RollProcess();
  void FinishRoll();
  void FinishOpen(int res);

  VolumeInfo vol_;
  LogGeometry g_;
  BlobIo* blob_;
  EngineOptions opts_;
  BlockDeviceInfo info_;
  LogCounters c_;
  bool opened_ = false;
  int failed_ = 0;  // < 0 once a block write failed for good

  // Durable (applied) state; maps_ is what a checkpoint writes.
  LogMaps maps_;
  std::unordered_set<uint64_t> pending_free_;  // applied blocks of VStates: freed on apply
  std::unordered_map<uint64_t, uint32_t> pins_;  // physical blocks being read
  std::unordered_map<uint64_t, BlockOp*> held_;  // allocated, not issued: p still applied or pinned

  // Write path state.
  LcgPermutation alloc_;  // next step to allocate
  uint64_t gen_ = 0;
  uint64_t cur_epoch_ = 1;
  uint64_t next_req_id_ = 0;
  std::deque<std::unique_ptr<Request>> queue_;  // not yet admitted, arrival order
  std::deque<std::unique_ptr<BlockOp>> log_;    // admitted, not applied, step order
  std::unordered_map<uint64_t, VState> vstate_;
  std::unordered_multimap<uint64_t, EdgeBase*> deferred_bases_;  // vblock -> queued base
  uint64_t ops_bytes_ = 0, prefetch_bytes_ = 0;
  uint64_t copy_bytes_ = 0;     // data of early-acked requests not yet built
  uint64_t early_queued_ = 0;   // early-acked requests in queue_
  std::deque<Parked> parked_;   // arrival order
  std::deque<FuaWaiter> fua_waiters_;
  std::vector<QuiesceWaiter> quiesce_waiters_;
  std::vector<std::pair<Done, int>> acks_;
  std::vector<BlockOp*> issue_batch_;  // to FlushIssues() at the end of this loop iteration
  uint64_t issuing_ = 0;               // blob writes FlushIssues() has in flight
  bool flush_posted_ = false;          // a FlushIssues() is posted to the loop
  bool flushing_ = false, flush_again_ = false;  // FlushIssues() running / asked again
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool pumping_ = false, pump_again_ = false;

  // Checkpoint state.
  uint64_t ckpt_seq_ = 0;   // of the newest durable checkpoint
  unsigned ckpt_slot_ = 1;  // its slot; the next goes to the other
  uint64_t ckpt_step_ = 0;  // its position: the writer stays within P steps of it
  bool ckpt_in_flight_ = false;
  bool ckpt_wanted_ = false;     // the lap rule is holding the writer back
  bool ckpt_timer_due_ = false;  // the interval has passed
  int ckpt_failures_ = 0;
  std::vector<Done> ckpt_waiters_;  // want a checkpoint started after they asked
  AlignedBuffer ckpt_buf_;
  Loop::TimerId timer_;

  // Recovery state (Open() only).
  std::unique_ptr<Recovery> rec_;
  Done open_done_;
  std::string report_;
};

}  // namespace flurry
