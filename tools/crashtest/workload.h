// SPDX-License-Identifier: Apache-2.0
//
// Workload: the random IO the crash harness sends to a device, and the
// bookkeeping that makes the checker exact (history.h states the rules).
//
// A driver (in-process or NBD) asks Next() for the next request whenever
// it may send one and reports every reply (WriteDone, FlushDone, ReadDone).
// Next() returns kNone when the rules say to wait for replies first:
// - writes (and trims and zeroes, which count as writes of zeros):
//   mixed sizes (512 B .. max_write), 4 KiB-aligned or only
//   sector-aligned, half of them in a small hot region so that sectors are
//   overwritten often; never overlapping a write or read in flight; at most
//   `depth` in flight; FUA on a fraction of them;
// - FLUSH: at flush_rate per request, sent once no write is in flight; no
//   write is sent until it is acknowledged;
// - reads (read_rate): never overlapping a write in flight; ReadDone()
//   checks that each sector reads back as the last write to it (read your
//   writes) and counts the sectors that do not.
// Barriers (BarrierStart/BarrierDone) model Engine::Quiesce(): when one
// completes, everything acknowledged before it started is promised durable.
// Not thread-safe; one driver thread.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tools/crashtest/history.h"

namespace flurry::crashtest {

struct WorkloadOptions {
  uint32_t max_write = 256u << 10;  // bytes, multiple of 512
  uint32_t depth = 8;               // writes in flight at most
  double flush_rate = 0.05;         // per request
  double fua_rate = 0.03;           // per write
  double read_rate = 0.05;          // per request
  double trim_rate = 0.02;          // per request (Trim / NBD_CMD_TRIM)
  double zero_rate = 0.02;          // per request (Zero / NBD_CMD_WRITE_ZEROES)
  double unaligned_rate = 0.3;      // writes aligned to 512 B but not to 4 KiB
  double hot_rate = 0.5;            // writes inside the hot region
  uint64_t hot_bytes = 256u << 10;
};

struct Op {
  enum Kind { kNone, kWrite, kFlush, kRead, kTrim, kZero } kind = kNone;
  size_t write = 0;      // kWrite, kTrim, kZero: index into history().writes
  uint64_t off = 0;      // bytes
  uint32_t len = 0;      // bytes
  bool fua = false;
  bool may_trim = false;  // kZero
};

class Workload {
 public:
  Workload(const WorkloadOptions& opts, uint64_t disk_bytes, uint64_t tag, uint64_t seed);

  // Starts a generation: the disk now holds `baseline` (one stamp value per
  // sector) and nothing is in flight. Epochs start again at 0.
  void StartGeneration(std::vector<uint64_t> baseline);
  Op Next();
  // Fills buf (len bytes) with the stamps of data write `w`.
  void FillWrite(size_t w, uint8_t* buf) const;
  void WriteDone(size_t w, int res);  // also for trims and zeroes
  void FlushDone(int res);
  void ReadDone(const Op& op, const uint8_t* buf, int res);
  // Returns a token for BarrierDone.
  uint64_t BarrierStart() const { return ack_seq_; }
  void BarrierDone(uint64_t token, int res);

  const History& history() const { return h_; }
  uint64_t tag() const { return tag_; }
  uint64_t sectors() const { return sectors_; }
  uint64_t writes_in_flight() const { return writes_in_flight_; }
  bool flush_in_flight() const { return flush_in_flight_; }
  uint64_t acked_writes() const { return acked_writes_; }
  uint64_t replies() const { return replies_; }  // every reply so far
  uint64_t failed_ops() const { return failed_ops_; }
  // Read-your-writes failures since construction, and the first few in words.
  uint64_t read_violations() const { return read_violations_; }
  const std::vector<std::string>& read_details() const { return read_details_; }
  uint64_t read_checks() const { return read_checks_; }

 private:
  struct Range { uint64_t begin, end; bool write; };
  bool Overlaps(uint64_t begin, uint64_t end, bool writes_only) const;
  void Forget(uint64_t begin, uint64_t end);
  bool PickRange(uint64_t* sector, uint32_t* count);

  WorkloadOptions o_;
  uint64_t sectors_, tag_;
  std::mt19937_64 rng_;
  uint64_t hot_start_ = 0, hot_sectors_ = 0;
  History h_;
  std::vector<int64_t> last_write_;  // per sector: index of its last write sent, -1 = baseline
  std::vector<Range> in_flight_;
  uint64_t next_id_ = 1;
  uint64_t ack_seq_ = 0;
  uint64_t writes_in_flight_ = 0;
  bool flush_wanted_ = false, flush_in_flight_ = false;
  uint64_t acked_writes_ = 0, failed_ops_ = 0, replies_ = 0;
  uint64_t read_violations_ = 0, read_checks_ = 0;
  std::vector<std::string> read_details_;
};

}  // namespace flurry::crashtest
