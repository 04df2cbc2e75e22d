// SPDX-License-Identifier: Apache-2.0
//
// On-disk format of the tract store. docs/DISK_FORMAT.md describes it in
// prose; keep them in step. All integers little-endian.
//
// DIR/
//   LOCK                         flock()ed by the running server
//   tracts/<blob:32 hex>/<tract>.data   tract_size bytes, sparse, O_DIRECT IO
//   tracts/<blob:32 hex>/<tract>.meta   TractMetaHeader (4096 B) + ChunkEntry[nchunks]
//   writers                      WriterRecord[]: newest writer generation per blob
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

#include <cstddef>
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

// DIR/writers: append-only, one record per raised (or erased, gen 0)
// writer generation; the last record of a blob wins (writer_gens.h).
inline constexpr uint32_t kWriterMagic = 0x47574C46;  // "FLWG" in memory order
struct WriterRecord {
  uint64_t blob_hi;
  uint64_t blob_lo;
  uint64_t gen;    // 0 = the blob was deleted: forget it
  uint32_t magic;  // kWriterMagic
  uint32_t sum;    // low 32 bits of XXH3-64 of the 28 bytes above
};
static_assert(sizeof(WriterRecord) == 32);
inline uint32_t WriterRecordSum(const WriterRecord& r) {
  return static_cast<uint32_t>(Checksum(&r, offsetof(WriterRecord, sum)));
}

inline uint64_t EntrySum(const ChunkEntry& e, uint64_t index) {
  return ChecksumWithSeed(&e, 24, index);
}
// A never-written entry is all zeros and valid.
inline bool EntryValid(const ChunkEntry& e, uint64_t index) {
  if (e.sum[0] == 0 && e.sum[1] == 0 && e.flags == 0 && e.entry_sum == 0) return true;
  return e.entry_sum == EntrySum(e, index);
}
inline void SealEntry(ChunkEntry* e, uint64_t index) { e->entry_sum = EntrySum(*e, index); }

// ---- Write-ahead journal (DIR/journal; tractserver/journal.h) ----
//
//   [0, 4096)        superblock slot 0      JournalSuper
//   [4096, 8192)     superblock slot 1      (the valid one with the higher generation wins)
//   [8192, size)     ring of batches, addressed by a byte LSN that only grows:
//                    a batch at LSN L lives at 8192 + L % (size - 8192) and never
//                    wraps; one that would not fit starts the next lap instead.
//
// Batch: one 4096-byte header page (BatchHeader, then nrec JournalRecords),
// then the data of every kJournalWrite record in order ((c1 - c0) chunks
// each) and of every kJournalIntent record (its checksums, whole pages). Batches are written one at a time with O_DIRECT + RWF_DSYNC; a
// write is acknowledged only after its batch is durable. Recovery replays
// batches from the superblock's tail (tail_lsn, tail_seq) while each header
// is valid, carries the expected seq and LSN, and every record's data
// matches data_sum; the first batch that does not is where the log ends.
inline constexpr char kJournalMagic[8] = {'F', 'L', 'J', 'R', 'N', 'L', '0', '1'};
inline constexpr char kBatchMagic[8] = {'F', 'L', 'J', 'B', 'A', 'T', 'C', 'H'};
inline constexpr uint32_t kJournalVersion = 1;
inline constexpr uint64_t kJournalDataStart = 8192;

struct JournalSuper {
  char magic[8];
  uint32_t version;
  uint32_t reserved;
  uint64_t size;        // whole file, bytes
  uint64_t generation;  // +1 per checkpoint
  uint64_t tail_lsn;    // first batch not yet applied to the tract files durably
  uint64_t tail_seq;    // its sequence number
  uint64_t sum;         // XXH3-64 of this struct with sum = 0
};
static_assert(sizeof(JournalSuper) == 56);

enum JournalOp : uint32_t {
  kJournalWrite = 1,   // data = chunks [c0, c1) of the tract, whole
  kJournalTrim = 2,    // chunks [c0, c1) deallocated (trim tombstones)
  kJournalDelete = 3,  // every tract of the blob deleted
  kJournalNop = 4,     // no effect (a checkpoint request waiting for the batch in flight)
  kJournalIntent = 5,  // chunks [c0, c1) being written in place (a direct write): data = their
                       // new XXH3-64 checksums, u64 each, zero-padded to whole 4096-byte pages
};

struct JournalRecord {
  uint64_t blob_hi, blob_lo, tract;
  uint32_t tract_size;
  uint32_t op;
  uint32_t c0, c1;
  uint64_t data_sum;  // kJournalWrite: JournalDataSum(data); kJournalIntent: XXH3-64 of the
                      // (c1 - c0) checksums; else 0
};
static_assert(sizeof(JournalRecord) == 48);

// Journal bytes of a kJournalIntent record's checksums (u64 per chunk, whole pages).
inline uint64_t IntentBytes(uint32_t nchunks) { return (static_cast<uint64_t>(nchunks) * 8 + 4095) / 4096 * 4096; }

// XXH3-64 of the array of the chunks' own XXH3-64 checksums (which the
// write computes for the chunk entries anyway: no second pass over data).
inline uint64_t JournalDataSumOfSums(const uint64_t* sums, size_t n) { return Checksum(sums, n * 8); }

struct BatchHeader {
  char magic[8];
  uint64_t seq;
  uint64_t lsn;
  uint32_t total_len;  // header page + data, a multiple of 4096
  uint32_t nrec;
  uint64_t header_sum;  // XXH3-64 of header (header_sum = 0) + records
};
static_assert(sizeof(BatchHeader) == 40);
inline constexpr uint32_t kMaxBatchRecords = (4096 - sizeof(BatchHeader)) / sizeof(JournalRecord);

}  // namespace flurry::tractstore
