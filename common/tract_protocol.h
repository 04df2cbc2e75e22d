// SPDX-License-Identifier: Apache-2.0
//
// The tract protocol: the wire format between fdsclient and
// flurry-tractserver. This header is the only code the two sides share.
// docs/PROTOCOL.md describes the same format in prose; keep them in step.
//
// Byte order: every integer is little-endian. Frames are a fixed header
// followed by payload_len bytes of payload.
//
// Request (88 bytes) -> Reply (48 bytes). Many requests may be in flight on
// one connection; replies come back in any order, matched by `id`.
//
// Checksums: header_sum is the low 32 bits of XXH3-64 over the header with
// header_sum set to 0. payload_sum is XXH3-64 over the whole payload
// (0 when payload_len == 0). A request whose header_sum is wrong, or whose
// magic/version is wrong, or whose payload_len exceeds kMaxPayload, is a
// protocol violation: the server closes the connection. A request with a
// valid header but a wrong payload_sum gets status -EBADMSG.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/checksum.h"

namespace flurry::tractproto {

inline constexpr uint32_t kRequestMagic = 0x51524c46;  // "FLRQ" in memory order
inline constexpr uint32_t kReplyMagic = 0x50524c46;    // "FLRP"
inline constexpr uint16_t kVersion = 2;  // 2: writer_gen in every request

// Allocation and checksum granularity of the tract store.
inline constexpr uint32_t kChunkSize = 4096;
// Largest payload in either direction (data plus allocation bitmap).
inline constexpr uint32_t kMaxIo = 4u << 20;
inline constexpr uint32_t kMaxPayload = kMaxIo + 64 * 1024;
// Tract sizes: a power of two between these bounds.
inline constexpr uint32_t kMinTractSize = 64u << 10;
inline constexpr uint32_t kMaxTractSize = 1u << 30;

enum Op : uint16_t {
  kOpWrite = 1,       // payload = data for [offset, offset+length)
  kOpRead = 2,        // reply payload = alloc bitmap (aux_len bytes) + data
  kOpTrim = 3,        // deallocate whole chunks inside the range; partial chunks are zeroed
  kOpZero = 4,        // range reads as zeros afterwards (kFlagNoHole: stays allocated)
  kOpDeleteBlob = 5,  // delete every tract of the blob on this server
  kOpStatTract = 6,   // reply payload = alloc bitmap of the whole tract (aux_len bytes)
  kOpStatServer = 7,  // reply payload = "key=value\n" text
  kOpPing = 8,        // no payload
  kOpListTracts = 9,  // reply payload = array of TractEntry (see below) for blob, or all blobs if blob==0
  kOpChunkSums = 10,  // reply payload = alloc bitmap of the whole tract (aux_len bytes), then one
                      // XXH3-64 per chunk (8 bytes each, 0 for an unallocated chunk)
  kOpFence = 11,      // blob id (+ writer_gen): connections accepted before this one, and
                      // requests with an older writer_gen, may no longer write, trim or
                      // zero the blob (-EPERM); see docs/PROTOCOL.md
  kOpMax = 11,
};

enum RequestFlags : uint32_t {
  kFlagNoSync = 1u << 0,   // reply before the data is durable (default: durable first)
  kFlagFill = 1u << 1,     // WRITE: only fill chunks not allocated here (re-replication)
  kFlagNoHole = 1u << 2,   // ZERO: keep the range allocated
  kFlagAllocOnly = 1u << 3 // READ: reply with the allocation bitmap only, no data
};

struct RequestHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t op;
  uint64_t id;
  uint64_t tlt_version;  // client's TLT version; 0 = do not check
  uint64_t blob_hi;
  uint64_t blob_lo;
  uint64_t tract;        // tract index within the blob
  uint32_t offset;       // byte offset within the tract
  uint32_t length;       // bytes addressed
  uint32_t flags;
  uint32_t tract_size;   // the blob's tract size (checked against the stored tract)
  uint64_t payload_sum;
  uint32_t header_sum;
  uint32_t payload_len;
  // The sender's write-lease generation of the blob (0 = none). A server
  // refuses WRITE (not FILL), TRIM and ZERO carrying a generation older
  // than the newest it has recorded for the blob; FENCE and such requests
  // record a newer one durably first. See docs/PROTOCOL.md.
  uint64_t writer_gen;
};
static_assert(sizeof(RequestHeader) == 88);

struct ReplyHeader {
  uint32_t magic;
  int32_t status;        // 0 or a negative Linux errno (see docs/PROTOCOL.md)
  uint64_t id;
  uint64_t tlt_version;  // the server's current TLT version
  uint32_t payload_len;
  uint32_t aux_len;      // leading payload bytes that are the allocation bitmap
  uint64_t payload_sum;
  uint32_t header_sum;
  uint32_t reserved;
};
static_assert(sizeof(ReplyHeader) == 48);

struct TractEntry {
  uint64_t blob_hi;
  uint64_t blob_lo;
  uint64_t tract;
  uint32_t tract_size;
  uint32_t allocated_chunks;
};
static_assert(sizeof(TractEntry) == 32);

// Bitmap size in bytes for n chunks, padded to 8 bytes.
inline constexpr uint32_t BitmapBytes(uint32_t nchunks) { return (nchunks + 63) / 64 * 8; }
// A CHUNK_SUMS reply of the largest tract fits one payload.
static_assert(BitmapBytes(kMaxTractSize / kChunkSize) + 8ull * (kMaxTractSize / kChunkSize) <= kMaxPayload);

template <typename H>
inline uint32_t HeaderSum(const H& h) {
  H copy = h;
  copy.header_sum = 0;
  return static_cast<uint32_t>(Checksum(&copy, sizeof copy));
}
template <typename H>
inline void SealHeader(H* h) { h->header_sum = HeaderSum(*h); }

inline bool IsPowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }

// Validates a request header that just arrived. Returns 0 if it is well
// formed, -EPROTO for framing violations (close the connection), or a
// negative errno to send back as the reply status (connection survives).
inline int ValidateRequest(const RequestHeader& h) {
  if (h.magic != kRequestMagic || h.version != kVersion) return -EPROTO;
  if (h.header_sum != HeaderSum(h)) return -EPROTO;
  if (h.payload_len > kMaxPayload) return -EPROTO;
  if (h.op == 0 || h.op > kOpMax) return -EOPNOTSUPP;
  if (h.op == kOpWrite && h.payload_len != h.length) return -EPROTO;
  if (h.op != kOpWrite && h.payload_len != 0) return -EPROTO;
  bool whole_tract_op = h.op == kOpStatTract || h.op == kOpChunkSums;
  bool tract_op = h.op <= kOpZero || whole_tract_op;
  if (tract_op) {
    if (!IsPowerOfTwo(h.tract_size) || h.tract_size < kMinTractSize || h.tract_size > kMaxTractSize)
      return -EINVAL;
    if (!whole_tract_op) {
      if (h.length == 0 || h.length > kMaxIo) return -EINVAL;
      if (static_cast<uint64_t>(h.offset) + h.length > h.tract_size) return -EINVAL;
    }
  }
  return 0;
}

}  // namespace flurry::tractproto
