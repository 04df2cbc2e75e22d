// SPDX-License-Identifier: Apache-2.0
//
// StripedBlob: a volume's virtual byte range on top of fdsclient, laid out
// by a StripeMap. Splits each IO into per-tract pieces (coalesced where a
// run stays in one tract), issues them all at once, and completes when
// every piece has (first error wins).
//
// Contract: as FdsClient — loop thread only, buffers valid until the
// callback, callbacks exactly once. Tract servers only receive whole 4 KiB
// chunks: FdsClient merges partial chunks (read, overlay, write). So the
// engine above must not have two writes/zeroes in flight that touch the same
// 4 KiB chunk of the blob (they lock chunk-aligned ranges).
// Trim/Zero ranges are split at tract boundaries and tractproto::kMaxIo.
//
// Replicas (R > 1, with a loop): every Write/Zero first marks its tracts in
// the blob's write-intent bitmap (striping/write_intent.h), stored in the
// blob's own tracts kIntentTractBase + i (docs/DISK_FORMAT.md "Write-intent
// bitmap"). Recover(), before the engine opens, compares the replicas of
// every tract marked there (chunk checksums from each replica) and copies
// the chunks that differ from one readable replica to all, so that a write
// that reached only some replicas before a crash never makes reads depend
// on which replica answers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/loop.h"
#include "epochs/blob_io.h"
#include "fdsclient/fds_client.h"
#include "striping/striping.h"
#include "striping/write_gate.h"
#include "striping/write_intent.h"

namespace flurry {

class StripedBlob : public BlobIo {
 public:
  // Tract index of the first tract that holds the write-intent bitmap.
  static constexpr uint64_t kIntentTractBase = 1ull << 40;
  struct Options {
    Loop* loop = nullptr;            // needed for the intent bitmap (sweep timer)
    uint32_t dirty_linger_ms = 10000; // a tract stays marked this long after its last write
    bool read_only = false;          // Recover() reports but does not resync
    // Asked before every write (write_gate.h): writes wait while it says
    // -EAGAIN and fail for good (like a fence) once it says -EPERM. None:
    // always allowed. Must outlive the blob.
    const WriteGate* gate = nullptr;
  };
  struct RecoverStats {
    uint64_t marked = 0, differing = 0, chunks_copied = 0, unresolved = 0;
    uint64_t repaired = 0, repair_failures = 0;  // background repairs of suspect tracts
    int fence_error = 0;  // FdsClient::Fence's latest result (Recover's, then retries')
    double seconds = 0;
  };

  StripedBlob(FdsClient* fds, BlobRef blob, StripeMap map) : StripedBlob(fds, blob, std::move(map), Options{}) {}
  StripedBlob(FdsClient* fds, BlobRef blob, StripeMap map, Options opts);
  ~StripedBlob() override;

  // Call once, before any IO: fences the blob against earlier writers
  // (FdsClient::Fence; not for read-only), then resyncs the tracts marked
  // in the intent bitmap (see above); done(0) when every marked tract's
  // replicas agree or, if they cannot be compared now, is a suspect.
  void Recover(Done done) override;
  std::string recover_report() const override;
  const RecoverStats& recover_stats() const { return rstats_; }
  const WriteIntent* intent() const { return intent_.get(); }
  // Resyncs one tract now (Recover, repairs, tests): replicas that differ
  // get the chunks of one readable replica; differing/chunks_copied count
  // it. The caller makes sure no write to the tract is in flight.
  void ResyncTract(uint64_t tract, Done done, uint32_t deadline_ms = 0);
  // Tracts whose replicas may differ while we run (a write to them failed,
  // or Recover could not compare them): kept marked, and resynced in the
  // background (new writes to the tract wait meanwhile) until it works.
  size_t suspects() const { return suspects_.size(); }
  // A write came back -EPERM: a newer writer fenced the blob. From then on
  // every Write/Zero fails with -EPERM here (a reconnect would otherwise get
  // past the server's fence) and nothing is repaired.
  bool fenced() const { return fenced_; }

  uint64_t size() const override { return map_.volume_size(); }
  void Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) override;
  void Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) override;
  void Zero(uint64_t off, uint64_t len, bool keep_alloc, Done done) override;
  // Allocation of a prefix of [off, off+len) (at most 64 stripe pieces), as
  // NBD base:allocation extents at 4 KiB granularity.
  void Allocation(uint64_t off, uint64_t len, ExtentsDone done) override;

  const StripeMap& map() const { return map_; }
  const BlobRef& blob() const { return blob_; }

 private:
  void WriteNow(uint64_t off, uint64_t len, const uint8_t* buf, Done done);
  void ZeroNow(uint64_t off, uint64_t len, bool keep_alloc, Done done);
  // Runs op once the tracts of [off, off+len) are marked; releases them after.
  void WithIntent(uint64_t off, uint64_t len, std::function<void(Done)> op, Done done);
  void PersistIntent(uint64_t chunk, const uint8_t* data, Done done);
  void CopyRun(uint64_t tract, uint32_t c0, uint32_t c1, Done done);
  void SweepTick();
  std::string BlobName() const;  // for log lines
  void MarkSuspect(uint64_t t, int err);
  void Fenced(int err);
  // 0: may write; -EPERM: never (fenced, or the gate says so); -EAGAIN: the
  // gate says not yet.
  int GateCheck();
  // Runs retry once the gate opens or closes for good (polled).
  void WaitForGate(std::function<void()> retry);
  // Issues op once the gate allows (it is asked again: marking the tracts
  // may have taken a while); release(err, issued) in every case.
  void IssueGated(std::function<void(Done)> op, std::function<void(int, bool)> release);
  void SendPersist(uint64_t chunk, std::shared_ptr<std::vector<uint8_t>> copy, Done done);
  void GateTick();
  void ArmGateTimer();  // GateTick in 20 ms
  void RepairNext(uint64_t now_ns);
  void StartRepair();
  struct RecoverState;
  void RecoverIntent(Done done);
  void RecoverPump(std::shared_ptr<RecoverState> st);

  FdsClient* fds_;
  BlobRef blob_;
  StripeMap map_;
  Options opts_;
  std::unique_ptr<WriteIntent> intent_;
  Loop::TimerId sweep_timer_;
  RecoverStats rstats_;
  std::set<uint64_t> suspects_;
  bool fenced_ = false;  // a newer writer fenced the blob: every write fails
  std::vector<std::function<void()>> gate_waiters_;
  Loop::TimerId gate_timer_;
  bool gate_timer_armed_ = false;
  Loop::TimerId refence_timer_;
  bool refence_armed_ = false;
  void RetryFenceLater();
  uint64_t gate_wait_since_ns_ = 0, gate_logged_ns_ = 0;
  // Tracts being repaired, with the writes waiting for them.
  std::unordered_map<uint64_t, std::vector<std::function<void()>>> gated_;
  struct {
    bool active = false, started = false;
    uint64_t tract = 0, not_before_ns = 0;
  } repair_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace flurry
