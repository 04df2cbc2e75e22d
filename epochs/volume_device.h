// SPDX-License-Identifier: Apache-2.0
//
// Volume devices: a flurry volume as a BlockDevice, one class per write
// mode (DESIGN.md "Write modes"). MakeEngine() (engine.h) is the seam where
// the daemon and the crash harness pick the engine from the volume's mode.
//
// write-through (implemented): a write completes when every replica of
// every piece is durable; Flush() therefore completes at once (every
// completed write is already durable on all replicas) and FUA is free.
// Overlapping writes are serialised in arrival order (RangeLock).
//
// fast-ack: epochs/fast_ack.h. log: epochs/log_device.h.
#pragma once

#include <memory>

#include "epochs/engine.h"
#include "epochs/range_lock.h"
#include "meta/meta_types.h"
#include "nbdserver/block_device.h"
#include "striping/striped_blob.h"

namespace flurry {

struct VolumeCounters {
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0;
  uint64_t bytes_read = 0, bytes_written = 0, errors = 0, overlap_waits = 0;
};

class WriteThroughDevice : public Engine {
 public:
  // Does not own blob.
  WriteThroughDevice(const VolumeInfo& vol, BlobIo* blob, bool read_only);
  const BlockDeviceInfo& info() const override { return info_; }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) override;
  void Write(uint64_t off, uint32_t len, const uint8_t* buf, bool fua, Done done) override;
  void Flush(Done done) override;
  void Trim(uint64_t off, uint32_t len, Done done) override;
  void Zero(uint64_t off, uint32_t len, bool may_trim, bool fast_only, Done done) override;
  void BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) override;
  void Quiesce(Done done) override { done(0); }  // nothing is ever buffered
  std::string CountersText() const override;
  const VolumeCounters& counters() const { return counters_; }

 private:
  // Runs op under the range lock; op gets a completion to call when done.
  void Locked(uint64_t off, uint64_t len, std::function<void(Done)> op, Done done);
  BlockDeviceInfo info_;
  BlobIo* blob_;
  RangeLock lock_;
  VolumeCounters counters_;
};

// A volume served by the engine of vol.mode, owning its blob IO.
struct Volume {
  std::unique_ptr<BlobIo> blob;
  std::unique_ptr<Engine> device;
};
// The engine for vol.mode over the volume's striped blob, or why not.
Result<Volume> MakeVolume(const VolumeInfo& vol, FdsClient* fds, const EngineOptions& opts,
                          Status* why);

}  // namespace flurry
