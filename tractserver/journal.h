// SPDX-License-Identifier: Apache-2.0
//
// Journal: the tract store's write-ahead log, one preallocated file per
// server (format: tract_format.h, docs/DISK_FORMAT.md).
//
// Why: making a write durable in place costs two device syncs on two files
// (the checksum entry, then the data), and on ext4 each sync of a file
// whose mtime moved also writes its inode. With the journal a write is
// durable once its batch is: many writes of many tracts share one
// O_DIRECT + RWF_DSYNC write (group commit), and the tract files are then
// written without syncs. A checkpoint later syncs every tract file touched
// since the previous one (one sync per file, not per write) and advances
// the tail, freeing journal space.
//
// Contract
// - Loop thread only. Records are made durable in Append() order.
// - Append(rec, data, durable): data (4096-aligned, (c1 - c0) * 4096 bytes
//   for kJournalWrite, IntentBytes(c1 - c0) for kJournalIntent, else null) must stay valid until durable runs.
//   durable(res, seq) runs once: res 0 = the record is durable; the caller
//   then applies it to the tract files (no sync needed) and must call
//   Applied(seq) once that is done; if the apply fails it calls FailStop
//   instead. res < 0 = not journaled.
// - Checkpoints need the tract files synced: sync_tracts(done) is called
//   with every record up to the checkpoint already applied; it must make
//   every tract file written so far durable, then call done(res).
// - Open() replays the journal from its tail through replay() (in order,
//   synchronously), then calls sync_tracts_blocking() and starts empty.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/buffer.h"
#include "common/loop.h"
#include "common/result.h"
#include "tractserver/tract_format.h"

namespace flurry::tractstore {

class Journal {
 public:
  using Durable = std::function<void(int res, uint64_t seq)>;
  using Done = std::function<void(int res)>;
  struct Hooks {
    // Replay one record (data for kJournalWrite). A negative result stops
    // Open with that error.
    std::function<int(const JournalRecord& rec, const uint8_t* data)> replay;
    // Makes every tract file written so far durable (blocking; used by Open
    // and Close).
    std::function<int()> sync_tracts_blocking;
    // The same, asynchronously (checkpoints while serving).
    std::function<void(Done)> sync_tracts;
  };
  struct Stats {
    uint64_t batches = 0, records = 0, bytes = 0, checkpoints = 0, space_waits = 0;
    uint64_t replayed_batches = 0, replayed_records = 0;
  };

  // Opens DIR's journal file, creating it (size bytes, at least 1 MiB) if
  // absent; an existing journal keeps its own size.
  static Result<std::unique_ptr<Journal>> Open(Loop* loop, const std::string& path, uint64_t size,
                                               Hooks hooks);
  ~Journal();

  void Append(const JournalRecord& rec, const uint8_t* data, Durable durable);
  void Applied(uint64_t seq);
  // Calls done once everything appended so far is checkpointed (the tract
  // files hold it durably and the tail has moved past it).
  void Checkpoint(Done done);
  // Starts a checkpoint now if one can make progress (too many dirty tracts).
  void CheckpointSoon() { MaybeCheckpoint(true); }
  // Clean shutdown: if nothing is in flight, checkpoint everything
  // (blocking), so the next Open has nothing to replay.
  int Close();

  // After a failed journal write or checkpoint sync the journal stops:
  // every later Append fails with that error (fail-stop; a restart replays).
  // Retrying is not safe: a failed fsync may have dropped the pages, and a
  // rewritten batch may land elsewhere than its failed copy.
  int failed() const { return failed_; }
  // Stops the journal as a failed journal IO does (above). Also for a
  // record that is durable but could not be applied to its tract file: the
  // caller does not call Applied for it, so no checkpoint passes it and a
  // restart replays it.
  void FailStop(int err, const char* what);
  // A batch write or a checkpoint (tract syncs, superblock write) in flight.
  bool io_in_flight() const { return writing_ || checkpointing_; }
  // Tests: the next batch write completes with err (after really writing).
  void InjectWriteErrorForTest(int err) { inject_write_error_ = err; }
  uint64_t size() const { return size_; }
  // Batch sequence numbers: a record appended from now on lands in a batch
  // numbered next_seq() or later (Durable's seq says which); every batch
  // numbered below tail_seq() is checkpointed (its records are in the tract
  // files durably and will never be replayed).
  uint64_t next_seq() const { return next_seq_; }
  uint64_t tail_seq() const { return tail_seq_; }
  uint64_t used() const { return head_ - tail_lsn_; }
  const Stats& stats() const { return stats_; }

 private:
  struct Pending {
    JournalRecord rec;
    const uint8_t* data;
    Durable durable;
  };
  struct Batch {
    uint64_t seq, end_lsn;
    uint32_t unapplied;
  };

  Journal(Loop* loop, Hooks hooks) : loop_(loop), hooks_(std::move(hooks)) {}
  int Init(const std::string& path, uint64_t size);
  int Replay();
  int WriteSuperBlocking(uint64_t tail_lsn, uint64_t tail_seq);
  int ZeroFillBlocking();
  uint64_t Phys(uint64_t lsn) const { return kJournalDataStart + lsn % data_size_; }
  void ScheduleKick();
  void Kick();
  void MaybeCheckpoint(bool force);
  void ArmTimer();

  Loop* loop_;
  Hooks hooks_;
  int fd_ = -1;
  uint64_t size_ = 0, data_size_ = 0;
  uint64_t generation_ = 0;
  uint64_t tail_lsn_ = 0, tail_seq_ = 1;  // durable checkpoint
  uint64_t head_ = 0, next_seq_ = 1;      // next batch goes here
  std::deque<Pending> pending_;
  std::deque<Batch> batches_;  // durable, not yet checkpointed
  bool kick_posted_ = false, writing_ = false, checkpointing_ = false;
  bool waiting_space_ = false;
  AlignedBuffer header_;
  std::vector<Pending> inflight_;
  std::vector<iovec> iov_;
  AlignedBuffer super_;
  Loop::TimerId timer_;
  std::vector<std::pair<uint64_t, Done>> cp_waiters_;  // (lsn, done)
  bool closed_ = false;
  int failed_ = 0;
  int inject_write_error_ = 0;
  Stats stats_;
};

}  // namespace flurry::tractstore
