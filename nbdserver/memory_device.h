// SPDX-License-Identifier: Apache-2.0
//
// MemoryBlockDevice: a BlockDevice held in RAM with 4 KiB allocation
// tracking. For unit tests and protocol tests only; it is not durable.
// Same threading contract as BlockDevice (one loop thread); completions are
// delivered synchronously.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "nbdserver/block_device.h"

namespace flurry {

class MemoryBlockDevice : public BlockDevice {
 public:
  static constexpr uint32_t kGrain = 4096;

  explicit MemoryBlockDevice(uint64_t size, std::string description = "memory")
      : data_(size, 0), alloc_((size + kGrain - 1) / kGrain, false) {
    info_.size = size;
    info_.description = std::move(description);
  }
  const BlockDeviceInfo& info() const override { return info_; }
  BlockDeviceInfo& mutable_info() { return info_; }

  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override {
    if (off + len > data_.size()) return done(-EINVAL);
    memcpy(buf, data_.data() + off, len);
    done(0);
  }
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool, Done done) override {
    if (info_.read_only) return done(-EROFS);
    if (off + len > data_.size()) return done(-EINVAL);
    memcpy(data_.data() + off, buf, len);
    Mark(off, len, true);
    done(0);
  }
  void Flush(Done done) override { ++flushes_; done(0); }
  void Trim(uint64_t off, uint32_t len, Done done) override { Zero(off, len, true, false, std::move(done)); }
  void Zero(uint64_t off, uint32_t len, bool may_trim, bool, Done done) override {
    if (info_.read_only) return done(-EROFS);
    if (off + len > data_.size()) return done(-EINVAL);
    memset(data_.data() + off, 0, len);
    if (may_trim) {
      // Only whole grains become holes.
      uint64_t first = (off + kGrain - 1) / kGrain, last = (off + len) / kGrain;
      for (uint64_t g = first; g < last; ++g) alloc_[g] = false;
    } else {
      Mark(off, len, true);
    }
    done(0);
  }
  void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) override {
    std::vector<BlockExtent> out;
    uint64_t end = std::min<uint64_t>(off + len, data_.size());
    uint64_t pos = off;
    while (pos < end) {
      bool a = alloc_[pos / kGrain];
      uint64_t next = std::min<uint64_t>((pos / kGrain + 1) * kGrain, end);
      uint32_t flags = a ? 0 : (kExtentHole | kExtentZero);
      if (!out.empty() && out.back().flags == flags) out.back().length += next - pos;
      else out.push_back({next - pos, flags});
      pos = next;
    }
    done(0, std::move(out));
  }
  uint64_t flushes() const { return flushes_; }
  const std::vector<uint8_t>& bytes() const { return data_; }

 private:
  void Mark(uint64_t off, uint32_t len, bool v) {
    for (uint64_t g = off / kGrain; g * kGrain < off + len; ++g) alloc_[g] = v;
  }
  BlockDeviceInfo info_;
  std::vector<uint8_t> data_;
  std::vector<bool> alloc_;
  uint64_t flushes_ = 0;
};

}  // namespace flurry
