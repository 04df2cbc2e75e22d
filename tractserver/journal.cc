// SPDX-License-Identifier: Apache-2.0
#include "tractserver/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/checksum.h"
#include "common/log.h"
#include "common/tract_protocol.h"
#include "tractserver/file_io.h"

namespace flurry::tractstore {

namespace {
constexpr uint64_t kBatchDataCap = 4ull << 20;    // gather at most this much data per batch...
constexpr uint64_t kCheckpointFraction = 4;        // ...checkpoint once 1/4 of the ring is used...
constexpr uint64_t kCheckpointIntervalNs = 2'000'000'000ull;  // ...or every 2 s

uint64_t SuperSum(JournalSuper s) {
  s.sum = 0;
  return Checksum(&s, sizeof s);
}
uint64_t HeaderSum(const uint8_t* page, uint32_t nrec) {
  BatchHeader h;
  memcpy(&h, page, sizeof h);
  h.header_sum = 0;
  ChecksumStream cs;
  cs.Update(&h, sizeof h);
  cs.Update(page + sizeof h, static_cast<size_t>(nrec) * sizeof(JournalRecord));
  return cs.Digest();
}
uint64_t RecordBytes(const JournalRecord& r) {
  if (r.op == kJournalWrite) return static_cast<uint64_t>(r.c1 - r.c0) * tractproto::kChunkSize;
  if (r.op == kJournalIntent) return IntentBytes(r.c1 - r.c0);
  return 0;
}
}  // namespace

Result<std::unique_ptr<Journal>> Journal::Open(Loop* loop, const std::string& path, uint64_t size,
                                               Hooks hooks) {
  using R = Result<std::unique_ptr<Journal>>;
  std::unique_ptr<Journal> j(new Journal(loop, std::move(hooks)));
  int r = j->Init(path, size);
  if (r < 0) return R::error(r);
  r = j->Replay();
  if (r < 0) return R::error(r);
  j->ArmTimer();
  return j;
}

Journal::~Journal() {
  loop_->CancelTimer(timer_);
  if (fd_ >= 0) close(fd_);
}

int Journal::Init(const std::string& path, uint64_t size) {
  header_ = AlignedBuffer(4096);
  super_ = AlignedBuffer(4096);
  bool existed = access(path.c_str(), F_OK) == 0;
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd_ < 0) return -errno;
  JournalSuper best{};
  bool found = false, any_bytes = false;
  if (existed) {
    for (int slot = 0; slot < 2; ++slot) {
      int r = PreadFull(fd_, super_.data(), 4096, static_cast<uint64_t>(slot) * 4096, /*zero_fill_eof=*/false);
      if (r < 0) break;  // short file: creation did not complete
      JournalSuper s;
      memcpy(&s, super_.data(), sizeof s);
      for (size_t i = 0; i < sizeof s; ++i) any_bytes |= super_.data()[i] != 0;
      if (memcmp(s.magic, kJournalMagic, 8) != 0 || s.version != kJournalVersion || s.sum != SuperSum(s))
        continue;
      if (!found || s.generation > best.generation) best = s;
      found = true;
    }
    if (!found && any_bytes) {
      FLOG_ERROR("journal %s: both superblocks are corrupt; refusing to start (acknowledged writes "
                 "may live only in the journal)", path.c_str());
      return -EIO;
    }
  }
  if (found) {
    struct stat st;
    if (fstat(fd_, &st) < 0) return -errno;
    if (best.size < (1u << 20) || static_cast<uint64_t>(st.st_size) < best.size) {
      FLOG_ERROR("journal %s: superblock size %llu does not match the file (%lld bytes)", path.c_str(),
                 (unsigned long long)best.size, (long long)st.st_size);
      return -EIO;
    }
    size_ = best.size;
    data_size_ = size_ - kJournalDataStart;
    generation_ = best.generation;
    tail_lsn_ = head_ = best.tail_lsn;
    tail_seq_ = next_seq_ = best.tail_seq;
    if (size != size_) {
      FLOG_INFO("journal %s keeps its size of %llu bytes", path.c_str(), (unsigned long long)size_);
    }
    return 0;
  }
  // New (or never initialised): preallocate, write superblock 0, make durable.
  if (size < (1u << 20)) return -EINVAL;
  size_ = AlignUp(size, 4096);
  data_size_ = size_ - kJournalDataStart;
  if (ftruncate(fd_, 0) < 0) return -errno;
  if (fallocate(fd_, 0, 0, static_cast<off_t>(size_)) < 0) {
    if (errno != EOPNOTSUPP) return -errno;
    if (ftruncate(fd_, static_cast<off_t>(size_)) < 0) return -errno;
  }
  // Zeros written over the whole ring, once: fallocate leaves unwritten
  // extents, and every batch write into one would need the extent
  // converted and that metadata committed (RWF_DSYNC) until the ring has
  // lapped once -- twice the device work per write in a new cluster.
  int r = ZeroFillBlocking();
  if (r < 0) return r;
  r = WriteSuperBlocking(0, 1);
  if (r < 0) return r;
  // The new file's name must be durable too, or a crash could lose the
  // journal its acknowledged writes are in.
  return FsyncDir(DirOf(path));
}

