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
    if (i + 1 == n && size % sizeof(WriterRecord) == 0) {
      // The last append, cut short by a crash: it was never acknowledged.
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
  const Key key{hi, lo};
  for (const Batch* b : {&inflight_, &next_})
    if (auto it = b->max.find(key); it != b->max.end()) g = std::max(g, it->second);
  return g;
}

WriterRecord WriterGens::MakeRecord(uint64_t hi, uint64_t lo, uint64_t gen) {
  WriterRecord rec{hi, lo, gen, kWriterMagic, 0};
  rec.sum = WriterRecordSum(rec);
  return rec;
}

void WriterGens::Apply(const WriterRecord& rec) {
  if (rec.gen == 0) gens_.erase(std::make_pair(rec.blob_hi, rec.blob_lo));
  else gens_[std::make_pair(rec.blob_hi, rec.blob_lo)] = rec.gen;
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
  if (busy_) {
    // A group commit is writing at the end of the file: go after it.
    next_.recs->push_back(rec);
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

void WriterGens::RaiseAsync(Loop* loop, uint64_t hi, uint64_t lo, uint64_t gen, std::function<void(int)> done) {
  if (failed_) return done(failed_);
  const uint64_t cur = Get(hi, lo);
  if (gen <= cur) return done(0);
  const Key key{hi, lo};
  loop_ = loop;
  // Already being written (or queued) at this generation or newer: wait for
  // that write.
  if (auto it = inflight_.max.find(key); busy_ && it != inflight_.max.end() && it->second >= gen) {
    inflight_.waiters.push_back(std::move(done));
    return;
  }
  if (auto it = next_.max.find(key); it == next_.max.end() || it->second < gen) {
    if (cur == 0 && !inflight_.max.count(key) && !next_.max.count(key)) {
      size_t fresh = 0;  // blobs new to the table among those being recorded
      for (const Batch* b : {&inflight_, &next_})
        for (const auto& [k, g] : b->max) fresh += !gens_.count(k);
      if (gens_.size() + fresh >= max_blobs_) return done(-ENOSPC);
    }
    next_.recs->push_back(MakeRecord(hi, lo, gen));
    next_.max[key] = gen;
  }
  next_.waiters.push_back(std::move(done));
  if (!busy_) StartBatch();
}

void WriterGens::StartBatch() {
  busy_ = true;
  inflight_ = std::move(next_);
  next_ = Batch{};
  auto recs = inflight_.recs;  // the callbacks own the buffer while the kernel may use it
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

void WriterGens::FinishBatch(int res) {
  busy_ = false;
  Batch done = std::move(inflight_);
  inflight_ = Batch{};
  if (res < 0) {
    Stop(res, "record writer generations");
    Batch rest = std::move(next_);
    next_ = Batch{};
    for (auto& w : done.waiters) w(res);
    for (auto& w : rest.waiters) w(res);
    return;
  }
  syncs_++;
  records_ += done.recs->size();
  for (const WriterRecord& rec : *done.recs) Apply(rec);
  if (next_.recs->empty() && records_ > 2 * gens_.size() + 1024) Compact();
  for (auto& w : done.waiters) w(0);
  // Raises (and erases) that came meanwhile, unless a waiter started them.
  if (!busy_ && !next_.recs->empty() && !failed_) {
    if (loop_) StartBatch();
  }
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
