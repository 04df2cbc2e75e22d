// SPDX-License-Identifier: Apache-2.0
//
// Engine: a write mode (DESIGN.md "Write modes") — a BlockDevice over a
// BlobIo plus the life-cycle steps the daemon and the crash harness need.
//
// Contract (in addition to BlockDevice's)
// - Open(done): run once, before any IO: load or recover the engine's
//   state from the blob (log mode: checkpoint + roll forward). done(0) when
//   ready to serve; recovery_report() then says what was done and how long
//   it took.
// - Quiesce(done): make every acknowledged write durable and quiet (clean
//   shutdown, and the checkpoint of log mode). IO submitted meanwhile is
//   still served.
// - Durability promise per mode:
//     write-through: Write() done(0) => durable on every replica.
//     fast-ack, log: done(0) at once; after a crash the blob holds every
//       write of epochs <= R, some of epoch R+1 and none later, for some R
//       (prefix consistency). An epoch is the span between two Flush()es;
//       Flush() is acknowledged at once. A FUA write's reply waits until
//       its epoch is durable (see each engine's header for the rule).
// - BlobSize(vol): the blob bytes the engine needs for the volume (log mode
//   needs more than vol.size for spare blocks and checkpoints).
#pragma once

#include <memory>
#include <string>

#include "epochs/blob_io.h"
#include "common/loop.h"
#include "common/result.h"
#include "meta/meta_types.h"
#include "nbdserver/block_device.h"
#include "striping/write_gate.h"

namespace flurry {

class Engine : public BlockDevice {
 public:
  virtual void Open(Done done) { done(0); }
  virtual void Quiesce(Done done) = 0;
  virtual std::string recovery_report() const { return ""; }
  // "key=value\n" lines for status and metrics.
  virtual std::string CountersText() const = 0;
};

struct EngineOptions {
  Loop* loop = nullptr;               // for timers (checkpoints, retries)
  bool read_only = false;
  uint64_t max_buffered_bytes = 256ull << 20;  // fast-ack/log: unretired data bound
  uint64_t max_unretired_epochs = 4096;
  uint32_t checkpoint_interval_ms = 5000;      // log mode
  uint32_t dirty_linger_ms = 10000;            // R > 1: write-intent bits (striped_blob.h)
  const WriteGate* gate = nullptr;             // the volume's write lease (striping/write_gate.h)
};

uint64_t EngineBlobSize(const VolumeInfo& vol);
Result<std::unique_ptr<Engine>> MakeEngine(const VolumeInfo& vol, BlobIo* blob,
                                           const EngineOptions& opts, Status* why);

}  // namespace flurry
