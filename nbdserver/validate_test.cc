// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/validate.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace flurry::nbd {
namespace {

ValidationContext Ctx(bool ro = false) {
  ValidationContext c;
  c.size = 1 << 20;
  c.limits = {512, 4096, 65536};
  c.tx_flags = kTxHasFlags | kTxSendFlush | kTxSendDf;
  if (ro) c.tx_flags |= kTxReadOnly;
  else c.tx_flags |= kTxSendFua | kTxSendTrim | kTxSendWriteZeroes | kTxSendFastZero;
  c.structured = true;
  c.base_allocation = true;
  return c;
}

Request R(uint16_t type, uint64_t off, uint32_t len, uint16_t flags = 0) {
  Request r;
  r.type = type;
  r.offset = off;
  r.length = len;
  r.flags = flags;
  return r;
}

TEST(Validate, Accepts) {
  auto c = Ctx();
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 4096), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 4096, kCmdFlagDf), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 1024, 512, kCmdFlagFua), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdFlush, 0, 0), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdTrim, 0, 1 << 20), c), 0u);  // > max payload is fine
  EXPECT_EQ(ValidateRequest(R(kCmdWriteZeroes, 0, 1 << 20, kCmdFlagNoHole | kCmdFlagFastZero), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdBlockStatus, 0, 1 << 20, kCmdFlagReqOne), c), 0u);
}

TEST(Validate, PastTheEnd) {
  auto c = Ctx();
  EXPECT_EQ(ValidateRequest(R(kCmdRead, (1 << 20) - 512, 1024), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdTrim, 1 << 20, 512), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, (1 << 20) - 512, 1024), c), kENoSpc);
  EXPECT_EQ(ValidateRequest(R(kCmdWriteZeroes, 1 << 21, 512), c), kENoSpc);
  // offset + length overflowing 64 bits
  EXPECT_EQ(ValidateRequest(R(kCmdRead, ~0ull - 511, 1024), c), kEInval);
}

TEST(Validate, Lengths) {
  auto c = Ctx();
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 0), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 0, 0), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 131072), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 131072, kCmdFlagDf), c), kEOverflow);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 0, 131072), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdFlush, 0, 512), c), kEInval);
}

TEST(Validate, Alignment) {
  auto c = Ctx();
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 1, 512), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 0, 513), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdTrim, 256, 512), c), kEInval);
}

TEST(Validate, ReadOnly) {
  auto c = Ctx(true);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 0, 512), c), kEPerm);
  EXPECT_EQ(ValidateRequest(R(kCmdTrim, 0, 512), c), kEPerm);
  EXPECT_EQ(ValidateRequest(R(kCmdWriteZeroes, 0, 512), c), kEPerm);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 512), c), 0u);
  EXPECT_EQ(ValidateRequest(R(kCmdFlush, 0, 0), c), 0u);
}

TEST(Validate, CommandsAndFlags) {
  auto c = Ctx();
  EXPECT_EQ(ValidateRequest(R(kCmdCache, 0, 512), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(42, 0, 512), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 512, kCmdFlagFua), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdWrite, 0, 512, kCmdFlagNoHole), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 512, 1u << 15), c), kEInval);
  c.base_allocation = false;
  EXPECT_EQ(ValidateRequest(R(kCmdBlockStatus, 0, 512), c), kEInval);
  c.tx_flags &= ~(kTxSendTrim | kTxSendFastZero | kTxSendDf);
  EXPECT_EQ(ValidateRequest(R(kCmdTrim, 0, 512), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero), c), kEInval);
  EXPECT_EQ(ValidateRequest(R(kCmdRead, 0, 512, kCmdFlagDf), c), kEInval);
}

TEST(Validate, ErrnoMapping) {
  EXPECT_EQ(NbdErrorFromErrno(0), 0u);
  EXPECT_EQ(NbdErrorFromErrno(-EPERM), kEPerm);
  EXPECT_EQ(NbdErrorFromErrno(-EROFS), kEPerm);
  EXPECT_EQ(NbdErrorFromErrno(-EIO), kEIo);
  EXPECT_EQ(NbdErrorFromErrno(-ENOMEM), kENoMem);
  EXPECT_EQ(NbdErrorFromErrno(-EINVAL), kEInval);
  EXPECT_EQ(NbdErrorFromErrno(-ENOSPC), kENoSpc);
  EXPECT_EQ(NbdErrorFromErrno(-EDQUOT), kENoSpc);
  EXPECT_EQ(NbdErrorFromErrno(-EOVERFLOW), kEOverflow);
  EXPECT_EQ(NbdErrorFromErrno(-EOPNOTSUPP), kENotSup);
  EXPECT_EQ(NbdErrorFromErrno(-ESHUTDOWN), kEShutdown);
  EXPECT_EQ(NbdErrorFromErrno(-ETIMEDOUT), kEIo);
}

}  // namespace
}  // namespace flurry::nbd
