// SPDX-License-Identifier: Apache-2.0
#define FUSE_USE_VERSION 35
#include "daemon/fuse_export.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include <fuse_lowlevel.h>

#include "common/log.h"

namespace flurry {

namespace {

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;  // files are 2, 3, ...
constexpr double kAttrTimeout = 1.0;           // sizes never change
constexpr uint32_t kStatBlock = 4096;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

Buffer AllocBuffer(size_t len) {
  size_t rounded = (len + 4095) & ~size_t{4095};
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(4096, rounded ? rounded : 4096)));
}

// What FUSE callbacks need to know about a device, read once on the loop.
struct File {
  std::string name;
  BlockDevice* device = nullptr;
  bool read_only = false;
  uint64_t size = 0;
  uint64_t max_io = 0;  // a multiple of min_block
  uint32_t min_block = 1;
  bool can_zero = false;
  bool can_block_status = false;
};

enum class OpKind { kRead, kWrite, kFlush, kZero, kPunch };

// One FUSE request on its way through the device. Owned by the loop thread
// from the moment it is posted until it is answered.
struct Op {
  fuse_req_t req = nullptr;
  const File* file = nullptr;
  OpKind kind = OpKind::kRead;
  uint64_t off = 0;
  uint64_t end = 0;
  Buffer buf;
  uint64_t next = 0;       // next byte to issue
  unsigned in_flight = 0;  // pieces issued, not completed
  int err = 0;             // first error
  bool pumping = false;
};

bool ValidName(const std::string& n) {
  return !n.empty() && n.size() <= 255 && n != "." && n != ".." &&
         n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}

}  // namespace

class FuseExport::Impl {
 public:
  Impl(Loop* loop, std::string mountpoint, FuseExportOptions options)
      : loop_(loop), mountpoint_(std::move(mountpoint)), options_(options) {}
  ~Impl() { Stop(); }

  int Init(const std::vector<FuseFile>& files);
  void Stop();
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  static Impl* Self(fuse_req_t req) { return static_cast<Impl*>(fuse_req_userdata(req)); }
  const File* FileOf(fuse_ino_t ino) const {
    return ino >= 2 && ino - 2 < files_.size() ? &files_[ino - 2] : nullptr;
  }
  void FillAttr(fuse_ino_t ino, struct stat* st) const;
  void Serve();

  // Loop side.
  void Submit(std::unique_ptr<Op> op);
  void Pump(Op* op);
  void Issue(Op* op, uint64_t off, uint64_t len);
  void Finish(Op* op);
  void SeekStep(fuse_req_t req, const File* f, bool want_data, uint64_t pos);
  void Answered();

  // FUSE low-level callbacks (run on session threads).
  static void OpInit(void* userdata, fuse_conn_info* conn);
  static void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                        fuse_file_info* fi);
  static void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                      fuse_file_info* fi);
  static void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  static void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                          fuse_file_info* fi);
  static void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        fuse_file_info* fi);
  static void OpStatfs(fuse_req_t req, fuse_ino_t ino);
  static void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);

  // Common checks for IO; returns 0 or a negative errno.
  static int CheckRange(const File& f, uint64_t off, uint64_t len);

  Loop* const loop_;
  const std::string mountpoint_;
  const FuseExportOptions options_;
  std::vector<File> files_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  timespec start_time_{};

  fuse_session* se_ = nullptr;
  int stop_fd_ = -1;  // eventfd: readable once Stop() begins
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};

  std::mutex mu_;
  std::condition_variable idle_cv_;
  uint64_t in_flight_ = 0;  // GUARDED_BY(mu_): requests posted, not answered
};

// ---------------------------------------------------------------- lifecycle

