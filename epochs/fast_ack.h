// SPDX-License-Identifier: Apache-2.0
//
// FastAckDevice: the `fast-ack` write mode (Blizzard §2.5, flush epoch
// commits).
//
// - currEpoch counts flushes. Every write (and trim/zero) is copied into the
//   write cache, tagged with currEpoch and acknowledged at once; Flush()
//   closes the epoch and is acknowledged at once.
// - Only writes of the oldest unretired epoch (issueEpoch) are issued to the
//   blob; when every write of a closed epoch is durable on all replicas the
//   epoch retires and the next epoch's writes are issued. A write leaves
//   the cache (and frees its share of the memory bound) once it is durable. After a crash the blob therefore holds every write of epochs
//   < issueEpoch, some of issueEpoch and none later: prefix consistency.
// - Reads see the newest acknowledged data: they read the blob and overlay
//   the cache entries that overlapped when the read was issued, oldest first
//   (exact for partial overlaps). Writes overlapping within an epoch are
//   issued in arrival order (RangeLock), so replicas agree.
// - Bounded memory: beyond max_buffered_bytes of acknowledged, not yet
//   durable data, or
//   max_unretired_epochs, new requests wait in arrival order (backpressure,
//   not acknowledged) until retirements make room. So at most that much
//   acknowledged data can be lost in a crash.
// - FUA rule: a FUA write closes its epoch (as if a flush followed it) and
//   its reply waits until that epoch has retired, i.e. until it and
//   everything acknowledged before it is durable. This keeps FUA's promise.
// - A failed blob write is retried (every 200 ms, forever, logged): the data
//   was acknowledged, so giving up would lose it. Reads keep being served.
// Loop thread only.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "epochs/engine.h"
#include "epochs/range_lock.h"

namespace flurry {

class FastAckDevice : public Engine {
 public:
  FastAckDevice(const VolumeInfo& vol, BlobIo* blob, const EngineOptions& opts);
  ~FastAckDevice() override;

  const BlockDeviceInfo& info() const override { return info_; }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override;
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) override;
  void Flush(Done done) override;
  // Closes the current epoch and replies when it has retired.
  void DurableFlush(Done done) override;
  void Trim(uint64_t off, uint32_t len, Done done) override;
  void Zero(uint64_t off, uint32_t len, bool may_trim, bool fast_only, Done done) override;
  void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) override;
  void Quiesce(Done done) override;
  std::string CountersText() const override;

  uint64_t curr_epoch() const { return curr_epoch_; }
  uint64_t issue_epoch() const { return issue_epoch_; }
  uint64_t buffered_bytes() const { return buffered_bytes_; }

 private:
  enum class Kind { kWrite, kTrim, kZero };
  struct Entry {
    uint64_t seq, epoch, off, len;
    Kind kind;
    std::vector<uint8_t> data;  // kWrite only
  };
  using EntryPtr = std::shared_ptr<const Entry>;
  struct Epoch {
    std::vector<EntryPtr> entries;
    size_t outstanding = 0;       // issued, not yet durable
    std::vector<Done> fua_waiters;
  };
  // A request waiting for admission (backpressure).
  struct Admit {
    Kind kind;
    bool flush = false, fua = false;
    uint64_t off = 0, len = 0;
    const uint8_t* buf = nullptr;
    Done done;
  };

  void Submit(Admit a);
  bool HasRoom(const Admit& a) const;
  void Accept(Admit a);
  void Issue(const EntryPtr& e);
  void OnDurable(const EntryPtr& e, int res, RangeLock::Handle* h);
  void MaybeRetire();
  std::vector<EntryPtr> Overlapping(uint64_t off, uint64_t len) const;

  BlockDeviceInfo info_;
  BlobIo* blob_;
  EngineOptions opts_;
  RangeLock lock_;
  uint64_t curr_epoch_ = 0, issue_epoch_ = 0, next_seq_ = 1;
  std::map<uint64_t, Epoch> epochs_;                 // unretired, by epoch
  std::multimap<uint64_t, EntryPtr> cache_;          // by offset
  uint64_t max_entry_len_ = 0;
  uint64_t buffered_bytes_ = 0;
  std::deque<Admit> waiting_;
  std::vector<Done> quiesce_waiters_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  struct {
    uint64_t writes = 0, flushes = 0, trims = 0, zeroes = 0, reads = 0, fua = 0;
    uint64_t bytes_written = 0, epochs_retired = 0, throttled = 0, retries = 0;
    uint64_t max_buffered = 0, cache_hits = 0;
  } c_;
};

}  // namespace flurry
