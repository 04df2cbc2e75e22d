// SPDX-License-Identifier: Apache-2.0
#include "tools/cli/format.h"

#include <algorithm>
#include <cstdio>

namespace flurry::cli {

void Table::Print(const std::string& indent) const {
  std::vector<size_t> width;
  for (const auto& r : rows_)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows_) {
    std::string line = indent;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  }
}

std::string CompactSize(uint64_t b) {
  static const char* suffix = "KMGT";
  if (b == 0) return "0";
  int unit = -1;
  while (unit < 3 && b % 1024 == 0) {
    b /= 1024;
    ++unit;
  }
  return std::to_string(b) + (unit < 0 ? "" : std::string(1, suffix[unit]));
}

std::string ModeText(WriteMode m) {
  std::string s = WriteModeName(m);
  if (m != WriteMode::kWriteThrough) s += " (relaxed flush: prefix consistency)";
  return s;
}

StatusOr<std::vector<VolumeInfo>> ListVolumes(MetaClient& mc) {
  MetaReply r = mc.Call("VOLUME LIST");
  if (!r.status.ok()) return r.status;
  std::vector<VolumeInfo> out;
  for (const auto& l : r.lines) {
    auto v = VolumeInfo::Parse(l);
    if (!v) return Status::Error(-EPROTO, "malformed volume line from flurry-meta: " + l);
    out.push_back(*v);
  }
  return out;
}

StatusOr<VolumeInfo> FetchVolume(MetaClient& mc, const std::string& name) {
  Status ns = ValidateVolumeName(name);
  if (!ns.ok()) return Status::Error(-EINVAL, "bad volume name '" + name + "': " + ns.message());
  Status why;
  auto v = mc.GetVolume(name, &why);
  if (v) return *v;
  if (why.code() == -ENOENT)
    return Status::Error(-ENOENT, "no volume named '" + name + "' (see `flurry volume list`)");
  return why.ok() ? Status::Error(-EPROTO, "malformed reply from flurry-meta") : why;
}

void PrintVolumeTable(const std::vector<VolumeInfo>& vols, const std::string& indent) {
  Table t({"NAME", "SIZE", "R", "TRACT", "SEGMENT", "BLOCK", "MODE"});
  for (const auto& v : vols)
    t.Add({v.name, CompactSize(v.size), std::to_string(v.replicas), CompactSize(v.tract_size),
           std::to_string(v.segment_tracts), CompactSize(v.block_size), ModeText(v.mode)});
  t.Print(indent);
}

}  // namespace flurry::cli
