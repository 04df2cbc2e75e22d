// SPDX-License-Identifier: Apache-2.0
#include "striping/striping.h"

#include <algorithm>
#include <bit>

namespace flurry {

namespace {
bool IsPow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }
}  // namespace

Status StripeMap::Check(const StripeParams& p) {
  auto bad = [](std::string msg) { return Status::Error(-EINVAL, std::move(msg)); };
  if (p.volume_size == 0) return bad("volume size must be greater than 0");
  if (!IsPow2(p.tract_size))
    return bad("tract size " + std::to_string(p.tract_size) + " is not a power of two");
  if (p.segment_tracts < 1 || p.segment_tracts > kMaxSegmentTracts)
    return bad("segment tracts " + std::to_string(p.segment_tracts) + " is outside 1.." +
               std::to_string(kMaxSegmentTracts));
  if (!IsPow2(p.stripe_unit) || p.stripe_unit < kMinStripeUnit)
    return bad("stripe unit " + std::to_string(p.stripe_unit) +
               " is not a power of two of at least " + std::to_string(kMinStripeUnit));
  if (p.stripe_unit > p.tract_size)
    return bad("stripe unit " + std::to_string(p.stripe_unit) + " is larger than the tract size " +
               std::to_string(p.tract_size));
  // S * T and the volume rounded up to whole segments must fit in 64 bits.
  uint64_t seg_bytes = 0;
  if (__builtin_mul_overflow(uint64_t{p.segment_tracts}, p.tract_size, &seg_bytes))
    return bad("segment size (segment tracts x tract size) overflows 64 bits");
  uint64_t segs = p.volume_size / seg_bytes + (p.volume_size % seg_bytes != 0);
  uint64_t rounded = 0;
  if (__builtin_mul_overflow(segs, seg_bytes, &rounded))
    return bad("volume size rounded up to whole segments overflows 64 bits");
  return Status::Ok();
}

Result<StripeMap> StripeMap::Create(const StripeParams& p) {
  if (!Check(p).ok()) return Result<StripeMap>::error(-EINVAL);
  return StripeMap(p);
}

StripeMap::StripeMap(const StripeParams& p)
    : p_(p),
      segment_bytes_(uint64_t{p.segment_tracts} * p.tract_size),
      unit_shift_(static_cast<uint64_t>(std::countr_zero(p.stripe_unit))) {
  const uint64_t full = p.volume_size / segment_bytes_;
  const uint64_t tail = p.volume_size - full * segment_bytes_;
  const uint64_t tail_units = (tail + p.stripe_unit - 1) >> unit_shift_;
  num_tracts_ = full * p.segment_tracts + std::min<uint64_t>(p.segment_tracts, tail_units);
}

uint64_t StripeMap::tract_used_bytes(uint64_t tract) const {
  if (tract >= num_tracts_) return 0;
  const uint64_t s = p_.segment_tracts;
  const uint64_t seg = tract / s;
  const uint64_t seg_start = seg * segment_bytes_;
  const uint64_t tail = p_.volume_size - seg_start;
  if (tail >= segment_bytes_) return p_.tract_size;
  // Partial last segment: unit u goes to this tract iff u % S == j.
  const uint64_t b = p_.stripe_unit;
  const uint64_t j = tract % s;
  const uint64_t units = (tail + b - 1) >> unit_shift_;  // > j, else not counted
  const uint64_t mine = (units - j + s - 1) / s;          // units j, j+S, ... < units
  const uint64_t last_unit = j + (mine - 1) * s;
  uint64_t used = mine * b;
  if (last_unit == units - 1 && tail % b != 0) used -= b - tail % b;
  return used;
}

Result<TractAddress> StripeMap::ToTract(uint64_t virt) const {
  if (virt >= p_.volume_size) return Result<TractAddress>::error(-EINVAL);
  const uint64_t s = p_.segment_tracts;
  const uint64_t seg = virt / segment_bytes_;
  const uint64_t in_seg = virt - seg * segment_bytes_;
  const uint64_t unit = in_seg >> unit_shift_;
  const uint64_t in_unit = in_seg & (p_.stripe_unit - 1);
  return TractAddress{seg * s + unit % s, ((unit / s) << unit_shift_) + in_unit};
}

Result<uint64_t> StripeMap::ToVirtual(uint64_t tract, uint64_t tract_off) const {
  if (tract_off >= p_.tract_size || tract >= num_tracts_) return Result<uint64_t>::error(-EINVAL);
  const uint64_t s = p_.segment_tracts;
  const uint64_t seg = tract / s;
  const uint64_t row = tract_off >> unit_shift_;
  const uint64_t in_unit = tract_off & (p_.stripe_unit - 1);
  const uint64_t unit = row * s + tract % s;
  const uint64_t virt = seg * segment_bytes_ + (unit << unit_shift_) + in_unit;
  if (virt >= p_.volume_size) return Result<uint64_t>::error(-EINVAL);
  return virt;
}

Result<std::vector<StripePiece>> StripeMap::Map(uint64_t off, uint64_t len) const {
  if (!Contains(off, len)) return Result<std::vector<StripePiece>>::error(-EINVAL);
  std::vector<StripePiece> out;
  const uint64_t b = p_.stripe_unit;
  out.reserve(static_cast<size_t>((len + (off & (b - 1)) + b - 1) >> unit_shift_));
  (void)ForEachPiece(off, len, [&](const StripePiece& p) { out.push_back(p); });
  return out;
}

std::vector<StripePiece> StripeMap::Coalesce(std::vector<StripePiece> pieces) {
  size_t w = 0;
  for (size_t r = 0; r < pieces.size(); ++r) {
    const StripePiece& p = pieces[r];
    if (w > 0) {
      StripePiece& last = pieces[w - 1];
      if (p.tract == last.tract && p.tract_off == last.tract_off + last.length &&
          p.buf_off == last.buf_off + last.length) {
        last.length += p.length;
        continue;
      }
    }
    pieces[w++] = p;
  }
  pieces.resize(w);
  return pieces;
}

}  // namespace flurry
