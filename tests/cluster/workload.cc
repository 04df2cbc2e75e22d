// SPDX-License-Identifier: Apache-2.0
#include "tests/cluster/workload.h"

#include <algorithm>
#include <cstring>

namespace flurry::testing {
namespace {
constexpr uint64_t kChunk = tractproto::kChunkSize;
uint64_t NowMs() { return Loop::NowNs() / 1000000; }
}  // namespace

bool RunUntil(Loop* loop, const std::function<bool()>& pred, uint64_t timeout_ms) {
  uint64_t deadline = NowMs() + timeout_ms;
  while (!pred()) {
    if (NowMs() >= deadline) return false;
    loop->RunOnce(20);
  }
  return true;
}

Workload::Workload(Loop* loop, FdsClient* client, BlobRef blob, uint64_t size, WorkloadOptions o)
    : loop_(loop), client_(client), blob_(blob), io_(client, blob), size_(size), o_(o),
      rng_(o.seed * 0x9E3779B97F4A7C15ull + 1) {
  uint64_t chunks = (size + kChunk - 1) / kChunk;
  uint64_t tracts = (size + blob.tract_size - 1) / blob.tract_size;
  data_.assign(size, 0);
  known_.assign(size, 1);  // a new blob reads as zeros
  alloc_.assign(chunks, kNo);
  chunk_busy_.assign(chunks, 0);
  chunk_gen_.assign(chunks, 0);
  exists_.assign(tracts, kNo);
  creators_.assign(tracts, 0);
}

Workload::~Workload() {
  // Operations still in flight are leaked on purpose: FdsClient may yet
  // write read data into their buffers.
  *alive_ = false;
}

uint64_t Workload::Rand() {
  // xorshift64*
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 2685821657736338717ull;
}

void Workload::Error(std::string e) {
  if (errors_.size() < 20) errors_.push_back(std::move(e));
}

bool Workload::Overlaps(uint64_t off, uint32_t len) const {
  // Per 4 KiB chunk: FdsClient merges partial chunks on the client, so two
  // operations touching one chunk must not be in flight together.
  auto lo = [](uint64_t x) { return x / 4096 * 4096; };
  auto hi = [](uint64_t x) { return (x + 4095) / 4096 * 4096; };
  for (const InFlight* f : inflight_)
    if (lo(off) < hi(f->off + f->len) && lo(f->off) < hi(off + len)) return true;
  return false;
}

bool Workload::IssueOne() {
  unsigned r = static_cast<unsigned>(Rand() % 100);
  Kind kind = r < o_.write_pct                             ? Kind::kWrite
              : r < o_.write_pct + o_.trim_pct             ? Kind::kTrim
              : r < o_.write_pct + o_.trim_pct + o_.zero_pct ? Kind::kZero
                                                           : Kind::kRead;
  for (int attempt = 0; attempt < 8; ++attempt) {
    bool aligned = Rand() % 2 == 0;
    unsigned e = static_cast<unsigned>(Rand() % 21);  // 1 B .. 1 MiB, log-uniform
    uint64_t len = (1ull << e) + Rand() % (1ull << e);
    len = std::min<uint64_t>({len, o_.max_len, size_});
    uint64_t off;
    if (aligned) {
      len = std::max<uint64_t>(kChunk, len / kChunk * kChunk);
      off = Rand() % (size_ / kChunk - len / kChunk + 1) * kChunk;
    } else {
      off = Rand() % (size_ - len + 1);
    }
    if (Overlaps(off, static_cast<uint32_t>(len))) continue;
    auto* f = new InFlight{next_id_++, kind, off, static_cast<uint32_t>(len), {}, {}, {}, {}};
    Issue(f);
    return true;
  }
  return false;
}

void Workload::Issue(InFlight* f) {
  issued_++;
  inflight_.push_back(f);
  uint64_t c0 = f->off / kChunk, c1 = (f->off + f->len + kChunk - 1) / kChunk;
  uint64_t t0 = f->off / blob_.tract_size, t1 = (f->off + f->len - 1) / blob_.tract_size + 1;
  uint64_t id = f->id;
  if (f->kind == Kind::kRead) {
    for (uint64_t c = c0; c < c1; ++c) {
      f->gens.push_back(chunk_gen_[c]);
      f->quiet.push_back(chunk_busy_[c] == 0);
    }
    f->buf.resize(f->len);
    io_.Read(f->off, f->len, f->buf.data(),
             [this, id, alive = alive_](int res, std::vector<uint8_t> bm) {
               if (*alive) Complete(id, res, std::move(bm));
             });
    return;
  }
  for (uint64_t c = c0; c < c1; ++c) {
    chunk_busy_[c]++;
    chunk_gen_[c]++;
  }
  if (dirty_) std::fill(dirty_->begin() + static_cast<long>(f->off),
                        dirty_->begin() + static_cast<long>(f->off + f->len), 1);
  if (f->kind == Kind::kTrim) {
    // Whether each tract exists decides if partial chunks become allocated:
    // known only if nothing that could create it is in flight.
    for (uint64_t t = t0; t < t1; ++t)
      f->trim_exists.push_back(exists_[t] == kYes ? kYes : (exists_[t] == kNo && creators_[t] == 0) ? kNo : kUnknown);
    io_.Zero(f->off, f->len, false, [this, id, alive = alive_](int res) {
      if (*alive) Complete(id, res, {});
    });
    return;
  }
  for (uint64_t t = t0; t < t1; ++t) creators_[t]++;
  if (f->kind == Kind::kZero) {
    io_.Zero(f->off, f->len, true, [this, id, alive = alive_](int res) {
      if (*alive) Complete(id, res, {});
    });
    return;
  }
  f->buf.resize(f->len);
  size_t i = 0;
  for (; i + 8 <= f->buf.size(); i += 8) {
    uint64_t v = Rand();
    memcpy(&f->buf[i], &v, 8);
  }
  for (; i < f->buf.size(); ++i) f->buf[i] = static_cast<uint8_t>(Rand());
  io_.Write(f->off, f->len, f->buf.data(), [this, id, alive = alive_](int res) {
      if (*alive) Complete(id, res, {});
    });
}

void Workload::Complete(uint64_t id, int res, std::vector<uint8_t> bitmap) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(), [id](InFlight* f) { return f->id == id; });
  if (it == inflight_.end()) {
    Error("completion for unknown op " + std::to_string(id));
    return;
  }
  std::unique_ptr<InFlight> f(*it);
  inflight_.erase(it);
  completed_++;
  uint64_t c0 = f->off / kChunk, c1 = (f->off + f->len + kChunk - 1) / kChunk;
  uint64_t t0 = f->off / blob_.tract_size, t1 = (f->off + f->len - 1) / blob_.tract_size + 1;
  std::string what = std::string(f->kind == Kind::kWrite ? "write" : f->kind == Kind::kRead ? "read"
                                 : f->kind == Kind::kTrim ? "trim" : "zero") +
                     " [" + std::to_string(f->off) + ", +" + std::to_string(f->len) + ")";
  if (res < 0) {
    stats_.failed++;
    Error(what + " failed: " + errstr(res));
  }
  if (f->kind == Kind::kRead) {
    stats_.reads++;
    if (res == 0) {
      stats_.bytes_read += f->len;
      uint64_t bad = 0, first_bad = 0;
      for (uint64_t i = 0; i < f->len; ++i) {
        uint64_t x = f->off + i;
        if (!known_[x]) continue;
        stats_.bytes_checked++;
        if (f->buf[i] != data_[x]) {
          if (bad++ == 0) first_bad = x;
        }
      }
      if (bad) {
        stats_.read_mismatches++;
        Error(what + ": " + std::to_string(bad) + " bytes differ from the model, first at " +
              std::to_string(first_bad) + " (got " + std::to_string(f->buf[first_bad - f->off]) +
              ", want " + std::to_string(data_[first_bad]) + ")");
      }
      for (uint64_t c = c0; c < c1; ++c) {
        size_t k = c - c0;
        if (!f->quiet[k] || chunk_gen_[c] != f->gens[k] || alloc_[c] == kUnknown) continue;
        stats_.bitmap_bits_checked++;
        uint8_t got = k < bitmap.size() ? bitmap[k] : 0;
        if (got != alloc_[c]) {
          stats_.bitmap_mismatches++;
          Error(what + ": chunk " + std::to_string(c) + " allocated=" + std::to_string(got) +
                ", model says " + std::to_string(alloc_[c]));
        }
      }
    }
  } else {
    for (uint64_t c = c0; c < c1; ++c) {
      chunk_busy_[c]--;
      chunk_gen_[c]++;
    }
    if (f->kind != Kind::kTrim)
      for (uint64_t t = t0; t < t1; ++t) creators_[t]--;
    if (res < 0) {
      std::fill(known_.begin() + static_cast<long>(f->off), known_.begin() + static_cast<long>(f->off + f->len), 0);
      for (uint64_t c = c0; c < c1; ++c) alloc_[c] = kUnknown;
      for (uint64_t t = t0; t < t1; ++t)
        if (exists_[t] == kNo) exists_[t] = kUnknown;
    } else if (f->kind == Kind::kTrim) {
      stats_.trims++;
      std::fill(data_.begin() + static_cast<long>(f->off), data_.begin() + static_cast<long>(f->off + f->len), 0);
      std::fill(known_.begin() + static_cast<long>(f->off), known_.begin() + static_cast<long>(f->off + f->len), 1);
      for (uint64_t c = c0; c < c1; ++c) {
        bool whole = c * kChunk >= f->off && (c + 1) * kChunk <= f->off + f->len;
        uint8_t ex = f->trim_exists[c * kChunk / blob_.tract_size - t0];
        // Whole chunks are freed; a partial chunk keeps its allocation
        // (FdsClient zeroes it in place if allocated, leaves a hole a hole).
        (void)ex;
        if (whole) alloc_[c] = kNo;
      }
    } else {
      if (f->kind == Kind::kWrite) {
        stats_.writes++;
        stats_.bytes_written += f->len;
        std::copy(f->buf.begin(), f->buf.end(), data_.begin() + static_cast<long>(f->off));
      } else {
        stats_.zeroes++;
        std::fill(data_.begin() + static_cast<long>(f->off), data_.begin() + static_cast<long>(f->off + f->len), 0);
      }
      std::fill(known_.begin() + static_cast<long>(f->off), known_.begin() + static_cast<long>(f->off + f->len), 1);
      for (uint64_t c = c0; c < c1; ++c) alloc_[c] = kYes;
      for (uint64_t t = t0; t < t1; ++t) exists_[t] = kYes;
    }
  }
}

