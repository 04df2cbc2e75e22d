// SPDX-License-Identifier: Apache-2.0
#include "tractserver/tract_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "tractserver/file_io.h"
#include "tractserver/journal.h"
#include "tractserver/tract.h"

namespace flurry::tractstore {

namespace {
int MkdirDurable(const std::string& path, const std::string& parent) {
  if (mkdir(path.c_str(), 0700) == 0) return FsyncDir(parent);
  return errno == EEXIST ? 0 : -errno;
}
}  // namespace

Result<std::unique_ptr<TractStore>> TractStore::Open(Loop* loop, Options opts) {
  using R = Result<std::unique_ptr<TractStore>>;
  std::unique_ptr<TractStore> s(new TractStore(loop, std::move(opts)));
  if (mkdir(s->opts_.dir.c_str(), 0700) < 0 && errno != EEXIST) return R::error(-errno);
  std::string lock = s->opts_.dir + "/LOCK";
  s->lock_fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd_ < 0) return R::error(-errno);
  if (flock(s->lock_fd_, LOCK_EX | LOCK_NB) < 0) return R::error(-EBUSY);
  int r = MkdirDurable(s->opts_.dir + "/tracts", s->opts_.dir);
  if (r < 0) return R::error(r);
  auto w = WriterGens::Open(s->opts_.dir + "/writers");
  if (!w) return R::error(w.err());
  s->writers_ = std::move(*w);
  std::string jpath = s->opts_.dir + "/journal";
  if (s->opts_.journal_size > 0 || access(jpath.c_str(), F_OK) == 0) {
    TractStore* raw = s.get();
    Journal::Hooks hooks;
    hooks.replay = [raw](const JournalRecord& rec, const uint8_t* data) { return raw->ReplayRecord(rec, data); };
    hooks.sync_tracts_blocking = [raw] { return raw->SyncDirtyBlocking(); };
    hooks.sync_tracts = [raw](Journal::Done d) { raw->SyncDirty(std::move(d)); };
    auto j = Journal::Open(loop, jpath, s->opts_.journal_size ? s->opts_.journal_size : 64ull << 20,
                           std::move(hooks));
    if (!j) return R::error(j.err());
    s->journal_ = std::move(*j);
    // Tracts an earlier run created with deferred syncs and never journaled
    // a write to (a crash right after creation) may exist only in the page
    // cache; nothing would ever sync them, yet a tract found on disk counts
    // as durably created and may take direct writes. Make everything
    // durable once, before serving.
    if (syncfs(s->lock_fd_) < 0) return R::error(-errno);
  }
  return s;
}

TractStore::~TractStore() {
  // A DeleteBlob still waiting for IO is dropped: its caller is going away.
  for (auto id : delete_timers_) loop_->CancelTimer(id);
  delete_timers_.clear();
  if (loop_->stopped()) {
    // Nothing would complete: forget the waiting applies (not marked
    // applied, so the next open replays them from the journal).
    if (apply_timer_armed_) loop_->CancelTimer(apply_timer_);
    apply_timer_armed_ = false;
    std::vector<DeferredApply> all;
    all.swap(applies_);
    for (auto& a : all) a.drop();
  } else {
    FlushApplies();
  }
  // In-flight IO (a background checkpoint's syncs and superblock write, a
  // batch write and the tract writes it releases) has callbacks into this
  // store, its journal and its tracts: let it finish first. A stopped loop
  // runs nothing more, so then there is nothing to wait for.
  auto busy = [this] {
    if (journal_ && journal_->io_in_flight()) return true;
    if (deletes_in_flight_ > 0) return true;
    for (auto& [k, slot] : tracts_)
      if (slot.tract->io_busy()) return true;
    return false;
  };
  for (int i = 0; i < 100000 && busy(); ++i)
    if (!loop_->RunOnce(10)) break;
  journal_.reset();
  tracts_.clear();
  if (lock_fd_ >= 0) close(lock_fd_);
}

