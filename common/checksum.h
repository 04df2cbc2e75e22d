// SPDX-License-Identifier: Apache-2.0
//
// Checksums: XXH3-64 everywhere (wire payloads, on-disk chunks, expanded
// blocks, checkpoints). A checksum of 0 is legal; callers that need an
// "absent" marker keep a separate flag.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xxhash.h>

namespace flurry {

inline uint64_t Checksum(const void* data, size_t len) {
  return XXH3_64bits(data, len);
}

inline uint64_t ChecksumWithSeed(const void* data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}

// Streaming form, for payloads gathered from several buffers.
class ChecksumStream {
 public:
  ChecksumStream() : st_(XXH3_createState()) { XXH3_64bits_reset(st_); }
  ~ChecksumStream() { XXH3_freeState(st_); }
  ChecksumStream(const ChecksumStream&) = delete;
  ChecksumStream& operator=(const ChecksumStream&) = delete;
  void Update(const void* data, size_t len) { XXH3_64bits_update(st_, data, len); }
  uint64_t Digest() const { return XXH3_64bits_digest(st_); }

 private:
  XXH3_state_t* st_;
};

}  // namespace flurry
