// SPDX-License-Identifier: Apache-2.0
#include "meta/tract_sync_client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/net.h"

namespace flurry {

using namespace tractproto;

TractSyncClient::~TractSyncClient() {
  if (fd_ >= 0) close(fd_);
}

int TractSyncClient::Call(RequestHeader h, const uint8_t* payload, std::vector<uint8_t>* reply) {
  if (fd_ < 0) {
    auto hp = ParseHostPort(addr_);
    if (!hp) return -EINVAL;
    auto fd = ConnectTcp(*hp, timeout_ms_);
    if (!fd) return fd.err();
    fd_ = *fd;
    timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  h.magic = kRequestMagic;
  h.version = kVersion;
  h.id = next_id_++;
  if (payload) h.payload_sum = Checksum(payload, h.payload_len);
  SealHeader(&h);
  ReplyHeader r{};
  int e = WriteAll(fd_, &h, sizeof h);
  if (e == 0 && payload) e = WriteAll(fd_, payload, h.payload_len);
  if (e == 0) e = ReadAll(fd_, &r, sizeof r);
  if (e == 0 && (r.magic != kReplyMagic || r.header_sum != HeaderSum(r) || r.id != h.id ||
                 r.payload_len > kMaxPayload))
    e = -EPROTO;
  if (e == 0) {
    reply->resize(r.payload_len);
    if (r.payload_len) e = ReadAll(fd_, reply->data(), r.payload_len);
    if (e == 0 && r.payload_len && Checksum(reply->data(), r.payload_len) != r.payload_sum) e = -EBADMSG;
  }
  if (e < 0) {
    close(fd_);
    fd_ = -1;
    return e;
  }
  return r.status;
}

namespace {
// A request addressed to one tract.
RequestHeader TractRequest(uint16_t op, const TractEntry& t) {
  RequestHeader h{};
  h.op = op;
  h.blob_hi = t.blob_hi;
  h.blob_lo = t.blob_lo;
  h.tract = t.tract;
  h.tract_size = t.tract_size;
  return h;
}
}  // namespace

Result<std::vector<TractEntry>> TractSyncClient::ListTracts() {
  RequestHeader h{};
  h.op = kOpListTracts;
  std::vector<uint8_t> rep;
  int st = Call(h, nullptr, &rep);
  if (st < 0) return Result<std::vector<TractEntry>>::error(st);
  std::vector<TractEntry> out(rep.size() / sizeof(TractEntry));
  memcpy(out.data(), rep.data(), out.size() * sizeof(TractEntry));
  return out;
}

Result<std::vector<uint8_t>> TractSyncClient::StatTract(const TractEntry& t) {
  RequestHeader h = TractRequest(kOpStatTract, t);
  std::vector<uint8_t> rep;
  int st = Call(h, nullptr, &rep);
  if (st < 0) return Result<std::vector<uint8_t>>::error(st);
  return rep;
}

Result<std::vector<uint8_t>> TractSyncClient::Read(const TractEntry& t, uint32_t off, uint32_t len) {
  RequestHeader h = TractRequest(kOpRead, t);
  h.offset = off;
  h.length = len;
  std::vector<uint8_t> rep;
  int st = Call(h, nullptr, &rep);
  if (st < 0) return Result<std::vector<uint8_t>>::error(st);
  uint32_t c0 = off / kChunkSize, c1 = (off + len + kChunkSize - 1) / kChunkSize;
  size_t aux = BitmapBytes(c1 - c0);
  if (rep.size() != aux + len) return Result<std::vector<uint8_t>>::error(-EPROTO);
  rep.erase(rep.begin(), rep.begin() + static_cast<long>(aux));
  return rep;
}

int TractSyncClient::Write(const TractEntry& t, uint32_t off, const std::vector<uint8_t>& data,
                           uint32_t flags) {
  RequestHeader h = TractRequest(kOpWrite, t);
  h.offset = off;
  h.length = static_cast<uint32_t>(data.size());
  h.payload_len = h.length;
  h.flags = flags;
  std::vector<uint8_t> rep;
  return Call(h, data.data(), &rep);
}

}  // namespace flurry
