// SPDX-License-Identifier: Apache-2.0
//
// The one place where request problems become NBD error codes (the role of
// nbdkit's validate_request()), plus the errno -> NBD error mapping.
//
// ValidateRequest() rules, checked in this order (spec "Error values"):
//   unknown command (incl. CACHE, never advertised)          -> EINVAL
//   write/trim/zero on a read-only export                     -> EPERM
//   command not advertised (TRIM, WRITE_ZEROES, BLOCK_STATUS
//     without base:allocation selected)                       -> EINVAL
//   flag unknown or not valid for the command / not advertised -> EINVAL
//   FLUSH with nonzero offset or length                       -> EINVAL
//   length 0                                                  -> EINVAL
//   offset or length not a multiple of the minimum block      -> EINVAL
//   offset + length past the end: WRITE/WRITE_ZEROES          -> ENOSPC
//                                 others                      -> EINVAL
//   READ/WRITE length > max payload (READ with DF)            -> EOVERFLOW
//                                    (otherwise)              -> EINVAL
// TRIM, WRITE_ZEROES and BLOCK_STATUS may exceed the max payload; the
// transmission code splits or clamps them. Pure functions; thread-safe.
#pragma once

#include <cstdint>

#include "nbdserver/exports.h"
#include "nbdserver/nbd_protocol.h"

namespace flurry::nbd {

struct ValidationContext {
  uint64_t size = 0;
  BlockLimits limits;
  uint16_t tx_flags = 0;  // as advertised
  bool structured = false;
  bool base_allocation = false;
};

// 0 when the request may be executed, else an NBD error (kEInval...).
uint32_t ValidateRequest(const Request& r, const ValidationContext& c);

// Maps a negative (or positive) errno from a BlockDevice to an NBD error.
// Unknown values become EIO.
uint32_t NbdErrorFromErrno(int err);

}  // namespace flurry::nbd