std::string TractStore::BlobDir(uint64_t hi, uint64_t lo) const {
  char b[40];
  snprintf(b, sizeof b, "%016" PRIx64 "%016" PRIx64, hi, lo);
  return opts_.dir + "/tracts/" + b;
}

Result<Tract*> TractStore::Get(const TractKey& key, uint32_t tract_size, bool create) {
  // A blob whose delete is in the journal takes no more IO: a write
  // journaled after the delete would bring its tract back on replay.
  if (!deleting_.empty() && deleting_.count({key.hi, key.lo})) return Result<Tract*>::error(-ENOENT);
  auto it = tracts_.find(key);
  if (it != tracts_.end()) {
    if (it->second.tract->tract_size() != tract_size) return Result<Tract*>::error(-EINVAL);
    lru_.splice(lru_.end(), lru_, it->second.lru);  // most recently used
    return it->second.tract.get();
  }
  std::string dir = BlobDir(key.hi, key.lo);
  std::string base = dir + "/" + std::to_string(key.tract);
  if (!create) {
    struct stat st;
    if (stat((base + ".meta").c_str(), &st) < 0) {
      if (errno == ENOENT) return static_cast<Tract*>(nullptr);
      return Result<Tract*>::error(-errno);
    }
  } else if (journal_) {
    // Journal mode: the new entries become durable at the next checkpoint
    // (SyncDirty), before the journal lets go of any write to the tract;
    // a replay recreates whatever a crash lost. Syncing here would stall
    // the loop (and every request of every volume on this server) for a
    // few device syncs, 10-50 ms on the test machine, per new tract.
    if (mkdir(dir.c_str(), 0700) == 0) unsynced_dirs_.insert(opts_.dir + "/tracts");
    else if (errno != EEXIST) return Result<Tract*>::error(-errno);
  } else {
    int r = MkdirDurable(dir, opts_.dir + "/tracts");
    if (r < 0) return Result<Tract*>::error(r);
  }
  const bool sync_create = journal_ == nullptr;
  bool created = false;
  auto t = Tract::Open(this, key, base, tract_size, create, sync_create, &created);
  if (!t) return Result<Tract*>::error(t.err());
  if (created) {
    // (Also a creation that failed earlier, or that a crash cut short: its
    // entry may not be durable either.)
    if (sync_create) {
      int r = FsyncDir(dir);
      if (r < 0) return Result<Tract*>::error(r);
    } else {
      unsynced_dirs_.insert(dir);
      stats_.deferred_creates++;
    }
  }
  Tract* raw = t->get();
  if (journal_) raw->journal_pin_ = created && !sync_create ? Tract::kPinUntilJournaled : evicted_pin_;
  lru_.push_back(key);
  tracts_.emplace(key, Slot{std::move(*t), std::prev(lru_.end())});
  stats_.open_tracts = tracts_.size();
  MaybeEvict(key);
  return raw;
}

void TractStore::MaybeEvict(const TractKey& keep) {
  // Close idle tracts beyond the bound; busy ones are skipped (and retried
  // on the next open), and so is the tract just opened for the caller.
  auto pos = lru_.begin();
  while (tracts_.size() > opts_.max_open_tracts && pos != lru_.end()) {
    auto it = tracts_.find(*pos);
    if (*pos == keep || it->second.tract->busy()) {
      ++pos;
      continue;
    }
    uint64_t pin = it->second.tract->journal_pin_;
    if (journal_) evicted_pin_ = std::max(evicted_pin_, pin == Tract::kPinUntilJournaled ? journal_->next_seq() : pin);
    pos = lru_.erase(pos);
    tracts_.erase(it);
  }
  stats_.open_tracts = tracts_.size();
}

namespace {
// The server validates every request (tractproto::ValidateRequest); the
// store checks again, so that no caller can write past a tract's end.
bool InTract(uint32_t tract_size, uint32_t off, uint32_t len) {
  return tract_size >= tractproto::kChunkSize && tract_size % tractproto::kChunkSize == 0 && len > 0 &&
         static_cast<uint64_t>(off) + len <= tract_size;
}
}  // namespace

