// SPDX-License-Identifier: Apache-2.0
//
// StripeMap: nested striping of a volume's bytes over its tracts
// (Blizzard §2.3; docs: DESIGN.md "Nested striping").
//
// Contract
// - Parameters: tract_size T (power of two), segment_tracts S (>= 1,
//   <= kMaxSegmentTracts), stripe_unit B (power of two, 512 <= B <= T, so B
//   divides T) and volume_size (> 0). Create() rejects anything else with
//   -EINVAL; Check() says why in a sentence. Nothing here asserts on them.
// - Layout: a segment is S consecutive tracts, S*T bytes of the volume.
//   Inside segment g, stripe unit u (B bytes, u = 0 .. S*T/B - 1) lands in
//   tract g*S + (u mod S) at byte offset (u div S)*B. S = 1 is the naive
//   linear map (volume byte v lives in tract v / T at offset v % T).
// - Partial last segment: the striping of a segment never depends on the
//   volume size (so growing a volume never moves data). When volume_size is
//   not a multiple of S*T the last segment simply ends early: its units keep
//   the round-robin above, and the parts of its tracts past the end are
//   never touched. num_tracts() counts the tracts that hold at least one
//   volume byte: full_segments*S + min(S, ceil(tail_bytes / B)).
//   tract_used_bytes(t) is the prefix of tract t that holds volume bytes
//   (T for every tract of a full segment); the rest of a tract never is.
// - Map()/ForEachPiece() cut [off, off+len) at stripe-unit boundaries and
//   yield pieces in virtual order; buf_off is the piece's offset in the
//   caller's buffer (0 at off). Pieces are never empty and cover the range
//   exactly. Coalesce() merges neighbours that are contiguous both in one
//   tract and in the buffer (with S = 1 this yields pieces up to a tract
//   boundary). ForEachRun() yields the coalesced pieces directly.
// - Cost: ForEachPiece/ForEachRun never allocate; Map allocates one vector.
// - Thread-safety: a StripeMap is immutable after Create(); all methods are
//   const and safe to call from any number of threads.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace flurry {

struct StripeParams {
  uint64_t volume_size = 0;
  uint64_t tract_size = 0;
  uint32_t segment_tracts = 1;  // S
  uint32_t stripe_unit = 0;     // B
};

// One contiguous part of a virtual range, inside one stripe unit (or, after
// coalescing, one contiguous run inside one tract).
struct StripePiece {
  uint64_t tract = 0;      // tract index in the volume
  uint64_t tract_off = 0;  // byte offset inside that tract
  uint64_t length = 0;     // bytes, > 0
  uint64_t buf_off = 0;    // offset into the caller's buffer
  bool operator==(const StripePiece&) const = default;
};

// Where one virtual byte lives.
struct TractAddress {
  uint64_t tract = 0;
  uint64_t tract_off = 0;
  bool operator==(const TractAddress&) const = default;
};

class StripeMap {
 public:
  static constexpr uint32_t kMinStripeUnit = 512;
  static constexpr uint32_t kMaxSegmentTracts = 1u << 20;

  // OK, or -EINVAL with a sentence naming the bad parameter.
  static Status Check(const StripeParams& p);
  // The map, or -EINVAL when Check(p) fails.
  static Result<StripeMap> Create(const StripeParams& p);

  const StripeParams& params() const { return p_; }
  uint64_t volume_size() const { return p_.volume_size; }
  uint64_t tract_size() const { return p_.tract_size; }
  uint32_t segment_tracts() const { return p_.segment_tracts; }
  uint32_t stripe_unit() const { return p_.stripe_unit; }
  uint64_t segment_bytes() const { return segment_bytes_; }
  uint64_t num_tracts() const { return num_tracts_; }
  // Bytes at the start of `tract` that hold volume data (0 if none).
  uint64_t tract_used_bytes(uint64_t tract) const;

  // True when [off, off+len) is a non-empty range inside the volume.
  bool Contains(uint64_t off, uint64_t len) const {
    return len > 0 && off < p_.volume_size && len <= p_.volume_size - off;
  }

  // Virtual byte -> tract address. -EINVAL past the end of the volume.
  Result<TractAddress> ToTract(uint64_t virt) const;
  // Tract address -> virtual byte. -EINVAL if tract_off >= T or the byte is
  // not part of the volume (past its end).
  Result<uint64_t> ToVirtual(uint64_t tract, uint64_t tract_off) const;

  // Calls fn(const StripePiece&) for each piece of [off, off+len), cut at
  // stripe-unit boundaries, in virtual order. Returns 0, or -EINVAL (and
  // calls nothing) if !Contains(off, len).
  template <typename Fn>
  int ForEachPiece(uint64_t off, uint64_t len, Fn&& fn) const;
  // Same, but neighbouring pieces contiguous in one tract and in the buffer
  // are merged first (S = 1: pieces end only at tract boundaries).
  template <typename Fn>
  int ForEachRun(uint64_t off, uint64_t len, Fn&& fn) const;

  // The pieces of ForEachPiece as a vector; -EINVAL if !Contains(off, len).
  Result<std::vector<StripePiece>> Map(uint64_t off, uint64_t len) const;

  // Merges neighbouring pieces that continue each other both in the same
  // tract and in the buffer. Order is kept.
  static std::vector<StripePiece> Coalesce(std::vector<StripePiece> pieces);

 private:
  explicit StripeMap(const StripeParams& p);

  StripeParams p_;
  uint64_t segment_bytes_ = 0;  // S * T
  uint64_t unit_shift_ = 0;     // log2(B)
  uint64_t num_tracts_ = 0;
};

template <typename Fn>
int StripeMap::ForEachPiece(uint64_t off, uint64_t len, Fn&& fn) const {
  if (!Contains(off, len)) return -EINVAL;
  const uint64_t b = p_.stripe_unit;
  const uint64_t s = p_.segment_tracts;
  uint64_t seg = off / segment_bytes_;
  uint64_t in_seg = off - seg * segment_bytes_;
  uint64_t unit = in_seg >> unit_shift_;     // unit within the segment
  uint64_t in_unit = in_seg & (b - 1);
  const uint64_t units_per_seg = segment_bytes_ >> unit_shift_;
  uint64_t done = 0;
  while (done < len) {
    const uint64_t n = std::min(b - in_unit, len - done);
    StripePiece piece;
    piece.tract = seg * s + unit % s;
    piece.tract_off = ((unit / s) << unit_shift_) + in_unit;
    piece.length = n;
    piece.buf_off = done;
    fn(static_cast<const StripePiece&>(piece));
    done += n;
    in_unit = 0;
    if (++unit == units_per_seg) {
      unit = 0;
      ++seg;
    }
  }
  return 0;
}

template <typename Fn>
int StripeMap::ForEachRun(uint64_t off, uint64_t len, Fn&& fn) const {
  StripePiece run;
  bool have = false;
  int r = ForEachPiece(off, len, [&](const StripePiece& p) {
    if (have && p.tract == run.tract && p.tract_off == run.tract_off + run.length &&
        p.buf_off == run.buf_off + run.length) {
      run.length += p.length;
      return;
    }
    if (have) fn(static_cast<const StripePiece&>(run));
    run = p;
    have = true;
  });
  if (have) fn(static_cast<const StripePiece&>(run));
  return r;
}

}  // namespace flurry
