// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/checker.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <unordered_map>

#include "tools/crashtest/stamp.h"

namespace flurry::crashtest {
namespace {

constexpr int64_t kInf = std::numeric_limits<int64_t>::max();

// The writes of a history, indexed by sector (compressed rows, in order sent).
struct SectorIndex {
  std::vector<uint32_t> start;  // sectors + 1
  std::vector<uint32_t> list;   // write indices
  SectorIndex(const History& h) : start(h.baseline.size() + 1, 0) {
    const uint64_t n = h.baseline.size();
    for (const WriteRec& w : h.writes)
      for (uint64_t s = w.sector; s < w.sector + w.sectors && s < n; ++s) start[s + 1]++;
    for (uint64_t s = 0; s < n; ++s) start[s + 1] += start[s];
    list.resize(start[n]);
    std::vector<uint32_t> fill(start.begin(), start.end() - 1);
    for (uint32_t i = 0; i < h.writes.size(); ++i) {
      const WriteRec& w = h.writes[i];
      for (uint64_t s = w.sector; s < w.sector + w.sectors && s < n; ++s) list[fill[s]++] = i;
    }
  }
};

std::string Value(uint64_t v) {
  if (v == kZero) return "zeros";
  if (v == kGarbage) return "garbage";
  return "write #" + std::to_string(v);
}

std::string Describe(const WriteRec& w) {
  const char* st = w.state == WriteState::kAcked ? "acked" : w.state == WriteState::kFailed ? "failed" : "in flight";
  return "write #" + std::to_string(w.id) + " (epoch " + std::to_string(w.epoch) + ", " + st +
         (w.fua ? ", FUA" : "") + ", sectors " + std::to_string(w.sector) + "+" + std::to_string(w.sectors) + ")";
}

}  // namespace

CheckResult Check(const History& h, const std::vector<uint64_t>& observed, Invariant inv,
                  size_t max_details) {
  CheckResult r;
  const uint64_t n = h.baseline.size();
  auto note = [&](std::string s) {
    if (r.details.size() < max_details) r.details.push_back(std::move(s));
  };
  if (observed.size() != n) {
    r.ok = false;
    note("read back " + std::to_string(observed.size()) + " sectors, expected " + std::to_string(n));
    return r;
  }
  SectorIndex idx(h);
  std::unordered_map<uint64_t, uint32_t> by_id;
  by_id.reserve(h.writes.size());
  int64_t max_epoch = -1;
  for (uint32_t i = 0; i < h.writes.size(); ++i) {
    const WriteRec& w = h.writes[i];
    by_id[w.id] = i;
    max_epoch = std::max(max_epoch, w.epoch);
    if (w.state == WriteState::kAcked) r.last_acked_epoch = std::max(r.last_acked_epoch, w.epoch);
  }

  int64_t lo = -1, hi = kInf, acked_hi = kInf;
  uint64_t lo_sector = 0, hi_sector = 0;
  std::vector<int64_t> pos_of(n, 0);
  for (uint64_t s = 0; s < n; ++s) {
    const uint32_t* ws = idx.list.data() + idx.start[s];
    const uint32_t k = idx.start[s + 1] - idx.start[s];
    const uint64_t v = observed[s];
    int64_t pos = -1;  // 0 = baseline, j = the j-th write to this sector
    if (v == h.baseline[s]) {
      pos = 0;
    } else if (auto it = by_id.find(v); v != kZero && v != kGarbage && it != by_id.end()) {
      for (uint32_t j = 0; j < k; ++j)
        if (ws[j] == it->second) { pos = j + 1; break; }
    }
    if (pos < 0) {
      r.ok = false;
      r.bad_sectors++;
      std::string why = "sector " + std::to_string(s) + " holds " + Value(v);
      if (v != kZero && v != kGarbage) {
        auto it = by_id.find(v);
        why += it == by_id.end() ? ", which is no write of this generation"
                                 : ", but " + Describe(h.writes[it->second]) + " never wrote this sector";
      }
      why += "; it held " + Value(h.baseline[s]) + " before";
      if (k > 0) why += " and its last write was " + Describe(h.writes[ws[k - 1]]);
      note(why);
      continue;
    }
    pos_of[s] = pos;
    uint32_t required = 0, last_acked = 0;
    for (uint32_t j = 0; j < k; ++j) {
      const WriteRec& w = h.writes[ws[j]];
      if (w.state != WriteState::kAcked) continue;
      last_acked = j + 1;
      if (inv == Invariant::kWriteThrough || w.fua || w.ack_seq <= h.protect_ack_seq) required = j + 1;
    }
    if (pos < static_cast<int64_t>(required)) {
      r.ok = false;
      r.bad_sectors++;
      note("sector " + std::to_string(s) + " holds " +
           (pos == 0 ? "its old content (" + Value(v) + ")" : Describe(h.writes[ws[pos - 1]])) +
           " but acknowledged " + Describe(h.writes[ws[required - 1]]) + " is lost" +
           (inv == Invariant::kPrefix ? " although it was promised durable (FUA or quiesce)" : ""));
    }
    if (pos < static_cast<int64_t>(last_acked)) r.bytes_lost += kSector;
    // The R for which this sector's content is allowed: [slo, shi].
    int64_t slo, shi;
    if (pos == 0) {
      slo = -1;
      shi = k > 0 ? h.writes[ws[0]].epoch - 1 : kInf;
    } else {
      slo = h.writes[ws[pos - 1]].epoch - 1;
      shi = pos < k ? h.writes[ws[pos]].epoch - 1 : kInf;
    }
    for (uint32_t j = static_cast<uint32_t>(pos); j < k; ++j)
      if (h.writes[ws[j]].state == WriteState::kAcked) {
        acked_hi = std::min(acked_hi, h.writes[ws[j]].epoch - 1);
        break;
      }
    if (slo > lo) { lo = slo; lo_sector = s; }
    if (shi < hi) { hi = shi; hi_sector = s; }
  }

  r.prefix_consistent = lo <= hi;
  r.r = std::min(hi, max_epoch);
  if (r.prefix_consistent) r.r = std::max(r.r, lo);
  r.durable_epoch = std::min(acked_hi, std::max<int64_t>(max_epoch, -1));
  r.epochs_lost = std::max<int64_t>(0, r.last_acked_epoch - r.durable_epoch);
  if (!r.prefix_consistent && inv == Invariant::kPrefix) {
    r.ok = false;
    auto at = [&](uint64_t s) {
      const uint32_t* ws = idx.list.data() + idx.start[s];
      int64_t p = pos_of[s];
      std::string t = "sector " + std::to_string(s) + " holds " +
                      (p == 0 ? "its old content (" + Value(observed[s]) + ")" : Describe(h.writes[ws[p - 1]]));
      if (p < idx.start[s + 1] - idx.start[s]) t += " although later " + Describe(h.writes[ws[p]]) + " exists";
      return t;
    };
    note("no durable prefix fits: " + at(lo_sector) + ", so R >= " + std::to_string(lo) + "; but " +
         at(hi_sector) + ", so R <= " + std::to_string(hi));
  }
  return r;
}

}  // namespace flurry::crashtest
