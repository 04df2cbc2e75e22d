// SPDX-License-Identifier: Apache-2.0
//
// FdsClient: the asynchronous client of the tract store.
//
// Contract
// - Lives on one Loop: call every method on the loop thread; callbacks run
//   there, exactly once. Never blocks the loop (TLT refreshes run on a
//   helper thread and come back through Loop::PostFromAnyThread).
// - Tract (blob, n) is stored on the first `replicas` servers of TLT row
//   RowOf(blob, n). Write/Trim/Zero go to all of them and complete with 0
//   only when every one replied 0 (durable, unless kFlagNoSync). Read goes
//   to one replica (not one marked recovering) and fails over to the others
//   on error, timeout or checksum failure.
// - Failures that may be transient (connection loss, timeout, -ESTALE,
//   -EIO) are retried: the TLT is re-fetched from flurry-meta and the
//   operation re-issued on the new row, until op_deadline_ms passes; then
//   the callback gets the last error. Bad arguments fail at once (-EINVAL).
// - Buffers must stay valid until the callback runs. A Read's data lands in
//   the caller's buffer; on failure its contents are unspecified.
// - Replicas only ever receive whole 4 KiB chunks: a Write that starts or
//   ends inside a chunk first reads that chunk from a readable replica and
//   merges on the client (a replica being refilled by re-replication could
//   not merge correctly itself). Hence the caller must not have two writes
//   or zeroes touching the same 4 KiB chunk in flight at once (replicas
//   could also apply them in different orders); the engines lock
//   chunk-aligned ranges. The chunk-aligned span must fit kMaxIo.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "common/units.h"
#include "meta/meta_types.h"

namespace flurry {

struct BlobRef {
  uint64_t hi = 0, lo = 0;
  uint32_t tract_size = 8u << 20;
  uint32_t replicas = 1;
  // The writer's lease generation, sent with every request (0 = none):
  // servers that recorded a newer one for the blob refuse our writes, and
  // our FENCE records this one (docs/PROTOCOL.md, FENCE).
  uint64_t writer_gen = 0;
};

struct FdsStats {
  uint64_t ops = 0, retries = 0, failovers = 0, timeouts = 0, tlt_refreshes = 0;
  uint64_t checksum_failures = 0, failed_ops = 0;
};

class FdsClient {
 public:
  struct Options {
    HostPort meta;
    // A connection with requests outstanding that makes no progress (no
    // byte sent, no reply received) for this long is broken and its
    // requests retried; so is one where a single request waits 6x as long.
    // Progress, not per-request age: a deep queue on a live server is not
    // a timeout.
    uint32_t request_timeout_ms = 10000;
    uint32_t op_deadline_ms = 60000;
    uint32_t conns_per_server = 1;
    // Reach tract servers on this host over their local unix socket
    // (docs/PROTOCOL.md "Local sockets") rather than TCP.
    bool local_sockets = true;
  };
  using Done = std::function<void(int res)>;
  using BitmapDone = std::function<void(int res, std::vector<uint8_t> bitmap)>;
  // One replica's view of a tract (ChunkSums).
  struct ReplicaSums {
    std::string addr;
    std::vector<uint8_t> bitmap;  // allocation, one bit per chunk
    std::vector<uint64_t> sums;   // XXH3-64 per chunk, 0 if unallocated
  };
  using SumsDone = std::function<void(int res, std::vector<ReplicaSums> replicas)>;

  // Fetches the TLT (blocking: call before serving IO). why explains failure.
  static Result<std::unique_ptr<FdsClient>> Create(Loop* loop, Options opts, Status* why);
  ~FdsClient();

  void Write(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, const uint8_t* buf,
             uint32_t flags, Done done);
  // bitmap (optional, may be null): allocation of the chunks overlapping the range.
  void Read(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, uint8_t* buf,
            BitmapDone done);
  void Zero(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, bool keep_alloc, Done done);
  void StatTract(const BlobRef& b, uint64_t tract, BitmapDone done);
  // Every replica's allocation bitmap and chunk checksums of the whole
  // tract, in TLT row order (a replica still being refilled included: its
  // missing chunks show as differences); fails (after retries) unless all
  // of them answer. Used to find replicas that differ (resync).
  // deadline_ms: give up after this long instead of op_deadline_ms (0 =
  // the default; 1 = one attempt, no retry).
  void ChunkSums(const BlobRef& b, uint64_t tract, SumsDone done, uint32_t deadline_ms = 0);
  // Fences the blob on every server of the TLT: connections other than
  // ours that were open before may no longer write, trim or zero it
  // (-EPERM, not retried). A new writer calls it before recovering, so that
  // requests a dead writer left queued at a server never land afterwards.
  // Needs conns_per_server == 1 (else -EOPNOTSUPP: the fence spares only
  // the connection that carries it).
  void Fence(const BlobRef& b, Done done, uint32_t deadline_ms = 0);
  // Deletes the blob's tracts on every server of the TLT.
  void DeleteBlob(const BlobRef& b, Done done);

  const Tlt& tlt() const { return tlt_; }
  const FdsStats& stats() const { return stats_; }
  // Closes connections; pending requests fail with -ESHUTDOWN.
  void Shutdown();

  struct Op;
  class Conn;

 private:
  FdsClient(Loop* loop, Options o) : loop_(loop), opts_(std::move(o)) {}
  void Start(Op* op);
  void Issue(Op* op);
  void SendTo(Op* op, size_t target);
  void WriteChunks(const BlobRef& b, uint64_t tract, uint32_t off, uint32_t len, const uint8_t* buf,
                   uint32_t flags, Done done);
  void OnReplicaDone(Op* op, size_t replica, int res);
  void Retry(Op* op, int err);
  void Finish(Op* op, int res);
  void RefreshTlt(std::function<void()> then);
  Conn* GetConn(const std::string& addr);
  void Tick();

  Loop* loop_;
  Options opts_;
  Tlt tlt_;
  FdsStats stats_;
  std::unordered_map<std::string, std::vector<Conn*>> conns_;
  uint64_t next_id_ = 1;
  uint64_t rr_ = 0;
  bool refreshing_ = false;
  std::vector<std::function<void()>> after_refresh_;
  // Ops waiting to be retried, with their backoff timer (invalid once it
  // fired and the op waits for a TLT refresh).
  std::unordered_map<Op*, Loop::TimerId> waiting_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Loop::TimerId tick_;
  bool shutdown_ = false;
};

}  // namespace flurry
