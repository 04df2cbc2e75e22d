// SPDX-License-Identifier: Apache-2.0
//
// TractStore: durable, checksummed storage of tracts on one local disk.
//
// Contract
// - Lives on one Loop; every method must be called on the loop thread and
//   every callback runs there. Not thread-safe otherwise.
// - Write() completes with 0 only when data and checksums are durable
//   (unless flags has kFlagNoSync). With the journal that is as soon as
//   its records are durable: the write then still applies the data to the
//   tract file, holding its chunks' range lock, so a read or write of them
//   that arrives later waits for it. (If that apply fails, the journal
//   fail-stops without passing the records, and the chunks fail their
//   reads until a restart replays them.) Concurrent operations on
//   overlapping chunks of a tract are serialised in arrival order (writes
//   exclusive, reads shared), so replicas that receive the same order stay
//   identical.
// - Read() verifies every allocated chunk against its stored checksum;
//   a mismatch fails the whole read with -EIO, never returns bad data.
//   Unallocated chunks read as zeros.
// - Trim()/Zero(): whole chunks in the range are deallocated (unless
//   keep_alloc); partial chunks are zeroed by read-modify-write.
// - Crash safety: see tract_format.h. kill -9 at any moment leaves every
//   completed write readable and every chunk old-or-new.
// - With a journal, creating a tract does not sync on the loop: its files
//   and directory entries are synced by the next checkpoint (every write
//   to it is in the journal until then), or, when its first write is a
//   large one that can go in place (direct), through io_uring before that
//   write (Tract::SyncCreation); DeleteBlob unlinks and syncs
//   through io_uring. Still blocking: reopening a tract with pending or
//   torn entries (it settles them), the writer table's rare compaction,
//   and, without a journal, a creation's syncs.
// - With a journal, an acknowledged write's copy into its tract file waits
//   up to Options::apply_delay_us in a store-wide batch (its chunks stay
//   locked meanwhile; IO that wants them, a checkpoint or a full batch
//   sends it at once).
// - Sizes are validated by tractproto::ValidateRequest before they get
//   here; Write/Read/Zero check the range again (-EINVAL past the end).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/buffer.h"
#include "common/loop.h"
#include "common/result.h"
#include "common/tract_protocol.h"
#include "tractserver/journal.h"
#include "tractserver/tract_format.h"
#include "tractserver/writer_gens.h"

namespace flurry::tractstore {

struct TractKey {
  uint64_t hi = 0, lo = 0, tract = 0;
  bool operator==(const TractKey&) const = default;
};
struct TractKeyHash {
  size_t operator()(const TractKey& k) const {
    return static_cast<size_t>(k.hi * 0x9E3779B97F4A7C15ull ^ k.lo * 0xC2B2AE3D27D4EB4Full ^ k.tract);
  }
};

struct StoreStats {
  uint64_t writes = 0, reads = 0, trims = 0, bytes_written = 0, bytes_read = 0;
  uint64_t rmw = 0, checksum_errors = 0, io_errors = 0, meta_syncs = 0;
  uint64_t open_tracts = 0, torn_chunks_found = 0, pending_resolved = 0;
  uint64_t delete_waits = 0;  // journaled deletes that waited for a sync of their tracts
  // Journal mode: tracts created without syncing on the loop, and the
  // directory syncs that checkpoints made for them.
  uint64_t deferred_creates = 0, dir_syncs = 0;
  // Journal mode: applies that waited (apply_delay_us), and the flushes
  // that sent them.
  uint64_t applies_deferred = 0, apply_flushes = 0;
  uint64_t direct_writes = 0;  // journal mode: written in place after an intent record
  uint64_t creation_syncs = 0;  // fresh tracts synced early so that a large write can go in place
};

class Tract;

class TractStore {
 public:
  struct Options {
    std::string dir;
    size_t max_open_tracts = 512;
    // Write-ahead journal (DIR/journal) of this many bytes; 0 = none, and
    // every write then syncs its tract files itself. An existing journal
    // keeps its size (and is replayed even when this is 0).
    uint64_t journal_size = 0;
    // Journal mode: an acknowledged write's copy into its tract file waits
    // up to this long to go out with the others (sorted, so adjacent ones
    // merge), unless IO of its chunks, a checkpoint or a full batch wants
    // it sooner. 0 = at once. Its data is durable in the journal meanwhile.
    uint32_t apply_delay_us = 5000;
    // Journal mode: a write of at least this many bytes of whole chunks goes
    // to its tract file directly (RWF_DSYNC), after an intent record with its
    // checksums, instead of through the journal's data path (which writes
    // every byte twice). 0 = never. Tract::DirectOk says when it may.
    uint32_t direct_write_min = 64 * 1024;
  };
  using Done = std::function<void(int res)>;
  struct ReadResult {
    AlignedBuffer buf;          // chunk-aligned span that holds the data
    uint32_t data_off = 0;      // where the requested range starts in buf
    std::vector<uint8_t> bitmap;  // one bit per chunk overlapping the range
  };
  using ReadDone = std::function<void(int res, ReadResult r)>;

  static Result<std::unique_ptr<TractStore>> Open(Loop* loop, Options opts);
  ~TractStore();

