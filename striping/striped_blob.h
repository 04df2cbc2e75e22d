// SPDX-License-Identifier: Apache-2.0
//
// StripedBlob: a volume's virtual byte range on top of fdsclient, laid out
// by a StripeMap. Splits each IO into per-tract pieces (coalesced where a
// run stays in one tract), issues them all at once, and completes when
// every piece has (first error wins).
//
// Contract: as FdsClient — loop thread only, buffers valid until the
// callback, callbacks exactly once. Tract servers only receive whole 4 KiB
// chunks: FdsClient merges partial chunks (read, overlay, write). So the
// engine above must not have two writes/zeroes in flight that touch the same
// 4 KiB chunk of the blob (they lock chunk-aligned ranges).
// Trim/Zero ranges are split at tract boundaries and tractproto::kMaxIo.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "epochs/blob_io.h"
#include "fdsclient/fds_client.h"
#include "striping/striping.h"

namespace flurry {

class StripedBlob : public BlobIo {
 public:

  StripedBlob(FdsClient* fds, BlobRef blob, StripeMap map)
      : fds_(fds), blob_(blob), map_(std::move(map)) {}

  uint64_t size() const override { return map_.volume_size(); }
  void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) override;
  void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) override;
  void Zero(uint64_t off, uint64_t len, bool keep_alloc, Done done) override;
  // Allocation of a prefix of [off, off+len) (at most 64 stripe pieces), as
  // NBD base:allocation extents at 4 KiB granularity.
  void Allocation(uint64_t off, uint64_t len, ExtentsDone done) override;

  const StripeMap& map() const { return map_; }
  const BlobRef& blob() const { return blob_; }

 private:
  FdsClient* fds_;
  BlobRef blob_;
  StripeMap map_;
};

}  // namespace flurry
