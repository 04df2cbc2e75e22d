// SPDX-License-Identifier: Apache-2.0
//
// TractServer: serves a TractStore over TCP with the tract protocol
// (common/tract_protocol.h, docs/PROTOCOL.md).
//
// Contract
// - Runs on one Loop thread; all methods on that thread except
//   set_tlt_version(), which is thread-safe (the heartbeat thread calls it).
// - Requests on a connection are pipelined and completed out of order.
//   Per connection at most max_inflight requests are outstanding; beyond
//   that the server stops reading from that socket (backpressure).
// - A framing violation (bad magic/version/header checksum, oversized
//   payload) closes that connection only; other connections are unaffected.
//   Bad parameters get an error reply and the connection stays up.
// - Requests whose tlt_version is non-zero and older than the server's get
//   -ESTALE without being executed.
// - FENCE(blob) from connection X: every connection accepted before the
//   fence, other than X, gets -EPERM for a later WRITE (not FILL), TRIM or
//   ZERO of the blob, checked when the request is executed — so a write the
//   server had received from a dead (or superseded) writer but not started
//   never lands after the new writer's recovery. At most kMaxFences blobs
//   are fenced at once (entries no live connection predates are dropped).
// - Writer generations (durable, tractstore::WriterGens): a WRITE (not
//   FILL), TRIM or ZERO whose writer_gen is older than the newest recorded
//   for its blob gets -EPERM, whatever the connection, also after a
//   restart. A FENCE, or such a request, with a newer writer_gen records it
//   durably before it proceeds (group-committed with other such records,
//   without blocking the loop); a FENCE with an older one gets -EPERM.
// - Generations from flurry-meta (RequireMetaGens / ApplyMetaGens, fed by
//   main.cc's heartbeat thread through the loop): the lease generation meta
//   last granted for each leased blob is a floor as well, so a writer this
//   server never heard of being superseded (it was down for the FENCE, or it
//   got its tracts by re-replication later) is still refused. A server told
//   to require them holds WRITE, TRIM, ZERO and FENCE until meta's first
//   report arrives, and one whose tlt_version is newer than the TLT version
//   of the last report applied until a report at least that new arrives
//   (report_wanted() makes main.cc ask meta at once rather than at the next
//   beat; at most kMaxUnsyncedWaiters requests, each for at most
//   kUnsyncedWaitMs; then -EAGAIN, which clients retry). Meta answers with the TLT version
//   and every generation granted so far under one lock, so a server that
//   has just been given a dead server's rows knows every generation granted
//   before that TLT before it lets a writer of the new TLT write. At most
//   kMaxMetaGens blobs.
#pragma once

#include <atomic>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "common/tract_protocol.h"
#include "tractserver/tract_store.h"

namespace flurry {

class TractServer {
 public:
  struct Options {
    uint32_t max_connections = 256;
    uint32_t max_inflight = 256;  // per connection
    uint32_t delay_us = 0;        // injected service latency per request
    uint32_t jitter_us = 0;       // plus uniform [0, jitter_us)
  };
  struct Counters {
    uint64_t connections = 0, local_connections = 0, rejected_connections = 0, protocol_errors = 0;
    uint64_t requests = 0, error_replies = 0, stale_rejects = 0, fenced_rejects = 0;
    uint64_t superseded_rejects = 0;  // older writer_gen than the blob's newest
    uint64_t unsynced_rejects = 0;    // -EAGAIN: meta's generations not yet known
    uint64_t tlt_waits = 0;           // held for meta's report of a newer TLT
  };

  TractServer(Loop* loop, tractstore::TractStore* store, Options opts);
  ~TractServer();

  // Takes ownership of a listening socket and starts accepting on it; may be
  // called once per listener (TCP, and the local unix socket).
  void Start(int listen_fd);
  // Stops accepting and closes every connection (in-flight disk IO finishes).
  void Shutdown();

  void set_tlt_version(uint64_t v) { tlt_version_.store(v, std::memory_order_relaxed); }
  uint64_t tlt_version() const { return tlt_version_.load(std::memory_order_relaxed); }
  const Counters& counters() const { return counters_; }

