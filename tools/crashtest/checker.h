// SPDX-License-Identifier: Apache-2.0
//
// Checker: decides whether a disk read back after a crash is one the write
// mode allows, given the generation's History (history.h), and measures
// what was lost.
//
// For each sector the checker finds which write (or the baseline) the
// observed stamp belongs to; anything else is a violation (garbage, a torn
// sector, data of a write that never touched the sector, zeros where the
// baseline had data). Then, per invariant:
//
// kWriteThrough — every acknowledged write is present in each of its
//   sectors unless a later write to that sector replaced it; sectors of
//   unacknowledged (in-flight or failed) writes hold old or new data.
//
// kPrefix (fast-ack, log) — there is an R such that every sector holds
//   exactly the last write of epochs <= R to it, or some write of epoch R+1
//   to it that came after that one; nothing of epochs > R+1; never garbage.
//   Also, writes promised durable (History::protect_ack_seq, acknowledged
//   FUA writes) are present unless replaced. Each sector allows an interval
//   of R; the disk is consistent iff the intervals intersect. R is reported
//   as the largest feasible value (the least loss).
//
// Statistics, for every invariant: epochs lost = (epoch of the newest
// acknowledged write) - D, at least 0, where D is the newest epoch up to
// which every acknowledged write survived (R above, except that a missing
// write that was never acknowledged does not count as lost); bytes lost =
// 512 x the sectors that hold something older than the last acknowledged
// write to them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/crashtest/history.h"

namespace flurry::crashtest {

enum class Invariant { kWriteThrough, kPrefix };

struct CheckResult {
  bool ok = true;
  uint64_t bad_sectors = 0;        // sectors that break the invariant
  bool prefix_consistent = true;   // the R intervals intersect
  int64_t r = -1;                  // largest feasible R (if prefix_consistent)
  int64_t durable_epoch = -1;      // D: every acknowledged write of epochs <= D survived
  int64_t last_acked_epoch = -1;   // epoch of the newest acknowledged write
  int64_t epochs_lost = 0;
  uint64_t bytes_lost = 0;
  std::vector<std::string> details;  // the first few violations, in words
};

CheckResult Check(const History& h, const std::vector<uint64_t>& observed, Invariant inv,
                  size_t max_details = 8);

}  // namespace flurry::crashtest
