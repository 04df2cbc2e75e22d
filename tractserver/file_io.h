// SPDX-License-Identifier: Apache-2.0
//
// Blocking whole-buffer pread/pwrite for the tract store's synchronous
// paths (tract open and settle, journal init, replay, checkpoint at close).
// Both retry EINTR and short transfers and return 0 or a negative errno.
// FsyncDir makes a directory's entries (created, renamed files) durable.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace flurry::tractstore {

// Reads len bytes at off. Past end of file: zero_fill_eof fills the rest
// with zeros (a sparse or short file reads as zeros), otherwise -EIO.
inline int PreadFull(int fd, void* buf, size_t len, uint64_t off, bool zero_fill_eof) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, static_cast<char*>(buf) + got, len - got, static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == len) return 0;
  if (!zero_fill_eof) return -EIO;
  memset(static_cast<char*>(buf) + got, 0, len - got);
  return 0;
}

inline int PwriteFull(int fd, const void* buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, static_cast<const char*>(buf) + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    done += static_cast<size_t>(n);
  }
  return 0;
}

inline int FsyncDir(const std::string& dir) {
  int fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int r = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return r;
}

// The directory part of a path ("" for a bare file name: the cwd).
inline std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash == 0 ? 1 : slash);
}

}  // namespace flurry::tractstore
