// SPDX-License-Identifier: Apache-2.0
#include "tractserver/tract.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "tractserver/file_io.h"
#include "tractserver/journal.h"

namespace flurry::tractstore {

using tractproto::kChunkSize;

struct Tract::WriteOp {
  uint32_t off, len, flags;
  uint32_t c0, c1;
  AlignedBuffer data;   // the caller's payload
  AlignedBuffer span;   // chunk-aligned copy when read-modify-write is needed
  uint8_t* wbuf = nullptr;  // chunk-aligned buffer for chunks [c0, c1)
  std::vector<std::pair<uint32_t, uint32_t>> runs;  // chunk runs to write
  size_t run = 0;
  bool journaled = false;      // durable through the journal: tract files unsynced
  size_t journal_waits = 0;    // runs whose journal record is not durable yet
  int journal_err = 0;
  bool replied = false;
  bool direct = false;          // in place with RWF_DSYNC after an intent record (StartDirect)
  AlignedBuffer intent;         // the intent record's checksums
  std::vector<uint64_t> seqs;  // journal batches holding this write's records
  RangeLock* lock = nullptr;
  Done done;
};

namespace {
bool IsZero(const uint8_t* p, size_t n) {
  return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}
}  // namespace

Result<std::unique_ptr<Tract>> Tract::Open(TractStore* store, const TractKey& key,
                                           const std::string& base, uint32_t tract_size,
                                           bool create, bool sync_create, bool* created_out) {
  std::unique_ptr<Tract> t(new Tract(store, key));
  std::string meta_path = base + ".meta", data_path = base + ".data";
  t->meta_fd_ = open(meta_path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (t->meta_fd_ < 0) return Result<std::unique_ptr<Tract>>::error(-errno);
  t->data_fd_ = open(data_path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT | O_CREAT, 0600);
  if (t->data_fd_ < 0) return Result<std::unique_ptr<Tract>>::error(-errno);
  struct stat st;
  if (fstat(t->meta_fd_, &st) < 0) return Result<std::unique_ptr<Tract>>::error(-errno);
  t->tract_size_ = tract_size;
  t->nchunks_ = tract_size / kChunkSize;
  // A zero-length meta file is a tract whose creation did not complete;
  // so is one whose header never reached the disk (UnfinishedCreation).
  bool created = st.st_size == 0 || t->UnfinishedCreation(static_cast<uint64_t>(st.st_size));
  int r = t->LoadMeta(created, key, sync_create);
  if (r < 0) return Result<std::unique_ptr<Tract>>::error(r);
  if (created_out) *created_out = created;
  return t;
}

Tract::~Tract() {
  if (data_fd_ >= 0) close(data_fd_);
  if (meta_fd_ >= 0) close(meta_fd_);
}

// A creation whose syncs were deferred (journal mode) and that a crash cut
// short can leave the meta file's size durable but not its header page
// (ext4 allocates a buffered write's block later), which then reads as
// zeros. A checkpoint syncs the header together with any chunk entry, so
// all-zero entries too mean nothing of this tract was ever synced: every
// write to it is still in the journal, and recreating it loses nothing.
// A zero header beside a written entry is damage, left to LoadMeta (-EIO);
// so is a file of another size than this tract size's (the request's size
// is not the file's: recreating at it would truncate a real tract).
bool Tract::UnfinishedCreation(uint64_t file_size) {
  const uint64_t want = kMetaHeaderSize + static_cast<uint64_t>(nchunks_) * sizeof(ChunkEntry);
  if (file_size != want) return false;
  // The header page first: on every open of a real tract it has the magic,
  // and the entries need not be read here.
  std::vector<uint8_t> buf(want);
  auto zero_at = [&](uint64_t off, uint64_t len) {
    if (PreadFull(meta_fd_, buf.data() + off, len, off, /*zero_fill_eof=*/false) < 0) return false;
    return std::all_of(buf.begin() + off, buf.begin() + off + len, [](uint8_t b) { return b == 0; });
  };
  return zero_at(0, kMetaHeaderSize) && zero_at(kMetaHeaderSize, want - kMetaHeaderSize);
}

int Tract::LoadMeta(bool created, const TractKey& key, bool sync_create) {
  entries_.assign(nchunks_, ChunkEntry{});
  if (created) {
    if (ftruncate(data_fd_, tract_size_) < 0) return -errno;
    alignas(8) uint8_t page[kMetaHeaderSize] = {};
    TractMetaHeader h{};
    memcpy(h.magic, kMetaMagic, sizeof h.magic);
    h.version = kMetaVersion;
    h.tract_size = tract_size_;
    h.blob_hi = key.hi;
    h.blob_lo = key.lo;
    h.tract = key.tract;
    h.chunk_size = kChunkSize;
    h.nchunks = nchunks_;
    h.header_sum = Checksum(&h, sizeof h);  // computed with header_sum == 0
    memcpy(page, &h, sizeof h);
    int r = PwriteFull(meta_fd_, page, sizeof page, 0);
    if (r < 0) return r;
    if (ftruncate(meta_fd_, kMetaHeaderSize + static_cast<off_t>(nchunks_) * sizeof(ChunkEntry)) < 0)
      return -errno;
    if (!sync_create) {
      header_unsynced_ = true;
      MarkDirty();  // the next checkpoint syncs both files (and the store, their directory)
      return 0;
    }
    if (fdatasync(meta_fd_) < 0 || fsync(data_fd_) < 0) return -errno;
    return 0;
  }
  TractMetaHeader h{};
  int r = PreadFull(meta_fd_, &h, sizeof h, 0, /*zero_fill_eof=*/true);
  if (r < 0) return r;
  uint64_t sum = h.header_sum;
  h.header_sum = 0;
  if (memcmp(h.magic, kMetaMagic, sizeof h.magic) != 0 || Checksum(&h, sizeof h) != sum ||
      h.version != kMetaVersion) {
    FLOG_ERROR("tract %016llx%016llx/%llu: corrupt meta header",
               (unsigned long long)key.hi, (unsigned long long)key.lo, (unsigned long long)key.tract);
    return -EIO;
  }
  if (h.tract_size != tract_size_ || h.chunk_size != kChunkSize) return -EINVAL;
  r = PreadFull(meta_fd_, entries_.data(), entries_.size() * sizeof(ChunkEntry), kMetaHeaderSize, /*zero_fill_eof=*/true);
  if (r < 0) return r;
  bool changed = false;
  for (uint32_t c = 0; c < nchunks_; ++c) {
    if (!EntryValid(entries_[c], c)) {
      // A torn meta write. Its chunk cannot be trusted: reads fail with -EIO
      // (another replica serves them) until the chunk is rewritten.
      FLOG_WARN("tract %llu chunk %u: corrupt checksum entry", (unsigned long long)key.tract, c);
      entries_[c] = ChunkEntry{};
      entries_[c].flags = kChunkAllocated;
      entries_[c].sum[0] = entries_[c].sum[1] = ~0ull;  // matches no real data in practice
      SealEntry(&entries_[c], c);
      store_->stats_.torn_chunks_found++;
      changed = true;
      continue;
    }
    if (entries_[c].flags & kChunkPending) {
      r = ResolvePending(c);
      if (r < 0) return r;
      changed = true;
    }
  }
  if (changed) {
    r = PwriteFull(meta_fd_, entries_.data(), entries_.size() * sizeof(ChunkEntry), kMetaHeaderSize);
    if (r < 0) return r;
    if (fdatasync(meta_fd_) < 0) return -errno;
  }
  return 0;
}

int Tract::ResolvePending(uint32_t c) {
  AlignedBuffer buf(kChunkSize);
  int r = PreadFull(data_fd_, buf.data(), kChunkSize, static_cast<off_t>(c) * kChunkSize, /*zero_fill_eof=*/true);
  if (r < 0) return r;
  ChunkEntry& e = entries_[c];
  unsigned cur = (e.flags & kChunkCur1) ? 1 : 0;
  uint64_t s = Checksum(buf.data(), kChunkSize);
  bool was_alloc = e.flags & kChunkAllocated;
  e.flags &= ~kChunkPending;
  if (s == e.sum[cur ^ 1]) {  // the new data made it
    e.flags ^= kChunkCur1;
    e.flags |= kChunkAllocated;
  } else if (was_alloc ? s == e.sum[cur] : IsZero(buf.data(), kChunkSize)) {
    // the old data is intact
  } else if (!was_alloc) {
    // A never-acknowledged first write was torn: the old contents were
    // zeros and the chunk stays unallocated, so it reads as zeros.
    store_->stats_.torn_chunks_found++;
  } else {
    store_->stats_.torn_chunks_found++;
    FLOG_WARN("chunk %u torn by an unacknowledged write; reads of it will fail", c);
  }
  SealEntry(&e, c);
  store_->stats_.pending_resolved++;
  return 0;
}

uint32_t Tract::allocated_chunks() const {
  uint32_t n = 0;
  for (const auto& e : entries_) n += (e.flags & (kChunkAllocated | kChunkPending)) ? 1 : 0;
  return n;
}

std::vector<uint8_t> Tract::Bitmap(uint32_t c0, uint32_t c1) const {
  std::vector<uint8_t> bm(tractproto::BitmapBytes(c1 - c0), 0);
  for (uint32_t c = c0; c < c1; ++c)
    if (entries_[c].flags & (kChunkAllocated | kChunkPending))
      bm[(c - c0) / 8] |= static_cast<uint8_t>(1u << ((c - c0) % 8));
  return bm;
}

// ---- range locks ----

Tract::RangeLock* Tract::Lock(uint32_t c0, uint32_t c1, bool excl, std::function<void()> on_grant) {
  locks_.push_back(RangeLock{c0, c1, excl, false, std::move(on_grant)});
  RangeLock* l = &locks_.back();
  for (auto it = locks_.begin(); &*it != l; ++it) {
    if (!Conflicts(*it, *l)) continue;
    // Perhaps a write whose apply waits in the store's batch: send it now
    // rather than make this one wait for the batch's timer.
    if (deferred_applies_ > 0) store_->FlushApplies();
    return l;
  }
  l->granted = true;
  // Always deferred, so the caller has stored the returned pointer first.
  loop_->Post(std::move(l->on_grant));
  return l;
}

void Tract::Unlock(RangeLock* l) {
  for (auto it = locks_.begin(); it != locks_.end(); ++it) {
    if (&*it == l) {
      locks_.erase(it);
      break;
    }
  }
  // Grant waiters that no longer conflict with anything ahead of them.
  for (auto it = locks_.begin(); it != locks_.end(); ++it) {
    if (it->granted) continue;
    bool ok = true;
    for (auto jt = locks_.begin(); jt != it; ++jt)
      if (Conflicts(*jt, *it)) { ok = false; break; }
    if (ok) {
      it->granted = true;
      loop_->Post(std::move(it->on_grant));
    }
  }
}

// ---- checksums and meta persistence ----

int Tract::VerifyChunk(uint32_t c, const uint8_t* data) {
  const ChunkEntry& e = entries_[c];
  unsigned cur = (e.flags & kChunkCur1) ? 1 : 0;
  uint64_t s = Checksum(data, kChunkSize);
  if (s == e.sum[cur]) return 0;
  if ((e.flags & kChunkPending) && s == e.sum[cur ^ 1]) return 0;
  store_->stats_.checksum_errors++;
  FLOG_ERROR("checksum mismatch in chunk %u of a tract under %s", c, store_->dir().c_str());
  return -EIO;
}

int Tract::PwriteEntries(uint32_t c0, uint32_t c1) {
  return PwriteFull(meta_fd_, &entries_[c0], (c1 - c0) * sizeof(ChunkEntry),
                    kMetaHeaderSize + static_cast<off_t>(c0) * sizeof(ChunkEntry));
}

void Tract::NewSlotSums(uint32_t a, uint32_t b, uint64_t* out) const {
  for (uint32_t c = a; c < b; ++c) {
    const ChunkEntry& e = entries_[c];
    out[c - a] = e.sum[(e.flags & kChunkCur1) ? 0 : 1];
  }
}

void Tract::WriteEntries(uint32_t c0, uint32_t c1, bool sync, Done done) {
  // Buffered and synchronous on purpose: a memcpy into the page cache keeps
  // meta updates in program order; only the fdatasync goes through the ring.
  int r = PwriteEntries(c0, c1);
  if (r < 0 || !sync) {
    if (done) done(r);
    return;
  }
  SyncMeta(std::move(done));
}

void Tract::DeferEntries(uint32_t c0, uint32_t c1) {
  meta_lo_ = std::min(meta_lo_, c0);
  meta_hi_ = std::max(meta_hi_, c1);
}

int Tract::FlushEntries() {
  if (meta_lo_ >= meta_hi_) return 0;
  uint32_t c0 = meta_lo_, c1 = meta_hi_;
  meta_lo_ = ~0u;
  meta_hi_ = 0;
  int r = PwriteEntries(c0, c1);
  if (r < 0) DeferEntries(c0, c1);
  return r;
}

void Tract::SyncMeta(Done done) {
  sync_waiting_.push_back(std::move(done));
  if (sync_in_flight_) return;
  sync_in_flight_ = true;
  auto batch = std::make_shared<std::vector<Done>>();
  batch->swap(sync_waiting_);
  store_->stats_.meta_syncs++;
  loop_->Fsync(meta_fd_, true, [this, batch](int res) {
    sync_in_flight_ = false;
    if (!sync_waiting_.empty()) {
      // Writers that arrived during this sync need the next one.
      std::vector<Done> next;
      next.swap(sync_waiting_);
      for (auto& d : next) SyncMeta(std::move(d));
    }
    for (auto& d : *batch) d(res);
  });
}

// ---- reads ----

void Tract::ReadChunks(uint32_t c0, uint32_t c1, uint8_t* buf, Done done) {
  struct State {
    int pending = 1;
    int err = 0;
    Done done;
  };
  auto st = std::make_shared<State>();
  st->done = std::move(done);
  auto finish = [this, st, c0, c1, buf](int res) {
    if (res < 0 && st->err == 0) st->err = res;
    if (--st->pending > 0) return;
    int err = st->err;
    for (uint32_t c = c0; c < c1 && err == 0; ++c)
      if (allocated(c)) err = VerifyChunk(c, buf + static_cast<size_t>(c - c0) * kChunkSize);
    st->done(err);
  };
  uint32_t c = c0;
  while (c < c1) {
    if (!allocated(c)) {
      memset(buf + static_cast<size_t>(c - c0) * kChunkSize, 0, kChunkSize);
      ++c;
      continue;
    }
    uint32_t e = c;
    while (e < c1 && allocated(e)) ++e;
    uint32_t bytes = (e - c) * kChunkSize;
    st->pending++;
    loop_->Read(data_fd_, buf + static_cast<size_t>(c - c0) * kChunkSize, bytes,
                static_cast<uint64_t>(c) * kChunkSize, [this, finish, bytes](int res) {
                  if (res >= 0 && static_cast<uint32_t>(res) != bytes) res = -EIO;
                  if (res < 0) store_->stats_.io_errors++;
                  finish(res);
                });
    c = e;
  }
  finish(0);
}

void Tract::Read(uint32_t off, uint32_t len, bool alloc_only, TractStore::ReadDone done) {
  uint32_t c0 = off / kChunkSize, c1 = (off + len + kChunkSize - 1) / kChunkSize;
  TractStore::ReadResult rr;
  if (alloc_only) {
    rr.bitmap = Bitmap(c0, c1);
    return done(0, std::move(rr));
  }
  ++active_ops_;
  auto holder = std::make_shared<TractStore::ReadResult>(std::move(rr));
  auto lock = std::make_shared<RangeLock*>(nullptr);
  *lock = Lock(c0, c1, false, [this, holder, lock, c0, c1, off, done = std::move(done)]() mutable {
    // Under the lock no write of these chunks is in flight: the bitmap
    // matches the data read.
    holder->bitmap = Bitmap(c0, c1);
    holder->buf = AlignedBuffer(static_cast<size_t>(c1 - c0) * kChunkSize);
    holder->data_off = off - c0 * kChunkSize;
    // Lock() may grant synchronously before *lock is assigned: read it late.
    ReadChunks(c0, c1, holder->buf.data(), [this, holder, lock, done = std::move(done)](int res) {
      Unlock(*lock);
      --active_ops_;
      done(res, std::move(*holder));
    });
  });
}

void Tract::Sums(TractStore::ReadDone done) {
  ++active_ops_;
  auto lock = std::make_shared<RangeLock*>(nullptr);
  *lock = Lock(0, nchunks_, false, [this, lock, done = std::move(done)]() mutable {
    TractStore::ReadResult rr;
    rr.bitmap = Bitmap(0, nchunks_);
    rr.buf = AlignedBuffer(static_cast<size_t>(nchunks_) * 8);
    int err = 0;
    for (uint32_t c = 0; c < nchunks_; ++c) {
      // No write holds the lock, so none is pending unless a failed one
      // could not settle it: settle it now (reads the chunk).
      if ((entries_[c].flags & kChunkPending) && err == 0) err = ResolvePending(c);
      const ChunkEntry& e = entries_[c];
      uint64_t sum = (e.flags & kChunkAllocated) ? e.sum[(e.flags & kChunkCur1) ? 1 : 0] : 0;
      memcpy(rr.buf.data() + static_cast<size_t>(c) * 8, &sum, 8);
    }
    // Lock() always grants from a posted task, so *lock is assigned by now.
    Unlock(*lock);
    --active_ops_;
    done(err, std::move(rr));
  });
}

// ---- writes ----

void Tract::Write(uint32_t off, uint32_t len, AlignedBuffer data, uint32_t flags, Done done) {
  auto* op = new WriteOp{off, len, flags, off / kChunkSize,
                         (off + len + kChunkSize - 1) / kChunkSize, std::move(data)};
  op->done = std::move(done);
  ++active_ops_;
  RangeLock* l = Lock(op->c0, op->c1, true, [this, op] { StartWrite(op); });
  op->lock = l;
}

void Tract::StartWrite(WriteOp* op) {
  bool aligned = op->off % kChunkSize == 0 && op->len % kChunkSize == 0;
  auto commit = [this, op, aligned](int res) {
    if (res < 0) return FinishWrite(op, res);
    // Which chunks to write: all, or (fill) only those not yet allocated.
    // A FILL never touches a chunk this server already has, nor one a
    // client trimmed here: both are newer than the copy being filled in.
    auto keep = [&](uint32_t c) {
      return (op->flags & tractproto::kFlagFill) && (allocated(c) || (entries_[c].flags & kChunkTrimmed));
    };
    for (uint32_t c = op->c0; c < op->c1;) {
      if (keep(c)) { ++c; continue; }
      uint32_t e = c;
      while (e < op->c1 && !keep(e)) ++e;
      op->runs.emplace_back(c, e);
      c = e;
    }
    if (op->runs.empty()) return FinishWrite(op, 0);
    for (auto [a, b] : op->runs) {
      for (uint32_t c = a; c < b; ++c) {
        ChunkEntry& e = entries_[c];
        unsigned next = (e.flags & kChunkCur1) ? 0 : 1;
        e.sum[next] = Checksum(op->wbuf + static_cast<size_t>(c - op->c0) * kChunkSize, kChunkSize);
        e.flags |= kChunkPending;
        SealEntry(&e, c);
      }
    }
    // Aligned only: a torn device write must not cost the untouched bytes
    // of a read-modify-write's edge chunks.
    if (aligned && Journaled(op->flags) && !(op->flags & tractproto::kFlagFill) && op->runs.size() == 1 &&
        store_->opts_.direct_write_min > 0 &&
        static_cast<uint64_t>(op->runs[0].second - op->runs[0].first) * kChunkSize >= store_->opts_.direct_write_min) {
      if (DirectOk()) return StartDirect(op);
      if (CreationSyncWouldAllowDirect()) {
        // A fresh tract: make its creation durable now (a few syncs, once)
        // rather than write this and every large write after it twice until
        // a checkpoint passes its first record.
        creation_waiters_.push_back(op);
        if (!creation_syncing_) SyncCreation();
        return;
      }
    }
    WriteRuns(op);
  };
  if (aligned) {
    op->wbuf = op->data.data();
    return commit(0);
  }
  store_->stats_.rmw++;
  op->span = AlignedBuffer(static_cast<size_t>(op->c1 - op->c0) * kChunkSize);
  op->wbuf = op->span.data();
  // Read the first and last chunk (they may be the same), then overlay.
  uint32_t head = op->c0, tail = op->c1 - 1;
  bool need_head = op->off % kChunkSize != 0 || (op->c1 - op->c0 == 1);
  bool need_tail = (op->off + op->len) % kChunkSize != 0 && tail != head;
  auto pending = std::make_shared<int>(1 + (need_head ? 1 : 0) + (need_tail ? 1 : 0));
  auto err = std::make_shared<int>(0);
  auto step = [this, op, pending, err, commit](int res) {
    if (res < 0 && *err == 0) *err = res;
    if (--*pending > 0) return;
    if (*err < 0) return commit(*err);
    memcpy(op->wbuf + (op->off - op->c0 * kChunkSize), op->data.data(), op->len);
    commit(0);
  };
  if (need_head) ReadChunks(head, head + 1, op->wbuf, step);
  if (need_tail)
    ReadChunks(tail, tail + 1, op->wbuf + static_cast<size_t>(tail - op->c0) * kChunkSize, step);
  step(0);
}

void Tract::WriteRuns(WriteOp* op) {
  if (Journaled(op->flags)) {
    // Durable once the journal batches holding the runs are; the tract
    // files are then written without syncs (a checkpoint syncs them).
    op->journaled = true;
    op->journal_waits = op->runs.size();
    for (auto [a, b] : op->runs) {
      JournalRecord rec{key_.hi, key_.lo, key_.tract, tract_size_, kJournalWrite, a, b, 0};
      const uint8_t* p = op->wbuf + static_cast<size_t>(a - op->c0) * kChunkSize;
      std::vector<uint64_t> sums(b - a);
      NewSlotSums(a, b, sums.data());  // filled above
      rec.data_sum = JournalDataSumOfSums(sums.data(), sums.size());
      ++journal_unsettled_;
      store_->journal_->Append(rec, p, [this, op](int r, uint64_t seq) {
        --journal_unsettled_;
        if (r < 0 && op->journal_err == 0) op->journal_err = r;
        if (r == 0) {
          op->seqs.push_back(seq);
          Pin(seq);
        }
        if (--op->journal_waits > 0) return;
        if (op->journal_err < 0) return FinishWrite(op, op->journal_err);
        // Durable: answer now. The range lock stays held until the tract
        // file has the data too, so reads and later writes of these
        // chunks wait for the apply (FinishWrite).
        op->replied = true;
        std::exchange(op->done, nullptr)(0);
        MarkDirty();
        DeferEntries(op->c0, op->c1);
        if (store_->opts_.apply_delay_us == 0) return WriteData(op, 0);
        ++deferred_applies_;
        uint64_t bytes = 0;
        for (auto [a, b] : op->runs) bytes += static_cast<uint64_t>(b - a) * kChunkSize;
        store_->DeferApply(
            data_fd_, static_cast<uint64_t>(op->runs[0].first) * kChunkSize, bytes,
            [this, op] {
              --deferred_applies_;
              WriteData(op, 0);
            },
            [this, op] {
              --deferred_applies_;
              Unlock(op->lock);
              --active_ops_;
              delete op;
            });
      });
    }
    return;
  }
  bool sync = !(op->flags & tractproto::kFlagNoSync);
  WriteEntries(op->c0, op->c1, sync, [this, op](int r) {
    if (r < 0) return FinishWrite(op, r);
    WriteData(op, 0);
  });
}

bool Tract::DirectOk() const {
  const Journal* j = store_->journal_.get();
  return j != nullptr && j->failed() == 0 && journal_unsettled_ == 0 && !header_unsynced_ &&
         journal_pin_ != kPinUntilJournaled && j->tail_seq() > journal_pin_;
}

bool Tract::CreationSyncWouldAllowDirect() const {
  // Created with deferred syncs, and nothing journaled for it yet (that
  // would pin it until a checkpoint anyway).
  const Journal* j = store_->journal_.get();
  return j != nullptr && j->failed() == 0 && header_unsynced_ && journal_pin_ == kPinUntilJournaled &&
         journal_unsettled_ == 0 && !creation_sync_failed_;
}

void Tract::SyncCreation() {
  // What a checkpoint would make durable of the creation: the meta header
  // (as Sync's first step does), both files' sizes, the blob directory's
  // entries for them and the tracts directory's entry for a new blob
  // directory.
  creation_syncing_ = true;
  ++syncing_;
  store_->stats_.creation_syncs++;
  auto left = std::make_shared<int>(3);
  auto err = std::make_shared<int>(0);
  auto one = [this, left, err](int r) {
    if (r < 0 && *err == 0) *err = r;
    if (--*left > 0) return;
    --syncing_;
    creation_syncing_ = false;
    if (*err == 0) {
      header_unsynced_ = false;
      // No WRITE/TRIM record pins it: a replay has nothing of this tract to
      // rewrite. But a replayed DELETE of its blob (a write may follow the
      // delete) would remove the files: wait until that is checkpointed.
      if (journal_pin_ == kPinUntilJournaled) journal_pin_ = store_->delete_pin_;
    } else {
      store_->stats_.io_errors++;
      creation_sync_failed_ = true;
      // As for a failed checkpoint sync: a file's writeback error is
      // reported once, so the checkpoint's own sync of this tract could
      // succeed over a header page that never reached the disk.
      store_->journal_->FailStop(*err, "syncing a new tract's creation");
    }
    // Each waiter goes in place if nothing was journaled for the tract in
    // the meantime, else through the journal as before.
    auto waiters = std::move(creation_waiters_);
    creation_waiters_.clear();
    for (WriteOp* op : waiters) {
      if (DirectOk()) StartDirect(op);
      else WriteRuns(op);
    }
  };
  loop_->Fsync(meta_fd_, /*datasync=*/true, one);  // header and size
  loop_->Fsync(data_fd_, /*datasync=*/false, one);
  store_->SyncNewTractDirs(key_, one);
}

void Tract::StartDirect(WriteOp* op) {
  // The entries are PENDING with the new checksums (StartWrite). The intent
  // record makes those checksums durable first, so that whatever part of
  // the data reaches the disk, a replay can tell new chunks from old ones;
  // then the data goes in place with RWF_DSYNC, and the write is answered
  // once it is durable (FinishWrite). Applied only then: no checkpoint
  // passes the record while its data is in flight.
  op->direct = true;
  auto [a, b] = op->runs[0];
  op->intent = AlignedBuffer(IntentBytes(b - a));
  op->intent.zero();
  auto* sums = reinterpret_cast<uint64_t*>(op->intent.data());
  NewSlotSums(a, b, sums);
  JournalRecord rec{key_.hi, key_.lo, key_.tract, tract_size_, kJournalIntent, a, b,
                    Checksum(sums, static_cast<size_t>(b - a) * 8)};
  store_->stats_.direct_writes++;  // attempted (a failure is counted in errors as usual)
  store_->journal_->Append(rec, op->intent.data(), [this, op](int r, uint64_t seq) {
    if (r < 0) return FinishWrite(op, r);
    op->seqs.push_back(seq);
    WriteData(op, 0);
  });
}

void Tract::WriteData(WriteOp* op, uint32_t done_bytes) {
  if (op->run == op->runs.size()) return FinishWrite(op, 0);
  auto [a, b] = op->runs[op->run];
  uint32_t total = (b - a) * kChunkSize;
  int rwf = (op->journaled || (op->flags & tractproto::kFlagNoSync)) ? 0 : RWF_DSYNC;
  const uint8_t* src = op->wbuf + static_cast<size_t>(a - op->c0) * kChunkSize + done_bytes;
  loop_->Write(data_fd_, src, total - done_bytes, static_cast<uint64_t>(a) * kChunkSize + done_bytes,
               rwf, [this, op, done_bytes, total](int res) {
                 if ((op->journaled || op->direct) && store_->inject_apply_error_ && res >= 0) {
                   res = std::exchange(store_->inject_apply_error_, 0);
                 }
                 if (res < 0) {
                   store_->stats_.io_errors++;
                   return FinishWrite(op, res);
                 }
                 if (res == 0) return FinishWrite(op, -EIO);
                 uint32_t now = done_bytes + static_cast<uint32_t>(res);
                 if (now < total) return WriteData(op, now);  // short write: continue
                 op->run++;
                 WriteData(op, 0);
               });
}

void Tract::FinishWrite(WriteOp* op, int res) {
  if (res == 0) {
    for (auto [a, b] : op->runs) {
      for (uint32_t c = a; c < b; ++c) {
        ChunkEntry& e = entries_[c];
        e.flags ^= kChunkCur1;
        e.flags = (e.flags | kChunkAllocated) & ~(kChunkPending | kChunkTrimmed);
        SealEntry(&e, c);
      }
    }
    if (!op->runs.empty()) {
      if (op->journaled || op->direct) DeferEntries(op->c0, op->c1);
      else WriteEntries(op->c0, op->c1, false, nullptr);  // lazy
    }
    store_->stats_.writes++;
    store_->stats_.bytes_written += op->len;
  } else if (op->replied) {
    // Acknowledged (durable in the journal) but not in the tract file: the
    // device failed under us. Stop the journal without marking these
    // records applied, so no checkpoint passes them and a restart replays
    // them; until then these chunks fail their reads (-EIO: clients read
    // another replica) rather than return older data.
    store_->journal_->FailStop(res, "applying an acknowledged write to its tract file");
    for (auto [a, b] : op->runs) {
      for (uint32_t c = a; c < b; ++c) {
        ChunkEntry& e = entries_[c];
        e = ChunkEntry{};
        e.flags = kChunkAllocated;
        e.sum[0] = e.sum[1] = ~0ull;  // matches no real data in practice
        SealEntry(&e, c);
      }
    }
    op->seqs.clear();
    // Pinned open from now on: the journal has stopped, so no checkpoint
    // clears this again, and an evicted and reopened tract would settle
    // these chunks from the older data on disk.
    MarkDirty();
  } else {
    // The data may or may not have reached the disk: settle each chunk now,
    // so that the next write never overwrites the slot that matches.
    for (auto [a, b] : op->runs)
      for (uint32_t c = a; c < b; ++c)
        if (entries_[c].flags & kChunkPending) (void)ResolvePending(c);
    // A direct write's intent is marked applied below, so no replay settles
    // these chunks: the checkpoint that passes it writes their entries.
    if (op->direct) DeferEntries(op->c0, op->c1);
  }
  // Dirty again now that the tract-file IO is done: a checkpoint that began
  // while it was in flight may have synced this tract before the write
  // landed (and cleared the flag); the one that covers these records must
  // sync it again.
  if (!op->seqs.empty()) MarkDirty();
  for (uint64_t seq : op->seqs) store_->journal_->Applied(seq);
  Unlock(op->lock);
  --active_ops_;
  Done done = std::move(op->done);
  delete op;
  if (done) done(res);
}

bool Tract::Journaled(uint32_t flags) const {
  return store_->journal_ != nullptr && !(flags & tractproto::kFlagNoSync);
}

void Tract::MarkDirty() {
  if (dirty_) return;
  dirty_ = true;
  store_->dirty_.insert(this);
  // Dirty tracts stay open until a checkpoint syncs them: keep them within
  // the open-tract bound (file descriptors) by checkpointing early.
  if (store_->journal_ && store_->dirty_.size() * 2 >= store_->opts_.max_open_tracts) {
    store_->journal_->CheckpointSoon();
  }
}

void Tract::Sync(Done done) {
  if (header_unsynced_) {
    // First the header alone (see header_unsynced_), then as usual.
    ++syncing_;
    return loop_->Fsync(meta_fd_, true, [this, done = std::move(done)](int r) mutable {
      --syncing_;
      if (r < 0) {
        store_->stats_.io_errors++;
        dirty_ = false;
        MarkDirty();  // still unsynced (the journal stops on a failed sync)
        return done(r);
      }
      header_unsynced_ = false;
      Sync(std::move(done));
    });
  }
  int fr = FlushEntries();
  if (fr < 0) {
    store_->stats_.io_errors++;
    return done(fr);
  }
  dirty_ = false;
  ++syncing_;
  auto left = std::make_shared<int>(2);
  auto err = std::make_shared<int>(0);
  auto one = [this, left, err, done = std::move(done)](int r) {
    if (r < 0 && *err == 0) *err = r;
    if (--*left > 0) return;
    --syncing_;
    if (*err < 0) MarkDirty();  // still unsynced (the journal stops on a failed sync)
    done(*err);
  };
  loop_->Fsync(meta_fd_, true, one);
  // fsync, not fdatasync: trims punch holes, and those are metadata.
  loop_->Fsync(data_fd_, false, one);
}

int Tract::SyncBlocking() {
  if (header_unsynced_) {
    if (fdatasync(meta_fd_) < 0) return -errno;
    header_unsynced_ = false;
  }
  int r = FlushEntries();
  if (r < 0) return r;
  if (fdatasync(meta_fd_) < 0 || fsync(data_fd_) < 0) return -errno;
  if (dirty_) store_->dirty_.erase(this);
  dirty_ = false;
  return 0;
}

int Tract::ReplayWrite(uint32_t c0, uint32_t c1, const uint8_t* data) {
  if (c1 > nchunks_ || c0 >= c1) return -EINVAL;
  int r = PwriteFull(data_fd_, data, static_cast<size_t>(c1 - c0) * kChunkSize,
                     static_cast<off_t>(c0) * kChunkSize);
  if (r < 0) return r;
  for (uint32_t c = c0; c < c1; ++c) {
    ChunkEntry& e = entries_[c];
    unsigned cur = (e.flags & kChunkCur1) ? 1 : 0;
    e.sum[cur] = Checksum(data + static_cast<size_t>(c - c0) * kChunkSize, kChunkSize);
    e.flags = (e.flags | kChunkAllocated) & ~(kChunkPending | kChunkTrimmed);
    SealEntry(&e, c);
  }
  MarkDirty();
  return PwriteEntries(c0, c1);
}

int Tract::ReplayIntent(uint32_t c0, uint32_t c1, const uint64_t* sums) {
  if (c1 > nchunks_ || c0 >= c1) return -EINVAL;
  size_t n = static_cast<size_t>(c1 - c0) * kChunkSize;
  AlignedBuffer buf(n);
  int r = PreadFull(data_fd_, buf.data(), n, static_cast<off_t>(c0) * kChunkSize, /*zero_fill_eof=*/true);
  if (r < 0) return r;
  bool changed = false;
  for (uint32_t c = c0; c < c1; ++c) {
    uint64_t s = Checksum(buf.data() + static_cast<size_t>(c - c0) * kChunkSize, kChunkSize);
    if (s != sums[c - c0]) continue;
    ChunkEntry& e = entries_[c];
    e.sum[(e.flags & kChunkCur1) ? 1 : 0] = s;
    e.flags = (e.flags | kChunkAllocated) & ~(kChunkPending | kChunkTrimmed);
    SealEntry(&e, c);
    changed = true;
  }
  if (!changed) return 0;
  MarkDirty();
  return PwriteEntries(c0, c1);
}

int Tract::ReplayTrim(uint32_t c0, uint32_t c1) {
  if (c1 > nchunks_ || c0 >= c1) return -EINVAL;
  for (uint32_t c = c0; c < c1; ++c) {
    entries_[c] = ChunkEntry{};
    entries_[c].flags = kChunkTrimmed;
    SealEntry(&entries_[c], c);
  }
  MarkDirty();
  int r = PwriteEntries(c0, c1);
  if (r < 0) return r;
  if (fallocate(data_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(c0) * kChunkSize,
                static_cast<off_t>(c1 - c0) * kChunkSize) < 0 && errno != EOPNOTSUPP) {
    return -errno;
  }
  return 0;
}

// ---- trim / zero ----

void Tract::Deallocate(uint32_t c0, uint32_t c1, Done done) {
  ++active_ops_;
  auto lock = std::make_shared<RangeLock*>(nullptr);
  *lock = Lock(c0, c1, true, [this, lock, c0, c1, done = std::move(done)]() mutable {
    // Clears the entries and punches the hole; with the journal, after the
    // trim record is durable and without syncs (seq != 0: call Applied).
    auto apply = [this, lock, c0, c1](uint64_t seq, Done done) {
      for (uint32_t c = c0; c < c1; ++c) {
        entries_[c] = ChunkEntry{};
        entries_[c].flags = kChunkTrimmed;  // a tombstone that FILL writes respect
        SealEntry(&entries_[c], c);
      }
      if (seq) MarkDirty();
      auto punch = [this, lock, c0, c1, seq, done = std::move(done)](int r) mutable {
        auto finish = [this, lock, seq, done = std::move(done)](int res) {
          if (seq) {
            MarkDirty();  // after the punch: see FinishWrite
            store_->journal_->Applied(seq);
          }
          Unlock(*lock);
          --active_ops_;
          store_->stats_.trims++;
          done(res < 0 ? res : 0);
        };
        if (r < 0) return finish(r);
        loop_->Fallocate(data_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                         static_cast<uint64_t>(c0) * kChunkSize,
                         static_cast<uint64_t>(c1 - c0) * kChunkSize, std::move(finish));
      };
      if (!seq) return WriteEntries(c0, c1, true, std::move(punch));
      DeferEntries(c0, c1);
      punch(0);
    };
    if (!Journaled(0)) return apply(0, std::move(done));
    JournalRecord rec{key_.hi, key_.lo, key_.tract, tract_size_, kJournalTrim, c0, c1, 0};
    ++journal_unsettled_;
    store_->journal_->Append(rec, nullptr, [this, lock, apply, done = std::move(done)](int r, uint64_t seq) mutable {
      --journal_unsettled_;
      if (r == 0) Pin(seq);
      if (r < 0) {
        Unlock(*lock);
        --active_ops_;
        return done(r);
      }
      apply(seq, std::move(done));
    });
  });
}

void Tract::Zero(uint32_t off, uint32_t len, bool keep_alloc, Done done) {
  uint32_t end = off + len;
  uint32_t m0 = (off + kChunkSize - 1) / kChunkSize, m1 = end / kChunkSize;
  auto zero_write = [this](uint32_t o, uint32_t l, Done d) {
    AlignedBuffer z(l);
    z.zero();
    Write(o, l, std::move(z), 0, std::move(d));
  };
  if (keep_alloc || m0 >= m1) return zero_write(off, len, std::move(done));
  // Partial head and tail chunks are zeroed in place; whole chunks freed.
  auto tail = [this, zero_write, end, m1, done = std::move(done)](int r) mutable {
    if (r < 0) return done(r);
    if (end > m1 * kChunkSize) return zero_write(m1 * kChunkSize, end - m1 * kChunkSize, std::move(done));
    done(0);
  };
  auto middle = [this, m0, m1, tail = std::move(tail)](int r) mutable {
    if (r < 0) return tail(r);
    Deallocate(m0, m1, std::move(tail));
  };
  if (off < m0 * kChunkSize) return zero_write(off, m0 * kChunkSize - off, std::move(middle));
  middle(0);
}

}  // namespace flurry::tractstore
