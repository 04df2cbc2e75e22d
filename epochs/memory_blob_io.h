// SPDX-License-Identifier: Apache-2.0
//
// MemoryBlobIo: an in-memory BlobIo with deterministic fault injection, for
// the write-mode engines' unit tests and the in-process crash harness.
//
// - Writes and zeroes are queued, not applied. Step() completes one queued
//   operation chosen at random (so completions are reordered), applies it
//   to the durable image and calls its callback; RunAll() drains.
// - Reads are served from the durable image at once, or — with
//   set_async_reads(true) — queued like writes and served from the durable
//   image when Step() completes them (as a network read would be). (Engines
//   never read a range with a write in flight: they serve it from their own
//   cache.) set_hold_reads(true) keeps queued reads back from Step().
// - CrashImage() is what a crash right now leaves behind: the durable image
//   plus, for each queued write, every 4 KiB chunk independently either new
//   or old — the tract store's guarantee, and nothing stronger.
// - FailNext(n, err) makes the next n completions fail with err.
// - Allocation tracked per 4 KiB for Allocation().
// Loop thread only (it has no threads of its own).
#pragma once

#include <cstring>
#include <algorithm>
#include <deque>
#include <random>

#include "epochs/blob_io.h"

namespace flurry {

class MemoryBlobIo : public BlobIo {
 public:
  static constexpr uint64_t kChunk = 4096;

  explicit MemoryBlobIo(uint64_t size, uint64_t seed = 1)
      : data_(size, 0), alloc_((size + kChunk - 1) / kChunk, false), rng_(seed) {}
  MemoryBlobIo(std::vector<uint8_t> image, uint64_t seed)
      : data_(std::move(image)), alloc_((data_.size() + kChunk - 1) / kChunk, true), rng_(seed) {}

  uint64_t size() const override { return data_.size(); }

  void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) override {
    if (off + len > data_.size()) return done(-EINVAL);
    reads_++;
    if (async_reads_) {
      queue_.push_back(Pending{off, {}, false, std::move(done), buf, len});
      return;
    }
    memcpy(buf, data_.data() + off, len);
    done(0);
  }
  void set_async_reads(bool on) { async_reads_ = on; }
  // While on, Step() leaves queued reads queued (a slow read replica).
  void set_hold_reads(bool on) { hold_reads_ = on; }
  void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) override {
    if (off + len > data_.size()) return done(-EINVAL);
    queue_.push_back(Pending{off, std::vector<uint8_t>(buf, buf + len), true, std::move(done)});
    writes_++;
  }
  void Zero(uint64_t off, uint64_t len, bool, Done done) override {
    if (off + len > data_.size()) return done(-EINVAL);
    queue_.push_back(Pending{off, std::vector<uint8_t>(len, 0), false, std::move(done)});
  }
  void Allocation(uint64_t off, uint64_t len, ExtentsDone done) override {
    std::vector<BlockExtent> out;
    for (uint64_t pos = off; pos < off + len;) {
      uint64_t next = std::min((pos / kChunk + 1) * kChunk, off + len);
      uint32_t f = alloc_[pos / kChunk] ? 0 : (kExtentHole | kExtentZero);
      if (!out.empty() && out.back().flags == f) out.back().length += next - pos;
      else out.push_back({next - pos, f});
      pos = next;
    }
    done(0, std::move(out));
  }

  size_t pending() const { return queue_.size(); }
  // Completes one queued operation (random order). False if none.
  bool Step() {
    size_t i;
    if (hold_reads_) {  // only queued writes and zeroes are candidates
      std::vector<size_t> cand;
      for (size_t k = 0; k < queue_.size(); ++k)
        if (!queue_[k].read_buf) cand.push_back(k);
      if (cand.empty()) return false;
      i = cand[std::uniform_int_distribution<size_t>(0, cand.size() - 1)(rng_)];
    } else {
      if (queue_.empty()) return false;
      i = std::uniform_int_distribution<size_t>(0, queue_.size() - 1)(rng_);
    }
    Pending p = std::move(queue_[i]);
    queue_.erase(queue_.begin() + static_cast<long>(i));
    int res = 0;
    if (fail_count_ > 0) {
      fail_count_--;
      res = fail_err_;
    } else if (p.read_buf) {
      memcpy(p.read_buf, data_.data() + p.off, p.read_len);
    } else {
      memcpy(data_.data() + p.off, p.data.data(), p.data.size());
      for (uint64_t c = p.off / kChunk; c * kChunk < p.off + p.data.size(); ++c) alloc_[c] = p.alloc;
    }
    p.done(res);
    return true;
  }
  void RunAll() {
    while (Step()) {
    }
  }
  void FailNext(int n, int err) {
    fail_count_ = n;
    fail_err_ = err;
  }
  std::vector<uint8_t> CrashImage(std::mt19937_64& rng) const {
    std::vector<uint8_t> img = data_;
    for (const Pending& p : queue_) {
      if (p.read_buf) continue;
      uint64_t end = p.off + p.data.size();
      for (uint64_t c = p.off / kChunk * kChunk; c < end; c += kChunk) {
        if (rng() & 1) continue;  // this chunk of the write did not land
        uint64_t a = std::max(c, p.off), b = std::min(c + kChunk, end);
        memcpy(img.data() + a, p.data.data() + (a - p.off), b - a);
      }
    }
    return img;
  }
  const std::vector<uint8_t>& durable() const { return data_; }
  uint64_t writes() const { return writes_; }
  uint64_t reads() const { return reads_; }

 private:
  struct Pending {
    uint64_t off;
    std::vector<uint8_t> data;
    bool alloc;
    Done done;
    uint8_t* read_buf = nullptr;  // a queued read (set_async_reads)
    uint64_t read_len = 0;
  };
  std::vector<uint8_t> data_;
  std::vector<bool> alloc_;
  std::deque<Pending> queue_;
  std::mt19937_64 rng_;
  int fail_count_ = 0, fail_err_ = 0;
  bool async_reads_ = false, hold_reads_ = false;
  uint64_t writes_ = 0, reads_ = 0;
};

}  // namespace flurry
