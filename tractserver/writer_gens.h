// SPDX-License-Identifier: Apache-2.0
//
// WriterGens: the newest writer generation this tract server has seen for
// each blob, kept durably in DIR/writers (format: docs/DISK_FORMAT.md,
// "Writer generations").
//
// Why: flurry-disk holds a volume's write lease at flurry-meta, and every
// grant bumps the volume's generation. Its requests carry that generation
// (tract protocol v2, `writer_gen`). A server that has seen generation g for
// a blob refuses WRITE, TRIM and ZERO of that blob carrying a smaller one,
// also over connections made later and after its own restart. That stops a
// superseded writer that passed its lease check and then stalled, which
// the per-connection, in-memory FENCE cannot (it is lost with the server
// process, and a writer that reconnects is not covered by it).
//
// Contract
// - Not thread-safe; the tract server's loop thread only.
// - RaiseAsync() (the tract server's path) records through the loop and
//   group-commits: the raises that arrive while a record is being written
//   and synced go out together in the next write, with one fdatasync. So a
//   flurry-disk that opens 150 volumes (150 FENCEs) costs each server a few
//   syncs, and none of them blocks its loop. Newest() includes generations
//   being recorded (refuse older writers at once); Get() only durable ones.
// - EraseAsync() (DELETE_BLOB) goes through the same group commit.
// - Raise() and Erase() are blocking (an append and an fdatasync). Raise is
//   for tests and tools only; Erase (journal replay at open) queues behind a
//   group commit that is under way instead of writing beside it, and then
//   is not durable at return -- which is harmless: a leftover generation of
//   a deleted blob only refuses writers of a blob that is gone.
// - Compaction (rewriting the live records once superseded ones pile up,
//   every ~1,000 records) is a blocking write, fdatasync and rename.
// - A raise completes (0) only once the new generation is durable; a failed
//   write or sync stops the table (every later raise or erase fails with
//   that error; a restart reloads the file).
// - At most kMaxBlobs blobs are tracked; raising a new one beyond that is
//   -ENOSPC (the request is refused, never let through unchecked).
// - Open() accepts bad records in the file's last 4 KiB (what a crash left
//   of the last append or group commit, which no batch crosses: none of it
//   was answered) and drops them and what follows; a bad record before that
//   is -EIO: a lost generation could let a superseded writer in.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/loop.h"
#include "common/result.h"
#include "tractserver/tract_format.h"

namespace flurry::tractstore {

class WriterGens {
 public:
  static constexpr size_t kMaxBlobs = 65536;
  static constexpr size_t kMaxBatch = 4096 / sizeof(WriterRecord);  // records per group commit

  // max_blobs: kMaxBlobs except in tests.
  static Result<std::unique_ptr<WriterGens>> Open(const std::string& path, size_t max_blobs = kMaxBlobs);
  ~WriterGens();

  // The blob's generation; 0 if none was recorded.
  uint64_t Get(uint64_t hi, uint64_t lo) const;
  // Makes gen the blob's generation if it is newer (durably); 0 also when
  // it is not newer (nothing to do).
  int Raise(uint64_t hi, uint64_t lo, uint64_t gen);
  // The same through loop: done(0) once gen or a newer generation of the
  // blob is durable (at once if it already is), done(<0) as Raise would
  // return. done may run before RaiseAsync returns.
  void RaiseAsync(Loop* loop, uint64_t hi, uint64_t lo, uint64_t gen, std::function<void(int)> done);
  // The newest generation of the blob, durable or being recorded.
  uint64_t Newest(uint64_t hi, uint64_t lo) const;
  // Forgets the blob (journal replay of a DELETE_BLOB), durably -- unless a
  // group commit is under way: then queued behind it (see the contract).
  int Erase(uint64_t hi, uint64_t lo);
  // The same through loop and the group commit (the tract server's
  // DELETE_BLOB): done(0) once the erase is durable (at once if the blob
  // has no generation), done(<0) if the table has stopped.
  void EraseAsync(Loop* loop, uint64_t hi, uint64_t lo, std::function<void(int)> done);

  size_t size() const { return gens_.size(); }
  uint64_t records() const { return records_; }
  uint64_t compactions() const { return compactions_; }
  uint64_t syncs() const { return syncs_; }  // fdatasyncs of appended records

 private:
  struct BlobHash {
    size_t operator()(const std::pair<uint64_t, uint64_t>& b) const {
      return static_cast<size_t>(b.first * 0x9E3779B97F4A7C15ull ^ b.second);
    }
  };
  WriterGens(std::string path, size_t max_blobs) : path_(std::move(path)), max_blobs_(max_blobs) {}
  using Key = std::pair<uint64_t, uint64_t>;
  int Load();
  int Append(uint64_t hi, uint64_t lo, uint64_t gen);
  int Compact();
  void Apply(const WriterRecord& rec);
  static WriterRecord MakeRecord(uint64_t hi, uint64_t lo, uint64_t gen);
  void StartBatch();
  void FinishBatch(int res);
  void Stop(int res, const char* what);

  std::string path_;
  size_t max_blobs_;
  int fd_ = -1;
  int failed_ = 0;
  uint64_t records_ = 0;  // records in the file (its size / record size)
  uint64_t compactions_ = 0;
  uint64_t syncs_ = 0;
  std::unordered_map<Key, uint64_t, BlobHash> gens_;
  // Group commit (RaiseAsync): batches in file order, the front one being
  // written and synced while busy_. A batch never crosses a kMaxBatch-record
  // (4 KiB) boundary of the file, so whatever a power loss during one left
  // bad lies in the file's last 4 KiB, which Load may drop; damage anywhere
  // before that is corruption (-EIO).
  struct Batch {
    size_t cap = kMaxBatch;  // records it may hold: up to the next 4 KiB boundary
    std::shared_ptr<std::vector<WriterRecord>> recs = std::make_shared<std::vector<WriterRecord>>();
    std::unordered_map<Key, uint64_t, BlobHash> max;  // newest generation per blob in it
    std::vector<std::function<void(int)>> waiters;
  };
  void RebuildPending();
  Batch& OpenBatch();  // the queued batch that takes the next record
  void FailQueued(int res);
  Loop* loop_ = nullptr;
  bool busy_ = false;
  std::deque<Batch> queue_;
  std::unordered_map<Key, uint64_t, BlobHash> pending_;  // newest queued generation per blob
  size_t pending_fresh_ = 0;  // blobs in pending_ that gens_ does not hold
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace flurry::tractstore