int FuseExport::Impl::Init(const std::vector<FuseFile>& in) {
  if (in.empty()) {
    FLOG_ERROR("fuse: nothing to export");
    return -EINVAL;
  }
  if (options_.threads < 1 || options_.threads > 64) {
    FLOG_ERROR("fuse: threads must be in 1..64, not %u", options_.threads);
    return -EINVAL;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if (!ValidName(in[i].name) || in[i].device == nullptr) {
      FLOG_ERROR("fuse: bad export '%s' (empty, '/', '.', '..', too long or no device)",
                 in[i].name.c_str());
      return -EINVAL;
    }
    for (size_t j = 0; j < i; ++j)
      if (in[j].name == in[i].name) {
        FLOG_ERROR("fuse: file name '%s' used twice", in[i].name.c_str());
        return -EINVAL;
      }
  }
  // Device info is read on the loop thread, the only place devices live.
  std::promise<std::vector<File>> got;
  loop_->PostFromAnyThread([&] {
    std::vector<File> out;
    for (const FuseFile& f : in) {
      const BlockDeviceInfo& info = f.device->info();
      File file;
      file.name = f.name;
      file.device = f.device;
      file.read_only = f.read_only || info.read_only;
      file.size = info.size;
      file.min_block = std::max<uint32_t>(info.min_block, 1);
      file.max_io = std::max<uint64_t>(info.max_io / file.min_block * file.min_block, file.min_block);
      file.can_zero = info.can_zero;
      file.can_block_status = info.can_block_status;
      out.push_back(std::move(file));
    }
    got.set_value(std::move(out));
  });
  files_ = got.get_future().get();

  uid_ = getuid();
  gid_ = getgid();
  clock_gettime(CLOCK_REALTIME, &start_time_);

  std::string opts = "fsname=flurry,subtype=flurry,default_permissions";
  if (options_.allow_other) opts += ",allow_other";
  std::vector<const char*> argv = {"flurry-fuse", "-o", opts.c_str()};
  if (options_.debug) argv.push_back("-d");
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));

  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.open = OpOpen;
  ops.release = OpRelease;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.fsync = OpFsync;
  ops.fallocate = OpFallocate;
  ops.readdir = OpReaddir;
  ops.statfs = OpStatfs;
  ops.lseek = OpLseek;

  se_ = fuse_session_new(&args, &ops, sizeof(ops), this);
  fuse_opt_free_args(&args);
  if (se_ == nullptr) {
    FLOG_ERROR("fuse: cannot create session");
    return -EINVAL;
  }
  if (fuse_session_mount(se_, mountpoint_.c_str()) != 0) {
    FLOG_ERROR("fuse: cannot mount %s (is it an existing directory? /dev/fuse usable?)",
               mountpoint_.c_str());
    fuse_session_destroy(se_);
    se_ = nullptr;
    return -ENOTCONN;
  }
  // Non-blocking so that several threads can poll it together: a thread
  // that loses the race for a request gets EAGAIN instead of sleeping in
  // read() where Stop() could not wake it.
  int fd = fuse_session_fd(se_);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    int e = -errno;
    fuse_session_unmount(se_);
    fuse_session_destroy(se_);
    se_ = nullptr;
    return e;
  }
  for (unsigned i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Serve(); });
  FLOG_INFO("fuse: serving %zu file(s) under %s", files_.size(), mountpoint_.c_str());
  return 0;
}

void FuseExport::Impl::Serve() {
  fuse_buf buf{};
  pollfd fds[2] = {{fuse_session_fd(se_), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  while (!fuse_session_exited(se_)) {
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[1].revents & POLLIN)) break;
    int res = fuse_session_receive_buf(se_, &buf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) break;  // 0: unmounted or aborted; the session has exited
    fuse_session_process_buf(se_, &buf);
  }
  std::free(buf.mem);
}

void FuseExport::Impl::Stop() {
  if (se_ == nullptr || stopped_.exchange(true)) return;
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) != sizeof(one)) fuse_session_exit(se_);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  {
    // Answers go to the session's fd, which unmount closes: drain first.
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
  }
  fuse_session_unmount(se_);
  fuse_session_destroy(se_);
  se_ = nullptr;
  close(stop_fd_);
  stop_fd_ = -1;
  FLOG_INFO("fuse: unmounted %s", mountpoint_.c_str());
}

// ------------------------------------------------------------ loop side IO

void FuseExport::Impl::Submit(std::unique_ptr<Op> op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++in_flight_;
  }
  op->next = op->off;
  Op* raw = op.release();
  loop_->PostFromAnyThread([this, raw] { Pump(raw); });
}

