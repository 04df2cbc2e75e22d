// SPDX-License-Identifier: Apache-2.0
//
// Log mode's on-blob formats: geometry, expanded-block trailers and
// checkpoint slots. Written down in docs/DISK_FORMAT.md, "Log mode
// (expanded blocks and checkpoints)"; this header is the code of that page.
// All integers little-endian (the structs are memcpy'd; static_assert below).
//
// Blob layout (offsets in bytes; every region 4 KiB aligned, O_DIRECT-safe):
//   [0, S)            checkpoint slot 0
//   [S, 2S)           checkpoint slot 1
//   [2S + p*E, ...)   physical block p, p in [0, P): B data bytes, then a
//                     4096-byte trailer; E = B + 4096
// with B = vol.block_size, V = ceil(vol.size / B) virtual blocks,
// P = V + max(64, V/8) physical blocks, and
// S = 4096 (header) + AlignUp(4*V + ceil(P/8), 4096) (body: blockMap as
// V little-endian u32 — kUnmapped for none — then the allocation bitmap,
// bit p = byte p/8, bit p%8).
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

#include "common/result.h"
#include "epochs/lcg.h"

namespace flurry {

static_assert(std::endian::native == std::endian::little, "log formats are little-endian");

inline constexpr uint64_t kLogPage = 4096;           // trailer, slot header
inline constexpr uint32_t kUnmapped = 0xFFFFFFFFu;   // blockMap: no physical block
inline constexpr uint64_t kMaxPhysicalBlocks = 0xFFFFFFFEull;
inline constexpr uint64_t kLogRunBytes = 512 * 1024;  // LogGeometry::DefaultRun()

struct LogGeometry {
  uint64_t volume_size = 0;
  uint32_t block = 0;       // B
  uint64_t vblocks = 0;     // V
  uint64_t pblocks = 0;     // P
  uint64_t expanded = 0;    // E = B + kLogPage
  uint64_t body_bytes = 0;  // 4V + ceil(P/8): meaningful bytes of a slot body
  uint64_t slot_bytes = 0;  // S
  uint64_t blob_bytes = 0;  // 2S + P*E

  // -EINVAL when B is not a power of two >= 4096, the size is 0, or P would
  // not fit a u32 blockMap entry.
  static Result<LogGeometry> For(uint64_t volume_size, uint32_t block);