  // Lease generations from flurry-meta (loop thread). After RequireMetaGens,
  // mutations wait for the first ApplyMetaGens, and those of a TLT newer
  // than tlt_version (the version meta sent with the report) for a report of
  // it. A full report replaces what was known (volumes deleted since drop
  // out); a delta raises entries.
  struct MetaGen {
    uint64_t blob_hi, blob_lo, gen;
  };
  static constexpr size_t kMaxMetaGens = 1u << 20;
  void RequireMetaGens() { meta_gens_required_ = true; }
  // Called (on the loop thread) when a write waits for a report newer than
  // the last: main.cc then asks meta at once instead of at the next beat.
  void set_report_wanted(std::function<void()> f) { report_wanted_ = std::move(f); }
  void ApplyMetaGens(bool full, const std::vector<MetaGen>& gens, uint64_t tlt_version);
  bool meta_gens_synced() const { return meta_gens_synced_; }
  std::string StatsText() const;

 private:
  class Conn;
  friend class Conn;
  struct Listener {
    int fd;
    bool local;  // the unix socket (no TCP_NODELAY; counted apart)
  };
  void Accept(const Listener& l);
  void Adopt(int fd, bool local);  // a new connection (or closes it at the limit)
  void DrainAccepts();       // adopts every connection waiting on any listener

  Loop* loop_;
  tractstore::TractStore* store_;
  Options opts_;
  std::vector<Listener> listeners_;
  bool shutting_down_ = false;
  std::atomic<uint64_t> tlt_version_{0};
  Counters counters_;
  std::unordered_set<Conn*> conns_;
  uint64_t accept_seq_ = 0;
  struct Fence {
    uint64_t before_seq;  // connections with seq <= this are fenced...
    uint64_t owner_seq;   // ...except the one that fenced
  };
  struct BlobHash {
    size_t operator()(const std::pair<uint64_t, uint64_t>& b) const { return b.first * 31 + b.second; }
  };
  static constexpr size_t kMaxFences = 65536;
  std::unordered_map<std::pair<uint64_t, uint64_t>, Fence, BlobHash> fences_;
  int AddFence(uint64_t hi, uint64_t lo, uint64_t owner_seq);
  std::unordered_map<std::pair<uint64_t, uint64_t>, uint64_t, BlobHash> meta_gens_;
  bool meta_gens_required_ = false, meta_gens_synced_ = false;
  uint64_t meta_tlt_version_ = 0;  // sent with the last report applied
  std::function<void()> report_wanted_;
  static constexpr size_t kMaxUnsyncedWaiters = 4096;
  static constexpr unsigned kUnsyncedWaitMs = 2000;
  struct MetaWaiter {
    uint64_t need_tlt;     // resume once a report of this TLT (or newer) is applied
    uint64_t deadline_ns;  // or give up then
    std::function<void(bool)> resume;  // resume(synced)
  };
  std::deque<MetaWaiter> unsynced_waiters_;  // in arrival order, so by deadline
  Loop::TimerId unsynced_timer_;
  uint64_t unsynced_warned_ns_ = 0;  // a warning every 5 s at most
  // A request of a TLT older than the server's (0: no TLT, never outdated).
  bool Outdated(const tractproto::RequestHeader& h) const {
    return h.tlt_version != 0 && h.tlt_version < tlt_version();
  }
  // True if a mutation or FENCE of TLT version v must wait for meta.
  bool MustWaitForMeta(uint64_t v) const {
    return meta_gens_required_ && (!meta_gens_synced_ || v > meta_tlt_version_);
  }
  void WaitForMetaGens(uint64_t need_tlt, std::function<void(bool)> resume);
  void ArmUnsyncedTimer();
  // The oldest writer_gen the blob accepts: its newest recorded generation
  // (durable or being recorded) and the one meta reported.
  uint64_t GenerationFloor(const tractproto::RequestHeader& h) const;
  // True if h comes from a writer newer than the durable record (and not
  // older than the floor): RecordWriter first, then the request again.
  bool MustRecordWriter(const tractproto::RequestHeader& h) const;
  // Records h.writer_gen durably (group-committed through the loop); then(0),
  // or then(-EIO / -ENOSPC).
  void RecordWriter(const tractproto::RequestHeader& h, std::function<void(int)> then);
  // h.writer_gen against the floor: -EPERM (superseded) if older.
  int CheckGeneration(const tractproto::RequestHeader& h);
  // Both checks for WRITE (not FILL), TRIM and ZERO: the generation, then
  // the connection's FENCE.
  int CheckWriter(const tractproto::RequestHeader& h, uint64_t conn_seq);
  bool Fenced(uint64_t hi, uint64_t lo, uint64_t conn_seq) const;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
};

}  // namespace flurry