void FuseExport::Impl::Pump(Op* op) {
  if (op->pumping) return;  // a synchronous completion inside Issue()
  op->pumping = true;
  if (op->kind == OpKind::kFlush) {
    if (op->next == op->off) {
      op->next = op->end;
      Issue(op, 0, 0);
    }
  } else {
    while (op->in_flight < kWindow && op->next < op->end && op->err == 0) {
      uint64_t n = std::min(op->end - op->next, op->file->max_io);
      uint64_t at = op->next;
      op->next += n;
      Issue(op, at, n);
    }
  }
  op->pumping = false;
  if (op->in_flight == 0 && (op->next >= op->end || op->err != 0)) Finish(op);
}

void FuseExport::Impl::Issue(Op* op, uint64_t off, uint64_t len) {
  ++op->in_flight;
  auto done = [this, op](int res) {
    if (res < 0 && op->err == 0) op->err = res;
    --op->in_flight;
    Pump(op);
  };
  BlockDevice* dev = op->file->device;
  uint32_t n = static_cast<uint32_t>(len);  // len <= max_io (uint32_t)
  switch (op->kind) {
    case OpKind::kRead: dev->Read(off, n, op->buf.get() + (off - op->off), done); break;
    case OpKind::kWrite: dev->Write(off, n, op->buf.get() + (off - op->off), false, done); break;
    case OpKind::kFlush: dev->Flush(done); break;
    case OpKind::kZero: dev->Zero(off, n, false, false, done); break;
    case OpKind::kPunch: dev->Zero(off, n, true, false, done); break;
  }
}

void FuseExport::Impl::Finish(Op* op) {
  std::unique_ptr<Op> owned(op);
  if (op->err != 0) {
    fuse_reply_err(op->req, -op->err);
  } else if (op->kind == OpKind::kRead) {
    fuse_reply_buf(op->req, reinterpret_cast<const char*>(op->buf.get()), op->end - op->off);
  } else if (op->kind == OpKind::kWrite) {
    fuse_reply_write(op->req, op->end - op->off);
  } else {
    fuse_reply_err(op->req, 0);
  }
  owned.reset();
  Answered();
}

void FuseExport::Impl::Answered() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

// SEEK_DATA / SEEK_HOLE: walks BlockStatus from pos, max_io at a time, until
// an extent of the wanted kind shows up. A hole is implied at the end.
void FuseExport::Impl::SeekStep(fuse_req_t req, const File* f, bool want_data, uint64_t pos) {
  if (pos >= f->size) {
    if (want_data) fuse_reply_err(req, ENXIO);
    else fuse_reply_lseek(req, static_cast<off_t>(f->size));
    return Answered();
  }
  uint32_t n = static_cast<uint32_t>(std::min(f->size - pos, f->max_io));
  f->device->BlockStatus(pos, n, [this, req, f, want_data, pos](int res,
                                                               std::vector<BlockExtent> ext) {
    if (res < 0 || ext.empty()) {
      fuse_reply_err(req, res < 0 ? -res : EIO);
      return Answered();
    }
    uint64_t at = pos;
    for (const BlockExtent& e : ext) {
      if (e.length == 0) break;
      bool data = (e.flags & kExtentHole) == 0;
      if (data == want_data) {
        fuse_reply_lseek(req, static_cast<off_t>(at));
        return Answered();
      }
      at += e.length;
    }
    if (at <= pos) {  // no progress: a broken device; don't spin
      fuse_reply_err(req, EIO);
      return Answered();
    }
    // Not found yet: continue on a fresh stack.
    loop_->Post([this, req, f, want_data, at] { SeekStep(req, f, want_data, at); });
  });
}

// ------------------------------------------------------------ FUSE callbacks

void FuseExport::Impl::FillAttr(fuse_ino_t ino, struct stat* st) const {
  *st = {};
  st->st_ino = ino;
  st->st_uid = uid_;
  st->st_gid = gid_;
  st->st_atim = st->st_mtim = st->st_ctim = start_time_;
  st->st_blksize = kStatBlock;
  if (ino == kRootIno) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return;
  }
  const File* f = FileOf(ino);
  st->st_mode = S_IFREG | (f->read_only ? 0400 : 0600);
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(f->size);
  st->st_blocks = static_cast<blkcnt_t>((f->size + 511) / 512);
}

