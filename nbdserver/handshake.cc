// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/handshake.h"

#include <algorithm>

#include "nbdserver/nbd_protocol.h"

namespace flurry::nbd {

Handshake::Handshake(const ExportTable* exports, Limits limits)
    : exports_(exports), limits_(limits) {
  Append64(&out_, kNbdMagic);
  Append64(&out_, kIHaveOpt);
  Append16(&out_, kFlagFixedNewstyle | kFlagNoZeroes);
}

size_t Handshake::Feed(const uint8_t* data, size_t len) {
  size_t used = 0;
  while (!done() && used < len) {
    size_t want = 0;
    switch (state_) {
      case State::kClientFlags: want = kClientFlagsSize; break;
      case State::kOptionHeader: want = kOptionHeaderSize; break;
      case State::kOptionData: want = option_len_; break;
      default: return used;
    }
    size_t take = std::min(want - in_.size(), len - used);
    in_.insert(in_.end(), data + used, data + used + take);
    used += take;
    if (in_.size() < want) break;

    switch (state_) {
      case State::kClientFlags: {
        uint32_t f = Get32(in_.data());
        in_.clear();
        if (f & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) {
          Close("unknown client flags");
          break;
        }
        fixed_ = f & kClientFlagFixedNewstyle;
        neg_.no_zeroes = f & kClientFlagNoZeroes;
        state_ = State::kOptionHeader;
        break;
      }
      case State::kOptionHeader: {
        if (Get64(in_.data()) != kIHaveOpt) {
          Close("bad option magic");
          break;
        }
        option_ = Get32(in_.data() + 8);
        option_len_ = Get32(in_.data() + 12);
        in_.clear();
        if (++options_seen_ > limits_.max_options) {
          Close("too many options");
          break;
        }
        if (option_len_ > limits_.max_option_len) {
          Close("option too long");
          break;
        }
        state_ = State::kOptionData;
        if (option_len_ == 0) HandleOption();
        break;
      }
      case State::kOptionData:
        HandleOption();
        break;
      default:
        break;
    }
  }
  return used;
}

void Handshake::Close(const char* why) {
  state_ = State::kClosed;
  close_reason_ = why;
}

void Handshake::Reply(uint32_t type, const std::string& data) {
  AppendOptionReply(&out_, option_, type, data);
}

void Handshake::HandleOption() {
  state_ = State::kOptionHeader;  // default; handlers may override
  switch (option_) {
    case kOptExportName: OptExportName(); break;
    case kOptGo: OptInfoGo(true); break;
    case kOptInfo: OptInfoGo(false); break;
    case kOptList: OptList(); break;
    case kOptAbort:
      Reply(kRepAck);
      Close("client aborted");
      break;
    case kOptStructuredReply:
      if (!in_.empty()) {
        Reply(kRepErrInvalid, "STRUCTURED_REPLY takes no data");
      } else {
        neg_.structured = true;
        Reply(kRepAck);
      }
      break;
    case kOptListMetaContext: OptMetaContext(false); break;
    case kOptSetMetaContext: OptMetaContext(true); break;
    default:
      if (!fixed_) {
        Close("unsupported option without fixed newstyle");
      } else {
        Reply(kRepErrUnsup, "option not supported");
      }
      break;
  }
  in_.clear();
}

void Handshake::EnterTransmission(const Export* e) {
  neg_.exp = e;
  neg_.limits = e->Limits(limits_.hard_max_payload);
  neg_.tx_flags = e->TransmissionFlags(neg_.structured);
  if (meta_export_ != e->name) neg_.base_allocation = false;
  if (neg_.base_allocation) neg_.base_allocation_id = kBaseAllocationId;
  state_ = State::kTransmission;
}

void Handshake::OptExportName() {
  std::string name(in_.begin(), in_.end());
  const Export* e = name.size() <= kMaxStringLen ? exports_->Find(name) : nullptr;
  if (e == nullptr) {
    Close("EXPORT_NAME: unknown export");  // the spec allows no error reply here
    return;
  }
  EnterTransmission(e);
  Append64(&out_, e->size());
  Append16(&out_, neg_.tx_flags);
  if (!neg_.no_zeroes) out_.append(kExportNameZeroPad, '\0');
}

void Handshake::OptInfoGo(bool go) {
  // u32 name length, name, u16 n, n * u16 info type
  const uint8_t* p = in_.data();
  size_t len = in_.size();
  if (len < 6) return Reply(kRepErrInvalid, "option too short");
  uint32_t name_len = Get32(p);
  if (name_len > len - 6 || name_len > kMaxStringLen) return Reply(kRepErrInvalid, "bad name length");
  std::string name(reinterpret_cast<const char*>(p + 4), name_len);
  uint16_t n = Get16(p + 4 + name_len);
  if (len != 6 + name_len + 2ull * n) return Reply(kRepErrInvalid, "bad info request count");
  bool want_name = false, want_desc = false;
  for (uint16_t i = 0; i < n; ++i) {
    uint16_t t = Get16(p + 6 + name_len + 2 * i);
    want_name |= t == kInfoName;
    want_desc |= t == kInfoDescription;
  }
  const Export* e = exports_->Find(name);
  if (e == nullptr) return Reply(kRepErrUnknown, "unknown export: " + name);

  uint16_t flags = e->TransmissionFlags(neg_.structured);
  BlockLimits lim = e->Limits(limits_.hard_max_payload);
  std::string d;
  Append16(&d, kInfoExport);
  Append64(&d, e->size());
  Append16(&d, flags);
  Reply(kRepInfo, d);
  if (want_name) {
    d.clear();
    Append16(&d, kInfoName);
    d += e->name;
    Reply(kRepInfo, d);
  }
  if (want_desc && !e->description().empty()) {
    d.clear();
    Append16(&d, kInfoDescription);
    d += e->description().substr(0, kMaxStringLen);
    Reply(kRepInfo, d);
  }
  // Always advertised: clients that did not ask may ignore it.
  d.clear();
  Append16(&d, kInfoBlockSize);
  Append32(&d, lim.min_block);
  Append32(&d, lim.preferred);
  Append32(&d, lim.max_payload);
  Reply(kRepInfo, d);
  Reply(kRepAck);
  if (go) EnterTransmission(e);
}

void Handshake::OptList() {
  if (!in_.empty()) return Reply(kRepErrInvalid, "LIST takes no data");
  for (const auto& [name, e] : exports_->all()) {
    std::string d;
    Append32(&d, static_cast<uint32_t>(name.size()));
    d += name;
    d += e.description().substr(0, kMaxStringLen);
    Reply(kRepServer, d);
  }
  Reply(kRepAck);
}

void Handshake::OptMetaContext(bool set) {
  // u32 export name length, name, u32 n queries, n * (u32 len, query)
  if (set && !neg_.structured) return Reply(kRepErrInvalid, "structured replies not negotiated");
  const uint8_t* p = in_.data();
  size_t len = in_.size();
  if (len < 8) return Reply(kRepErrInvalid, "option too short");
  uint32_t name_len = Get32(p);
  if (name_len > len - 8 || name_len > kMaxStringLen) return Reply(kRepErrInvalid, "bad name length");
  std::string name(reinterpret_cast<const char*>(p + 4), name_len);
  size_t pos = 4 + name_len;
  uint32_t n = Get32(p + pos);
  pos += 4;
  bool match = n == 0 && !set;  // LIST with no queries lists everything
  for (uint32_t i = 0; i < n; ++i) {
    if (len - pos < 4) return Reply(kRepErrInvalid, "truncated query");
    uint32_t ql = Get32(p + pos);
    pos += 4;
    if (ql > len - pos || ql > kMaxStringLen) return Reply(kRepErrInvalid, "bad query length");
    std::string q(reinterpret_cast<const char*>(p + pos), ql);
    pos += ql;
    if (q == kMetaBaseAllocation || (!set && q == "base:")) match = true;
  }
  if (pos != len) return Reply(kRepErrInvalid, "trailing bytes");
  const Export* e = exports_->Find(name);
  if (e == nullptr) return Reply(kRepErrUnknown, "unknown export: " + name);
  if (set) {
    neg_.base_allocation = match;
    meta_export_ = e->name;
  }
  if (match) {
    std::string d;
    Append32(&d, set ? kBaseAllocationId : 0);
    d += kMetaBaseAllocation;
    Reply(kRepMetaContext, d);
  }
  Reply(kRepAck);
}

}  // namespace flurry::nbd
