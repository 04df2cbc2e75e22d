// SPDX-License-Identifier: Apache-2.0
//
// MetaState: flurry-meta's durable state and its commands.
//
// Contract
// - Thread-safe: every public method takes the one mutex.
// - Handle() executes one request line and returns the full reply text.
//   Every state change is written to DIR/state atomically (write a temp
//   file, fsync, rename, fsync the directory) before the reply is sent.
// - The TLT is built once enough servers have registered (the first TLT
//   or volume request); later, a server that misses heartbeats for
//   heartbeat_timeout_ms is replaced in every row it holds by a live server
//   not already in that row, marked recovering, and the TLT version is
//   bumped. Any live server qualifies, caught up on lease generations or
//   not: a HEARTBEAT reply carries the TLT version and every generation
//   granted so far under the one mutex, and a tract server holds the writes
//   of a TLT newer than its last applied report until a report of it
//   arrives (tractserver/server.h). So the server that joins a row refuses a
//   stalled writer superseded by a grant it has not heard of (whose FENCE
//   went to the old row) before that writer can land anything there.
// - Write leases (LEASE ACQUIRE|RENEW|RELEASE|BREAK|INFO): one writer per
//   volume. A lease is granted for ttl_ms and lapses unless renewed; every
//   grant bumps the volume's lease generation. Leases are persisted: after a
//   restart a held lease stays held for its ttl (its holder renews it). The
//   holder must stop writing when it cannot renew in time (daemon/lease.h).
// - Lease generations for tract servers: REGISTER and HEARTBEAT take an
//   optional `gens TOKEN` and then also report the current generation of
//   every leased volume's blob (TOKEN "-": all of them) or only those granted
//   since TOKEN (a reply's own token: this process's random incarnation and
//   a grant counter; from another incarnation, all again). Tract servers
//   refuse writers older than these (tractserver/server.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "meta/meta_types.h"

namespace flurry {

class MetaState {
 public:
  struct Options {
    std::string dir;
    uint32_t tlt_width = 3;          // servers per row (volumes use the first R)
    uint32_t rows_per_server = 16;   // L = rows_per_server * servers
    uint64_t heartbeat_timeout_ms = 5000;
  };
  static Result<std::unique_ptr<MetaState>> Open(Options opts, Status* why);

  std::string Handle(const std::string& line);
  // Marks servers dead whose heartbeats stopped; called periodically.
  void CheckHeartbeats();
  // Re-replication: refills every recovering TLT entry from a healthy
  // replica of its row (FILL writes: chunks the target already has are kept,
  // so concurrent client writes win), then clears the flag and bumps the
  // TLT version. Blocking; called periodically from its own thread. Returns
  // the number of entries completed.
  int RepairOnce();

 private:
  struct Server {
    std::string uuid, addr, zone;
    uint64_t last_heartbeat_ms = 0;  // not persisted: servers start alive
    bool dead = false;
  };
  static constexpr uint64_t kNoGens = ~uint64_t{0};
  // The grant counter TOKEN names in this incarnation, or kNoGens.
  uint64_t TokenSeq(const std::string& token) const;
  explicit MetaState(Options o) : opts_(std::move(o)) {}
  Status Load();
  Status Save();
  Status BuildTlt();
  std::string TltText() const;
  std::string CmdVolume(const std::vector<std::string>& args);
  std::string CmdLease(const std::vector<std::string>& args);
  struct Lease {
    uint64_t gen = 0;           // last generation granted (persisted, only grows)
    std::string holder;         // empty: free
    uint64_t ttl_ms = 0;
    uint64_t expires_ms = 0;    // monotonic; not persisted (restart: now + ttl)
    uint64_t granted_seq = 0;   // gen_seq_ when gen was granted (or loaded); not persisted
  };
  // The "gens ..." reply lines for REGISTER/HEARTBEAT ... gens TOKEN.
  std::vector<std::string> GenLines(const std::string& token) const;
  bool LeaseHeld(const Lease& l, uint64_t now) const { return !l.holder.empty() && now < l.expires_ms; }
  static std::string Ok(const std::vector<std::string>& lines);
  static std::string Err(int neg_errno, const std::string& msg);

  Options opts_;
  std::mutex mu_;
  std::map<std::string, Server> servers_;  // by uuid
  uint64_t tlt_version_ = 0;
  std::vector<std::vector<std::pair<std::string, bool>>> rows_;  // (uuid, recovering)
  std::map<std::string, VolumeInfo> volumes_;
  std::map<std::string, Lease> leases_;  // by volume name
  uint64_t next_blob_ = 1;
  std::string incarnation_;  // random per process, for the gens token
  uint64_t gen_seq_ = 0;     // lease grants since this process started
  uint64_t repaired_entries_ = 0, repaired_bytes_ = 0;
};

}  // namespace flurry
