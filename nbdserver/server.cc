// SPDX-License-Identifier: Apache-2.0
#include "nbdserver/server.h"

#include <unistd.h>

#include "common/log.h"
#include "common/net.h"

namespace flurry {

NbdServer::NbdServer(Loop* loop, NbdServerOptions opts) : loop_(loop), opts_(std::move(opts)) {
  exports_.SetDefault(opts_.default_export);
}

NbdServer::~NbdServer() {
  *alive_ = false;
  for (auto& l : listeners_) {
    if (l->fd >= 0) close(l->fd);
  }
  for (int fd : bound_) close(fd);
}

void NbdServer::AddExport(const std::string& name, BlockDevice* dev, bool read_only) {
  exports_.Add(name, dev, read_only);
}

void NbdServer::SetDefaultExport(const std::string& name) {
  opts_.default_export = name;
  exports_.SetDefault(name);
}

Status NbdServer::ListenTcp(const HostPort& addr) {
  Status s = BindTcp(addr);
  return s.ok() ? StartAccepting() : s;
}

Status NbdServer::ListenUnix(const std::string& path) {
  Status s = BindUnix(path);
  return s.ok() ? StartAccepting() : s;
}

Status NbdServer::BindTcp(const HostPort& addr) {
  auto fd = flurry::ListenTcp(addr);
  if (!fd) return Status::Error(fd.err(), "nbd: listen on " + addr.ToString() + ": " + errstr(fd.err()));
  auto port = BoundPort(*fd);
  tcp_port_ = port ? *port : addr.port;
  bound_.push_back(*fd);
  return Status::Ok();
}

Status NbdServer::BindUnix(const std::string& path) {
  auto fd = flurry::ListenUnix(path);
  if (!fd) return Status::Error(fd.err(), "nbd: listen on " + path + ": " + errstr(fd.err()));
  bound_.push_back(*fd);
  return Status::Ok();
}

Status NbdServer::StartAccepting() {
  auto fds = std::move(bound_);
  bound_.clear();
  Status first = Status::Ok();
  for (int fd : fds) {
    Status s = StartListener(fd);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status NbdServer::StartListener(int fd) {
  if (shutting_down_) {
    close(fd);
    return Status::Error(-ESHUTDOWN, "nbd: server is shutting down");
  }
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  Listener* raw = l.get();
  listeners_.push_back(std::move(l));
  Accept(raw);
  return Status::Ok();
}

void NbdServer::Accept(Listener* l) {
  l->accept_pending = true;
  std::weak_ptr<bool> alive = alive_;
  loop_->Accept(l->fd, [this, l, alive](int r) {
    if (alive.expired()) {
      if (r >= 0) close(r);
      return;
    }
    OnAccept(l, r);
  });
}

void NbdServer::OnAccept(Listener* l, int r) {
  l->accept_pending = false;
  if (shutting_down_) {
    if (r >= 0) close(r);
    close(l->fd);
    l->fd = -1;
    return MaybeShutdownDone();
  }
  if (r < 0) {
    if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
      // Out of descriptors: back off instead of spinning.
      FLOG_WARN("nbd: accept: %s", errstr(r).c_str());
      std::weak_ptr<bool> alive = alive_;
      loop_->AddTimer(100000000ull, [this, l, alive] {
        if (!alive.expired() && !shutting_down_) Accept(l);
      });
      return;
    }
    return Accept(l);
  }
  if (conns_.size() >= opts_.max_connections) {
    FLOG_WARN("nbd: connection limit (%u) reached; refusing a client", opts_.max_connections);
    close(r);
    return Accept(l);
  }
  SetNoDelay(r);  // harmless failure on unix sockets
  nbd::ConnectionOptions co;
  co.handshake.max_option_len = opts_.max_option_len;
  co.handshake.max_options = opts_.max_options;
  co.handshake.hard_max_payload = opts_.hard_max_payload;
  co.max_inflight = opts_.max_inflight_per_conn;
  co.max_buffered_bytes = opts_.max_buffered_bytes_per_conn;
  co.handshake_timeout_ms = opts_.handshake_timeout_ms;
  std::weak_ptr<bool> alive = alive_;
  auto c = std::make_shared<nbd::Connection>(loop_, r, &exports_, co,
                                             [this, alive](nbd::Connection* c) {
                                               if (!alive.expired()) OnConnectionClosed(c);
                                             });
  conns_.emplace(c.get(), c);
  c->Start();
  Accept(l);
}

void NbdServer::OnConnectionClosed(nbd::Connection* c) {
  conns_.erase(c);
  MaybeShutdownDone();
}

void NbdServer::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  for (auto& l : listeners_) {
    if (l->accept_pending) {
      loop_->CancelFd(l->fd);
    } else if (l->fd >= 0) {
      close(l->fd);
      l->fd = -1;
    }
  }
  // Copy: BeginShutdown may (via a posted callback) erase entries later.
  std::vector<std::shared_ptr<nbd::Connection>> conns;
  for (auto& [p, c] : conns_) conns.push_back(c);
  for (auto& c : conns) c->BeginShutdown();
  MaybeShutdownDone();
}

void NbdServer::MaybeShutdownDone() {
  if (!shutting_down_ || !shutdown_done_ || !conns_.empty()) return;
  for (auto& l : listeners_) {
    if (l->accept_pending) return;
  }
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  loop_->Post(std::move(done));
}

std::map<std::string, nbd::ExportStats> NbdServer::Stats() const {
  std::map<std::string, nbd::ExportStats> out;
  for (const auto& [name, e] : exports_.all()) out[name] = *e.stats;
  return out;
}

}  // namespace flurry
