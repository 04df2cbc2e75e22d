// SPDX-License-Identifier: Apache-2.0
#include "tractserver/writer_gens.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/log.h"
#include "tractserver/file_io.h"
#include "tractserver/tract_format.h"

namespace flurry::tractstore {

Result<std::unique_ptr<WriterGens>> WriterGens::Open(const std::string& path, size_t max_blobs) {
  using R = Result<std::unique_ptr<WriterGens>>;
  std::unique_ptr<WriterGens> w(new WriterGens(path, max_blobs));
  w->fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (w->fd_ < 0) return R::error(-errno);
  // Every start: the file's name, and what Load reads (the page cache may
  // hold a record whose fdatasync failed before a restart), are durable
  // before any request relies on them.
  if (fdatasync(w->fd_) < 0) return R::error(-errno);
  int r = FsyncDir(DirOf(path));
  if (r < 0) return R::error(r);
  r = w->Load();
  if (r < 0) return R::error(r);
  return w;
}

WriterGens::~WriterGens() {
  *alive_ = false;  // a write still in flight keeps its buffer (owned by its callback)
  if (fd_ >= 0) close(fd_);
}

int WriterGens::Load() {
  struct stat st;
  if (fstat(fd_, &st) < 0) return -errno;
  uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t n = size / sizeof(WriterRecord);
  std::vector<WriterRecord> recs(n);
  if (n > 0) {
    int r = PreadFull(fd_, recs.data(), n * sizeof(WriterRecord), 0, /*zero_fill_eof=*/false);
    if (r < 0) return r;
  }
  uint64_t good = n;
  for (uint64_t i = 0; i < n; ++i) {
    const WriterRecord& rec = recs[i];
    if (rec.magic == kWriterMagic && rec.sum == WriterRecordSum(rec)) {
      auto key = std::make_pair(rec.blob_hi, rec.blob_lo);
      if (rec.gen == 0) gens_.erase(key);
      else gens_[key] = rec.gen;
      continue;
    }
    if (i / kMaxBatch == (n - 1) / kMaxBatch) {
      // In the file's last 4 KiB, which no group commit crosses: the last
      // append or batch, cut short by a crash (a power loss may keep any of
      // its sectors and not others). None of it was acknowledged: drop it
      // from here on.
      good = i;
      break;
    }
    FLOG_ERROR("%s: record %llu of %llu is corrupt; refusing to start without the writer "
               "generations it may hold (restore the file or, if every volume's writer is known "
               "to be stopped, remove it)",
               path_.c_str(), (unsigned long long)i, (unsigned long long)n);
    return -EIO;
  }
  if (good * sizeof(WriterRecord) != size) {
    FLOG_WARN("%s: dropping a torn last record (%llu bytes)", path_.c_str(),
              (unsigned long long)(size - good * sizeof(WriterRecord)));
    if (ftruncate(fd_, static_cast<off_t>(good * sizeof(WriterRecord))) < 0 || fdatasync(fd_) < 0)
      return -errno;
  }
  records_ = good;
  if (gens_.size() > max_blobs_) return -EIO;
  return 0;
}

uint64_t WriterGens::Get(uint64_t hi, uint64_t lo) const {
  auto it = gens_.find(std::make_pair(hi, lo));
  return it == gens_.end() ? 0 : it->second;
}

uint64_t WriterGens::Newest(uint64_t hi, uint64_t lo) const {
  uint64_t g = Get(hi, lo);
  if (auto it = pending_.find(Key{hi, lo}); it != pending_.end()) g = std::max(g, it->second);
  return g;
}

WriterRecord WriterGens::MakeRecord(uint64_t hi, uint64_t lo, uint64_t gen) {
  WriterRecord rec{hi, lo, gen, kWriterMagic, 0};
  rec.sum = WriterRecordSum(rec);
  return rec;
}

void WriterGens::Apply(const WriterRecord& rec) {
  const Key key{rec.blob_hi, rec.blob_lo};
  if (rec.gen == 0) {
    gens_.erase(key);
    return;
  }
  uint64_t& g = gens_[key];
  FLOG_INFO("blob %016llx%016llx: writer generation %llu (was %llu); older writers may no longer write it",
            (unsigned long long)rec.blob_hi, (unsigned long long)rec.blob_lo, (unsigned long long)rec.gen,
            (unsigned long long)g);
  g = rec.gen;
}

void WriterGens::Stop(int res, const char* what) {
  // Whether the record is on disk is unknown, and a failed fdatasync may
  // have dropped the page: stop (a restart reloads what is durable).
  failed_ = res;
  FLOG_ERROR("%s: cannot %s: %s; refusing writer changes until restarted", path_.c_str(), what,
             strerror(-res));
}

int WriterGens::Append(uint64_t hi, uint64_t lo, uint64_t gen) {
  if (failed_) return failed_;
  WriterRecord rec = MakeRecord(hi, lo, gen);
  if (busy_ || !queue_.empty()) {
    // A group commit is writing at the end of the file: go after it (and
    // after what is queued behind it).
    OpenBatch().recs->push_back(rec);
    return 0;
  }
  int r = PwriteFull(fd_, &rec, sizeof rec, records_ * sizeof rec);
  if (r == 0 && fdatasync(fd_) < 0) r = -errno;
  if (r < 0) {
    Stop(r, "record a writer generation");
    return r;
  }
  syncs_++;
  records_++;
  Apply(rec);
  // Superseded records accumulate: rewrite the live ones now and then.
  if (records_ > 2 * gens_.size() + 1024) Compact();
  return 0;
}

int WriterGens::Raise(uint64_t hi, uint64_t lo, uint64_t gen) {
  uint64_t cur = Get(hi, lo);
  if (gen <= cur) return 0;
  if (busy_) return -EBUSY;  // not beside RaiseAsync (it would not be durable at return)
  if (cur == 0 && gens_.size() >= max_blobs_) return -ENOSPC;
  return Append(hi, lo, gen);
}

int WriterGens::Erase(uint64_t hi, uint64_t lo) {
  if (Newest(hi, lo) == 0) return 0;
  return Append(hi, lo, 0);
}

void WriterGens::EraseAsync(Loop* loop, uint64_t hi, uint64_t lo, std::function<void(int)> done) {
  if (failed_) return done(failed_);
  if (Newest(hi, lo) == 0) return done(0);
  loop_ = loop;
  // In file order after every queued raise of the blob, so it wins on
  // reload; it joins no batch's max (a raise must not wait on an erase).
  Batch& b = OpenBatch();
  b.recs->push_back(MakeRecord(hi, lo, 0));
  b.waiters.push_back(std::move(done));
  if (!busy_) StartBatch();
}

void WriterGens::RaiseAsync(Loop* loop, uint64_t hi, uint64_t lo, uint64_t gen, std::function<void(int)> done) {
  if (failed_) return done(failed_);
  const Key key{hi, lo};
  // An erase of the blob in the queue would undo what is durable now or
  // queued before it: then only a record after it will do.
  bool erase_queued = false;
  for (const Batch& b : queue_)
    for (const WriterRecord& r : *b.recs)
      erase_queued |= r.gen == 0 && r.blob_hi == hi && r.blob_lo == lo;
  const uint64_t cur = erase_queued ? 0 : Get(hi, lo);
  if (gen <= cur) return done(0);
  loop_ = loop;
  // Already queued (or being written) at this generation or newer: wait for
  // that batch.
  if (auto it = pending_.find(key); !erase_queued && it != pending_.end() && it->second >= gen) {
    for (Batch& b : queue_)
      if (auto m = b.max.find(key); m != b.max.end() && m->second >= gen) {
        b.waiters.push_back(std::move(done));
        return;
      }
  }
  const bool fresh = cur == 0 && !pending_.count(key);
  if (fresh && gens_.size() + pending_fresh_ >= max_blobs_) return done(-ENOSPC);
  Batch& b = OpenBatch();
  b.recs->push_back(MakeRecord(hi, lo, gen));
  b.max[key] = gen;
  b.waiters.push_back(std::move(done));
  pending_[key] = gen;
  pending_fresh_ += fresh;
  if (!busy_) StartBatch();
}

WriterGens::Batch& WriterGens::OpenBatch() {
  // The batch being written takes nothing more; a full one neither.
  if (queue_.empty() || (busy_ && queue_.size() == 1) || queue_.back().recs->size() >= queue_.back().cap) {
    uint64_t start = records_;
    for (const Batch& b : queue_) start += b.recs->size();
    queue_.emplace_back();
    queue_.back().cap = kMaxBatch - start % kMaxBatch;
  }
  return queue_.back();
}

void WriterGens::RebuildPending() {
  pending_.clear();
  for (const Batch& b : queue_)
    for (const auto& [k, g] : b.max) pending_[k] = std::max(pending_[k], g);
  pending_fresh_ = 0;
  for (const auto& [k, g] : pending_) pending_fresh_ += !gens_.count(k);
}

void WriterGens::StartBatch() {
  busy_ = true;
  auto recs = queue_.front().recs;  // the callbacks own the buffer while the kernel may use it
  const size_t bytes = recs->size() * sizeof(WriterRecord);
  loop_->Write(fd_, recs->data(), bytes, records_ * sizeof(WriterRecord), 0,
               [this, alive = alive_, recs, bytes](int res) {
                 if (!*alive) return;
                 if (res >= 0 && static_cast<size_t>(res) != bytes) res = -EIO;  // short: a full disk
                 if (res < 0) return FinishBatch(res);
                 loop_->Fsync(fd_, /*datasync=*/true, [this, alive, recs](int r) {
                   if (*alive) FinishBatch(r < 0 ? r : 0);
                 });
               });
}

void WriterGens::FailQueued(int res) {
  std::deque<Batch> q = std::move(queue_);
  queue_.clear();
  RebuildPending();
  for (Batch& b : q)
    for (auto& w : b.waiters) w(res);
}

void WriterGens::FinishBatch(int res) {
  busy_ = false;
  if (res < 0) {
    Stop(res, "record writer generations");
    return FailQueued(res);
  }
  Batch done = std::move(queue_.front());
  queue_.pop_front();
  syncs_++;
  records_ += done.recs->size();
  for (const WriterRecord& rec : *done.recs) Apply(rec);
  RebuildPending();
  if (queue_.empty() && records_ > 2 * gens_.size() + 1024) Compact();
  for (auto& w : done.waiters) w(0);
  // What came meanwhile (unless a waiter started it, or stopped the table).
  if (failed_) return FailQueued(failed_);
  if (!busy_ && !queue_.empty()) StartBatch();
}

int WriterGens::Compact() {
  // Write the live records to a new file, make it durable, then rename it
  // over the old one: a crash leaves one complete file or the other.
  std::string tmp = path_ + ".tmp";
  int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  std::vector<WriterRecord> recs;
  recs.reserve(gens_.size());
  for (const auto& [key, gen] : gens_) {
    WriterRecord rec{key.first, key.second, gen, kWriterMagic, 0};
    rec.sum = WriterRecordSum(rec);
    recs.push_back(rec);
  }
  int r = recs.empty() ? 0 : PwriteFull(fd, recs.data(), recs.size() * sizeof(WriterRecord), 0);
  if (r == 0 && fdatasync(fd) < 0) r = -errno;
  if (r == 0 && rename(tmp.c_str(), path_.c_str()) < 0) r = -errno;
  if (r < 0) {
    // The old file (and fd_) still hold everything: keep appending there.
    close(fd);
    unlink(tmp.c_str());
    FLOG_WARN("%s: compaction failed: %s (continuing with the old file)", path_.c_str(), strerror(-r));
    return r;
  }
  // The name now points at the new file: append there from now on.
  close(fd_);
  fd_ = fd;
  records_ = recs.size();
  r = FsyncDir(DirOf(path_));
  if (r < 0) {
    // Whether the rename is durable is unknown; appends to the new file
    // could be lost with it. Stop, as after a failed append.
    failed_ = r;
    FLOG_ERROR("%s: cannot sync the directory after compaction: %s; refusing writer changes until "
               "restarted", path_.c_str(), strerror(-r));
    return r;
  }
  compactions_++;
  return 0;
}

}  // namespace flurry::tractstore