int Journal::ZeroFillBlocking() {
  constexpr uint64_t kStep = 1u << 20;
  AlignedBuffer zero(kStep);
  zero.zero();
  uint64_t t0 = Loop::NowNs();
  for (uint64_t off = 0; off < size_; off += kStep) {
    int r = PwriteFull(fd_, zero.data(), std::min(kStep, size_ - off), off);
    if (r < 0) return r;
  }
  if (fdatasync(fd_) < 0) return -errno;
  if (size_ >= (1ull << 30))
    FLOG_INFO("journal: wrote %llu MiB of zeros in %.1f s", (unsigned long long)(size_ >> 20),
              (Loop::NowNs() - t0) / 1e9);
  return 0;
}

int Journal::WriteSuperBlocking(uint64_t tail_lsn, uint64_t tail_seq) {
  JournalSuper s{};
  memcpy(s.magic, kJournalMagic, 8);
  s.version = kJournalVersion;
  s.size = size_;
  s.generation = ++generation_;
  s.tail_lsn = tail_lsn;
  s.tail_seq = tail_seq;
  s.sum = SuperSum(s);
  super_.zero();
  memcpy(super_.data(), &s, sizeof s);
  int r = PwriteFull(fd_, super_.data(), 4096, (generation_ % 2) * 4096);
  if (r < 0) return r;
  if (fdatasync(fd_) < 0) return -errno;
  tail_lsn_ = tail_lsn;
  tail_seq_ = tail_seq;
  return 0;
}

int Journal::Replay() {
  uint64_t lsn = tail_lsn_, seq = tail_seq_;
  AlignedBuffer page(4096);
  AlignedBuffer data;
  uint64_t t0 = Loop::NowNs();
  // Reads and validates the header page of the batch expected at lsn.
  auto header_at = [&](uint64_t at, BatchHeader* h) {
    if (PreadFull(fd_, page.data(), 4096, Phys(at), /*zero_fill_eof=*/false) < 0) return false;
    memcpy(h, page.data(), sizeof *h);
    uint64_t room = data_size_ - at % data_size_;
    return memcmp(h->magic, kBatchMagic, 8) == 0 && h->seq == seq && h->lsn == at &&
           h->nrec >= 1 && h->nrec <= kMaxBatchRecords && h->total_len >= 4096 &&
           h->total_len % 4096 == 0 && h->total_len <= room && h->header_sum == HeaderSum(page.data(), h->nrec);
  };
  for (;;) {
    BatchHeader h;
    uint64_t at = lsn;
    if (!header_at(at, &h)) {
      // The writer starts a new lap when a batch does not fit before the end.
      if (at % data_size_ == 0) break;
      at = lsn + (data_size_ - lsn % data_size_);
      if (!header_at(at, &h)) break;
    }
    std::vector<JournalRecord> recs(h.nrec);
    memcpy(recs.data(), page.data() + sizeof h, recs.size() * sizeof(JournalRecord));
    uint64_t need = 0;
    for (const auto& r : recs) need += RecordBytes(r);
    if (need + 4096 != h.total_len) break;
    if (data.size() < need) data = AlignedBuffer(need);
    if (need > 0 && PreadFull(fd_, data.data(), need, Phys(at) + 4096, /*zero_fill_eof=*/false) < 0) break;
    bool torn = false;
    uint64_t off = 0;
    for (const auto& r : recs) {
      uint64_t n = RecordBytes(r);
      if (r.op == kJournalWrite) {
        std::vector<uint64_t> sums(r.c1 - r.c0);
        for (size_t c = 0; c < sums.size(); ++c)
          sums[c] = Checksum(data.data() + off + c * tractproto::kChunkSize, tractproto::kChunkSize);
        if (JournalDataSumOfSums(sums.data(), sums.size()) != r.data_sum) torn = true;
      } else if (r.op == kJournalIntent) {
        if (r.c1 <= r.c0 || Checksum(data.data() + off, static_cast<size_t>(r.c1 - r.c0) * 8) != r.data_sum)
          torn = true;
      }
      off += n;
    }
    if (torn) break;  // never acknowledged: the batch's sync did not complete
    off = 0;
    for (const auto& r : recs) {
      int res = hooks_.replay(r, RecordBytes(r) > 0 ? data.data() + off : nullptr);
      if (res < 0) {
        FLOG_ERROR("journal replay of batch %llu failed: %s", (unsigned long long)seq, errstr(res).c_str());
        return res;
      }
      off += RecordBytes(r);
      stats_.replayed_records++;
    }
    stats_.replayed_batches++;
    lsn = at + h.total_len;
    seq++;
  }
  if (stats_.replayed_batches > 0) {
    int r = hooks_.sync_tracts_blocking();
    if (r < 0) return r;
    r = WriteSuperBlocking(lsn, seq);
    if (r < 0) return r;
    FLOG_INFO("journal: replayed %llu batches (%llu records) in %.3f s",
              (unsigned long long)stats_.replayed_batches, (unsigned long long)stats_.replayed_records,
              (Loop::NowNs() - t0) / 1e9);
  }
  head_ = tail_lsn_;
  next_seq_ = tail_seq_;
  return 0;
}

