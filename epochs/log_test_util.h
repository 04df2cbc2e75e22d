// SPDX-License-Identifier: Apache-2.0
//
// Helpers shared by log_device_test.cc and log_crash_test.cc: driving a
// LogDevice over a MemoryBlobIo synchronously.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <vector>

#include "epochs/log_device.h"
#include "epochs/memory_blob_io.h"

namespace flurry::logtest {

inline VolumeInfo Vol(uint64_t size, uint32_t block) {
  VolumeInfo v;
  v.name = "logtest";
  v.size = size;
  v.block_size = block;
  v.mode = WriteMode::kLog;
  return v;
}

// Steps the blob until *res is set; fails the test if the blob runs dry first.
inline bool StepUntil(MemoryBlobIo& blob, const std::optional<int>& res) {
  while (!res) {
    if (!blob.Step()) return false;
  }
  return true;
}

// Runs op(done) and steps the blob until done; returns its result (or
// -ETIMEDOUT when it never completes).
template <typename Op>
int Sync(MemoryBlobIo& blob, Op op) {
  std::optional<int> res;
  op([&res](int r) { res = r; });
  if (!StepUntil(blob, res)) return -ETIMEDOUT;
  return *res;
}

// Creates and opens a LogDevice; nullptr (and *res) on failure.
inline std::unique_ptr<LogDevice> OpenDevice(const VolumeInfo& vol, MemoryBlobIo& blob,
                                             const EngineOptions& opts = {}, int* res_out = nullptr) {
  Status why;
  auto d = LogDevice::Create(vol, &blob, opts, &why);
  if (!d) {
    if (res_out) *res_out = d.err();
    return nullptr;
  }
  std::unique_ptr<LogDevice> dev = std::move(*d);
  int res = Sync(blob, [&](BlockDevice::Done done) { dev->Open(std::move(done)); });
  if (res_out) *res_out = res;
  if (res != 0) return nullptr;
  return dev;
}

inline std::vector<uint8_t> ReadAll(LogDevice& dev, MemoryBlobIo& blob) {
  std::vector<uint8_t> out(dev.info().size);
  const uint64_t chunk = 1 << 20;
  for (uint64_t off = 0; off < out.size(); off += chunk) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chunk, out.size() - off));
    int r = Sync(blob, [&](BlockDevice::Done d) { dev.Read(off, n, out.data() + off, std::move(d)); });
    EXPECT_EQ(r, 0);
  }
  return out;
}

}  // namespace flurry::logtest