void TractStore::Write(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
                       AlignedBuffer data, uint32_t flags, Done done) {
  if (!InTract(tract_size, off, len) || data.size() < len) return done(-EINVAL);
  auto t = Get(key, tract_size, true);
  if (!t) return done(t.err());
  (*t)->Write(off, len, std::move(data), flags, std::move(done));
}

void TractStore::Read(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
                      bool alloc_only, ReadDone done) {
  if (!InTract(tract_size, off, len)) return done(-EINVAL, ReadResult{});
  auto t = Get(key, tract_size, false);
  if (!t) return done(t.err(), ReadResult{});
  stats_.reads++;
  stats_.bytes_read += len;
  if (*t == nullptr) {
    // Never written here: zeros, nothing allocated.
    uint32_t c0 = off / tractproto::kChunkSize;
    uint32_t c1 = (off + len + tractproto::kChunkSize - 1) / tractproto::kChunkSize;
    ReadResult rr;
    rr.bitmap.assign(tractproto::BitmapBytes(c1 - c0), 0);
    if (!alloc_only) {
      rr.buf = AlignedBuffer(len);
      rr.buf.zero();
    }
    return done(0, std::move(rr));
  }
  (*t)->Read(off, len, alloc_only, std::move(done));
}

void TractStore::Zero(const TractKey& key, uint32_t tract_size, uint32_t off, uint32_t len,
                      bool keep_alloc, Done done) {
  if (!InTract(tract_size, off, len)) return done(-EINVAL);
  auto t = Get(key, tract_size, keep_alloc);
  if (!t) return done(t.err());
  if (*t == nullptr) return done(0);  // nothing stored: already zeros
  (*t)->Zero(off, len, keep_alloc, std::move(done));
}

void TractStore::StatTract(const TractKey& key, uint32_t tract_size, ReadDone done) {
  auto t = Get(key, tract_size, false);
  if (!t) return done(t.err(), ReadResult{});
  ReadResult rr;
  uint32_t n = tract_size / tractproto::kChunkSize;
  rr.bitmap = *t ? (*t)->Bitmap(0, n) : std::vector<uint8_t>(tractproto::BitmapBytes(n), 0);
  done(0, std::move(rr));
}

void TractStore::ChunkSums(const TractKey& key, uint32_t tract_size, ReadDone done) {
  auto t = Get(key, tract_size, false);
  if (!t) return done(t.err(), ReadResult{});
  if (*t == nullptr) {  // nothing stored: every chunk unallocated
    uint32_t n = tract_size / tractproto::kChunkSize;
    ReadResult rr;
    rr.bitmap.assign(tractproto::BitmapBytes(n), 0);
    rr.buf = AlignedBuffer(static_cast<size_t>(n) * 8);
    rr.buf.zero();
    return done(0, std::move(rr));
  }
  (*t)->Sums(std::move(done));
}

bool TractStore::BlobIoBusy(uint64_t hi, uint64_t lo) const {
  for (auto& [k, slot] : tracts_)
    if (k.hi == hi && k.lo == lo && slot.tract->io_busy()) return true;
  return false;
}

// Runs fn in 1 ms on a timer the destructor cancels.
void TractStore::DeleteRetrySoon(std::function<void()> fn) {
  auto id = std::make_shared<Loop::TimerId>();
  *id = loop_->AddTimer(1000000, [this, id, fn = std::move(fn)]() mutable {
    std::erase_if(delete_timers_, [&](const Loop::TimerId& t) {
      return t.deadline_ns == id->deadline_ns && t.seq == id->seq;
    });
    fn();
  });
  delete_timers_.push_back(*id);
}

void TractStore::DeleteBlob(uint64_t hi, uint64_t lo, Done done) {
  DeleteBlobWhenIdle(hi, lo, Loop::NowNs() + 2000000000ull, std::move(done));
}