void FuseExport::Impl::OpInit(void*, fuse_conn_info* conn) {
  // Let the kernel keep many direct-IO requests (the loop driver's) in
  // flight; answers come back asynchronously anyway.
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
                  FUSE_CAP_SPLICE_MOVE);
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void FuseExport::Impl::OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Impl* self = Self(req);
  if (parent != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  for (size_t i = 0; i < self->files_.size(); ++i) {
    if (self->files_[i].name != name) continue;
    fuse_entry_param e{};
    e.ino = i + 2;
    e.generation = 1;
    e.attr_timeout = e.entry_timeout = kAttrTimeout;
    self->FillAttr(e.ino, &e.attr);
    return (void)fuse_reply_entry(req, &e);
  }
  fuse_reply_err(req, ENOENT);
}

void FuseExport::Impl::OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Impl* self = Self(req);
  if (ino != kRootIno && self->FileOf(ino) == nullptr) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  self->FillAttr(ino, &st);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void FuseExport::Impl::OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                                 fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (ino != kRootIno && f == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
    return (void)fuse_reply_err(req, EPERM);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    // Fixed-size device: only a no-op "truncate to the current size" passes.
    if (f == nullptr || static_cast<uint64_t>(attr->st_size) != f->size)
      return (void)fuse_reply_err(req, EPERM);
  }
  struct stat st;
  self->FillAttr(ino, &st);  // timestamps are accepted and ignored
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void FuseExport::Impl::OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const File* f = Self(req)->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, ino == kRootIno ? EISDIR : ENOENT);
  if (f->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  fi->direct_io = 1;  // bypass the page cache: O_DIRECT works, IO is real
  fi->keep_cache = 0;
  fuse_reply_open(req, fi);
}

void FuseExport::Impl::OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

int FuseExport::Impl::CheckRange(const File& f, uint64_t off, uint64_t len) {
  if (f.min_block > 1 && (off % f.min_block != 0 || len % f.min_block != 0)) return -EINVAL;
  return 0;
}

void FuseExport::Impl::OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, EISDIR);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  uint64_t o = static_cast<uint64_t>(off);
  if (size == 0 || o >= f->size) return (void)fuse_reply_buf(req, nullptr, 0);
  uint64_t len = std::min<uint64_t>(size, f->size - o);
  if (int e = CheckRange(*f, o, len)) return (void)fuse_reply_err(req, -e);
  auto op = std::make_unique<Op>();
  op->buf = AllocBuffer(len);
  if (!op->buf) return (void)fuse_reply_err(req, ENOMEM);
  op->req = req;
  op->file = f;
  op->kind = OpKind::kRead;
  op->off = o;
  op->end = o + len;
  self->Submit(std::move(op));
}

void FuseExport::Impl::OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size,
                               off_t off, fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, EISDIR);
  if (f->read_only) return (void)fuse_reply_err(req, EROFS);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  uint64_t o = static_cast<uint64_t>(off);
  if (size == 0) return (void)fuse_reply_write(req, 0);
  if (o >= f->size) return (void)fuse_reply_err(req, ENOSPC);
  uint64_t len = std::min<uint64_t>(size, f->size - o);
  if (int e = CheckRange(*f, o, len)) return (void)fuse_reply_err(req, -e);
  auto op = std::make_unique<Op>();
  // libfuse reuses `buf` once we return, and we answer later: copy.
  op->buf = AllocBuffer(len);
  if (!op->buf) return (void)fuse_reply_err(req, ENOMEM);
  std::memcpy(op->buf.get(), buf, len);
  op->req = req;
  op->file = f;
  op->kind = OpKind::kWrite;
  op->off = o;
  op->end = o + len;
  self->Submit(std::move(op));
}

void FuseExport::Impl::OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  OpFsync(req, ino, 0, nullptr);
}

void FuseExport::Impl::OpFsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, ino == kRootIno ? 0 : ENOENT);
  if (f->read_only) return (void)fuse_reply_err(req, 0);  // nothing was written
  auto op = std::make_unique<Op>();
  op->req = req;
  op->file = f;
  op->kind = OpKind::kFlush;
  op->off = 0;
  op->end = 1;
  self->Submit(std::move(op));
}