bool Workload::Run(const std::function<void()>& after_completion) {
  uint64_t deadline = NowMs() + o_.timeout_ms;
  uint64_t seen = completed_;
  for (;;) {
    while (!stop_ && (o_.ops == 0 || issued_ < o_.ops) && inflight_.size() < o_.qd)
      if (!IssueOne()) break;
    if (inflight_.empty() && (stop_ || (o_.ops && issued_ >= o_.ops))) return true;
    if (NowMs() >= deadline) {
      Error("timed out with " + std::to_string(inflight_.size()) + " operations in flight");
      return false;
    }
    loop_->RunOnce(20);
    while (after_completion && seen < completed_) {
      seen++;
      after_completion();
    }
  }
}

void Workload::TrackDirty(std::vector<uint8_t>* mask) {
  dirty_ = mask;
  for (const InFlight* f : inflight_)
    if (f->kind != Kind::kRead)
      std::fill(mask->begin() + static_cast<long>(f->off), mask->begin() + static_cast<long>(f->off + f->len), 1);
}

bool Workload::VerifyAll() {
  const uint64_t piece = 1u << 20;
  uint64_t errors_before = stats_.read_mismatches + stats_.bitmap_mismatches + stats_.failed;
  uint64_t pos = 0;
  uint64_t deadline = NowMs() + o_.timeout_ms;
  while (pos < size_ || !inflight_.empty()) {
    while (pos < size_ && inflight_.size() < 8) {
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(piece, size_ - pos));
      Issue(new InFlight{next_id_++, Kind::kRead, pos, len, {}, {}, {}, {}});
      pos += len;
    }
    if (NowMs() >= deadline) {
      Error("VerifyAll timed out");
      return false;
    }
    loop_->RunOnce(20);
  }
  uint64_t tracts = exists_.size();
  auto done = std::make_shared<uint64_t>(0);
  uint32_t per_tract = blob_.tract_size / kChunk;
  for (uint64_t t = 0; t < tracts; ++t) {
    client_->StatTract(blob_, t, [this, t, done, per_tract, alive = alive_](int res, std::vector<uint8_t> bm) {
      if (!*alive) return;
      (*done)++;
      if (res < 0) {
        stats_.failed++;
        Error("StatTract " + std::to_string(t) + " failed: " + errstr(res));
        return;
      }
      for (uint32_t i = 0; i < per_tract; ++i) {
        uint64_t c = t * per_tract + i;
        if (c >= alloc_.size() || alloc_[c] == kUnknown) continue;
        stats_.bitmap_bits_checked++;
        uint8_t got = (i / 8 < bm.size() && (bm[i / 8] & (1u << (i % 8)))) ? 1 : 0;
        if (got != alloc_[c]) {
          stats_.bitmap_mismatches++;
          Error("StatTract " + std::to_string(t) + ": chunk " + std::to_string(i) + " allocated=" +
                std::to_string(got) + ", model says " + std::to_string(alloc_[c]));
        }
      }
    });
  }
  if (!RunUntil(loop_, [&] { return *done == tracts; }, o_.timeout_ms)) {
    Error("StatTract sweep timed out");
    return false;
  }
  return stats_.read_mismatches + stats_.bitmap_mismatches + stats_.failed == errors_before;
}

std::string Workload::Summary() const {
  const auto& s = stats_;
  return "writes=" + std::to_string(s.writes) + " reads=" + std::to_string(s.reads) +
         " trims=" + std::to_string(s.trims) + " zeroes=" + std::to_string(s.zeroes) +
         " failed=" + std::to_string(s.failed) + " written=" + std::to_string(s.bytes_written >> 10) +
         "KiB read=" + std::to_string(s.bytes_read >> 10) + "KiB checked_bytes=" +
         std::to_string(s.bytes_checked) + " checked_bits=" + std::to_string(s.bitmap_bits_checked) +
         " read_mismatches=" + std::to_string(s.read_mismatches) +
         " bitmap_mismatches=" + std::to_string(s.bitmap_mismatches);
}

}  // namespace flurry::testing
