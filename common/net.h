// SPDX-License-Identifier: Apache-2.0
//
// Socket helpers. All return a file descriptor or a negative errno.
#pragma once

#include <string>

#include "common/result.h"
#include "common/units.h"

namespace flurry {

// Resolves and binds a listening TCP socket (SO_REUSEADDR, CLOEXEC). With
// port 0 the kernel picks one; BoundPort() tells which.
Result<int> ListenTcp(const HostPort& addr, int backlog = 128);
Result<int> ListenUnix(const std::string& path, int backlog = 128);
Result<uint16_t> BoundPort(int fd);
// Blocking connect with a timeout; sets TCP_NODELAY. Returns the fd.
Result<int> ConnectTcp(const HostPort& addr, int timeout_ms);
void SetNoDelay(int fd);
// Blocking helpers for control paths (never used on the IO hot path).
int WriteAll(int fd, const void* buf, size_t len);   // 0 or -errno
int ReadAll(int fd, void* buf, size_t len);          // 0, -errno, or -ECONNRESET on EOF

}  // namespace flurry
