// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/transmission.h"

#include <algorithm>
#include <memory>
#include <vector>

namespace flurry::nbd {

Transmission::Transmission(const Negotiated& neg) : neg_(neg), dev_(neg.exp->device) {
  ctx_.size = neg.exp->size();
  ctx_.limits = neg.limits;
  ctx_.tx_flags = neg.tx_flags;
  ctx_.structured = neg.structured;
  ctx_.base_allocation = neg.base_allocation;
}

OutMsg Transmission::OkReply(const Request& r) const {
  OutMsg m;
  AppendSimpleReply(&m.head, 0, r.cookie);
  return m;
}

OutMsg Transmission::ErrorReply(const Request& r, uint32_t err, const char* msg) const {
  OutMsg m;
  bool chunk = neg_.structured && (r.type == kCmdRead || r.type == kCmdBlockStatus);
  if (!chunk) {
    AppendSimpleReply(&m.head, err, r.cookie);
    return m;
  }
  std::string text = msg;
  AppendChunkHeader(&m.head, kReplyFlagDone, kReplyTypeError, r.cookie,
                    static_cast<uint32_t>(6 + text.size()));
  Append32(&m.head, err);
  Append16(&m.head, static_cast<uint16_t>(text.size()));
  m.head += text;
  return m;
}

void Transmission::Count(const Request& r, uint32_t err) const {
  ExportStats& s = *neg_.exp->stats;
  if (err != 0) {
    ++s.errors;
    return;
  }
  switch (r.type) {
    case kCmdRead: ++s.reads; s.bytes_read += r.length; break;
    case kCmdWrite: ++s.writes; s.bytes_written += r.length; break;
    case kCmdFlush: ++s.flushes; break;
    case kCmdTrim: ++s.trims; break;
    case kCmdWriteZeroes: ++s.zeroes; break;
    case kCmdBlockStatus: ++s.block_status; break;
    default: break;
  }
}

void Transmission::Execute(ParsedRequest pr, Reply reply) {
  const Request r = pr.req;
  if (uint32_t err = ValidateRequest(r, ctx_); err != 0) {
    Count(r, err);
    return reply(ErrorReply(r, err, "invalid request"));
  }
  switch (r.type) {
    case kCmdRead:
      return DoRead(r, std::move(reply));
    case kCmdBlockStatus:
      return DoBlockStatus(r, std::move(reply));
    case kCmdTrim:
    case kCmdWriteZeroes:
      return DoRanged(r, std::move(reply));
    default:
      break;
  }
  auto finish = [this, r, reply = std::move(reply)](int res) {
    uint32_t err = NbdErrorFromErrno(res);
    Count(r, err);
    reply(err ? ErrorReply(r, err, "device error") : OkReply(r));
  };
  switch (r.type) {
    case kCmdWrite: {
      // The payload must live until the device is done with it.
      auto buf = std::make_shared<AlignedBuffer>(std::move(pr.payload));
      const uint8_t* p = buf->data();
      return dev_->Write(r.offset, r.length, p, r.flags & kCmdFlagFua,
                         [buf, finish = std::move(finish)](int res) { finish(res); });
    }
    case kCmdFlush:
      return dev_->Flush(std::move(finish));
    default:
      return finish(-EINVAL);  // unreachable: the validator rejects these
  }
}

void Transmission::DoRead(const Request& r, Reply reply) {
  auto buf = std::make_shared<AlignedBuffer>(r.length);
  uint8_t* p = buf->data();
  dev_->Read(r.offset, r.length, p, [this, r, buf, reply = std::move(reply)](int res) {
    uint32_t err = NbdErrorFromErrno(res);
    Count(r, err);
    if (err) return reply(ErrorReply(r, err, "read failed"));
    OutMsg m;
    if (neg_.structured) {
      AppendChunkHeader(&m.head, kReplyFlagDone, kReplyTypeOffsetData, r.cookie, 8 + r.length);
      Append64(&m.head, r.offset);
    } else {
      AppendSimpleReply(&m.head, 0, r.cookie);
    }
    m.body = std::move(*buf);
    m.body_len = r.length;
    reply(std::move(m));
  });
}

void Transmission::DoBlockStatus(const Request& r, Reply reply) {
  uint32_t len = std::min<uint32_t>(r.length, std::max<uint32_t>(dev_->info().max_io, 1));
  dev_->BlockStatus(r.offset, len, [this, r, len, reply = std::move(reply)](
                                       int res, std::vector<BlockExtent> ext) {
    uint32_t err = NbdErrorFromErrno(res);
    if (!err && ext.empty()) err = kEIo;
    Count(r, err);
    if (err) return reply(ErrorReply(r, err, "block status failed"));
    std::string d;
    uint64_t covered = 0;
    for (const BlockExtent& e : ext) {
      if (covered >= len || e.length == 0) break;
      uint64_t n = std::min<uint64_t>(e.length, len - covered);
      Append32(&d, static_cast<uint32_t>(n));
      Append32(&d, e.flags & (kStateHole | kStateZero));
      covered += n;
      if (r.flags & kCmdFlagReqOne) break;
    }
    OutMsg m;
    AppendChunkHeader(&m.head, kReplyFlagDone, kReplyTypeBlockStatus, r.cookie,
                      static_cast<uint32_t>(4 + d.size()));
    Append32(&m.head, neg_.base_allocation_id);
    m.head += d;
    reply(std::move(m));
  });
}

namespace {

// Issues [off, end) to the device in pieces of at most `chunk`, one at a
// time; tolerates synchronous completions without recursing.
struct RangedOp {
  BlockDevice* dev;
  Request r;
  uint64_t off, end;
  uint32_t chunk;
  std::function<void(int)> done;
  bool in_issue = false;
  bool completed = false;
  int err = 0;
};

void Step(std::shared_ptr<RangedOp> op) {
  while (op->err == 0 && op->off < op->end) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(op->chunk, op->end - op->off));
    op->in_issue = true;
    op->completed = false;
    auto cb = [op, n](int res) {
      if (res < 0) op->err = res;
      op->off += n;
      op->completed = true;
      if (!op->in_issue) Step(op);
    };
    if (op->r.type == kCmdTrim) {
      op->dev->Trim(op->off, n, cb);
    } else {
      op->dev->Zero(op->off, n, !(op->r.flags & kCmdFlagNoHole), op->r.flags & kCmdFlagFastZero, cb);
    }
    op->in_issue = false;
    if (!op->completed) return;  // asynchronous: the callback continues
  }
  if (op->err == 0 && (op->r.flags & kCmdFlagFua)) {
    op->r.flags &= ~kCmdFlagFua;  // once; durable even where Flush() is not
    return op->dev->DurableFlush(std::move(op->done));
  }
  op->done(op->err);
}

}  // namespace

void Transmission::DoRanged(const Request& r, Reply reply) {
  auto op = std::make_shared<RangedOp>();
  op->dev = dev_;
  op->r = r;
  op->off = r.offset;
  op->end = r.offset + r.length;
  uint32_t mb = std::max<uint32_t>(ctx_.limits.min_block, 1);
  op->chunk = std::max<uint32_t>(dev_->info().max_io / mb * mb, mb);
  op->done = [this, r, reply = std::move(reply)](int res) {
    uint32_t err = NbdErrorFromErrno(res);
    Count(r, err);
    reply(err ? ErrorReply(r, err, "device error") : OkReply(r));
  };
  Step(std::move(op));
}

}  // namespace flurry::nbd
