// SPDX-License-Identifier: Apache-2.0
#include "epochs/volume_device.h"

#include "common/kv_text.h"
#include "common/units.h"

namespace flurry {

WriteThroughDevice::WriteThroughDevice(const VolumeInfo& vol, BlobIo* blob, bool read_only)
    : blob_(blob) {
  info_.size = vol.size;
  info_.min_block = 1;
  info_.preferred_block = 4096;
  info_.max_io = 16u << 20;
  info_.read_only = read_only;
  info_.description = "flurry volume " + vol.name + " (" + FormatSize(vol.size) + ", R=" +
                      std::to_string(vol.replicas) + ", " + WriteModeName(vol.mode) + ")";
}

void WriteThroughDevice::Locked(uint64_t off, uint64_t len, std::function<void(Done)> op, Done done) {
  if (lock_.held() > 0) counters_.overlap_waits++;  // approximate: any contention
  // Whole 4 KiB chunks: StripedBlob merges partial chunks on the client, so
  // two writes sharing a chunk must not be in flight together.
  uint64_t a = off / 4096 * 4096, b = (off + len + 4095) / 4096 * 4096;
  lock_.Acquire(a, b - a, [this, op = std::move(op), done = std::move(done)](RangeLock::Handle* h) mutable {
    op([this, h, done = std::move(done)](int res) {
      lock_.Release(h);
      if (res < 0) counters_.errors++;
      done(res);
    });
  });
}

void WriteThroughDevice::Read(uint64_t off, uint32_t len, uint8_t* buf, Done done) {
  counters_.reads++;
  counters_.bytes_read += len;
  blob_->Read(off, len, buf, [this, done = std::move(done)](int res) {
    if (res < 0) counters_.errors++;
    done(res);
  });
}

void WriteThroughDevice::Write(uint64_t off, uint32_t len, const uint8_t* buf, bool, Done done) {
  if (info_.read_only) return done(-EROFS);
  counters_.writes++;
  counters_.bytes_written += len;
  Locked(off, len, [this, off, len, buf](Done d) { blob_->Write(off, len, buf, std::move(d)); },
         std::move(done));
}

void WriteThroughDevice::Flush(Done done) {
  // Every write that has completed is durable on all replicas already.
  counters_.flushes++;
  done(0);
}

void WriteThroughDevice::Trim(uint64_t off, uint32_t len, Done done) {
  if (info_.read_only) return done(-EROFS);
  counters_.trims++;
  Locked(off, len, [this, off, len](Done d) { blob_->Zero(off, len, false, std::move(d)); },
         std::move(done));
}

void WriteThroughDevice::Zero(uint64_t off, uint32_t len, bool may_trim, bool, Done done) {
  if (info_.read_only) return done(-EROFS);
  counters_.zeroes++;
  // Both forms are fast here: deallocation, or zero-fill on the servers.
  Locked(off, len, [this, off, len, may_trim](Done d) { blob_->Zero(off, len, !may_trim, std::move(d)); },
         std::move(done));
}

void WriteThroughDevice::BlockStatus(uint64_t off, uint32_t len, ExtentsDone done) {
  blob_->Allocation(off, len, std::move(done));
}

std::string WriteThroughDevice::CountersText() const {
  const VolumeCounters& c = counters_;
  std::string t;
  auto kv = [&t](const char* k, uint64_t v) { AppendKv(&t, k, v); };
  kv("reads", c.reads);
  kv("writes", c.writes);
  kv("flushes", c.flushes);
  kv("trims", c.trims);
  kv("zeroes", c.zeroes);
  kv("bytes_read", c.bytes_read);
  kv("bytes_written", c.bytes_written);
  kv("errors", c.errors);
  return t;
}

}  // namespace flurry