  // data holds len bytes starting at data.data() (kIoAlign-aligned).
  void Write(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
             AlignedBuffer data, uint32_t flags, Done done);
  void Read(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
            bool alloc_only, ReadDone done);
  void Zero(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
            bool keep_alloc, Done done);
  // Allocation bitmap of the whole tract (all zeros if it does not exist).
  void StatTract(const TractKey& key, uint32_t tract_size, ReadDone done);
  // Allocation bitmap of the whole tract and, in buf, the XXH3-64 of every
  // chunk (8 bytes each, little-endian; 0 for an unallocated chunk), taken
  // once no write to the tract is in flight. Replica comparison (resync).
  void ChunkSums(const TractKey& key, uint32_t tract_size, ReadDone done);
  // Deletes every tract of a blob. Waits up to 2 s for IO in flight on it
  // (an acknowledged write may still be applying), then fails with -EBUSY.
  // done(0) once the files, the directory and the blob's writer generation
  // are gone durably; the blob refuses IO (-ENOENT) until then.
  void DeleteBlob(uint64_t hi, uint64_t lo, Done done);
  // Tracts stored here, for one blob or (hi == lo == 0) all blobs.
  std::vector<tractproto::TractEntry> ListTracts(uint64_t hi, uint64_t lo);

  // Sends every waiting apply now (shutdown).
  void FlushApplies();
  // Clean shutdown: checkpoints the journal, so the next open replays
  // nothing. Safe to skip (a crash is handled the same way, by replay).
  int Close();
  // With a journal: done once every write so far is in the tract files
  // durably (a checkpoint); without one, at once.
  void Checkpoint(Done done);

  // The newest writer generation of each blob (DIR/writers, writer_gens.h);
  // DeleteBlob forgets the blob's.
  WriterGens* writers() { return writers_.get(); }

  const StoreStats& stats() const { return stats_; }
  const Journal* journal() const { return journal_.get(); }
  Journal* journal_for_test() { return journal_.get(); }
  // Tests: the next checkpoint's tract-file sync fails with err.
  void InjectSyncErrorForTest(int err) { inject_sync_error_ = err; }
  // The next journaled write's apply to its tract file completes with err
  // (after really writing), after the write was acknowledged; or the next
  // direct write's data write, before it is acknowledged.
  void InjectApplyErrorForTest(int err) { inject_apply_error_ = err; }
  const std::string& dir() const { return opts_.dir; }

 private:
  friend class Tract;
  TractStore(Loop* loop, Options opts) : loop_(loop), opts_(std::move(opts)) {}
  // Opens (or with create, creates) a tract. nullptr result with 0 = absent.
  Result<Tract*> Get(const TractKey& key, uint32_t tract_size, bool create);
  void MaybeEvict(const TractKey& keep);
  // The newest journal pin (Tract::journal_pin_) of any tract closed since
  // open: a reopened tract takes it, so it writes directly only once every
  // record it may have had is checkpointed.
  uint64_t evicted_pin_ = 0;
  // The journal batch after the newest DELETE record: a replay of a DELETE
  // removes tracts a later write created, so a tract created since pins it
  // (Tract::SyncCreation) until a checkpoint passes it.
  uint64_t delete_pin_ = 0;
  std::string BlobDir(uint64_t hi, uint64_t lo) const;
  int DeleteBlobNow(uint64_t hi, uint64_t lo);
  bool BlobIoBusy(uint64_t hi, uint64_t lo) const;
  void DeleteBlobWhenIdle(uint64_t hi, uint64_t lo, uint64_t deadline_ns, Done done);
  int ReplayRecord(const JournalRecord& rec, const uint8_t* data);
  int SyncDirtyBlocking();
  void SyncDirty(std::function<void(int)> done);

  Loop* loop_;
  Options opts_;
  int lock_fd_ = -1;
  StoreStats stats_;
  struct Slot {
    std::unique_ptr<Tract> tract;
    std::list<TractKey>::iterator lru;  // position in lru_ (front = least recent)
  };
  std::unordered_map<TractKey, Slot, TractKeyHash> tracts_;
  std::list<TractKey> lru_;
  std::unordered_set<Tract*> dirty_;  // written since the last checkpoint synced them
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<WriterGens> writers_;
  int inject_sync_error_ = 0;
  int inject_apply_error_ = 0;
  std::vector<Loop::TimerId> delete_timers_;  // DeleteBlob retries (cancelled by the destructor)
  void FinishJournaledDelete(uint64_t hi, uint64_t lo, uint64_t seq, Done done);
  void DeleteRetrySoon(std::function<void()> fn);
  std::set<std::pair<uint64_t, uint64_t>> deleting_;  // blobs whose delete is journaled, not done
  // Journal mode: directories with entries not yet durable (a new blob
  // directory in tracts/, a new tract's files in its blob directory); the
  // next checkpoint syncs them (SyncDirty) before it frees journal space.
  std::set<std::string> unsynced_dirs_;
  void SyncDirs(std::function<void(int)> done);
  void FsyncDirAsync(const std::string& dir, Done done);
  // Syncs the directories a new tract's creation changed: its blob
  // directory and the tracts directory (which holds the blob directory).
  void SyncNewTractDirs(const TractKey& key, Done done);
  void CloseBlobTracts(uint64_t hi, uint64_t lo);
  void DeleteBlobFiles(uint64_t hi, uint64_t lo, Done done);
  int deletes_in_flight_ = 0;  // DeleteBlobFiles under way (the destructor waits)
  // Applies waiting to go out together (Options::apply_delay_us).
  struct DeferredApply {
    int fd;
    uint64_t off;
    std::function<void()> go;    // sends it
    std::function<void()> drop;  // forgets it (a stopped loop; the journal keeps it for replay)
  };
  void DeferApply(int fd, uint64_t off, uint64_t bytes, std::function<void()> go, std::function<void()> drop);
  std::vector<DeferredApply> applies_;
  uint64_t apply_bytes_ = 0;
  Loop::TimerId apply_timer_;
  bool apply_timer_armed_ = false;
};

}  // namespace flurry::tractstore
