// SPDX-License-Identifier: Apache-2.0
//
// Checksums: XXH3-64 everywhere (wire payloads, on-disk chunks, expanded
// blocks, checkpoints). A checksum of 0 is legal; callers that need an
// "absent" marker keep a separate flag.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xxhash.h>
#if FLURRY_XXH_DISPATCH
#define XXH_DISPATCH_DISABLE_REPLACE 1  // call the _dispatch forms by name, below
#include <xxh_x86dispatch.h>
#endif

namespace flurry {

// The same function either way; the dispatched form picks the widest vector
// unit at run time (the shared library's own XXH3_64bits is SSE2: 18 GB/s
// against 81 GB/s with AVX-512 on 1 MiB here). Short inputs never reach the
// vector loop, so they skip the indirect call.
inline constexpr size_t kChecksumDispatchMin = 1024;

#if FLURRY_XXH_DISPATCH
// The library picks its implementation on first use, without a lock; make that
// first use happen during static initialisation, before any thread starts.
inline const bool kChecksumDispatchReady = [] {
  static const unsigned char zeros[kChecksumDispatchMin] = {};
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update_dispatch(st, zeros, sizeof zeros);
  XXH3_freeState(st);
  return XXH3_64bits_dispatch(zeros, sizeof zeros) == XXH3_64bits(zeros, sizeof zeros) &&
         XXH3_64bits_withSeed_dispatch(zeros, sizeof zeros, 1) == XXH3_64bits_withSeed(zeros, sizeof zeros, 1);
}();
#endif

inline uint64_t Checksum(const void* data, size_t len) {
#if FLURRY_XXH_DISPATCH
  if (len >= kChecksumDispatchMin) return XXH3_64bits_dispatch(data, len);
#endif
  return XXH3_64bits(data, len);
}

inline uint64_t ChecksumWithSeed(const void* data, size_t len, uint64_t seed) {
#if FLURRY_XXH_DISPATCH
  if (len >= kChecksumDispatchMin) return XXH3_64bits_withSeed_dispatch(data, len, seed);
#endif
  return XXH3_64bits_withSeed(data, len, seed);
}

// Streaming form, for payloads gathered from several buffers.
class ChecksumStream {
 public:
  ChecksumStream() : st_(XXH3_createState()) { XXH3_64bits_reset(st_); }
  ~ChecksumStream() { XXH3_freeState(st_); }
  ChecksumStream(const ChecksumStream&) = delete;
  ChecksumStream& operator=(const ChecksumStream&) = delete;
  void Update(const void* data, size_t len) {
#if FLURRY_XXH_DISPATCH
    if (len >= kChecksumDispatchMin) {
      XXH3_64bits_update_dispatch(st_, data, len);
      return;
    }
#endif
    XXH3_64bits_update(st_, data, len);
  }
  uint64_t Digest() const { return XXH3_64bits_digest(st_); }

 private:
  XXH3_state_t* st_;
};

}  // namespace flurry
