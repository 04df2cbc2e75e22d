// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/workload.h"

#include <algorithm>

#include "tools/crashtest/stamp.h"

namespace flurry::crashtest {
namespace {
constexpr uint32_t kAlign = 4096 / kSector;  // sectors per 4 KiB
}

Workload::Workload(const WorkloadOptions& opts, uint64_t disk_bytes, uint64_t tag, uint64_t seed)
    : o_(opts), sectors_(disk_bytes / kSector), tag_(tag), rng_(seed) {
  o_.max_write = std::max<uint32_t>(o_.max_write / kSector * kSector, kSector);
  o_.depth = std::max<uint32_t>(o_.depth, 1);
  StartGeneration(std::vector<uint64_t>(sectors_, kZero));
}

void Workload::StartGeneration(std::vector<uint64_t> baseline) {
  h_ = History{};
  h_.baseline = std::move(baseline);
  h_.baseline.resize(sectors_, kZero);
  last_write_.assign(sectors_, -1);
  in_flight_.clear();
  writes_in_flight_ = 0;
  flush_wanted_ = flush_in_flight_ = false;
  hot_sectors_ = std::min<uint64_t>(std::max<uint64_t>(o_.hot_bytes / kSector / kAlign * kAlign, kAlign),
                                    sectors_ / kAlign * kAlign);
  uint64_t slots = (sectors_ - hot_sectors_) / kAlign;
  hot_start_ = std::uniform_int_distribution<uint64_t>(0, slots)(rng_) * kAlign;
}

bool Workload::Overlaps(uint64_t begin, uint64_t end, bool writes_only) const {
  for (const Range& r : in_flight_)
    if ((r.write || !writes_only) && r.begin < end && begin < r.end) return true;
  return false;
}

void Workload::Forget(uint64_t begin, uint64_t end) {
  for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it)
    if (it->begin == begin && it->end == end) {
      in_flight_.erase(it);
      return;
    }
}

bool Workload::PickRange(uint64_t* sector, uint32_t* count) {
  std::uniform_real_distribution<double> u(0, 1);
  auto uni = [&](uint64_t a, uint64_t b) { return std::uniform_int_distribution<uint64_t>(a, b)(rng_); };
  const uint64_t max_s = o_.max_write / kSector;
  const uint64_t mid = std::min<uint64_t>(128, max_s);
  double r = u(rng_);
  uint64_t c = r < 0.4 ? uni(1, std::min<uint64_t>(8, max_s)) : r < 0.75 ? uni(std::min<uint64_t>(8, max_s), mid)
                                                                         : uni(mid, max_s);
  bool aligned = u(rng_) >= o_.unaligned_rate;
  uint64_t start = 0, span = sectors_;
  if (u(rng_) < o_.hot_rate) { start = hot_start_; span = hot_sectors_; }
  if (aligned) c = (c + kAlign - 1) / kAlign * kAlign;
  c = std::min(c, span);
  if (c == 0) return false;
  uint64_t s = start + uni(0, span - c);
  if (aligned) s = s / kAlign * kAlign;
  *sector = s;
  *count = static_cast<uint32_t>(c);
  return true;
}