  uint64_t SlotOffset(unsigned slot) const { return slot * slot_bytes; }
  uint64_t BlockOffset(uint64_t phys) const { return 2 * slot_bytes + phys * expanded; }
  uint64_t TrailerOffset(uint64_t phys) const { return BlockOffset(phys) + block; }
  // Bytes of virtual block v inside the volume (the last one may be short;
  // the rest of its B bytes is zero padding).
  uint64_t VBlockBytes(uint64_t v) const {
    uint64_t start = v * block;
    return volume_size - start < block ? volume_size - start : block;
  }
  // Identifies the geometry in trailers and checkpoints.
  uint64_t Tag() const;
  // The permutation run length a newly formatted blob gets: kLogRunBytes of
  // expanded blocks (at least one block). A formatted blob keeps the run
  // length its checkpoints record.
  uint64_t DefaultRun() const { return expanded >= kLogRunBytes ? 1 : kLogRunBytes / expanded; }
};

// ---- Expanded-block trailer: the first 72 bytes of the 4096-byte page
// after a physical block's data; the rest of the page is zero.
inline constexpr uint64_t kTrailerMagic = 0x314B42474F4C4C46ull;  // "FLLOGBK1"
inline constexpr uint32_t kTrailerVersion = 1;
inline constexpr uint32_t kTrailerTrim = 1;  // flags: the virtual block is unmapped (trim/zero)

struct BlockTrailer {
  uint64_t magic = kTrailerMagic;
  uint32_t version = kTrailerVersion;
  uint32_t flags = 0;
  uint64_t geometry_tag = 0;
  uint64_t gen = 0;         // writer generation (bumped by every writable Open)
  uint64_t step = 0;        // permutation position this block was written at
  uint64_t vblock = 0;
  uint64_t epoch = 0;
  uint64_t data_sum = 0;    // XXH3-64 of the B data bytes; 0 when trimmed
  uint64_t header_sum = 0;  // XXH3-64 of the 64 bytes above
};
static_assert(sizeof(BlockTrailer) == 72);

// Fills data_sum (unless trim) and header_sum and writes the page at `page`.
void EncodeTrailer(BlockTrailer t, const uint8_t* data, uint32_t block, uint8_t* page);
// The trailer if its magic, version and header_sum are right; -EINVAL else.
Result<BlockTrailer> DecodeTrailer(const uint8_t* page);
// Whether the data matches the trailer's data_sum (always true for trims).
bool TrailerMatchesData(const BlockTrailer& t, const uint8_t* data, uint32_t block);

// ---- Checkpoint slot header: the first 128 bytes of the slot's 4096-byte
// header page; the body follows at slot offset + 4096.
// Version 2 added run_blocks (version 1 headers are 128 bytes, header_sum
// at offset 120, and mean run_blocks = 1); both are read, and 1 is still
// written for run_blocks = 1.
inline constexpr uint64_t kCheckpointMagic = 0x314B43474F4C4C46ull;  // "FLLOGCK1"
inline constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointHeader {
  uint64_t magic = kCheckpointMagic;
  uint32_t version = kCheckpointVersion;
  uint32_t block_size = 0;
  uint64_t geometry_tag = 0;
  uint64_t vblocks = 0, pblocks = 0;
  uint64_t seq = 0;          // higher = newer
  uint64_t gen = 0;          // generation whose blocks may follow pos_step
  uint64_t lcg_a = 0, lcg_c = 0, lcg_m = 0;
  uint64_t pos_x = 0;        // physical block at pos_step
  uint64_t pos_step = 0;     // roll forward from here
  uint64_t last_durable_epoch = 0;
  uint64_t body_bytes = 0;
  uint64_t body_sum = 0;     // XXH3-64 of the body_bytes body bytes
  uint64_t run_blocks = 1;   // the permutation's run length (lcg.h)
  uint64_t header_sum = 0;   // XXH3-64 of the 128 bytes above
};
static_assert(sizeof(CheckpointHeader) == 136);

// Writes version 1 when run_blocks == 1 (readable by older flurry), else 2.
void EncodeCheckpointHeader(CheckpointHeader h, uint8_t* page);
// The header if magic, version (1 or 2) and header_sum are right; a version
// 1 header comes back with run_blocks = 1. -EPROTONOSUPPORT for our magic
// with a newer version (the blob must not be taken for a fresh one),
// -EINVAL else.
Result<CheckpointHeader> DecodeCheckpointHeader(const uint8_t* page);
// Whether a decoded header belongs to this geometry (and LCG parameters).
bool CheckpointMatches(const CheckpointHeader& h, const LogGeometry& g);

// The durable maps a checkpoint body holds.
struct LogMaps {
  std::vector<uint32_t> block_map;  // V entries, kUnmapped or < P
  std::vector<uint64_t> alloc;      // P bits
  bool Allocated(uint64_t p) const { return (alloc[p / 64] >> (p % 64)) & 1; }
  void Set(uint64_t p) { alloc[p / 64] |= uint64_t{1} << (p % 64); }
  void Clear(uint64_t p) { alloc[p / 64] &= ~(uint64_t{1} << (p % 64)); }
  static LogMaps Empty(const LogGeometry& g);
};

// Serialises maps into body (g.slot_bytes - kLogPage bytes, zero padded).
void EncodeCheckpointBody(const LogMaps& m, const LogGeometry& g, uint8_t* body);
// Parses and checks a body: checksum, every entry kUnmapped or < P, no
// physical block used twice, bitmap == the blocks the map uses. -EINVAL else.
Result<LogMaps> DecodeCheckpointBody(const uint8_t* body, const CheckpointHeader& h,
                                     const LogGeometry& g);

}  // namespace flurry
