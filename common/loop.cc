// SPDX-License-Identifier: Apache-2.0
#include "common/loop.h"

#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace flurry {

struct Loop::Op {
  Callback cb;
};

Result<std::unique_ptr<Loop>> Loop::Create(unsigned entries, bool single_thread) {
  std::unique_ptr<Loop> loop(new Loop());
  int r = -EINVAL;
#if defined(IORING_SETUP_DEFER_TASKRUN) && defined(IORING_SETUP_SINGLE_ISSUER)
  if (single_thread) {
    // Disabled until the first RunOnce: the thread that enables the ring
    // becomes its only issuer, so a loop may be built on one thread and run
    // on another.
    io_uring_params d{};
    d.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
    r = io_uring_queue_init_params(entries, &loop->ring_, &d);
    if (r >= 0) loop->disabled_ = true;
  }
#else
  (void)single_thread;
#endif
  io_uring_params p{};
#ifdef IORING_SETUP_COOP_TASKRUN
  p.flags |= IORING_SETUP_COOP_TASKRUN;
#endif
  if (r < 0) r = io_uring_queue_init_params(entries, &loop->ring_, &p);
  if (r < 0) {
    // Older kernels reject unknown setup flags: retry plain.
    io_uring_params plain{};
    r = io_uring_queue_init_params(entries, &loop->ring_, &plain);
    if (r < 0) return Result<std::unique_ptr<Loop>>::error(r);
  }
  loop->ring_ok_ = true;
  loop->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (loop->wake_fd_ < 0) return Result<std::unique_ptr<Loop>>::error(-errno);
  loop->ArmWakeup();
  return loop;
}

Loop::~Loop() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
  if (wake_fd_ >= 0) close(wake_fd_);
  for (Op* op : free_ops_) delete op;
}

uint64_t Loop::NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

void Loop::EnableIfNeeded() {
  if (!disabled_) return;
  disabled_ = false;
  // (liburing 2.3 declares io_uring_enable_rings but does not export it.)
  if (syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0) {
    // Every later io_uring_enter would fail: the loop could only spin.
    fprintf(stderr, "flurry: cannot enable the io_uring ring: %s\n", strerror(errno));
    abort();
  }
}

io_uring_sqe* Loop::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    EnableIfNeeded();
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

Loop::Op* Loop::NewOp(Callback cb) {
  Op* op;
  if (!free_ops_.empty()) {
    op = free_ops_.back();
    free_ops_.pop_back();
  } else {
    op = new Op();
  }
  op->cb = std::move(cb);
  ++in_flight_;
  return op;
}

void Loop::ArmWakeup() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data(sqe, nullptr);  // nullptr marks the wakeup read
}

#define FLURRY_SUBMIT(prep_call)       \
  io_uring_sqe* sqe = GetSqe();        \
  prep_call;                           \
  io_uring_sqe_set_data(sqe, NewOp(std::move(cb)))

void Loop::Read(int fd, void* buf, size_t len, uint64_t off, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(len), off));
}
void Loop::Write(int fd, const void* buf, size_t len, uint64_t off, int rw_flags, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_write(sqe, fd, buf, static_cast<unsigned>(len), off);
                sqe->rw_flags = rw_flags);
}
void Loop::Readv(int fd, const iovec* iov, int iovcnt, uint64_t off, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_readv(sqe, fd, iov, iovcnt, off));
}
void Loop::Writev(int fd, const iovec* iov, int iovcnt, uint64_t off, int rw_flags, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_writev(sqe, fd, iov, iovcnt, off); sqe->rw_flags = rw_flags);
}
void Loop::Fsync(int fd, bool datasync, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0));
}
void Loop::Fallocate(int fd, int mode, uint64_t off, uint64_t len, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_fallocate(sqe, fd, mode, off, len));
}
void Loop::Unlinkat(int dirfd, const char* path, int flags, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_unlinkat(sqe, dirfd, path, flags));
}
void Loop::Recv(int fd, void* buf, size_t len, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_recv(sqe, fd, buf, len, 0));
}
void Loop::Send(int fd, const void* buf, size_t len, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL));
}
void Loop::Sendmsg(int fd, const msghdr* msg, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL));
}
void Loop::Accept(int fd, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC));
}
void Loop::Connect(int fd, const sockaddr* addr, socklen_t len, Callback cb) {
  FLURRY_SUBMIT(io_uring_prep_connect(sqe, fd, addr, len));
}
#undef FLURRY_SUBMIT

