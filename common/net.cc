// SPDX-License-Identifier: Apache-2.0
#include "common/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

namespace flurry {
namespace {

Result<addrinfo*> Resolve(const HostPort& addr, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int r = getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (r != 0) return Result<addrinfo*>::error(-EHOSTUNREACH);
  return res;
}

}  // namespace

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Result<int> ListenTcp(const HostPort& addr, int backlog) {
  auto ai = Resolve(addr, true);
  if (!ai) return Result<int>::error(ai.err());
  int err = -EADDRNOTAVAIL;
  for (addrinfo* a = *ai; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) { err = -errno; continue; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, backlog) == 0) {
      freeaddrinfo(*ai);
      return fd;
    }
    err = -errno;
    close(fd);
  }
  freeaddrinfo(*ai);
  return Result<int>::error(err);
}

Result<int> ListenUnix(const std::string& path, int backlog) {
  sockaddr_un sa{};
  if (path.size() >= sizeof sa.sun_path) return Result<int>::error(-ENAMETOOLONG);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Result<int>::error(-errno);
  // A stale socket file (its server gone) is replaced; a live one is not.
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    close(fd);
    return Result<int>::error(-EADDRINUSE);
  }
  close(fd);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Result<int>::error(-errno);
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(fd, backlog) < 0) {
    int e = -errno;
    close(fd);
    return Result<int>::error(e);
  }
  return fd;
}

namespace {
// sun_path holds the leading NUL plus the name.
bool FitsAbstract(const std::string& name) {
  return !name.empty() && name.size() + 1 <= sizeof(sockaddr_un::sun_path);
}

socklen_t AbstractAddr(const std::string& name, sockaddr_un* sa) {
  *sa = sockaddr_un{};
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}
}  // namespace

std::string LocalTractSocketName(const std::string& addr) {
  std::string name = "flurry-tract/" + addr;
  return FitsAbstract(name) ? name : std::string();
}

Result<int> ListenAbstract(const std::string& name, int backlog) {
  if (!FitsAbstract(name)) return Result<int>::error(-ENAMETOOLONG);
  sockaddr_un sa;
  socklen_t len = AbstractAddr(name, &sa);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Result<int>::error(-errno);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), len) < 0 || listen(fd, backlog) < 0) {
    int e = -errno;
    close(fd);
    return Result<int>::error(e);
  }
  return fd;
}

Result<int> ConnectAbstract(const std::string& name) {
  if (!FitsAbstract(name)) return Result<int>::error(-ENAMETOOLONG);
  sockaddr_un sa;
  socklen_t len = AbstractAddr(name, &sa);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Result<int>::error(-errno);
  // A unix stream connect completes at once, or fails at once (nothing
  // listens: ECONNREFUSED; backlog full: EAGAIN). Never blocks the caller.
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) < 0) {
    int e = -errno;
    close(fd);
    return Result<int>::error(e);
  }
  // Anyone may bind an abstract name: trust only a listener running as root
  // or as us, never another user's process squatting the name.
  ucred cred{};
  socklen_t cl = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    close(fd);
    return Result<int>::error(-EPERM);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = -errno;
    close(fd);
    return Result<int>::error(e);
  }
  return fd;
}

Result<uint16_t> BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return Result<uint16_t>::error(-errno);
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return Result<uint16_t>::error(-EAFNOSUPPORT);
}

Result<int> ConnectTcp(const HostPort& addr, int timeout_ms) {
  auto ai = Resolve(addr, false);
  if (!ai) return Result<int>::error(ai.err());
  int err = -ECONNREFUSED;
  for (addrinfo* a = *ai; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) { err = -errno; continue; }
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      r = poll(&pfd, 1, timeout_ms);
      if (r == 0) { err = -ETIMEDOUT; close(fd); continue; }
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      r = soerr ? -1 : 0;
      errno = soerr;
    }
    if (r == 0) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      SetNoDelay(fd);
      freeaddrinfo(*ai);
      return fd;
    }
    err = -errno;
    close(fd);
  }
  freeaddrinfo(*ai);
  return Result<int>::error(err);
}

int WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

int ReadAll(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -ECONNRESET;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace flurry
