// SPDX-License-Identifier: Apache-2.0
//
// Types shared by flurry-meta and its clients: volumes and the tract
// locator table (TLT). The meta protocol is text, one request line, reply
// "OK <n>" plus n lines, or "ERR <errno-name> <message>" (docs/PROTOCOL.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace flurry {

enum class WriteMode { kWriteThrough, kFastAck, kLog };
const char* WriteModeName(WriteMode m);
Result<WriteMode> ParseWriteMode(const std::string& s);

struct VolumeInfo {
  std::string name;
  uint64_t blob_hi = 0, blob_lo = 0;
  uint64_t size = 0;
  uint32_t tract_size = 8u << 20;
  uint32_t replicas = 1;
  uint32_t segment_tracts = 128;
  uint32_t block_size = 64u << 10;
  // Log volumes: the stripe unit, apart from the log block. 0 = block_size
  // (every other mode, and log volumes created before stripe= existed).
  uint32_t stripe_unit = 0;
  WriteMode mode = WriteMode::kWriteThrough;
  uint64_t created = 0;  // unix seconds

  // The block size a new volume gets when its creator names none. In log
  // mode the block is also the log block (smaller writes read the rest of it
  // first), so it stays 64 KiB. Otherwise it is only the stripe unit, and
  // 1 MiB units (at most the tract size) cost fewer tract requests per large
  // IO: 1 MiB writes at QD8 went from ~950 to ~1500 MB/s (docs/BENCHMARKS.md).
  static uint32_t DefaultBlockSize(WriteMode mode, uint32_t tract_size);
  // The stripe_unit a new volume gets when its creator names none: 0 but in
  // log mode, where it is 1 MiB (at most the tract size). A log block is
  // written as B data bytes + a 4 KiB trailer, so a stripe unit of B would
  // split every block write over two tracts, and adjacent blocks written
  // together (log_device.h) would not merge into one tract write.
  static uint32_t DefaultStripeUnit(WriteMode mode, uint32_t tract_size);
  uint32_t StripeUnit() const { return stripe_unit ? stripe_unit : block_size; }

  std::string Serialize() const;  // "name=.. id=.. size=.. ..."
  static Result<VolumeInfo> Parse(const std::string& line);
  std::string IdHex() const;
};

// Volume names: 1..64 chars of [A-Za-z0-9._-], not starting with '.' or '-'.
Status ValidateVolumeName(const std::string& name);
// Checks sizes and geometry; fills nothing, says what is wrong.
Status ValidateVolume(const VolumeInfo& v);

// A write-lease holder as flurry-disk names itself at flurry-meta:
// "flurry-disk/HOST/BOOT_ID/PIDNS/PID/STARTTIME" (daemon/lease.h).
struct DiskHolder {
  std::string host, boot, pidns, pid, start;
  std::string Format() const;
  // Fails for any other holder text.
  static Result<DiskHolder> Parse(const std::string& holder);
};

struct TltEntry {
  std::string addr;         // host:port of the tract server
  bool recovering = false;  // being refilled: write to it, never read from it
};
struct Tlt {
  uint64_t version = 0;
  std::vector<std::vector<TltEntry>> rows;
  // Row of tract n of a blob: (hash(blob) + n) mod L.
  size_t RowOf(uint64_t blob_hi, uint64_t blob_lo, uint64_t tract) const {
    return RowFor(blob_hi, blob_lo, tract, rows.size());
  }
  static size_t RowFor(uint64_t blob_hi, uint64_t blob_lo, uint64_t tract, size_t nrows);
};

}  // namespace flurry