void TractStore::DeleteBlobWhenIdle(uint64_t hi, uint64_t lo, uint64_t deadline_ns, Done done) {
  // Another delete of this blob is in the journal: wait for it to finish
  // (its own wait has no deadline, so this one's 2 s start afterwards).
  const bool joining = deleting_.count({hi, lo}) != 0;
  if (!joining && BlobIoBusy(hi, lo)) FlushApplies();  // its tracts' waiting applies, now
  if (joining || BlobIoBusy(hi, lo)) {
    if (joining) deadline_ns = Loop::NowNs() + 2000000000ull;
    else if (Loop::NowNs() >= deadline_ns) return done(-EBUSY);
    return DeleteRetrySoon([this, hi, lo, deadline_ns, done = std::move(done)]() mutable {
      DeleteBlobWhenIdle(hi, lo, deadline_ns, std::move(done));
    });
  }
  if (!journal_) {
    deleting_.insert({hi, lo});  // refuses IO while the files go
    return DeleteBlobFiles(hi, lo, [this, hi, lo, done = std::move(done)](int r) {
      deleting_.erase({hi, lo});
      done(r);
    });
  }
  // Journaled first: a replay after a crash must not bring back tracts of
  // the blob from writes journaled before the delete. From here on the blob
  // refuses IO (Get), so no write of it is journaled after the delete.
  deleting_.insert({hi, lo});
  JournalRecord rec{hi, lo, 0, 0, kJournalDelete, 0, 0, 0};
  journal_->Append(rec, nullptr, [this, hi, lo, done = std::move(done)](int r, uint64_t seq) {
    if (r < 0) {
      deleting_.erase({hi, lo});
      return done(r);
    }
    FinishJournaledDelete(hi, lo, seq, std::move(done));
  });
}

// The delete is in the journal: a replay would carry it out, so it must be
// carried out now too, never answered -EBUSY. The blob takes no new IO, but
// a journal checkpoint may be syncing its tracts: that is waited for. If the
// store goes away first, the record is not marked applied, and the next
// open replays it.
void TractStore::FinishJournaledDelete(uint64_t hi, uint64_t lo, uint64_t seq, Done done) {
  if (BlobIoBusy(hi, lo)) FlushApplies();
  if (BlobIoBusy(hi, lo)) {
    stats_.delete_waits++;
    return DeleteRetrySoon([this, hi, lo, seq, done = std::move(done)]() mutable {
      FinishJournaledDelete(hi, lo, seq, std::move(done));
    });
  }
  DeleteBlobFiles(hi, lo, [this, hi, lo, seq, done = std::move(done)](int r) {
    journal_->Applied(seq);
    deleting_.erase({hi, lo});
    done(r);
  });
}

void TractStore::CloseBlobTracts(uint64_t hi, uint64_t lo) {
  // Any of these that survives (a failed unlink) reopens behind every record
  // journaled so far: no direct write before those are checkpointed.
  if (journal_) evicted_pin_ = delete_pin_ = std::max(evicted_pin_, journal_->next_seq());
  for (auto it = tracts_.begin(); it != tracts_.end();) {
    if (it->first.hi == hi && it->first.lo == lo) {
      dirty_.erase(it->second.tract.get());
      lru_.erase(it->second.lru);
      it = tracts_.erase(it);
    } else {
      ++it;
    }
  }
  stats_.open_tracts = tracts_.size();
}

