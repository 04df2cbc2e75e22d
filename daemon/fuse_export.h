// SPDX-License-Identifier: Apache-2.0
//
// FuseExport: BlockDevices exposed as fixed-size regular files
// MOUNTPOINT/<name> through libfuse3 (low-level API), so that `losetup`
// can turn them into kernel block devices.
//
// Contract
// - Files: each FuseFile becomes one regular file in the mount's root
//   directory, size = device size, mode 0600 (0400 when read_only or the
//   device says info().read_only), owned by the user that called Start().
//   Names must be non-empty, unique, at most 255 bytes, without '/', and not
//   "." or "..".
// - Operations: lookup, getattr, readdir and statfs of the root; open (always
//   FOPEN_DIRECT_IO, no kept cache: the page cache is bypassed, so O_DIRECT
//   opens work and every read and write reaches the device), read, write,
//   fsync and flush (-> BlockDevice::Flush: a real durability barrier for
//   every write acknowledged before), fallocate, and lseek SEEK_DATA /
//   SEEK_HOLE from BlockDevice::BlockStatus (holes = kExtentHole extents;
//   without can_block_status everything is data). Everything else fails:
//   changing the size (truncate, O_TRUNC, growing fallocate) -> EPERM/EFBIG,
//   chmod/chown -> EPERM, creating or removing files -> ENOSYS. Timestamps
//   are accepted and ignored.
// - fallocate: mode 0 or KEEP_SIZE inside the file: success, nothing to do
//   (the device is always "allocated"). PUNCH_HOLE|KEEP_SIZE ->
//   BlockDevice::Zero(may_trim=true) — a punched range must read back as
//   zeros, which Trim alone does not promise. ZERO_RANGE ->
//   BlockDevice::Zero(may_trim=false). Other modes -> EOPNOTSUPP.
// - IO rules: reads past the end return 0 bytes (short at the end); writes
//   starting at or past the end fail with ENOSPC and are short at the end.
//   When the device's min_block > 1, offsets and lengths must be multiples
//   of it (EINVAL otherwise, as O_DIRECT). Requests larger than
//   info().max_io are split; up to kWindow pieces of one request are in
//   flight at once; the first error wins.
// - Threading: BlockDevice methods run only on the Loop's thread (posted
//   with Loop::PostFromAnyThread). FUSE requests are read by `threads`
//   session threads of our own and answered asynchronously from the loop
//   thread (fuse_reply_* is thread-safe), so no thread ever blocks on IO
//   and many requests (e.g. from the loop driver) are in flight at once.
// - Start() and Stop() must be called from a thread other than the loop
//   thread, while the loop runs (both wait for it). Stop() stops reading
//   requests, waits until every request already handed to the loop has
//   been answered, then unmounts (lazily: a still-attached loop device sees
//   EIO afterwards) and frees the session. It is idempotent and called by
//   the destructor. Devices must outlive Stop().
// - Mount options: fsname=flurry,subtype=flurry,default_permissions.
//   default_permissions makes the kernel enforce the modes above. Without
//   allow_other only the mounting user (root for the daemon, which is what
//   losetup needs) can open the files; set allow_other to let other users
//   in (the modes still apply). Nothing else is allowed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "nbdserver/block_device.h"

namespace flurry {

struct FuseFile {
  std::string name;
  BlockDevice* device = nullptr;  // not owned; lives on the Loop
  bool read_only = false;
};

struct FuseExportOptions {
  unsigned threads = 2;      // session threads reading /dev/fuse
  bool allow_other = false;  // let users other than the mounter open files
  bool debug = false;        // libfuse request tracing to stderr
};

class FuseExport {
 public:
  // Pieces of one request in flight at once on the device.
  static constexpr unsigned kWindow = 8;

  // Mounts `mountpoint` (an existing directory) and starts serving. Errors:
  // -EINVAL (bad names, null device, bad options), -ENOTCONN or the mount's
  // errno; the reason is logged.
  static Result<std::unique_ptr<FuseExport>> Start(Loop* loop, std::string mountpoint,
                                                   std::vector<FuseFile> files,
                                                   FuseExportOptions options = {});
  ~FuseExport();
  FuseExport(const FuseExport&) = delete;
  FuseExport& operator=(const FuseExport&) = delete;

  void Stop();
  const std::string& mountpoint() const;

  class Impl;

 private:
  explicit FuseExport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flurry
