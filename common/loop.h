// SPDX-License-Identifier: Apache-2.0
//
// Loop: a single-threaded io_uring event loop.
//
// Contract
// - Every method except PostFromAnyThread() and Stop() must be called on the
//   loop's own thread (the thread that calls Run()). A Loop is therefore not
//   thread-safe; PostFromAnyThread() is the one way in from other threads.
// - Each asynchronous call queues one SQE and, when it completes, invokes its
//   callback exactly once on the loop thread with the CQE result: >= 0 on
//   success (bytes, fd, ...), a negative errno on failure, the liburing
//   convention. Callbacks must not throw.
// - Buffers, iovecs and msghdrs passed in must stay valid until the callback
//   runs. Short reads/writes are reported as they are; callers handle them.
// - Timers are kept in user space; the loop sleeps in io_uring_wait_cqe with
//   the nearest deadline as its timeout.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <liburing.h>

#include "common/result.h"

namespace flurry {

class Loop {
 public:
  using Callback = std::function<void(int res)>;
  using Task = std::function<void()>;
  struct TimerId {
    uint64_t deadline_ns = 0;
    uint64_t seq = 0;
    bool valid() const { return seq != 0; }
  };

  // single_thread: one thread runs the loop for its whole life (the first
  // to call RunOnce; it may differ from the creating thread, which may only
  // queue work before that). The ring then defers completion work to the
  // moments the loop waits (IORING_SETUP_DEFER_TASKRUN | SINGLE_ISSUER):
  // fewer interrupts, completions in batches. Measured on the 2-core box:
  // +15-30 % IOPS through the tract servers. Kernels without it get the
  // default ring.
  static Result<std::unique_ptr<Loop>> Create(unsigned entries = 256, bool single_thread = false);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // File IO. rw_flags are RWF_* flags (e.g. RWF_DSYNC).
  void Read(int fd, void* buf, size_t len, uint64_t off, Callback cb);
  void Write(int fd, const void* buf, size_t len, uint64_t off, int rw_flags, Callback cb);
  void Readv(int fd, const iovec* iov, int iovcnt, uint64_t off, Callback cb);
  void Writev(int fd, const iovec* iov, int iovcnt, uint64_t off, int rw_flags, Callback cb);
  void Fsync(int fd, bool datasync, Callback cb);
  void Fallocate(int fd, int mode, uint64_t off, uint64_t len, Callback cb);
  // unlinkat(2) in the kernel's async workers (freeing a large file's
  // extents does not stall the loop). path must stay valid until cb runs;
  // flags AT_REMOVEDIR removes a directory. Kernels before 5.11: -EINVAL.
  void Unlinkat(int dirfd, const char* path, int flags, Callback cb);

  // Sockets. Send/Sendmsg use MSG_NOSIGNAL.
  void Recv(int fd, void* buf, size_t len, Callback cb);
  void Send(int fd, const void* buf, size_t len, Callback cb);
  void Sendmsg(int fd, const msghdr* msg, Callback cb);
  void Accept(int fd, Callback cb);
  void Connect(int fd, const sockaddr* addr, socklen_t len, Callback cb);
  // Cancels every pending operation on fd (their callbacks get -ECANCELED).
  void CancelFd(int fd);

  // One-shot timer; cb(0) when it fires. A cancelled timer's callback is
  // never called.
  TimerId AddTimer(uint64_t delay_ns, Task cb);
  void CancelTimer(TimerId id);

  // Runs fn on the loop thread after the current callback returns.
  void Post(Task fn);
  // Thread-safe: queues fn and wakes the loop.
  void PostFromAnyThread(Task fn);

  // Runs until Stop(). Stop() is thread-safe.
  void Run();
  void Stop();
  // Processes whatever is ready, waiting at most timeout_ms (-1 = until
  // something happens). Returns false once stopped.
  bool RunOnce(int timeout_ms);

  static uint64_t NowNs();
  // Stop() has taken effect: nothing more runs (callbacks, timers, posts).
  bool stopped() const { return stop_; }

 private:
  struct Op;
  Loop() = default;
  io_uring_sqe* GetSqe();
  Op* NewOp(Callback cb);
  void ArmWakeup();
  void EnableIfNeeded();
  void RunPosted();
  void FireTimers();

  io_uring ring_{};
  bool ring_ok_ = false;
  bool disabled_ = false;  // single_thread ring not yet enabled (first RunOnce does)
  bool stop_ = false;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  std::vector<Op*> free_ops_;
  std::vector<Task> posted_;
  std::mutex remote_mu_;
  std::vector<Task> remote_;  // GUARDED_BY(remote_mu_)
  std::map<std::pair<uint64_t, uint64_t>, Task> timers_;
  uint64_t timer_seq_ = 0;
  unsigned in_flight_ = 0;
  std::vector<std::pair<Op*, int>> done_;
};

}  // namespace flurry