// DeleteBlobNow without blocking the loop: the unlinks and the rmdir run in
// the kernel's io_uring workers (freeing a large file's extents takes a
// while), the directory sync is an io_uring fsync, and the writer
// generation's erase joins the group commit. Same order as DeleteBlobNow.
// The blob takes no IO meanwhile (deleting_, kept by the callers).
void TractStore::DeleteBlobFiles(uint64_t hi, uint64_t lo, Done done) {
  CloseBlobTracts(hi, lo);
  struct State {
    std::string dir;
    std::vector<std::string> files;
    size_t left = 0;
    int err = 0;
    Done done;
  };
  auto st = std::make_shared<State>();
  st->dir = BlobDir(hi, lo);
  st->done = std::move(done);
  unsynced_dirs_.erase(st->dir);
  deletes_in_flight_++;
  auto finish = [this, st](int r) {
    deletes_in_flight_--;
    st->done(r);
  };
  auto erase_gen = [this, hi, lo, finish] { writers_->EraseAsync(loop_, hi, lo, finish); };
  DIR* d = opendir(st->dir.c_str());
  if (!d) {
    if (errno == ENOENT) return erase_gen();
    return finish(-errno);
  }
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') st->files.push_back(st->dir + "/" + e->d_name);
  closedir(d);
  // After the files: the directory, then tracts/ durably, then the
  // generation (a crash before that leaves it, which only refuses writers
  // older than the newest one of a blob that is gone anyway).
  auto after_files = [this, st, erase_gen, finish] {
    if (st->err < 0) return finish(st->err);
    loop_->Unlinkat(AT_FDCWD, st->dir.c_str(), AT_REMOVEDIR, [this, st, erase_gen, finish](int r) {
      if (r == -EINVAL) r = rmdir(st->dir.c_str()) < 0 ? -errno : 0;  // kernel without IORING_OP_UNLINKAT
      if (r < 0) return finish(r);
      FsyncDirAsync(opts_.dir + "/tracts", [erase_gen, finish](int r2) {
        if (r2 < 0) return finish(r2);
        erase_gen();
      });
    });
  };
  if (st->files.empty()) return after_files();
  // At most kUnlinksInFlight at a time: a large blob must not spawn a
  // kernel worker per file.
  st->left = st->files.size();
  auto next = std::make_shared<std::function<void()>>();
  auto issued = std::make_shared<size_t>(0);
  *next = [this, st, next, issued, after_files] {
    size_t i = (*issued)++;
    loop_->Unlinkat(AT_FDCWD, st->files[i].c_str(), 0, [st, i, next, issued, after_files](int r) {
      if (r == -EINVAL) r = unlink(st->files[i].c_str()) < 0 ? -errno : 0;  // kernel without IORING_OP_UNLINKAT
      if (r < 0 && r != -ENOENT && st->err == 0) st->err = r;
      if (*issued < st->files.size()) (*next)();
      if (--st->left == 0) {
        *next = nullptr;  // breaks the cycle next -> lambda -> next
        after_files();
      }
    });
  };
  constexpr size_t kUnlinksInFlight = 8;
  for (size_t k = 0; k < std::min(kUnlinksInFlight, st->files.size()); ++k) (*next)();
}

// Blocking; journal replay at open only (DeleteBlobFiles while serving).
int TractStore::DeleteBlobNow(uint64_t hi, uint64_t lo) {
  if (BlobIoBusy(hi, lo)) return -EBUSY;
  CloseBlobTracts(hi, lo);
  std::string dir = BlobDir(hi, lo);
  DIR* d = opendir(dir.c_str());
  if (!d) return errno == ENOENT ? writers_->Erase(hi, lo) : -errno;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    unlink((dir + "/" + e->d_name).c_str());
  }
  closedir(d);
  unsynced_dirs_.erase(dir);
  if (rmdir(dir.c_str()) < 0) return -errno;
  int r = FsyncDir(opts_.dir + "/tracts");
  if (r < 0) return r;
  // Last: a crash before this leaves the generation, which only refuses
  // writers older than the newest one of a blob that is gone anyway.
  return writers_->Erase(hi, lo);
}

