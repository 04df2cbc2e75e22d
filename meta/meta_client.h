// SPDX-License-Identifier: Apache-2.0
//
// MetaClient: a blocking client of flurry-meta's text protocol, for control
// paths (tract server heartbeats, TLT refresh, the CLI). Thread-safe (one
// call at a time per client, serialised by a mutex). Reconnects on demand.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/units.h"
#include "meta/meta_types.h"

namespace flurry {

struct MetaReply {
  Status status;
  std::vector<std::string> lines;
};

class MetaClient {
 public:
  explicit MetaClient(HostPort addr, int timeout_ms = 3000) : addr_(std::move(addr)), timeout_ms_(timeout_ms) {}
  ~MetaClient();
  MetaClient(const MetaClient&) = delete;
  MetaClient& operator=(const MetaClient&) = delete;

  // Sends one request line (no newline) and reads the reply.
  MetaReply Call(const std::string& request);
  // Sends the request lines pipelined (one round trip per 256) and reads the
  // replies, in order (flurry-meta answers a connection's requests in
  // order). After a transport error the rest fail with it; nothing is sent
  // twice once a reply has begun to arrive.
  std::vector<MetaReply> CallMany(const std::vector<std::string>& requests);

  Result<Tlt> GetTlt(Status* why = nullptr);
  Result<VolumeInfo> GetVolume(const std::string& name, Status* why = nullptr);
  const HostPort& addr() const { return addr_; }

 private:
  int EnsureConnected();
  void Disconnect();
  // started (may be null): set once any byte has been read.
  int ReadLineLocked(std::string* out, bool* started);
  int ReadReplyLocked(MetaReply* rep, bool* started);
  std::vector<MetaReply> CallSlice(const std::string* requests, size_t count);
  HostPort addr_;
  int timeout_ms_;
  std::mutex mu_;
  int fd_ = -1;        // GUARDED_BY(mu_)
  std::string rbuf_;   // GUARDED_BY(mu_)
};

// Parses the TLT reply lines ("version V rows L", then one line per row of
// space-separated host:port entries, '*' prefixed when recovering).
Result<Tlt> ParseTlt(const std::vector<std::string>& lines);

}  // namespace flurry
