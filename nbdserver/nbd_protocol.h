// SPDX-License-Identifier: Apache-2.0
//
// The NBD wire format, written down once (spec: NetworkBlockDevice/nbd,
// doc/proto.md). Everything on the wire is BIG-ENDIAN; the structs below are
// host-order views and the Put*/Get* helpers are the only place that
// converts. Only fixed-newstyle negotiation and the "compact" (non-extended)
// request/reply headers are described, because that is all nbdserver speaks.
//
// Layouts (byte offsets, all big-endian):
//
//   Server greeting (18 bytes)       Client flags (4 bytes)
//     0  u64 "NBDMAGIC"                0  u32 NBD_FLAG_C_*
//     8  u64 IHAVEOPT
//    16  u16 handshake flags
//
//   Option request (16 + len)        Option reply (20 + len)
//     0  u64 IHAVEOPT                  0  u64 kOptReplyMagic
//     8  u32 option                    8  u32 option
//    12  u32 length                   12  u32 reply type (NBD_REP_*)
//    16  data[length]                 16  u32 length
//                                     20  data[length]
//
//   NBD_OPT_EXPORT_NAME reply: u64 size, u16 transmission flags,
//   124 zero bytes unless both sides agreed NBD_FLAG_(C_)NO_ZEROES.
//
//   Request (28 bytes + payload for WRITE)
//     0  u32 kRequestMagic   4  u16 command flags   6  u16 type
//     8  u64 cookie         16  u64 offset         24  u32 length
//
//   Simple reply (16 bytes, + data for a successful READ)
//     0  u32 kSimpleReplyMagic   4  u32 error   8  u64 cookie
//
//   Structured reply chunk (20 bytes + length)
//     0  u32 kStructuredReplyMagic   4  u16 flags   6  u16 type
//     8  u64 cookie                 16  u32 length
//   chunk payloads: OFFSET_DATA = u64 offset + data; OFFSET_HOLE = u64
//   offset + u32 size; BLOCK_STATUS = u32 context id + n * (u32 length,
//   u32 flags); ERROR = u32 error + u16 msg length + msg.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace flurry::nbd {

// ---- magics -------------------------------------------------------------
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;   // "NBDMAGIC"
inline constexpr uint64_t kIHaveOpt = 0x49484156454F5054ull;   // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ull;
inline constexpr uint32_t kRequestMagic = 0x25609513u;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698u;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33efu;

// ---- handshake flags (server, u16) and client flags (u32) -----------------
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;

// ---- transmission flags (u16) ------------------------------------------
inline constexpr uint16_t kTxHasFlags = 1u << 0;
inline constexpr uint16_t kTxReadOnly = 1u << 1;
inline constexpr uint16_t kTxSendFlush = 1u << 2;
inline constexpr uint16_t kTxSendFua = 1u << 3;
inline constexpr uint16_t kTxRotational = 1u << 4;
inline constexpr uint16_t kTxSendTrim = 1u << 5;
inline constexpr uint16_t kTxSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kTxSendDf = 1u << 7;
inline constexpr uint16_t kTxCanMultiConn = 1u << 8;
inline constexpr uint16_t kTxSendResize = 1u << 9;
inline constexpr uint16_t kTxSendCache = 1u << 10;
inline constexpr uint16_t kTxSendFastZero = 1u << 11;

// ---- options ------------------------------------------------------------
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptPeekExport = 4;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;
inline constexpr uint32_t kOptExtendedHeaders = 11;

// ---- option reply types -------------------------------------------------
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrBit | 1;
inline constexpr uint32_t kRepErrPolicy = kRepErrBit | 2;
inline constexpr uint32_t kRepErrInvalid = kRepErrBit | 3;
inline constexpr uint32_t kRepErrPlatform = kRepErrBit | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepErrBit | 5;
inline constexpr uint32_t kRepErrUnknown = kRepErrBit | 6;
inline constexpr uint32_t kRepErrShutdown = kRepErrBit | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepErrBit | 8;
inline constexpr uint32_t kRepErrTooBig = kRepErrBit | 9;

