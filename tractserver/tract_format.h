// SPDX-License-Identifier: Apache-2.0
//
// On-disk format of the tract store. docs/DISK_FORMAT.md describes it in
// prose; keep them in step. All integers little-endian.
//
// DIR/
//   LOCK                         flock()ed by the running server
//   tracts/<blob:32 hex>/<tract>.data   tract_size bytes, sparse, O_DIRECT IO
//   tracts/<blob:32 hex>/<tract>.meta   TractMetaHeader (4096 B) + ChunkEntry[nchunks]
//
// Every chunk (4 KiB) has two checksum slots. The invariant: the chunk's
// data on disk always matches sum[cur] or, if kChunkPending is set, possibly
// sum[!cur]. A write first makes the new checksum durable in slot !cur with
// kChunkPending set, then writes the data (durably), then rewrites the entry
// with cur flipped and kChunkPending cleared (lazily, without a sync).
// After a crash, an entry still pending is resolved by reading the chunk:
// whichever slot matches becomes cur; if neither matches the chunk is torn
// and reads of it fail with -EIO (only possible for an unacknowledged write
// whose 4 KiB device write was not atomic).
#pragma once

#include <cstdint>

#include "common/checksum.h"

namespace flurry::tractstore {

inline constexpr char kMetaMagic[8] = {'F', 'L', 'T', 'R', 'A', 'C', 'T', '1'};
inline constexpr uint32_t kMetaVersion = 1;
inline constexpr uint32_t kMetaHeaderSize = 4096;

struct TractMetaHeader {
  char magic[8];
  uint32_t version;
  uint32_t tract_size;
  uint64_t blob_hi;
  uint64_t blob_lo;
  uint64_t tract;
  uint32_t chunk_size;
  uint32_t nchunks;
  uint64_t header_sum;  // XXH3-64 of this struct with header_sum = 0
};
static_assert(sizeof(TractMetaHeader) == 56);

enum ChunkFlags : uint32_t {
  kChunkAllocated = 1u << 0,
  kChunkCur1 = 1u << 1,     // current slot is sum[1] (else sum[0])
  kChunkPending = 1u << 2,  // a write to slot !cur may have reached the data
  kChunkTrimmed = 1u << 3,  // deallocated by a client trim: re-replication (FILL) keeps it a hole
};

struct ChunkEntry {
  uint64_t sum[2];
  uint32_t flags;
  uint32_t reserved;
  uint64_t entry_sum;  // XXH3-64 (seed = chunk index) of the first 24 bytes
};
static_assert(sizeof(ChunkEntry) == 32);

inline uint64_t EntrySum(const ChunkEntry& e, uint64_t index) {
  return ChecksumWithSeed(&e, 24, index);
}
// A never-written entry is all zeros and valid.
inline bool EntryValid(const ChunkEntry& e, uint64_t index) {
  if (e.sum[0] == 0 && e.sum[1] == 0 && e.flags == 0 && e.entry_sum == 0) return true;
  return e.entry_sum == EntrySum(e, index);
}
inline void SealEntry(ChunkEntry* e, uint64_t index) { e->entry_sum = EntrySum(*e, index); }

}  // namespace flurry::tractstore