void Journal::FailStop(int err, const char* what) {
  if (failed_ == 0) {
    failed_ = err < 0 ? err : -EIO;
    FLOG_ERROR("journal: %s failed (%s); refusing further writes until restarted (replay recovers "
               "everything acknowledged)", what, errstr(failed_).c_str());
  }
  std::deque<Pending> pend;
  pend.swap(pending_);
  for (auto& p : pend) p.durable(failed_, 0);
  auto waiters = std::move(cp_waiters_);
  cp_waiters_.clear();
  for (auto& w : waiters) w.second(failed_);
}

void Journal::Append(const JournalRecord& rec, const uint8_t* data, Durable durable) {
  if (closed_) return durable(-ESHUTDOWN, 0);
  if (failed_) return durable(failed_, 0);
  pending_.push_back(Pending{rec, data, std::move(durable)});
  ScheduleKick();
}

void Journal::ScheduleKick() {
  if (kick_posted_ || writing_) return;
  kick_posted_ = true;
  // At the end of this loop turn: every record appended in the turn joins.
  loop_->Post([this] {
    kick_posted_ = false;
    Kick();
  });
}

void Journal::Kick() {
  if (writing_ || pending_.empty()) return;
  // Gather a batch.
  size_t n = 0;
  uint64_t bytes = 0;
  while (n < pending_.size() && n < kMaxBatchRecords) {
    uint64_t b = RecordBytes(pending_[n].rec);
    if (n > 0 && bytes + b > kBatchDataCap) break;
    bytes += b;
    ++n;
  }
  uint64_t total = 4096 + bytes;
  if (total > data_size_ / 2) {
    // Could never be guaranteed room: refuse (only a journal far too small
    // for the IO size gets here).
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    p.durable(-ENOSPC, 0);
    return Kick();
  }
  uint64_t start = head_;
  if (data_size_ - start % data_size_ < total) start += data_size_ - start % data_size_;
  if (start + total - tail_lsn_ > data_size_) {
    // Full: wait for a checkpoint to free the oldest batches.
    if (!waiting_space_) stats_.space_waits++;
    waiting_space_ = true;
    MaybeCheckpoint(true);
    return;
  }
  waiting_space_ = false;
  inflight_.clear();
  for (size_t i = 0; i < n; ++i) {
    inflight_.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  header_.zero();
  BatchHeader h{};
  memcpy(h.magic, kBatchMagic, 8);
  h.seq = next_seq_;
  h.lsn = start;
  h.total_len = static_cast<uint32_t>(total);
  h.nrec = static_cast<uint32_t>(n);
  iov_.clear();
  iov_.push_back({header_.data(), 4096});
  for (size_t i = 0; i < n; ++i) {
    memcpy(header_.data() + sizeof h + i * sizeof(JournalRecord), &inflight_[i].rec, sizeof(JournalRecord));
    uint64_t b = RecordBytes(inflight_[i].rec);
    if (b) iov_.push_back({const_cast<uint8_t*>(inflight_[i].data), b});
  }
  memcpy(header_.data(), &h, sizeof h);
  h.header_sum = HeaderSum(header_.data(), h.nrec);
  memcpy(header_.data(), &h, sizeof h);
  writing_ = true;
  loop_->Writev(fd_, iov_.data(), static_cast<int>(iov_.size()), Phys(start), RWF_DSYNC,
                [this, start, total](int res) {
                  writing_ = false;
                  if (res >= 0 && static_cast<uint64_t>(res) != total) res = -EIO;
                  if (inject_write_error_) {
                    res = inject_write_error_;
                    inject_write_error_ = 0;
                  }
                  std::vector<Pending> done;
                  done.swap(inflight_);
                  uint64_t seq = next_seq_;
                  if (res >= 0) {
                    // Durable. The next batch follows it; this one stays
                    // until every record is applied and a checkpoint passes.
                    head_ = start + total;
                    next_seq_++;
                    batches_.push_back(Batch{seq, head_, static_cast<uint32_t>(done.size())});
                    stats_.batches++;
                    stats_.records += done.size();
                    stats_.bytes += total;
                  }
                  for (auto& p : done) p.durable(res < 0 ? res : 0, seq);
                  if (res < 0) return FailStop(res, "a batch write");
                  if (!pending_.empty()) Kick();
                });
}

void Journal::Applied(uint64_t seq) {
  if (batches_.empty() || seq < batches_.front().seq) return;  // already checkpointed (cannot happen)
  Batch& b = batches_[seq - batches_.front().seq];
  if (b.unapplied > 0) b.unapplied--;
  MaybeCheckpoint(waiting_space_);
}

void Journal::MaybeCheckpoint(bool force) {
  if (checkpointing_ || batches_.empty() || failed_) return;
  if (!force && used() < data_size_ / kCheckpointFraction) return;
  // The checkpoint covers the oldest batches whose records are all applied.
  size_t k = 0;
  while (k < batches_.size() && batches_[k].unapplied == 0) ++k;
  if (k == 0) return;  // Applied() calls back here
  uint64_t target_lsn = batches_[k - 1].end_lsn, target_seq = batches_[k - 1].seq + 1;
  checkpointing_ = true;
  stats_.checkpoints++;
  hooks_.sync_tracts([this, target_lsn, target_seq](int res) {
    if (res < 0) {
      checkpointing_ = false;
      return FailStop(res, "syncing tract files for a checkpoint");
    }
    JournalSuper s{};
    memcpy(s.magic, kJournalMagic, 8);
    s.version = kJournalVersion;
    s.size = size_;
    s.generation = generation_ + 1;
    s.tail_lsn = target_lsn;
    s.tail_seq = target_seq;
    s.sum = SuperSum(s);
    super_.zero();
    memcpy(super_.data(), &s, sizeof s);
    loop_->Write(fd_, super_.data(), 4096, (s.generation % 2) * 4096, RWF_DSYNC,
                 [this, target_lsn, target_seq](int r) {
                   checkpointing_ = false;
                   if (r != 4096) return FailStop(r < 0 ? r : -EIO, "a checkpoint's superblock write");
                   generation_++;
                   tail_lsn_ = target_lsn;
                   tail_seq_ = target_seq;
                   while (!batches_.empty() && batches_.front().seq < target_seq) batches_.pop_front();
                   std::vector<std::pair<uint64_t, Done>> ready;
                   for (auto it = cp_waiters_.begin(); it != cp_waiters_.end();) {
                     if (it->first <= tail_lsn_) {
                       ready.push_back(std::move(*it));
                       it = cp_waiters_.erase(it);
                     } else {
                       ++it;
                     }
                   }
                   for (auto& w : ready) w.second(0);
                   if (!cp_waiters_.empty()) MaybeCheckpoint(true);
                   if (waiting_space_) Kick();
                   MaybeCheckpoint(waiting_space_);
                 });
  });
}

void Journal::Checkpoint(Done done) {
  if (failed_) return done(failed_);
  uint64_t target = head_;
  if (!pending_.empty() || writing_) {
    // Appended but not yet written: wait for the batch, then checkpoint.
    // Everything appended before the call is in or before the NOP's batch:
    // wait for a checkpoint past that batch only, so that writes appended
    // meanwhile cannot keep postponing it.
    Append(JournalRecord{0, 0, 0, 0, kJournalNop, 0, 0, 0}, nullptr, [this, done = std::move(done)](int r, uint64_t seq) {
      if (r < 0) return done(r);
      uint64_t end = 0;
      for (const auto& b : batches_)
        if (b.seq == seq) end = b.end_lsn;
      Applied(seq);
      if (end <= tail_lsn_) return done(0);
      cp_waiters_.emplace_back(end, std::move(done));
      MaybeCheckpoint(true);
    });
    return;
  }
  if (target <= tail_lsn_) return done(0);
  cp_waiters_.emplace_back(target, std::move(done));
  MaybeCheckpoint(true);
}

void Journal::ArmTimer() {
  timer_ = loop_->AddTimer(kCheckpointIntervalNs, [this] {
    MaybeCheckpoint(true);
    ArmTimer();
  });
}

int Journal::Close() {
  if (closed_) return 0;
  closed_ = true;
  loop_->CancelTimer(timer_);
  bool all_applied = true;
  for (const auto& b : batches_) all_applied &= b.unapplied == 0;
  if (failed_) return failed_;  // replay covers it
  if (writing_ || checkpointing_ || !pending_.empty() || !all_applied) return -EBUSY;  // replay covers it
  if (head_ == tail_lsn_) return 0;
  int r = hooks_.sync_tracts_blocking();
  if (r < 0) return r;
  r = WriteSuperBlocking(head_, next_seq_);
  if (r == 0) batches_.clear();
  return r;
}

}  // namespace flurry::tractstore
