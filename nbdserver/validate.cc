// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/validate.h"

#include <cerrno>

namespace flurry::nbd {

uint32_t ValidateRequest(const Request& r, const ValidationContext& c) {
  const bool ro = c.tx_flags & kTxReadOnly;
  uint16_t allowed = 0;
  switch (r.type) {
    case kCmdRead:
      if (c.tx_flags & kTxSendDf) allowed = kCmdFlagDf;
      break;
    case kCmdWrite:
      if (ro) return kEPerm;
      if (c.tx_flags & kTxSendFua) allowed = kCmdFlagFua;
      break;
    case kCmdFlush:
      if (r.offset != 0 || r.length != 0 || r.flags != 0) return kEInval;
      return 0;
    case kCmdTrim:
      if (ro) return kEPerm;
      if (!(c.tx_flags & kTxSendTrim)) return kEInval;
      if (c.tx_flags & kTxSendFua) allowed = kCmdFlagFua;
      break;
    case kCmdWriteZeroes:
      if (ro) return kEPerm;
      if (!(c.tx_flags & kTxSendWriteZeroes)) return kEInval;
      allowed = kCmdFlagNoHole;
      if (c.tx_flags & kTxSendFua) allowed |= kCmdFlagFua;
      if (c.tx_flags & kTxSendFastZero) allowed |= kCmdFlagFastZero;
      break;
    case kCmdBlockStatus:
      if (!c.structured || !c.base_allocation) return kEInval;
      allowed = kCmdFlagReqOne;
      break;
    default:
      return kEInval;  // unknown command (and CACHE / RESIZE, never advertised)
  }
  if (r.flags & ~allowed) return kEInval;
  if (r.length == 0) return kEInval;
  const uint32_t mb = c.limits.min_block;
  if (r.offset % mb != 0 || r.length % mb != 0) return kEInval;
  if (r.offset > c.size || r.length > c.size - r.offset) {
    return (r.type == kCmdWrite || r.type == kCmdWriteZeroes) ? kENoSpc : kEInval;
  }
  if ((r.type == kCmdRead || r.type == kCmdWrite) && r.length > c.limits.max_payload) {
    return (r.flags & kCmdFlagDf) ? kEOverflow : kEInval;
  }
  return 0;
}

uint32_t NbdErrorFromErrno(int err) {
  if (err < 0) err = -err;
  switch (err) {
    case 0: return 0;
    case EPERM: case EROFS: case EACCES: return kEPerm;
    case EIO: return kEIo;
    case ENOMEM: return kENoMem;
    case EINVAL: return kEInval;
    case ENOSPC: case EDQUOT: case EFBIG: return kENoSpc;
    case EOVERFLOW: return kEOverflow;
    case ENOTSUP: return kENotSup;  // == EOPNOTSUPP on Linux
    case ESHUTDOWN: return kEShutdown;
    default: return kEIo;
  }
}

}  // namespace flurry::nbd
