// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/exports.h"

#include <algorithm>

#include "nbdserver/nbd_protocol.h"

namespace flurry::nbd {
namespace {

uint32_t CeilPow2(uint32_t v) {
  uint32_t p = 1;
  while (p < v && p < (1u << 31)) p <<= 1;
  return p;
}

}  // namespace

uint16_t Export::TransmissionFlags(bool structured) const {
  const BlockDeviceInfo& i = device->info();
  uint16_t f = kTxHasFlags | kTxSendFlush;
  if (read_only) {
    f |= kTxReadOnly;
  } else {
    if (i.can_fua) f |= kTxSendFua;
    if (i.can_trim) f |= kTxSendTrim;
    if (i.can_zero) f |= kTxSendWriteZeroes;
    if (i.can_zero && i.can_fast_zero) f |= kTxSendFastZero;
  }
  if (structured) f |= kTxSendDf;
  if (i.can_multi_conn) f |= kTxCanMultiConn;
  return f;
}

BlockLimits Export::Limits(uint32_t hard_max_payload) const {
  const BlockDeviceInfo& i = device->info();
  BlockLimits l;
  // Minimum: a power of two between 1 and 64 KiB.
  l.min_block = std::clamp<uint32_t>(CeilPow2(std::max<uint32_t>(i.min_block, 1)), 1, 65536);
  // Preferred: a power of two >= max(min, 512).
  l.preferred = CeilPow2(std::max({i.preferred_block, l.min_block, 512u}));
  // Maximum payload: a multiple of min, >= preferred, <= the hard bound.
  uint32_t mx = std::min<uint32_t>(std::max<uint32_t>(i.max_io, 1), hard_max_payload);
  mx = mx / l.min_block * l.min_block;
  l.max_payload = std::max(mx, l.preferred);
  return l;
}

void ExportTable::Add(const std::string& name, BlockDevice* dev, bool read_only) {
  Export e;
  e.name = name;
  e.device = dev;
  e.read_only = read_only || dev->info().read_only;
  exports_[name] = std::move(e);
}

const Export* ExportTable::Find(const std::string& name) const {
  auto it = exports_.find(name);
  if (it == exports_.end() && name.empty() && !default_.empty()) it = exports_.find(default_);
  return it == exports_.end() ? nullptr : &it->second;
}

}  // namespace flurry::nbd
