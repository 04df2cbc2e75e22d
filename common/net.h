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

// The co-located shortcut to a tract server (docs/PROTOCOL.md "Local
// sockets"): besides its TCP address a tract server listens on the abstract
// unix socket "flurry-tract/<advertised host:port>" (abstract names, like
// loopback ports, are per network namespace and vanish with the process).
// A client on the same host connects there instead of over TCP. Empty when
// the name would not fit in sun_path.
std::string LocalTractSocketName(const std::string& addr);
// Binds and listens on an abstract unix socket (no file on disk).
Result<int> ListenAbstract(const std::string& name, int backlog = 128);
// Connects (non-blocking connect, then a blocking socket) to an abstract
// unix socket whose listener runs as root or as this process's user;
// -ECONNREFUSED when nothing listens there, -EPERM for another user's.
Result<int> ConnectAbstract(const std::string& name);
// Blocking helpers for control paths (never used on the IO hot path).
int WriteAll(int fd, const void* buf, size_t len);   // 0 or -errno
int ReadAll(int fd, void* buf, size_t len);          // 0, -errno, or -ECONNRESET on EOF

}  // namespace flurry
