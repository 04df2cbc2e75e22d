// SPDX-License-Identifier: Apache-2.0
//
// Tract: one open tract of the TractStore (its data and meta files, the
// in-memory chunk table, chunk range locks and the group commit of meta
// syncs). Internal to the tract store; same threading contract (loop only).
#pragma once

#include <algorithm>
#include <functional>
#include <list>
#include <vector>

#include "tractserver/tract_store.h"

namespace flurry::tractstore {

class Tract {
 public:
  using Done = TractStore::Done;

  // Opens existing files or creates them. Resolves pending chunks
  // synchronously (bounded by the writes in flight at the last crash).
  // A new tract's files are synced at once when sync_create, else (journal
  // mode) the tract starts dirty and the next checkpoint syncs them: every
  // write to it is in the journal until then, unless its first write syncs
  // the creation itself to go in place (SyncCreation). A meta file whose header
  // page reads as zeros and that has no chunk entries is a creation a crash
  // cut short (its syncs were deferred) and is created again.
  static Result<std::unique_ptr<Tract>> Open(TractStore* store, const TractKey& key,
                                             const std::string& base, uint32_t tract_size,
                                             bool create, bool sync_create = true,
                                             bool* created = nullptr);
  ~Tract();

  uint32_t tract_size() const { return tract_size_; }
  uint32_t nchunks() const { return nchunks_; }
  bool allocated(uint32_t c) const { return entries_[c].flags & kChunkAllocated; }
  uint32_t allocated_chunks() const;  // as Bitmap counts them
  // Busy tracts are never evicted: IO in flight, or writes not yet synced
  // by a journal checkpoint (dirty), or such a sync in flight.
  bool busy() const { return active_ops_ > 0 || !locks_.empty() || dirty_ || syncing_ > 0; }
  // IO of its own in flight (a dirty tract may still be deleted).
  bool io_busy() const { return active_ops_ > 0 || !locks_.empty() || syncing_ > 0; }
  const TractKey& key() const { return key_; }
  // Chunks allocated or being written (a write acknowledged before its
  // apply is done is counted; over-reporting a hole is harmless).
  std::vector<uint8_t> Bitmap(uint32_t c0, uint32_t c1) const;

  void Write(uint32_t off, uint32_t len, AlignedBuffer data, uint32_t flags, Done done);
  void Read(uint32_t off, uint32_t len, bool alloc_only, TractStore::ReadDone done);
  void Zero(uint32_t off, uint32_t len, bool keep_alloc, Done done);
  // TractStore::ChunkSums for this tract (under a shared lock of all chunks).
  void Sums(TractStore::ReadDone done);

  // Journal replay (synchronous, at open): whole chunks [c0, c1) get data;
  // trims deallocate [c0, c1). Neither syncs; SyncBlocking() does.
  int ReplayWrite(uint32_t c0, uint32_t c1, const uint8_t* data);
  int ReplayTrim(uint32_t c0, uint32_t c1);
  // An intent record of a direct write: each chunk of [c0, c1) whose data in
  // the tract file matches its new checksum (sums[c - c0]) takes it; the
  // others keep their entry (the write did not land, or a later one of the
  // chunk follows in the journal and settles it).
  int ReplayIntent(uint32_t c0, uint32_t c1, const uint64_t* sums);
  // Journal checkpoints: make both files durable (and clear dirty).
  void Sync(Done done);
  int SyncBlocking();
  bool dirty() const { return dirty_; }

 private:
  struct RangeLock {
    uint32_t c0, c1;
    bool excl;
    bool granted = false;
    std::function<void()> on_grant;
  };
  struct WriteOp;

