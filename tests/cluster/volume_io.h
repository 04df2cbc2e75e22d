// SPDX-License-Identifier: Apache-2.0
//
// VolumeIo: byte-range IO on a blob through FdsClient for tests. A range is
// split at tract boundaries (the naive linear map: byte x lives in tract
// x / tract_size); the pieces run concurrently and the call completes once,
// with the first error, when all of them did. Loop thread only; buffers must
// stay valid until the callback.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/tract_protocol.h"
#include "fdsclient/fds_client.h"

namespace flurry::testing {

class VolumeIo {
 public:
  using Done = std::function<void(int res)>;
  // bitmap: one byte (0/1) per 4 KiB chunk overlapping the range.
  using ReadDone = std::function<void(int res, std::vector<uint8_t> bitmap)>;

  VolumeIo(FdsClient* c, BlobRef b) : c_(c), b_(b) {}

  void Write(uint64_t off, uint32_t len, const uint8_t* buf, Done done) {
    Split(off, len, std::move(done), [&](uint64_t t, uint32_t toff, uint32_t n, uint64_t pos, Done d) {
      c_->Write(b_, t, toff, n, buf + pos, 0, std::move(d));
    });
  }
  // keep_alloc=false: trim (whole chunks deallocated); true: write zeros.
  void Zero(uint64_t off, uint32_t len, bool keep_alloc, Done done) {
    Split(off, len, std::move(done), [&](uint64_t t, uint32_t toff, uint32_t n, uint64_t, Done d) {
      c_->Zero(b_, t, toff, n, keep_alloc, std::move(d));
    });
  }
  void Read(uint64_t off, uint32_t len, uint8_t* buf, ReadDone done) {
    constexpr uint64_t kC = tractproto::kChunkSize;
    uint64_t c0 = off / kC, c1 = (off + len + kC - 1) / kC;
    auto bm = std::make_shared<std::vector<uint8_t>>(c1 - c0, 0);
    auto fin = [bm, done = std::move(done)](int res) { done(res, std::move(*bm)); };
    Split(off, len, std::move(fin), [&](uint64_t t, uint32_t toff, uint32_t n, uint64_t pos, Done d) {
      uint64_t first = (t * b_.tract_size + toff) / kC - c0;  // piece's first chunk in bm
      c_->Read(b_, t, toff, n, buf + pos,
               [bm, first, d = std::move(d)](int res, std::vector<uint8_t> bits) {
                 for (size_t i = 0; res == 0 && i < bits.size() * 8 && first + i < bm->size(); ++i)
                   if (bits[i / 8] & (1u << (i % 8))) (*bm)[first + i] = 1;
                 d(res);
               });
    });
  }

 private:
  template <typename IssueFn>
  void Split(uint64_t off, uint32_t len, Done done, IssueFn issue) {
    struct Join {
      int pending = 1;
      int err = 0;
      Done done;
    };
    auto j = std::make_shared<Join>();
    j->done = std::move(done);
    auto piece_done = [j](int res) {
      if (res < 0 && j->err == 0) j->err = res;
      if (--j->pending == 0) j->done(j->err);
    };
    uint64_t pos = 0;
    while (pos < len) {
      uint64_t x = off + pos;
      uint64_t t = x / b_.tract_size;
      uint32_t toff = static_cast<uint32_t>(x % b_.tract_size);
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(len - pos, b_.tract_size - toff));
      j->pending++;
      issue(t, toff, n, pos, piece_done);
      pos += n;
    }
    piece_done(0);
  }

  FdsClient* c_;
  BlobRef b_;
};

}  // namespace flurry::testing
