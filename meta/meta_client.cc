// SPDX-License-Identifier: Apache-2.0
#include "meta/meta_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "common/net.h"

namespace flurry {

MetaClient::~MetaClient() { Disconnect(); }

void MetaClient::Disconnect() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  rbuf_.clear();
}

int MetaClient::EnsureConnected() {
  if (fd_ >= 0) return 0;
  auto fd = ConnectTcp(addr_, timeout_ms_);
  if (!fd) return fd.err();
  fd_ = *fd;
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return 0;
}

int MetaClient::ReadLineLocked(std::string* out, bool* started) {
  for (;;) {
    size_t nl = rbuf_.find('\n');
    if (nl != std::string::npos) {
      *out = rbuf_.substr(0, nl);
      rbuf_.erase(0, nl + 1);
      return 0;
    }
    if (rbuf_.size() > (16u << 20)) return -EMSGSIZE;
    char buf[65536];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? -ECONNRESET : -errno;
    if (started) *started = true;
    rbuf_.append(buf, static_cast<size_t>(n));
  }
}

// One reply: 0 with rep->status set (OK or the server's ERR), or a negative
// transport error (rep->status set; the connection is closed).
int MetaClient::ReadReplyLocked(MetaReply* rep, bool* started) {
  std::string first;
  int r = ReadLineLocked(&first, started);
  if (r < 0) {
    Disconnect();
    rep->status = Status::Error(r, "flurry-meta at " + addr_.ToString() + ": " + errstr(r));
    return r;
  }
  if (first.rfind("ERR ", 0) == 0) {
    std::string rest = first.substr(4);
    size_t sp = rest.find(' ');
    std::string msg = sp == std::string::npos ? rest : rest.substr(sp + 1);
    std::string code = rest.substr(0, sp);
    int e = code == "ENOENT" ? -ENOENT : code == "EEXIST" ? -EEXIST : code == "EINVAL" ? -EINVAL
          : code == "ENOSPC" ? -ENOSPC : code == "EBUSY" ? -EBUSY : code == "ESTALE" ? -ESTALE : -EIO;
    rep->status = Status::Error(e, msg);
    return 0;
  }
  unsigned long n = 0;
  if (sscanf(first.c_str(), "OK %lu", &n) != 1 || n > 1000000) {
    Disconnect();
    rep->status = Status::Error(-EPROTO, "malformed reply from flurry-meta: " + first);
    return -EPROTO;
  }
  for (unsigned long i = 0; i < n; ++i) {
    std::string l;
    r = ReadLineLocked(&l, nullptr);
    if (r < 0) {
      Disconnect();
      rep->status = Status::Error(r, "flurry-meta reply cut short: " + errstr(r));
      return r;
    }
    rep->lines.push_back(std::move(l));
  }
  return 0;
}

MetaReply MetaClient::Call(const std::string& request) {
  return std::move(CallMany({request})[0]);
}

std::vector<MetaReply> MetaClient::CallMany(const std::vector<std::string>& requests) {
  std::vector<MetaReply> reps;
  reps.reserve(requests.size());
  // In slices: a whole batch is written before any reply is read, and both
  // socket buffers must hold what is in flight.
  constexpr size_t kSlice = 256;
  for (size_t at = 0; at < requests.size(); at += kSlice) {
    size_t n = std::min(kSlice, requests.size() - at);
    std::vector<MetaReply> part = CallSlice(requests.data() + at, n);
    for (MetaReply& r : part) reps.push_back(std::move(r));
  }
  return reps;
}

std::vector<MetaReply> MetaClient::CallSlice(const std::string* requests, size_t count) {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<MetaReply> reps(count);
  std::string lines;
  for (size_t k = 0; k < count; ++k) lines += requests[k] + "\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    int r = EnsureConnected();
    if (r < 0) {
      for (MetaReply& rep : reps)
        rep.status = Status::Error(r, "cannot reach flurry-meta at " + addr_.ToString() + ": " + errstr(r) +
                                          " (is the cluster running? try `flurry cluster status`)");
      return reps;
    }
    if (WriteAll(fd_, lines.data(), lines.size()) < 0) { Disconnect(); continue; }
    size_t i = 0;
    bool started = false;  // a byte of the first reply arrived: that request ran
    for (; i < count; ++i) {
      reps[i] = MetaReply{};
      r = ReadReplyLocked(&reps[i], &started);
      if (r < 0) break;
    }
    if (i == count) return reps;
    // A pooled connection flurry-meta had closed before reading anything:
    // nothing ran, so send everything again once. Not once any reply began
    // (its request ran; ACQUIRE or VOLUME CREATE must not run twice).
    if (attempt == 0 && i == 0 && !started && r == -ECONNRESET) continue;
    for (size_t k = i + 1; k < count; ++k) reps[k].status = reps[i].status;
    return reps;
  }
  for (MetaReply& rep : reps)
    rep.status = Status::Error(-ECONNRESET, "flurry-meta at " + addr_.ToString() + " keeps closing the connection");
  return reps;
}

Result<Tlt> ParseTlt(const std::vector<std::string>& lines) {
  if (lines.empty()) return Result<Tlt>::error(-EPROTO);
  Tlt t;
  unsigned long long v = 0;
  unsigned long rows = 0;
  if (sscanf(lines[0].c_str(), "version %llu rows %lu", &v, &rows) != 2 || rows + 1 != lines.size())
    return Result<Tlt>::error(-EPROTO);
  t.version = v;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    std::vector<TltEntry> row;
    std::string e;
    while (in >> e) {
      TltEntry te;
      if (e[0] == '*') { te.recovering = true; e = e.substr(1); }
      te.addr = e;
      row.push_back(std::move(te));
    }
    if (row.empty()) return Result<Tlt>::error(-EPROTO);
    t.rows.push_back(std::move(row));
  }
  return t;
}

Result<Tlt> MetaClient::GetTlt(Status* why) {
  MetaReply r = Call("TLT");
  if (!r.status.ok()) {
    if (why) *why = r.status;
    return Result<Tlt>::error(r.status.code());
  }
  auto t = ParseTlt(r.lines);
  if (!t && why) *why = Status::Error(-EPROTO, "malformed TLT from flurry-meta");
  return t;
}

Result<VolumeInfo> MetaClient::GetVolume(const std::string& name, Status* why) {
  MetaReply r = Call("VOLUME INFO " + name);
  if (!r.status.ok() || r.lines.empty()) {
    if (why) *why = r.status;
    return Result<VolumeInfo>::error(r.status.ok() ? -EPROTO : r.status.code());
  }
  return VolumeInfo::Parse(r.lines[0]);
}

}  // namespace flurry
