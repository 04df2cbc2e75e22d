// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/checker.h"

#include <algorithm>
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
  explicit SectorIndex(const History& h) : start(h.baseline.size() + 1, 0) {
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
  const char* kind = w.kind == WriteKind::kData ? "write" : w.kind == WriteKind::kTrim ? "trim" : "zero";
  return std::string(kind) + " #" + std::to_string(w.id) + " (epoch " + std::to_string(w.epoch) + ", " + st +
         (w.fua ? ", FUA" : "") + ", sectors " + std::to_string(w.sector) + "+" + std::to_string(w.sectors) + ")";
}

// What one sector allows.
struct SectorVerdict {
  bool bad = false;
  std::string why;
  int64_t best = -1;  // the newest position the content can be (0 = baseline, j = j-th write)
  bool lost = false;  // older than the last acknowledged write to the sector
  int64_t acked_hi = kInf;  // the content shows every acked write of epochs <= this survived
  std::vector<std::pair<int64_t, int64_t>> r;  // merged intervals of R it allows, within [-1, E]
};

class Analyzer {
 public:
  Analyzer(const History& h, const std::vector<uint64_t>& obs, Invariant inv)
      : h_(h), obs_(obs), inv_(inv), idx_(h) {
    by_id_.reserve(h.writes.size());
    for (uint32_t i = 0; i < h.writes.size(); ++i) {
      const WriteRec& w = h.writes[i];
      if (w.kind == WriteKind::kData) by_id_[w.id] = i;
      max_epoch_ = std::max(max_epoch_, w.epoch);
      if (w.state == WriteState::kAcked) last_acked_epoch_ = std::max(last_acked_epoch_, w.epoch);
    }
  }
  int64_t max_epoch() const { return max_epoch_; }
  int64_t last_acked_epoch() const { return last_acked_epoch_; }

  std::string At(uint64_t s, int64_t pos) const {
    const uint32_t* ws = idx_.list.data() + idx_.start[s];
    return pos == 0 ? "its old content (" + Value(obs_[s]) + ")" : Describe(h_.writes[ws[pos - 1]]);
  }

  SectorVerdict Sector(uint64_t s) const {
    SectorVerdict out;
    const uint32_t* ws = idx_.list.data() + idx_.start[s];
    const uint32_t k = idx_.start[s + 1] - idx_.start[s];
    const uint64_t v = obs_[s];
    // Positions whose content equals what was read.
    std::vector<int64_t> cand;
    if (v == h_.baseline[s]) cand.push_back(0);
    if (v == kZero) {
      for (uint32_t j = 0; j < k; ++j)
        if (h_.writes[ws[j]].kind != WriteKind::kData) cand.push_back(j + 1);
    } else if (auto it = by_id_.find(v); v != kGarbage && it != by_id_.end()) {
      for (uint32_t j = 0; j < k; ++j)
        if (ws[j] == it->second) cand.push_back(j + 1);
    }
    if (cand.empty()) {
      out.bad = true;
      out.why = "sector " + std::to_string(s) + " holds " + Value(v);
      if (v != kZero && v != kGarbage) {
        auto it = by_id_.find(v);
        out.why += it == by_id_.end() ? ", which is no write of this generation"
                                      : ", but " + Describe(h_.writes[it->second]) + " never wrote this sector";
      }
      out.why += "; it held " + Value(h_.baseline[s]) + " before";
      if (k > 0) out.why += " and its last write was " + Describe(h_.writes[ws[k - 1]]);
      return out;
    }
    uint32_t required = 0, last_acked = 0;
    for (uint32_t j = 0; j < k; ++j) {
      const WriteRec& w = h_.writes[ws[j]];
      if (w.state != WriteState::kAcked) continue;
      last_acked = j + 1;
      if (inv_ == Invariant::kWriteThrough || w.fua || w.ack_seq <= h_.protect_ack_seq) required = j + 1;
    }
    out.best = cand.back();
    out.lost = out.best < static_cast<int64_t>(last_acked);
    for (uint32_t j = static_cast<uint32_t>(out.best); j < k; ++j)
      if (h_.writes[ws[j]].state == WriteState::kAcked) {
        out.acked_hi = h_.writes[ws[j]].epoch - 1;
        break;
      }
    if (out.best < static_cast<int64_t>(required)) {
      out.bad = true;
      out.why = "sector " + std::to_string(s) + " holds " + At(s, out.best) + " but acknowledged " +
                Describe(h_.writes[ws[required - 1]]) + " is lost" +
                (inv_ == Invariant::kPrefix ? " although it was promised durable (FUA or quiesce)" : "");
      return out;
    }
    // Position p allows R in [epoch(p) - 1, epoch(p+1) - 1]: the sector holds
    // the last write of epochs <= R, or a write of epoch R + 1.
    const int64_t e_max = std::max<int64_t>(max_epoch_, -1);
    for (int64_t p : cand) {
      if (p < static_cast<int64_t>(required)) continue;
      int64_t lo = p == 0 ? -1 : h_.writes[ws[p - 1]].epoch - 1;
      int64_t hi = p < k ? h_.writes[ws[p]].epoch - 1 : kInf;
      hi = std::min(hi, e_max);
      if (lo > hi) continue;
      if (!out.r.empty() && lo <= out.r.back().second + 1) out.r.back().second = std::max(out.r.back().second, hi);
      else out.r.emplace_back(lo, hi);
    }
    return out;
  }

