// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/stamp.h"

#include <cstring>

#include "common/checksum.h"

namespace flurry::crashtest {
namespace {

uint64_t SplitMix(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void StampOne(uint64_t tag, uint64_t id, uint64_t sector, uint8_t* p) {
  uint64_t w[kSector / 8];
  w[0] = tag;
  w[1] = id;
  w[2] = sector;
  w[3] = 0;
  uint64_t s = tag ^ (id * 0xd1b54a32d192ed03ull) ^ (sector * 0xabc98388fb8fac03ull);
  for (size_t i = 4; i < kSector / 8; ++i) w[i] = SplitMix(&s);
  w[3] = Checksum(w, kSector);
  memcpy(p, w, kSector);
}

}  // namespace

void StampSectors(uint64_t tag, uint64_t id, uint64_t sector, uint32_t count, uint8_t* buf) {
  for (uint32_t i = 0; i < count; ++i) StampOne(tag, id, sector + i, buf + size_t{i} * kSector);
}

uint64_t DecodeSector(uint64_t tag, uint64_t sector, const uint8_t* p) {
  uint64_t w[kSector / 8];
  memcpy(w, p, kSector);
  bool zero = true;
  for (uint64_t x : w)
    if (x != 0) { zero = false; break; }
  if (zero) return kZero;
  if (w[0] != tag || w[2] != sector || w[1] == kZero || w[1] == kGarbage) return kGarbage;
  uint64_t check = w[3];
  w[3] = 0;
  return Checksum(w, kSector) == check ? w[1] : kGarbage;
}

void DecodeSectors(uint64_t tag, uint64_t sector, uint64_t count, const uint8_t* buf, uint64_t* out) {
  for (uint64_t i = 0; i < count; ++i) out[i] = DecodeSector(tag, sector + i, buf + i * kSector);
}

}  // namespace flurry::crashtest
