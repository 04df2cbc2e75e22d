// SPDX-License-Identifier: Apache-2.0
//
// Sector stamps: how the crash harness makes every 512-byte sector it writes
// say which write put it there, so that a disk read back after a crash can
// be mapped, sector by sector, onto the history of writes.
//
// Layout of a stamped sector (host byte order; the harness reads back what
// it wrote on the same machine):
//    0  u64 tag       run tag: random per harness run, never 0
//    8  u64 write id  > 0, unique, growing in issue order
//   16  u64 sector    the absolute sector number (LBA) it was written to
//   24  u64 check     XXH3 of the 512 bytes with this field zeroed
//   32  480 bytes     pseudo-random fill derived from (tag, id, sector)
//
// Decode() maps a sector to kZero (all zero: never written), a write id (a
// valid stamp of this run, at this sector), or kGarbage (anything else: a
// torn sector, another run's data, data written to the wrong place).
#pragma once

#include <cstddef>
#include <cstdint>

namespace flurry::crashtest {

inline constexpr uint32_t kSector = 512;
inline constexpr uint64_t kZero = 0;
inline constexpr uint64_t kGarbage = ~0ull;

// Writes the stamp of write `id` for `count` sectors starting at `sector`.
void StampSectors(uint64_t tag, uint64_t id, uint64_t sector, uint32_t count, uint8_t* buf);
// Decodes one sector read from `sector`.
uint64_t DecodeSector(uint64_t tag, uint64_t sector, const uint8_t* p);
// Decodes `count` sectors starting at `sector` into out[0..count).
void DecodeSectors(uint64_t tag, uint64_t sector, uint64_t count, const uint8_t* buf, uint64_t* out);

}  // namespace flurry::crashtest