 private:
  const History& h_;
  const std::vector<uint64_t>& obs_;
  Invariant inv_;
  SectorIndex idx_;
  std::unordered_map<uint64_t, uint32_t> by_id_;
  int64_t max_epoch_ = -1, last_acked_epoch_ = -1;
};

std::string Ranges(const std::vector<std::pair<int64_t, int64_t>>& r) {
  std::string t;
  for (auto [lo, hi] : r) t += (t.empty() ? "" : " or ") + std::to_string(lo) + ".." + std::to_string(hi);
  return t.empty() ? "none" : t;
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
  Analyzer a(h, observed, inv);
  r.last_acked_epoch = a.last_acked_epoch();
  const int64_t e_max = std::max<int64_t>(a.max_epoch(), -1);
  // diff[R + 1]: how many sectors allow R, as a difference array over [-1, E].
  std::vector<int64_t> diff(static_cast<size_t>(e_max + 3), 0);
  uint64_t counted = 0;
  int64_t acked_hi = kInf;
  for (uint64_t s = 0; s < n; ++s) {
    SectorVerdict v = a.Sector(s);
    if (v.lost) r.bytes_lost += kSector;
    if (v.best >= 0) acked_hi = std::min(acked_hi, v.acked_hi);
    if (v.bad) {
      r.ok = false;
      r.bad_sectors++;
      note(v.why);
      continue;
    }
    counted++;
    for (auto [lo, hi] : v.r) {
      diff[static_cast<size_t>(lo + 1)]++;
      diff[static_cast<size_t>(hi + 2)]--;
    }
  }
  // The largest R every sector allows; else the R most sectors allow.
  int64_t run = 0, best_r = -1, best_count = -1;
  r.prefix_consistent = false;
  for (int64_t R = -1; R <= e_max; ++R) {
    run += diff[static_cast<size_t>(R + 1)];
    if (run == static_cast<int64_t>(counted)) {
      r.prefix_consistent = true;
      r.r = R;
    }
    if (run >= best_count) {
      best_count = run;
      best_r = R;
    }
  }
  if (!r.prefix_consistent) r.r = best_r;
  r.durable_epoch = std::min(acked_hi, e_max);
  r.epochs_lost = std::max<int64_t>(0, r.last_acked_epoch - r.durable_epoch);
  if (!r.prefix_consistent && inv == Invariant::kPrefix) {
    r.ok = false;
    std::string t = "no durable prefix fits: the best R, " + std::to_string(best_r) + ", leaves " +
                    std::to_string(counted - static_cast<uint64_t>(best_count)) + " sectors out";
    int shown = 0;
    for (uint64_t s = 0; s < n && shown < 2; ++s) {
      SectorVerdict v = a.Sector(s);
      if (v.bad) continue;
      bool fits = false;
      for (auto [lo, hi] : v.r) fits |= lo <= best_r && best_r <= hi;
      if (fits) continue;
      t += (shown++ ? "; " : ", e.g. ") + std::string("sector ") + std::to_string(s) + " holds " + a.At(s, v.best) +
           ", which needs R in " + Ranges(v.r);
    }
    note(t);
  }
  return r;
}

}  // namespace flurry::crashtest