Op Workload::Next() {
  Op op;
  if (flush_in_flight_) return op;
  std::uniform_real_distribution<double> u(0, 1);
  if (!flush_wanted_ && u(rng_) < o_.flush_rate) flush_wanted_ = true;
  if (flush_wanted_) {
    if (writes_in_flight_ > 0) return op;
    flush_wanted_ = false;
    flush_in_flight_ = true;
    op.kind = Op::kFlush;
    return op;
  }
  uint64_t s;
  uint32_t c;
  if (u(rng_) < o_.read_rate) {
    if (!PickRange(&s, &c) || Overlaps(s, s + c, true)) return op;
    in_flight_.push_back({s, s + c, false});
    op.kind = Op::kRead;
    op.off = s * kSector;
    op.len = c * kSector;
    return op;
  }
  if (writes_in_flight_ >= o_.depth) return op;
  if (!PickRange(&s, &c) || Overlaps(s, s + c, false)) return op;
  double k = u(rng_);
  WriteRec w;
  w.kind = k < o_.trim_rate ? WriteKind::kTrim : k < o_.trim_rate + o_.zero_rate ? WriteKind::kZero : WriteKind::kData;
  w.id = next_id_++;
  w.sector = s;
  w.sectors = c;
  w.epoch = h_.flushes_acked;
  w.fua = w.kind == WriteKind::kData && u(rng_) < o_.fua_rate;
  w.sent_ack_seq = ack_seq_;
  h_.writes.push_back(w);
  size_t idx = h_.writes.size() - 1;
  for (uint64_t i = s; i < s + c; ++i) last_write_[i] = static_cast<int64_t>(idx);
  in_flight_.push_back({s, s + c, true});
  writes_in_flight_++;
  op.kind = w.kind == WriteKind::kData ? Op::kWrite : w.kind == WriteKind::kTrim ? Op::kTrim : Op::kZero;
  op.may_trim = u(rng_) < 0.5;
  op.write = idx;
  op.off = s * kSector;
  op.len = c * kSector;
  op.fua = w.fua;
  return op;
}

void Workload::FillWrite(size_t w, uint8_t* buf) const {
  const WriteRec& r = h_.writes[w];
  StampSectors(tag_, r.id, r.sector, r.sectors, buf);
}

void Workload::WriteDone(size_t w, int res) {
  WriteRec& r = h_.writes[w];
  if (r.state != WriteState::kInFlight) return;
  replies_++;
  writes_in_flight_--;
  Forget(r.sector, r.sector + r.sectors);
  if (res < 0) {
    r.state = WriteState::kFailed;
    failed_ops_++;
    return;
  }
  r.state = WriteState::kAcked;
  r.ack_seq = ++ack_seq_;
  acked_writes_++;
  // A FUA reply promises this write and everything acknowledged before it
  // was sent (the fast-ack rule is stronger; this is what every mode keeps).
  if (r.fua) h_.protect_ack_seq = std::max(h_.protect_ack_seq, r.sent_ack_seq);
}

void Workload::FlushDone(int res) {
  replies_++;
  flush_in_flight_ = false;
  if (res < 0) {
    failed_ops_++;
    return;
  }
  h_.flushes_acked++;
}

void Workload::BarrierDone(uint64_t token, int res) {
  replies_++;
  if (res == 0) h_.protect_ack_seq = std::max(h_.protect_ack_seq, token);
}

void Workload::ReadDone(const Op& op, const uint8_t* buf, int res) {
  uint64_t s0 = op.off / kSector, n = op.len / kSector;
  replies_++;
  Forget(s0, s0 + n);
  if (res < 0) {
    failed_ops_++;
    return;
  }
  read_checks_++;
  uint64_t bad = 0, first = 0, got = 0, want = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t s = s0 + i;
    int64_t lw = last_write_[s];
    uint64_t expect;
    if (lw < 0) {
      expect = h_.baseline[s];
    } else {
      const WriteRec& w = h_.writes[static_cast<size_t>(lw)];
      if (w.state != WriteState::kAcked) continue;  // failed: either is fine
      expect = w.value();
    }
    uint64_t v = DecodeSector(tag_, s, buf + i * kSector);
    if (v != expect) {
      if (bad++ == 0) { first = s; got = v; want = expect; }
    }
  }
  if (bad == 0) return;
  read_violations_ += bad;
  if (read_details_.size() < 8) {
    auto val = [](uint64_t v) {
      return v == kZero ? std::string("zeros") : v == kGarbage ? std::string("garbage") : "write #" + std::to_string(v);
    };
    read_details_.push_back("read of sectors " + std::to_string(s0) + "+" + std::to_string(n) + ": " +
                            std::to_string(bad) + " sectors do not read back the last acknowledged write; first: sector " +
                            std::to_string(first) + " reads " + val(got) + ", expected " + val(want));
  }
}

}  // namespace flurry::crashtest
