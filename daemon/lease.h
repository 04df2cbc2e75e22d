// SPDX-License-Identifier: Apache-2.0
//
// VolumeLease: flurry-disk's write lease on one volume, held at flurry-meta
// (LEASE commands, docs/PROTOCOL.md "flurry-meta"). One writer per volume:
// a second flurry-disk, wherever it listens, cannot open a volume another
// one serves, and a writer that lost its lease (it stalled, or could not
// reach flurry-meta, for longer than the lease's ttl while another took the
// volume over) stops writing by itself.
//
// Contract
// - Acquire() blocks: it asks flurry-meta for the lease. If another holder
//   has it: a holder on this host whose process is gone (killed, crashed) is
//   broken at once; a live one on this host is an error at once (unless
//   wait_ms was given); any other is waited for until its lease lapses,
//   within wait_ms (default: its remaining ttl + 1 s).
// - While held, it is renewed every ttl/4 by the process's LeaseRenewer:
//   one thread and one flurry-meta connection for all of a flurry-disk's
//   leases, the RENEWs of a round pipelined (one round trip, however many
//   volumes; flurry-meta serves at most 128 connections). The lease counts
//   as valid until ttl * 3/4 after the send time of the last renewal that
//   succeeded (flurry-meta lets it lapse ttl after it received that
//   renewal; the quarter is the margin for clock rates and requests in
//   flight). Check() (WriteGate) says 0 while valid, -EAGAIN while renewing
//   late, -EPERM for good once flurry-meta says it is lost (another
//   generation was granted, or the volume is gone). Validity runs on
//   CLOCK_BOOTTIME, which keeps counting while the machine is suspended.
// - Release() (clean shutdown, after the last write is durable) gives it
//   back; the destructor releases it too unless it was lost. The renewer
//   must outlive its leases.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/units.h"
#include "meta/meta_client.h"
#include "striping/write_gate.h"

namespace flurry {

class VolumeLease;

class LeaseRenewer {
 public:
  explicit LeaseRenewer(const HostPort& meta);
  ~LeaseRenewer();
  LeaseRenewer(const LeaseRenewer&) = delete;
  LeaseRenewer& operator=(const LeaseRenewer&) = delete;
  // The shared flurry-meta connection (ACQUIRE, BREAK, RELEASE use it too).
  MetaClient* client() { return &mc_; }

 private:
  friend class VolumeLease;
  void Add(VolumeLease* l);
  void Remove(VolumeLease* l);  // returns once no round is renewing l
  void Run();

  MetaClient mc_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<VolumeLease*> leases_;  // GUARDED_BY(mu_)
  std::vector<VolumeLease*> round_;   // being renewed now; GUARDED_BY(mu_)
  bool stop_ = false;                 // GUARDED_BY(mu_)
  std::thread thread_;
};

class VolumeLease : public WriteGate {
 public:
  struct Options {
    uint32_t ttl_ms = 10000;
    int64_t wait_ms = -1;  // -1: the default rule above
    // Waits ms while Acquire waits for another holder; false = give up
    // (a stop signal): Acquire then fails with -EINTR. Default: sleeps.
    std::function<bool(uint32_t ms)> sleep;
  };
  static Result<std::unique_ptr<VolumeLease>> Acquire(LeaseRenewer* renewer, const std::string& volume,
                                                      Options opts, Status* why);
  ~VolumeLease() override;

  int Check(uint64_t now_ns) const override;
  const char* what() const override { return "write lease"; }
  uint64_t writer_gen() const override { return gen_; }
  void Release();
  uint64_t gen() const { return gen_; }

  // This process's holder id: flurry-disk/HOST/BOOT_ID/PIDNS/PID/STARTTIME.
  static std::string SelfHolder();
  // For a holder id of this host (same boot): 1 its process is running,
  // 0 it is gone; -1 not this host's (or not one of ours).
  static int LocalHolderAlive(const std::string& holder);

 private:
  friend class LeaseRenewer;
  VolumeLease(LeaseRenewer* renewer, std::string volume, Options opts);
  // The renewer's round: the RENEW request, then its reply (renewer thread,
  // under the renewer's lock).
  std::string RenewRequest() const;
  void OnRenewed(const MetaReply& rep, uint64_t t_send, uint64_t t_done);

  LeaseRenewer* renewer_;
  std::string volume_;
  Options opts_;
  uint64_t gen_ = 0;
  std::atomic<uint64_t> valid_until_ns_{0};
  std::atomic<bool> lost_{false};
  // Renewal state: the renewer thread's (set before Add).
  uint64_t next_ns_ = 0;  // UINT64_MAX once lost: never renewed again
  uint64_t last_warn_ns_ = 0;
  bool late_ = false;
  bool released_ = false;
};

}  // namespace flurry