int TractStore::ReplayRecord(const JournalRecord& rec, const uint8_t* data) {
  if (rec.op == kJournalNop) return 0;
  if (rec.op == kJournalDelete) return DeleteBlobNow(rec.blob_hi, rec.blob_lo);
  if (rec.op != kJournalWrite && rec.op != kJournalTrim && rec.op != kJournalIntent) return -EIO;
  if (rec.tract_size < tractproto::kChunkSize || rec.tract_size % tractproto::kChunkSize != 0) return -EIO;
  // Replayed tracts stay open until synced: keep them within the open-tract
  // bound (file descriptors). Syncing early is safe; the tail moves at the end.
  if (dirty_.size() >= opts_.max_open_tracts) {
    int r = SyncDirtyBlocking();
    if (r < 0) return r;
  }
  TractKey key{rec.blob_hi, rec.blob_lo, rec.tract};
  auto t = Get(key, rec.tract_size, rec.op == kJournalWrite);
  if (!t) return t.err();
  // A trim of a tract that does not exist; or an intent of one that a
  // later DELETE record removed (a direct write needs a durable tract).
  if (*t == nullptr) return 0;
  if (rec.op == kJournalIntent) return (*t)->ReplayIntent(rec.c0, rec.c1, reinterpret_cast<const uint64_t*>(data));
  return rec.op == kJournalWrite ? (*t)->ReplayWrite(rec.c0, rec.c1, data) : (*t)->ReplayTrim(rec.c0, rec.c1);
}

int TractStore::SyncDirtyBlocking() {
  std::vector<Tract*> all(dirty_.begin(), dirty_.end());
  for (Tract* t : all) {
    int r = t->SyncBlocking();
    if (r < 0) return r;
  }
  while (!unsynced_dirs_.empty()) {
    int r = FsyncDir(*unsynced_dirs_.begin());
    if (r < 0 && r != -ENOENT) return r;  // ENOENT: the blob was deleted since
    unsynced_dirs_.erase(unsynced_dirs_.begin());
  }
  return 0;
}

void TractStore::SyncDirs(std::function<void(int)> done) {
  if (unsynced_dirs_.empty()) return done(0);
  auto dirs = std::make_shared<std::vector<std::string>>(unsynced_dirs_.begin(), unsynced_dirs_.end());
  unsynced_dirs_.clear();
  struct State {
    size_t left;
    int err = 0;
    std::function<void(int)> done;
  };
  auto st = std::make_shared<State>(State{dirs->size(), 0, std::move(done)});
  auto finish = [this, st, dirs](size_t i, int r) {
    if (r < 0 && r != -ENOENT) {
      if (st->err == 0) st->err = r;
      unsynced_dirs_.insert((*dirs)[i]);  // still unsynced (the journal stops on a failed sync)
    }
    if (--st->left == 0) st->done(st->err);
  };
  for (size_t i = 0; i < dirs->size(); ++i) FsyncDirAsync((*dirs)[i], [i, finish](int r) { finish(i, r); });
}

// FsyncDir through io_uring (the open is a path lookup; the sync is not on
// the loop).
void TractStore::FsyncDirAsync(const std::string& dir, Done done) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return done(-errno);
  stats_.dir_syncs++;
  loop_->Fsync(fd, /*datasync=*/false, [fd, done = std::move(done)](int r) {
    close(fd);
    done(r);
  });
}

void TractStore::SyncNewTractDirs(const TractKey& key, Done done) {
  auto left = std::make_shared<int>(2);
  auto err = std::make_shared<int>(0);
  auto one = [left, err, done = std::move(done)](int r) {
    if (r < 0 && *err == 0) *err = r;
    if (--*left == 0) done(*err);
  };
  FsyncDirAsync(BlobDir(key.hi, key.lo), one);
  FsyncDirAsync(opts_.dir + "/tracts", one);
}

void TractStore::SyncDirty(std::function<void(int)> done) {
  if (inject_sync_error_) {
    int e = inject_sync_error_;
    inject_sync_error_ = 0;
    return done(e);
  }
  if (dirty_.empty() && unsynced_dirs_.empty()) return done(0);
  std::vector<Tract*> all(dirty_.begin(), dirty_.end());
  dirty_.clear();
  struct State {
    size_t left;
    int err = 0;
    std::function<void(int)> done;
  };
  // The tract files and the directories that hold new ones (tracts created
  // since the last checkpoint), all before the journal moves its tail.
  auto st = std::make_shared<State>(State{all.size() + 1, 0, std::move(done)});
  auto one = [this, st](int r) {
    if (r < 0 && st->err == 0) st->err = r;
    if (--st->left > 0) return;
    MaybeEvict(TractKey{0, 0, ~0ull});  // synced tracts may be closed now
    st->done(st->err);
  };
  for (Tract* t : all) t->Sync(one);
  SyncDirs(one);
}