void Loop::CancelFd(int fd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  // The cancel's own completion carries a sentinel Op with no callback.
  io_uring_sqe_set_data(sqe, NewOp(nullptr));
}

Loop::TimerId Loop::AddTimer(uint64_t delay_ns, Task cb) {
  TimerId id{NowNs() + delay_ns, ++timer_seq_};
  timers_.emplace(std::make_pair(id.deadline_ns, id.seq), std::move(cb));
  return id;
}

void Loop::CancelTimer(TimerId id) {
  if (id.valid()) timers_.erase(std::make_pair(id.deadline_ns, id.seq));
}

void Loop::Post(Task fn) { posted_.push_back(std::move(fn)); }

void Loop::PostFromAnyThread(Task fn) {
  {
    std::lock_guard<std::mutex> g(remote_mu_);
    remote_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t r = write(wake_fd_, &one, sizeof one);
  (void)r;  // EAGAIN means a wakeup is already pending
}

void Loop::Stop() {
  PostFromAnyThread([this] { stop_ = true; });
}

void Loop::RunPosted() {
  // Callbacks may post more work; loop until quiet, bounded per round.
  for (int round = 0; round < 64 && !posted_.empty(); ++round) {
    std::vector<Task> now;
    now.swap(posted_);
    for (auto& t : now) t();
  }
}

void Loop::FireTimers() {
  uint64_t now = NowNs();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    node.mapped()();
  }
}

bool Loop::RunOnce(int timeout_ms) {
  if (stop_) return false;
  EnableIfNeeded();
  RunPosted();
  FireTimers();
  int64_t wait_ns = timeout_ms < 0 ? -1 : static_cast<int64_t>(timeout_ms) * 1000000;
  if (!timers_.empty()) {
    uint64_t now = NowNs();
    uint64_t d = timers_.begin()->first.first;
    int64_t until = d > now ? static_cast<int64_t>(d - now) : 0;
    if (wait_ns < 0 || until < wait_ns) wait_ns = until;
  }
  if (!posted_.empty()) wait_ns = 0;
  io_uring_cqe* cqe = nullptr;
  int r;
  if (wait_ns < 0) {
    r = io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts{static_cast<long long>(wait_ns / 1000000000),
                         static_cast<long long>(wait_ns % 1000000000)};
    r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  (void)r;  // -ETIME / -EINTR: just process what is there
  unsigned head;
  unsigned seen = 0;
  bool rearm = false;
  // Collect first, then run callbacks: a callback may submit and reap.
  std::vector<std::pair<Op*, int>>& done = done_;
  done.clear();
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    if (op == nullptr) {
      rearm = true;
      continue;
    }
    done.emplace_back(op, cqe->res);
  }
  io_uring_cq_advance(&ring_, seen);
  if (rearm) {
    std::vector<Task> remote;
    {
      std::lock_guard<std::mutex> g(remote_mu_);
      remote.swap(remote_);
    }
    ArmWakeup();
    for (auto& t : remote) t();
  }
  for (size_t i = 0; i < done.size(); ++i) {
    auto [op, res] = done[i];
    Callback cb = std::move(op->cb);
    op->cb = nullptr;
    free_ops_.push_back(op);
    --in_flight_;
    if (cb) cb(res);
  }
  FireTimers();
  RunPosted();
  return !stop_;
}

void Loop::Run() {
  while (RunOnce(-1)) {
  }
}

}  // namespace flurry