void FuseExport::Impl::OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                                   fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, ENODEV);
  if (off < 0 || len <= 0) return (void)fuse_reply_err(req, EINVAL);
  if (f->read_only) return (void)fuse_reply_err(req, EROFS);
  const uint64_t o = static_cast<uint64_t>(off);
  const uint64_t l = static_cast<uint64_t>(len);
  const bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
  const bool past_end = o >= f->size || l > f->size - o;
  if (past_end && !keep_size) return (void)fuse_reply_err(req, EFBIG);  // would grow the file
  OpKind kind;
  switch (mode & ~FALLOC_FL_KEEP_SIZE) {
    case 0: return (void)fuse_reply_err(req, 0);  // always allocated
    case FALLOC_FL_PUNCH_HOLE: kind = OpKind::kPunch; break;
    case FALLOC_FL_ZERO_RANGE: kind = OpKind::kZero; break;
    default: return (void)fuse_reply_err(req, EOPNOTSUPP);
  }
  if (!f->can_zero) return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (o >= f->size) return (void)fuse_reply_err(req, 0);  // KEEP_SIZE past the end: nothing
  const uint64_t n = std::min(l, f->size - o);
  if (int e = CheckRange(*f, o, n)) return (void)fuse_reply_err(req, -e);
  auto op = std::make_unique<Op>();
  op->req = req;
  op->file = f;
  op->kind = kind;
  op->off = o;
  op->end = o + n;
  self->Submit(std::move(op));
}

void FuseExport::Impl::OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                                 fuse_file_info*) {
  Impl* self = Self(req);
  if (ino != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  std::vector<char> buf(size);
  size_t used = 0;
  // Entry k (0 ".", 1 "..", 2+ files) has next-offset k + 1.
  const size_t count = self->files_.size() + 2;
  for (size_t k = static_cast<size_t>(std::max<off_t>(off, 0)); k < count; ++k) {
    struct stat st{};
    const char* name;
    if (k < 2) {
      name = k == 0 ? "." : "..";
      st.st_ino = kRootIno;
      st.st_mode = S_IFDIR;
    } else {
      name = self->files_[k - 2].name.c_str();
      st.st_ino = k;  // == file inode (index + 2)
      st.st_mode = S_IFREG;
    }
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, name, &st,
                                    static_cast<off_t>(k + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void FuseExport::Impl::OpStatfs(fuse_req_t req, fuse_ino_t) {
  Impl* self = Self(req);
  struct statvfs sv{};
  uint64_t bytes = 0;
  for (const File& f : self->files_) bytes += f.size;
  sv.f_bsize = sv.f_frsize = kStatBlock;
  sv.f_blocks = (bytes + kStatBlock - 1) / kStatBlock;
  sv.f_files = self->files_.size() + 1;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

void FuseExport::Impl::OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                               fuse_file_info*) {
  Impl* self = Self(req);
  const File* f = self->FileOf(ino);
  if (f == nullptr) return (void)fuse_reply_err(req, EISDIR);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0 || static_cast<uint64_t>(off) >= f->size) return (void)fuse_reply_err(req, ENXIO);
  const bool want_data = whence == SEEK_DATA;
  if (!f->can_block_status)  // all data, one hole at the end
    return (void)fuse_reply_lseek(req, want_data ? off : static_cast<off_t>(f->size));
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    ++self->in_flight_;
  }
  uint64_t pos = static_cast<uint64_t>(off);
  self->loop_->PostFromAnyThread([self, req, f, want_data, pos] {
    self->SeekStep(req, f, want_data, pos);
  });
}

// ----------------------------------------------------------------- public

Result<std::unique_ptr<FuseExport>> FuseExport::Start(Loop* loop, std::string mountpoint,
                                                      std::vector<FuseFile> files,
                                                      FuseExportOptions options) {
  using R = Result<std::unique_ptr<FuseExport>>;
  if (loop == nullptr) return R::error(-EINVAL);
  auto impl = std::make_unique<Impl>(loop, std::move(mountpoint), options);
  if (int e = impl->Init(files); e < 0) return R::error(e);
  return std::unique_ptr<FuseExport>(new FuseExport(std::move(impl)));
}

FuseExport::FuseExport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseExport::~FuseExport() { Stop(); }
void FuseExport::Stop() { impl_->Stop(); }
const std::string& FuseExport::mountpoint() const { return impl_->mountpoint(); }

}  // namespace flurry
