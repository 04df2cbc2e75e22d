// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target for the tract frame parser (tractproto::ValidateRequest
// and the framing rules the server applies). Build and run:
//   CXX=clang++ meson setup build-fuzz -Dfuzzers=true -Dfuse=disabled
//   meson compile -C build-fuzz tractserver/fuzz_tract_frame
//   ./build-fuzz/tractserver/fuzz_tract_frame -max_total_time=60
// (tools/fuzz runs every fuzzer for a bounded time.)
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/tract_protocol.h"

using namespace flurry::tractproto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Walk a byte stream as the server does: header, validate, skip payload.
  size_t pos = 0;
  while (size - pos >= sizeof(RequestHeader)) {
    RequestHeader h;
    memcpy(&h, data + pos, sizeof h);
    pos += sizeof h;
    // Give the fuzzer a chance past the checksum: reseal half the time.
    if (h.id & 1) SealHeader(&h);
    int v = ValidateRequest(h);
    if (v == -EPROTO) break;
    if (v == 0) {
      if (h.payload_len > kMaxPayload) __builtin_trap();
      if (h.op <= kOpZero && h.op != 0 && static_cast<uint64_t>(h.offset) + h.length > h.tract_size)
        __builtin_trap();
    }
    if (h.payload_len > size - pos) break;
    pos += h.payload_len;
  }
  return 0;
}
