// SPDX-License-Identifier: Apache-2.0
//
// ExportTable: the named BlockDevices an NbdServer offers, and the
// per-export facts both negotiation and transmission derive from them
// (transmission flags, block-size constraints, counters).
//
// Contract
// - Not thread-safe: owned by one NbdServer and used on its loop thread.
// - The table does not own the BlockDevices; they must outlive every
//   connection that uses them (i.e. until NbdServer::Shutdown completes).
// - The empty name "" resolves to the default export when one is set.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nbdserver/block_device.h"

namespace flurry::nbd {

// Counters for one export; updated on the loop thread only.
struct ExportStats {
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t flushes = 0;
  uint64_t trims = 0;
  uint64_t zeroes = 0;
  uint64_t block_status = 0;
  uint64_t errors = 0;  // requests answered with an NBD error
};

// Block-size constraints as advertised with NBD_INFO_BLOCK_SIZE.
struct BlockLimits {
  uint32_t min_block = 1;
  uint32_t preferred = 4096;
  uint32_t max_payload = 4u << 20;
};

struct Export {
  std::string name;
  BlockDevice* device = nullptr;
  bool read_only = false;  // forced read-only, or device says so
  std::shared_ptr<ExportStats> stats = std::make_shared<ExportStats>();

  uint64_t size() const { return device->info().size; }
  const std::string& description() const { return device->info().description; }
  // Truthful transmission flags. NBD_FLAG_SEND_DF is only offered when
  // structured replies were negotiated (DF is meaningless without them).
  uint16_t TransmissionFlags(bool structured) const;
  // Limits derived from BlockDeviceInfo, clamped to hard_max_payload and
  // sanitised to what the spec allows (powers of two, max >= preferred).
  BlockLimits Limits(uint32_t hard_max_payload) const;
};

class ExportTable {
 public:
  // Adds or replaces an export. read_only is OR-ed with the device's own.
  void Add(const std::string& name, BlockDevice* dev, bool read_only);
  // Which export "" means; an empty string disables the default.
  void SetDefault(const std::string& name) { default_ = name; }
  // nullptr when unknown.
  const Export* Find(const std::string& name) const;
  const std::map<std::string, Export>& all() const { return exports_; }

 private:
  std::map<std::string, Export> exports_;
  std::string default_;
};

}  // namespace flurry::nbd