void TractStore::Checkpoint(Done done) {
  if (!journal_) return done(0);
  FlushApplies();
  journal_->Checkpoint(std::move(done));
}

void TractStore::DeferApply(int fd, uint64_t off, uint64_t bytes, std::function<void()> go,
                            std::function<void()> drop) {
  applies_.push_back(DeferredApply{fd, off, std::move(go), std::move(drop)});
  apply_bytes_ += bytes;
  stats_.applies_deferred++;
  // A full batch goes now: bounded memory, and the journal (whose space
  // these records hold until applied) never waits on the timer for it.
  const uint64_t cap = std::min<uint64_t>(8ull << 20, journal_ ? journal_->size() / 8 : 0);
  if (apply_bytes_ >= cap) return FlushApplies();
  if (!apply_timer_armed_) {
    apply_timer_armed_ = true;
    apply_timer_ = loop_->AddTimer(static_cast<uint64_t>(opts_.apply_delay_us) * 1000, [this] {
      apply_timer_armed_ = false;
      FlushApplies();
    });
  }
}

void TractStore::FlushApplies() {
  if (apply_timer_armed_) {
    loop_->CancelTimer(apply_timer_);
    apply_timer_armed_ = false;
  }
  if (applies_.empty()) return;
  std::vector<DeferredApply> all;
  all.swap(applies_);
  apply_bytes_ = 0;
  stats_.apply_flushes++;
  // In file order: the block layer merges adjacent writes of one submission.
  std::sort(all.begin(), all.end(), [](const DeferredApply& a, const DeferredApply& b) {
    return a.fd != b.fd ? a.fd < b.fd : a.off < b.off;
  });
  for (auto& a : all) a.go();
}

int TractStore::Close() { return journal_ ? journal_->Close() : 0; }

std::vector<tractproto::TractEntry> TractStore::ListTracts(uint64_t hi, uint64_t lo) {
  std::vector<tractproto::TractEntry> out;
  std::string root = opts_.dir + "/tracts";
  DIR* d = opendir(root.c_str());
  if (!d) return out;
  while (dirent* b = readdir(d)) {
    if (strlen(b->d_name) != 32) continue;
    uint64_t bh = 0, bl = 0;
    if (sscanf(b->d_name, "%16" SCNx64 "%16" SCNx64, &bh, &bl) != 2) continue;
    if ((hi || lo) && (bh != hi || bl != lo)) continue;
    std::string bdir = root + "/" + b->d_name;
    DIR* bd = opendir(bdir.c_str());
    if (!bd) continue;
    while (dirent* f = readdir(bd)) {
      const char* dot = strrchr(f->d_name, '.');
      if (!dot || strcmp(dot, ".meta") != 0) continue;
      uint64_t tract = strtoull(f->d_name, nullptr, 10);
      TractMetaHeader h{};
      int fd = open((bdir + "/" + f->d_name).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      bool ok = pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h) &&
                memcmp(h.magic, kMetaMagic, 8) == 0;
      uint32_t alloc = 0;
      auto it = tracts_.find(TractKey{bh, bl, tract});
      if (ok && it != tracts_.end()) {
        alloc = it->second.tract->allocated_chunks();
      } else if (ok) {
        std::vector<ChunkEntry> ents(h.nchunks);
        if (pread(fd, ents.data(), ents.size() * sizeof(ChunkEntry), kMetaHeaderSize) > 0)
          for (const auto& e : ents) alloc += (e.flags & kChunkAllocated) ? 1 : 0;
      }
      close(fd);
      if (ok) out.push_back({bh, bl, tract, h.tract_size, alloc});
    }
    closedir(bd);
  }
  closedir(d);
  return out;
}

}  // namespace flurry::tractstore
