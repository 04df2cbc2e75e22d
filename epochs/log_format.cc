// SPDX-License-Identifier: Apache-2.0
#include "epochs/log_format.h"

#include <cstring>

#include "common/checksum.h"

namespace flurry {

Result<LogGeometry> LogGeometry::For(uint64_t volume_size, uint32_t block) {
  using R = Result<LogGeometry>;
  if (volume_size == 0 || block < kLogPage || !std::has_single_bit(block)) return R::error(-EINVAL);
  LogGeometry g;
  g.volume_size = volume_size;
  g.block = block;
  g.vblocks = (volume_size + block - 1) / block;
  g.pblocks = g.vblocks + (g.vblocks / 8 > 64 ? g.vblocks / 8 : 64);
  if (g.pblocks > kMaxPhysicalBlocks) return R::error(-EINVAL);
  g.expanded = uint64_t{block} + kLogPage;
  g.body_bytes = 4 * g.vblocks + (g.pblocks + 7) / 8;
  g.slot_bytes = kLogPage + (g.body_bytes + kLogPage - 1) / kLogPage * kLogPage;
  g.blob_bytes = 2 * g.slot_bytes + g.pblocks * g.expanded;
  return g;
}

uint64_t LogGeometry::Tag() const {
  const uint64_t v[4] = {volume_size, block, vblocks, pblocks};
  return Checksum(v, sizeof v);
}

void EncodeTrailer(BlockTrailer t, const uint8_t* data, uint32_t block, uint8_t* page) {
  t.magic = kTrailerMagic;
  t.version = kTrailerVersion;
  t.data_sum = (t.flags & kTrailerTrim) ? 0 : Checksum(data, block);
  t.header_sum = Checksum(&t, offsetof(BlockTrailer, header_sum));
  memset(page, 0, kLogPage);
  memcpy(page, &t, sizeof t);
}

Result<BlockTrailer> DecodeTrailer(const uint8_t* page) {
  BlockTrailer t;
  memcpy(&t, page, sizeof t);
  if (t.magic != kTrailerMagic || t.version != kTrailerVersion ||
      t.header_sum != Checksum(&t, offsetof(BlockTrailer, header_sum)))
    return Result<BlockTrailer>::error(-EINVAL);
  return t;
}

bool TrailerMatchesData(const BlockTrailer& t, const uint8_t* data, uint32_t block) {
  return (t.flags & kTrailerTrim) || t.data_sum == Checksum(data, block);
}

void EncodeCheckpointHeader(CheckpointHeader h, uint8_t* page) {
  h.magic = kCheckpointMagic;
  memset(page, 0, kLogPage);
  if (h.run_blocks == 1) {
    // Walks of single blocks keep version 1, which flurry before version 2
    // reads too (it would take a version 2 header for none and format).
    h.version = 1;
    h.run_blocks = Checksum(&h, offsetof(CheckpointHeader, run_blocks));
    memcpy(page, &h, offsetof(CheckpointHeader, header_sum));
    return;
  }
  h.version = kCheckpointVersion;
  h.header_sum = Checksum(&h, offsetof(CheckpointHeader, header_sum));
  memcpy(page, &h, sizeof h);
}

Result<CheckpointHeader> DecodeCheckpointHeader(const uint8_t* page) {
  CheckpointHeader h;
  memcpy(&h, page, sizeof h);
  bool ok = false;
  if (h.magic == kCheckpointMagic && h.version == 1) {
    // 128 bytes: header_sum sat where run_blocks is now; walks of single blocks.
    constexpr size_t kV1Summed = offsetof(CheckpointHeader, run_blocks);
    ok = h.run_blocks == Checksum(&h, kV1Summed);
    h.run_blocks = 1;
    h.header_sum = 0;
  } else if (h.magic == kCheckpointMagic && h.version == kCheckpointVersion) {
    ok = h.header_sum == Checksum(&h, offsetof(CheckpointHeader, header_sum));
  } else if (h.magic == kCheckpointMagic && h.version > kCheckpointVersion) {
    return Result<CheckpointHeader>::error(-EPROTONOSUPPORT);  // a newer format: never "no header"
  }
  if (!ok) return Result<CheckpointHeader>::error(-EINVAL);
  return h;
}

bool CheckpointMatches(const CheckpointHeader& h, const LogGeometry& g) {
  if (h.run_blocks == 0 || h.run_blocks > g.pblocks) return false;
  const LcgPermutation::Params p = LcgPermutation::ParamsFor(LcgPermutation::Runs(g.pblocks, h.run_blocks));
  return h.block_size == g.block && h.geometry_tag == g.Tag() && h.vblocks == g.vblocks &&
         h.pblocks == g.pblocks && h.body_bytes == g.body_bytes && h.lcg_a == p.a &&
         h.lcg_c == p.c && h.lcg_m == p.m && h.pos_x < g.pblocks;
}

LogMaps LogMaps::Empty(const LogGeometry& g) {
  LogMaps m;
  m.block_map.assign(g.vblocks, kUnmapped);
  m.alloc.assign((g.pblocks + 63) / 64, 0);
  return m;
}

void EncodeCheckpointBody(const LogMaps& m, const LogGeometry& g, uint8_t* body) {
  memset(body, 0, g.slot_bytes - kLogPage);
  memcpy(body, m.block_map.data(), 4 * g.vblocks);
  memcpy(body + 4 * g.vblocks, m.alloc.data(), (g.pblocks + 7) / 8);
}

Result<LogMaps> DecodeCheckpointBody(const uint8_t* body, const CheckpointHeader& h,
                                     const LogGeometry& g) {
  using R = Result<LogMaps>;
  if (h.body_bytes != g.body_bytes || Checksum(body, g.body_bytes) != h.body_sum)
    return R::error(-EINVAL);
  LogMaps m = LogMaps::Empty(g);
  memcpy(m.block_map.data(), body, 4 * g.vblocks);
  // Rebuild the bitmap from the map (rejecting double use), then compare.
  for (uint32_t p : m.block_map) {
    if (p == kUnmapped) continue;
    if (p >= g.pblocks || m.Allocated(p)) return R::error(-EINVAL);
    m.Set(p);
  }
  std::vector<uint64_t> stored((g.pblocks + 63) / 64, 0);
  memcpy(stored.data(), body + 4 * g.vblocks, (g.pblocks + 7) / 8);
  if (stored != m.alloc) return R::error(-EINVAL);
  return m;
}

}  // namespace flurry
