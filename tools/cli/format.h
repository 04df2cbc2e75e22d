// SPDX-License-Identifier: Apache-2.0
//
// Rendering for the CLI (aligned tables, sizes, volumes), and fetching
// volumes from flurry-meta with errors that say what to do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "meta/meta_client.h"
#include "meta/meta_types.h"
#include "tools/cli/cli.h"

namespace flurry::cli {

// Columns separated by two spaces, each as wide as its widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(const std::string& indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Exact and re-parsable where possible: 10G, 1536M, 64K, 4097 (bytes).
std::string CompactSize(uint64_t bytes);
// The mode's name; relaxed modes say what FLUSH means for them.
std::string ModeText(WriteMode m);

StatusOr<std::vector<VolumeInfo>> ListVolumes(MetaClient& mc);
// The named volume; a bad name or an unknown volume gets a helpful error.
StatusOr<VolumeInfo> FetchVolume(MetaClient& mc, const std::string& name);
// NAME SIZE R TRACT SEGMENT BLOCK MODE
void PrintVolumeTable(const std::vector<VolumeInfo>& vols, const std::string& indent = "");

}  // namespace flurry::cli
