// SPDX-License-Identifier: Apache-2.0
#include "meta/meta_types.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "common/checksum.h"
#include "common/tract_protocol.h"
#include "common/units.h"

namespace flurry {

const char* WriteModeName(WriteMode m) {
  switch (m) {
    case WriteMode::kWriteThrough: return "write-through";
    case WriteMode::kFastAck: return "fast-ack";
    case WriteMode::kLog: return "log";
  }
  return "?";
}

Result<WriteMode> ParseWriteMode(const std::string& s) {
  if (s == "write-through") return WriteMode::kWriteThrough;
  if (s == "fast-ack") return WriteMode::kFastAck;
  if (s == "log") return WriteMode::kLog;
  return Result<WriteMode>::error(-EINVAL);
}

std::string VolumeInfo::IdHex() const {
  char b[40];
  snprintf(b, sizeof b, "%016" PRIx64 "%016" PRIx64, blob_hi, blob_lo);
  return b;
}

std::string VolumeInfo::Serialize() const {
  std::ostringstream o;
  o << "name=" << name << " id=" << IdHex() << " size=" << size << " tract_size=" << tract_size
    << " replicas=" << replicas << " segment=" << segment_tracts << " block=" << block_size
    << " mode=" << WriteModeName(mode) << " created=" << created;
  if (stripe_unit) o << " stripe=" << stripe_unit;
  return o.str();
}

Result<VolumeInfo> VolumeInfo::Parse(const std::string& line) {
  VolumeInfo v;
  std::istringstream in(line);
  std::string kv;
  bool have_name = false, have_id = false, have_block = false;
  while (in >> kv) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return Result<VolumeInfo>::error(-EINVAL);
    std::string k = kv.substr(0, eq), val = kv.substr(eq + 1);
    auto num = [&](uint64_t* out) {
      auto r = ParseSize(val);
      if (!r) return false;
      *out = *r;
      return true;
    };
    uint64_t n = 0;
    if (k == "name") { v.name = val; have_name = true; }
    else if (k == "id") {
      if (val.size() != 32 || sscanf(val.c_str(), "%16" SCNx64 "%16" SCNx64, &v.blob_hi, &v.blob_lo) != 2)
        return Result<VolumeInfo>::error(-EINVAL);
      have_id = true;
    } else if (k == "size") { if (!num(&v.size)) return Result<VolumeInfo>::error(-EINVAL); }
    else if (k == "tract_size") { if (!num(&n) || n > UINT32_MAX) return Result<VolumeInfo>::error(-EINVAL); v.tract_size = static_cast<uint32_t>(n); }
    else if (k == "replicas") { if (!num(&n) || n > 16) return Result<VolumeInfo>::error(-EINVAL); v.replicas = static_cast<uint32_t>(n); }
    else if (k == "segment") { if (!num(&n) || n > 65536) return Result<VolumeInfo>::error(-EINVAL); v.segment_tracts = static_cast<uint32_t>(n); }
    else if (k == "block") { if (!num(&n) || n > UINT32_MAX) return Result<VolumeInfo>::error(-EINVAL); v.block_size = static_cast<uint32_t>(n); have_block = true; }
    else if (k == "stripe") { if (!num(&n) || n > UINT32_MAX) return Result<VolumeInfo>::error(-EINVAL); v.stripe_unit = static_cast<uint32_t>(n); }
    else if (k == "mode") { auto m = ParseWriteMode(val); if (!m) return Result<VolumeInfo>::error(-EINVAL); v.mode = *m; }
    else if (k == "created") { if (!num(&v.created)) return Result<VolumeInfo>::error(-EINVAL); }
    // Unknown keys are ignored for forward compatibility.
  }
  if (!have_name) return Result<VolumeInfo>::error(-EINVAL);
  (void)have_id;
  if (!have_block) v.block_size = DefaultBlockSize(v.mode, v.tract_size);  // a create without block=
  return v;
}

uint32_t VolumeInfo::DefaultStripeUnit(WriteMode mode, uint32_t tract_size) {
  return mode == WriteMode::kLog ? std::min<uint32_t>(1u << 20, tract_size) : 0;
}

uint32_t VolumeInfo::DefaultBlockSize(WriteMode mode, uint32_t tract_size) {
  if (mode == WriteMode::kLog) return 64u << 10;
  return std::min<uint32_t>(1u << 20, tract_size);
}

Status ValidateVolumeName(const std::string& name) {
  if (name.empty() || name.size() > 64)
    return Status::Error(-EINVAL, "volume name must be 1 to 64 characters");
  if (name[0] == '.' || name[0] == '-')
    return Status::Error(-EINVAL, "volume name must not start with '.' or '-'");
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return Status::Error(-EINVAL, "volume name may contain only letters, digits, '.', '_' and '-'");
  return Status::Ok();
}

Status ValidateVolume(const VolumeInfo& v) {
  Status s = ValidateVolumeName(v.name);
  if (!s.ok()) return s;
  if (v.size == 0 || v.size % 4096 != 0)
    return Status::Error(-EINVAL, "volume size must be a positive multiple of 4 KiB");
  if (v.size > (1ull << 50)) return Status::Error(-EINVAL, "volume size is limited to 1 PiB");
  if (!tractproto::IsPowerOfTwo(v.tract_size) || v.tract_size < tractproto::kMinTractSize ||
      v.tract_size > tractproto::kMaxTractSize)
    return Status::Error(-EINVAL, "tract size must be a power of two between 64 KiB and 1 GiB");
  if (v.replicas < 1 || v.replicas > 3) return Status::Error(-EINVAL, "replicas must be 1, 2 or 3");
  if (v.segment_tracts < 1 || v.segment_tracts > 4096)
    return Status::Error(-EINVAL, "segment must be 1 to 4096 tracts");
  if (!tractproto::IsPowerOfTwo(v.block_size) || v.block_size < 4096 || v.block_size > v.tract_size)
    return Status::Error(-EINVAL, "block size must be a power of two, at least 4 KiB and at most the tract size");
  if (v.stripe_unit != 0) {
    if (v.mode != WriteMode::kLog && v.stripe_unit != v.block_size)
      return Status::Error(-EINVAL, "only log volumes take a stripe unit apart from their block size "
                                    "(in the other modes the block is the stripe unit)");
    if (!tractproto::IsPowerOfTwo(v.stripe_unit) || v.stripe_unit < 4096 || v.stripe_unit > v.tract_size)
      return Status::Error(-EINVAL, "stripe unit must be a power of two, at least 4 KiB and at most the tract size");
  }
  return Status::Ok();
}

size_t Tlt::RowFor(uint64_t blob_hi, uint64_t blob_lo, uint64_t tract, size_t nrows) {
  uint64_t k[2] = {blob_hi, blob_lo};
  uint64_t h = Checksum(k, sizeof k);
  return static_cast<size_t>((h + tract) % nrows);
}

std::string DiskHolder::Format() const {
  return "flurry-disk/" + host + "/" + boot + "/" + pidns + "/" + pid + "/" + start;
}

Result<DiskHolder> DiskHolder::Parse(const std::string& holder) {
  std::vector<std::string> f;
  for (size_t p = 0;;) {
    size_t q = holder.find('/', p);
    f.push_back(holder.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  if (f.size() != 6 || f[0] != "flurry-disk" || f[4].empty() ||
      f[4].find_first_not_of("0123456789") != std::string::npos)
    return Result<DiskHolder>::error(-EINVAL);
  return DiskHolder{f[1], f[2], f[3], f[4], f[5]};
}

}  // namespace flurry
