// SPDX-License-Identifier: Apache-2.0
//
// BlockDevice: the one interface nbdserver (and the FUSE export) knows.
//
// Contract
// - A BlockDevice lives on one Loop. Every method is called on that loop's
//   thread and every completion callback runs on that thread, exactly once,
//   possibly before the method returns. Not thread-safe otherwise.
// - Callers have already validated requests: 0 < len <= max_io(), and
//   off + len <= size(). Implementations may still reject with -EINVAL.
// - Buffers stay valid until the callback runs.
// - Results: 0 or a negative errno (-EIO, -ENOSPC, -EROFS, -EOPNOTSUPP...).
// - Write(): when done(0) runs, a subsequent Read() sees the data. Whether
//   it is durable is the write mode's promise: write-through makes it
//   durable on every replica first; fast-ack/log promise prefix consistency
//   at Flush() boundaries instead (see docs/ARCHITECTURE.md).
// - Flush() covers every write completed before it was called, from any
//   connection (this is what makes NBD_FLAG_CAN_MULTI_CONN truthful).
// - fua=true on Write() means the write is durable when done(0) runs.
// - DurableFlush(): like Flush(), but when done(0) runs every write, trim
//   and zero completed before the call is durable, whatever the write mode
//   (nbdserver uses it for FUA on TRIM and WRITE_ZEROES). The default is
//   Flush(), which is right for devices whose Flush() is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace flurry {

struct BlockExtent {
  uint64_t length;
  uint32_t flags;  // kExtentHole | kExtentZero, NBD base:allocation semantics
};
inline constexpr uint32_t kExtentHole = 1;
inline constexpr uint32_t kExtentZero = 2;

struct BlockDeviceInfo {
  uint64_t size = 0;
  uint32_t min_block = 1;          // smallest addressable unit
  uint32_t preferred_block = 4096; // IO below/unaligned to this costs extra
  uint32_t max_io = 4u << 20;      // largest single request
  bool read_only = false;
  bool can_trim = true;
  bool can_zero = true;
  bool can_fast_zero = true;
  bool can_fua = true;
  bool can_block_status = true;
  bool can_multi_conn = true;
  std::string description;
};

class BlockDevice {
 public:
  using Done = std::function<void(int res)>;
  using ExtentsDone = std::function<void(int res, std::vector<BlockExtent> extents)>;

  virtual ~BlockDevice() = default;
  virtual const BlockDeviceInfo& info() const = 0;

  virtual void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) = 0;
  virtual void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) = 0;
  virtual void Flush(Done done) = 0;
  virtual void DurableFlush(Done done) { Flush(std::move(done)); }
  // Trim: the range may read back as anything afterwards (flurry: zeros).
  virtual void Trim(uint64_t off, uint32_t len, Done done) = 0;
  // Zero: the range reads back as zeros. may_trim allows deallocation;
  // fast_only means fail with -EOPNOTSUPP rather than write zeros slowly.
  virtual void Zero(uint64_t off, uint32_t len, bool may_trim, bool fast_only, Done done) = 0;
  // Extents covering a prefix of [off, off+len) (at least one, in order,
  // never past the end). Lengths are > 0.
  virtual void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) = 0;
};

}  // namespace flurry
