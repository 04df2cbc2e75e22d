// SPDX-License-Identifier: Apache-2.0
//
// TractSyncClient: a blocking, one-request-at-a-time client of the tract
// protocol for control work (re-replication in flurry-meta). Not for the IO
// path (that is fdsclient). Not thread-safe; one per thread.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "common/tract_protocol.h"
#include "common/units.h"

namespace flurry {

class TractSyncClient {
 public:
  explicit TractSyncClient(std::string addr, int timeout_ms = 10000)
      : addr_(std::move(addr)), timeout_ms_(timeout_ms) {}
  ~TractSyncClient();
  TractSyncClient(const TractSyncClient&) = delete;
  TractSyncClient& operator=(const TractSyncClient&) = delete;

  Result<std::vector<tractproto::TractEntry>> ListTracts();
  // Allocation bitmap of a whole tract.
  Result<std::vector<uint8_t>> StatTract(const tractproto::TractEntry& t);
  Result<std::vector<uint8_t>> Read(const tractproto::TractEntry& t, uint32_t off, uint32_t len);
  int Write(const tractproto::TractEntry& t, uint32_t off, const std::vector<uint8_t>& data,
            uint32_t flags);
  const std::string& addr() const { return addr_; }

 private:
  // Sends h (+ payload) and returns the reply status; fills aux/data.
  int Call(tractproto::RequestHeader h, const uint8_t* payload, std::vector<uint8_t>* reply);
  std::string addr_;
  int timeout_ms_;
  int fd_ = -1;
  uint64_t next_id_ = 1;
};

}  // namespace flurry
