// SPDX-License-Identifier: Apache-2.0
//
// Workload: a random IO driver with an in-memory model of the volume, for
// the cluster tests.
//
// - Issues writes, reads, trims and zeroes of 1 B .. max_len at aligned and
//   unaligned offsets, up to qd at once, never two overlapping in flight
//   (byte granularity: sub-chunk neighbours may share a 4 KiB chunk).
// - The model holds the bytes and the per-chunk allocation the tract store
//   must show (tract_store.h: writes allocate; trims free whole chunks and
//   zero partial ones, which allocates them if the tract exists; zero with
//   keep_alloc allocates). It changes when an operation is acknowledged; a
//   failed mutation makes its bytes and chunks "unknown" (never checked).
// - Reads are compared byte for byte; their allocation bitmaps are checked
//   for chunks no mutation touched while the read was in flight.
// - Loop thread only. Errors are collected as text (first 20 kept).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/loop.h"
#include "fdsclient/fds_client.h"
#include "tests/cluster/volume_io.h"

namespace flurry::testing {

// Runs the loop until pred() or timeout; returns pred().
bool RunUntil(Loop* loop, const std::function<bool()>& pred, uint64_t timeout_ms);

struct WorkloadOptions {
  uint64_t ops = 1000;  // operations to issue (0 = until Stop())
  unsigned qd = 16;
  unsigned write_pct = 50, trim_pct = 8, zero_pct = 4;  // the rest are reads
  uint32_t max_len = 1u << 20;
  uint64_t seed = 1;
  uint64_t timeout_ms = 120000;
};

struct WorkloadStats {
  uint64_t writes = 0, reads = 0, trims = 0, zeroes = 0;
  uint64_t failed = 0, bytes_written = 0, bytes_read = 0, bytes_checked = 0, bitmap_bits_checked = 0;
  uint64_t read_mismatches = 0, bitmap_mismatches = 0;
};

class Workload {
 public:
  enum : uint8_t { kNo = 0, kYes = 1, kUnknown = 2 };

  Workload(Loop* loop, FdsClient* client, BlobRef blob, uint64_t size, WorkloadOptions o);
  ~Workload();
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // Issues ops until o.ops are done (or Stop()) and everything drained.
  // after_completion runs after each completed op. Returns false on timeout.
  bool Run(const std::function<void()>& after_completion = {});
  void Stop() { stop_ = true; }

  // Reads the whole volume in 1 MiB pieces and checks bytes and bitmaps;
  // then checks StatTract of every tract against the model.
  bool VerifyAll();

  // From now on, marks in `mask` (one byte per volume byte) every byte that
  // a mutation in flight now, or issued later, may change.
  void TrackDirty(std::vector<uint8_t>* mask);

  const std::vector<uint8_t>& data() const { return data_; }
  const std::vector<uint8_t>& known() const { return known_; }
  const WorkloadStats& stats() const { return stats_; }
  const std::vector<std::string>& errors() const { return errors_; }
  uint64_t completed() const { return completed_; }
  std::string Summary() const;

 private:
  enum class Kind { kWrite, kRead, kTrim, kZero };
  struct InFlight {
    uint64_t id;
    Kind kind;
    uint64_t off;
    uint32_t len;
    std::vector<uint8_t> buf;
    std::vector<uint8_t> trim_exists;  // per tract piece, for trims
    std::vector<uint64_t> gens;        // reads: chunk generations at issue
    std::vector<uint8_t> quiet;        // reads: chunk had no mutation in flight at issue
  };

  bool IssueOne();
  void Issue(InFlight* f);
  void Complete(uint64_t id, int res, std::vector<uint8_t> bitmap);
  bool Overlaps(uint64_t off, uint32_t len) const;
  uint64_t Rand();
  void Error(std::string e);

  Loop* loop_;
  FdsClient* client_;
  BlobRef blob_;
  VolumeIo io_;
  uint64_t size_;
  WorkloadOptions o_;
  uint64_t rng_;
  bool stop_ = false;
  uint64_t issued_ = 0, completed_ = 0, next_id_ = 1;
  std::vector<InFlight*> inflight_;
  std::vector<uint8_t>* dirty_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  // The model.
  std::vector<uint8_t> data_, known_;
  std::vector<uint8_t> alloc_;         // per chunk: kNo / kYes / kUnknown
  std::vector<uint8_t> exists_;        // per tract: kNo / kYes / kUnknown
  std::vector<uint32_t> creators_;     // per tract: writes/zeroes in flight
  std::vector<uint32_t> chunk_busy_;   // per chunk: mutations in flight
  std::vector<uint64_t> chunk_gen_;    // per chunk: bumped on mutation issue and completion

  WorkloadStats stats_;
  std::vector<std::string> errors_;
};

}  // namespace flurry::testing
