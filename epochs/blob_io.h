// SPDX-License-Identifier: Apache-2.0
//
// BlobIo: what a write-mode engine needs from the storage below it — the
// blob's virtual byte range, asynchronously. StripedBlob (striping/ over
// fdsclient) is the real one; MemoryBlobIo (epochs/memory_blob_io.h) is the
// in-process, crash-injecting one for tests and `flurry crashtest --inproc`.
//
// Contract
// - Loop thread only; callbacks exactly once, possibly synchronously.
// - Write(): done(0) means durable on every replica. Until done runs, a
//   crash may leave each 4 KiB chunk of the range old or new, independently
//   (never a mix inside one chunk: the tract store guarantees that).
// - Writes in flight at the same time must not overlap (engines order them).
// - Buffers stay valid until the callback runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nbdserver/block_device.h"

namespace flurry {

class BlobIo {
 public:
  using Done = std::function<void(int res)>;
  using ExtentsDone = std::function<void(int res, std::vector<BlockExtent> extents)>;
  virtual ~BlobIo() = default;
  virtual uint64_t size() const = 0;
  virtual void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) = 0;
  virtual void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) = 0;
  virtual void Zero(uint64_t off, uint64_t len, bool keep_alloc, Done done) = 0;
  virtual void Allocation(uint64_t off, uint64_t len, ExtentsDone done) = 0;
  // Once, before the engine opens: repair what a crash of the writer may
  // have left behind below the engine (StripedBlob: replicas that differ).
  virtual void Recover(Done done) { done(0); }
  // What Recover() did, for the log ("" = nothing worth saying).
  virtual std::string recover_report() const { return ""; }
};

}  // namespace flurry
