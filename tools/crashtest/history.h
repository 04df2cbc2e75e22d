// SPDX-License-Identifier: Apache-2.0
//
// History: what the crash checker knows about one generation of a crash
// test — the disk's content when the generation began (the baseline, one
// stamp value per sector, see stamp.h) and every write sent since, in the
// order it was sent.
//
// The workload (workload.h) keeps three rules so that this is exact:
// - two writes that overlap are never in flight at once, so for each sector
//   the order in `writes` is the order in which the device saw them;
// - a FLUSH is sent only when no write is in flight, and no write is sent
//   until the FLUSH is acknowledged, so a write's epoch (the number of
//   FLUSHes acknowledged before it was sent) is unambiguous;
// - every data write stamps each of its sectors with its own id; trims and
//   zeroes (also "writes" here) leave zeros.
#pragma once

#include <cstdint>
#include <vector>

namespace flurry::crashtest {

enum class WriteState : uint8_t {
  kInFlight,  // sent, no reply yet (at a crash: may or may not have landed)
  kAcked,     // acknowledged with success
  kFailed,    // replied with an error: may or may not have landed
};

// Trim and Zero are "writes" of zeros: flurry promises that both read back
// as zeros (BlockDevice allows anything after a trim; flurry is stricter).
enum class WriteKind : uint8_t { kData, kTrim, kZero };

struct WriteRec {
  uint64_t id = 0;        // stamp id (> 0); data writes stamp it, trims and zeroes leave zeros
  WriteKind kind = WriteKind::kData;
  uint64_t sector = 0;    // first sector
  uint32_t sectors = 0;   // length in sectors
  int64_t epoch = 0;      // FLUSHes acknowledged before it was sent
  bool fua = false;
  WriteState state = WriteState::kInFlight;
  uint64_t ack_seq = 0;       // position among acknowledgements (1, 2, ...), 0 if none
  uint64_t sent_ack_seq = 0;  // acknowledgements seen when it was sent
  // What its sectors read back as: the id, or kZero (stamp.h) for trims and zeroes.
  uint64_t value() const { return kind == WriteKind::kData ? id : 0; }
};

struct History {
  std::vector<uint64_t> baseline;  // stamp value of each sector at the start
  std::vector<WriteRec> writes;    // in the order sent
  // Every acknowledged write with ack_seq <= protect_ack_seq was promised
  // durable by a later acknowledgement (a FUA write's, or a completed
  // Quiesce()): it must survive even in the prefix-consistent modes.
  uint64_t protect_ack_seq = 0;
  int64_t flushes_acked = 0;       // the current epoch
};

}  // namespace flurry::crashtest