  Tract(TractStore* store, const TractKey& key) : store_(store), loop_(store->loop_), key_(key) {}
  bool Journaled(uint32_t flags) const;
  // Direct writes (TractStore::Options::direct_write_min) skip the journal's
  // data path: an intent record holds only the new checksums, and the data
  // goes to the tract file with RWF_DSYNC. Replay then rewrites nothing, so
  // no replayable record of this tract may hold older data (a replayed
  // WRITE would overwrite the direct write's data), and the tract's
  // creation must be durable: both are true once a checkpoint has passed
  // the tract's last WRITE/TRIM record (journal_pin_) and none is on its way,
  // or, for a fresh tract that nothing was journaled for, once SyncCreation
  // has made its creation durable (and no DELETE a replay would run is left).
  bool DirectOk() const;
  void Pin(uint64_t seq) { journal_pin_ = journal_pin_ == kPinUntilJournaled ? seq : std::max(journal_pin_, seq); }
  void StartDirect(WriteOp* op);
  // A fresh tract: a direct write would be allowed once its creation is
  // durable (SyncCreation), rather than only after a checkpoint.
  bool CreationSyncWouldAllowDirect() const;
  void SyncCreation();
  // The journaled (or, without a journal, synced in-place) path of a write
  // whose chunk runs and new checksums StartWrite has set up.
  void WriteRuns(WriteOp* op);
  void MarkDirty();
  int LoadMeta(bool created, const TractKey& key, bool sync_create);
  bool UnfinishedCreation(uint64_t file_size);
  int ResolvePending(uint32_t c);

  RangeLock* Lock(uint32_t c0, uint32_t c1, bool excl, std::function<void()> on_grant);
  void Unlock(RangeLock* l);
  static bool Conflicts(const RangeLock& a, const RangeLock& b) {
    return a.c0 < b.c1 && b.c0 < a.c1 && (a.excl || b.excl);
  }

  // Reads chunks [c0,c1) into buf (chunk-aligned), verifying allocated ones.
  void ReadChunks(uint32_t c0, uint32_t c1, uint8_t* buf, Done done);
  int VerifyChunk(uint32_t c, const uint8_t* data);
  // Persists entries [c0,c1); with sync, calls done after a (grouped) fdatasync.
  void WriteEntries(uint32_t c0, uint32_t c1, bool sync, Done done);
  // Entries [c0,c1) into the meta file (buffered, no sync).
  int PwriteEntries(uint32_t c0, uint32_t c1);
  // The pending (!cur) checksums of chunks [a,b) that a write just filled in.
  void NewSlotSums(uint32_t a, uint32_t b, uint64_t* out) const;
  // Journaled changes: entries [c0,c1) reach the meta file at the next
  // checkpoint's Sync (FlushEntries), not now. Until then a crash replays
  // their records, which rewrite them; a pwrite per write would only cost
  // a syscall and an inode update.
  void DeferEntries(uint32_t c0, uint32_t c1);
  int FlushEntries();
  void SyncMeta(Done done);
  void StartWrite(WriteOp* op);
  void WriteData(WriteOp* op, uint32_t done_bytes);
  void FinishWrite(WriteOp* op, int res);
  void Deallocate(uint32_t c0, uint32_t c1, Done done);

  TractStore* store_;
  Loop* loop_;
  TractKey key_;
  bool dirty_ = false;  // written since the last journal checkpoint synced it
  // Created with deferred syncs and its header not yet synced: the first
  // Sync makes the header durable before any chunk entry can be written,
  // so no crash leaves entries beside a zero header (which reads as damage).
  bool header_unsynced_ = false;
  int syncing_ = 0;
  int data_fd_ = -1;
  uint32_t meta_lo_ = ~0u, meta_hi_ = 0;  // entries changed, not yet in the meta file
  int meta_fd_ = -1;
  uint32_t tract_size_ = 0;
  uint32_t nchunks_ = 0;
  std::vector<ChunkEntry> entries_;
  std::list<RangeLock> locks_;
  uint32_t deferred_applies_ = 0;  // writes of this tract in the store's apply batch
  int active_ops_ = 0;
  // Direct writes: the batch of this tract's newest WRITE/TRIM record, and
  // how many of those are appended but not yet durable. A tract created with
  // deferred syncs starts at kPinUntilJournaled: its first record (which
  // the creating write makes) pins it, or SyncCreation lowers it to the
  // store's delete_pin_.
  static constexpr uint64_t kPinUntilJournaled = ~0ull;
  uint64_t journal_pin_ = 0;
  uint32_t journal_unsettled_ = 0;
  // SyncCreation in flight, the large writes waiting for it (each holding
  // its range lock), and whether it failed (then it is not tried again).
  bool creation_syncing_ = false, creation_sync_failed_ = false;
  std::vector<WriteOp*> creation_waiters_;
  friend class TractStore;
  // Group commit of meta fdatasync.
  bool sync_in_flight_ = false;
  std::vector<Done> sync_waiting_;
};

}  // namespace flurry::tractstore