// ---- NBD_INFO_* (u16, inside NBD_REP_INFO) --------------------------------
inline constexpr uint16_t kInfoExport = 0;       // u64 size, u16 tx flags
inline constexpr uint16_t kInfoName = 1;         // string
inline constexpr uint16_t kInfoDescription = 2;  // string
inline constexpr uint16_t kInfoBlockSize = 3;    // u32 min, u32 preferred, u32 max

// ---- commands and command flags -----------------------------------------
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;

inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// ---- structured replies ---------------------------------------------------
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = (1u << 15) | 1;
inline constexpr uint16_t kReplyTypeErrorOffset = (1u << 15) | 2;

// base:allocation extent flags (same values as kExtentHole / kExtentZero).
inline constexpr uint32_t kStateHole = 1;
inline constexpr uint32_t kStateZero = 2;
inline constexpr char kMetaBaseAllocation[] = "base:allocation";

// ---- error values (u32 in replies) ----------------------------------------
inline constexpr uint32_t kEPerm = 1;
inline constexpr uint32_t kEIo = 5;
inline constexpr uint32_t kENoMem = 12;
inline constexpr uint32_t kEInval = 22;
inline constexpr uint32_t kENoSpc = 28;
inline constexpr uint32_t kEOverflow = 75;
inline constexpr uint32_t kENotSup = 95;
inline constexpr uint32_t kEShutdown = 108;

// ---- sizes ----------------------------------------------------------------
inline constexpr size_t kGreetingSize = 18;
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 16;
inline constexpr size_t kOptionReplyHeaderSize = 20;
inline constexpr size_t kRequestSize = 28;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredReplyHeaderSize = 20;
inline constexpr size_t kExportNameZeroPad = 124;
inline constexpr size_t kMaxStringLen = 4096;  // spec limit for names/queries

// ---- big-endian helpers ---------------------------------------------------
inline void Put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void Put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
inline void Put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
inline uint16_t Get16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}
inline uint64_t Get64(const uint8_t* p) { return (uint64_t(Get32(p)) << 32) | Get32(p + 4); }

// Appenders used to build replies into a byte string.
inline void Append16(std::string* s, uint16_t v) { uint8_t b[2]; Put16(b, v); s->append(reinterpret_cast<char*>(b), 2); }
inline void Append32(std::string* s, uint32_t v) { uint8_t b[4]; Put32(b, v); s->append(reinterpret_cast<char*>(b), 4); }
inline void Append64(std::string* s, uint64_t v) { uint8_t b[8]; Put64(b, v); s->append(reinterpret_cast<char*>(b), 8); }

// Host-order view of a request header.
struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Decodes a 28-byte request; false on bad magic.
inline bool DecodeRequest(const uint8_t* p, Request* r) {
  if (Get32(p) != kRequestMagic) return false;
  r->flags = Get16(p + 4);
  r->type = Get16(p + 6);
  r->cookie = Get64(p + 8);
  r->offset = Get64(p + 16);
  r->length = Get32(p + 24);
  return true;
}

inline void EncodeRequest(const Request& r, uint8_t* p) {
  Put32(p, kRequestMagic);
  Put16(p + 4, r.flags);
  Put16(p + 6, r.type);
  Put64(p + 8, r.cookie);
  Put64(p + 16, r.offset);
  Put32(p + 24, r.length);
}

inline void AppendSimpleReply(std::string* s, uint32_t error, uint64_t cookie) {
  Append32(s, kSimpleReplyMagic);
  Append32(s, error);
  Append64(s, cookie);
}

inline void AppendChunkHeader(std::string* s, uint16_t flags, uint16_t type, uint64_t cookie,
                              uint32_t length) {
  Append32(s, kStructuredReplyMagic);
  Append16(s, flags);
  Append16(s, type);
  Append64(s, cookie);
  Append32(s, length);
}

inline void AppendOptionReply(std::string* s, uint32_t option, uint32_t type,
                              const std::string& data) {
  Append64(s, kOptReplyMagic);
  Append32(s, option);
  Append32(s, type);
  Append32(s, static_cast<uint32_t>(data.size()));
  s->append(data);
}

}  // namespace flurry::nbd
