// SPDX-License-Identifier: Apache-2.0
//
// NbdServer: serves named BlockDevices over the NBD protocol (fixed newstyle
// handshake, simple and structured replies, base:allocation) on TCP and/or
// unix sockets, all IO through one flurry::Loop.
//
// Usage (on the loop thread):
//   NbdServer srv(loop, {});
//   srv.AddExport("disk", &dev);            // AddExport("ro", &dev2, true)
//   srv.SetDefaultExport("disk");           // what the name "" means
//   Status s = srv.ListenTcp({"127.0.0.1", 10809});
//   ... loop->Run() ...
//   srv.Shutdown([&] { loop->Stop(); });
//
// Contract
// - Loop-thread only; not thread-safe (use Loop::PostFromAnyThread to reach
//   it from elsewhere). Exports may be added at any time; existing
//   connections keep the export they negotiated.
// - BlockDevices are not owned and must outlive the server's connections,
//   i.e. stay valid until Shutdown()'s callback has run.
// - Shutdown(done): stops accepting, lets every connection finish its
//   in-flight requests and send their replies, closes them (connections
//   still negotiating are dropped), then calls done on the loop thread. The
//   NbdServer may be destroyed once done has run (or if the loop never ran).
// - Bounds: max_connections (extra clients are closed on accept),
//   max_inflight per connection (reading pauses), max_buffered_bytes of
//   payloads and replies per connection, hard_max_payload for a WRITE
//   (beyond it the client is disconnected), option length/count limits and
//   a handshake timeout. A misbehaving client only ever loses its own
//   connection.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/loop.h"
#include "common/result.h"
#include "common/units.h"
#include "nbdserver/block_device.h"
#include "nbdserver/connection.h"
#include "nbdserver/exports.h"

namespace flurry {

struct NbdServerOptions {
  uint32_t max_connections = 64;
  uint32_t max_inflight_per_conn = 128;
  uint64_t max_buffered_bytes_per_conn = 64ull << 20;
  uint32_t hard_max_payload = 32u << 20;  // spec: <= 32 MiB is never a DoS
  uint32_t max_option_len = 64 * 1024;
  uint32_t max_options = 128;
  uint64_t handshake_timeout_ms = 30000;
  std::string default_export;  // the export "" names; empty = none
};

class NbdServer {
 public:
  NbdServer(Loop* loop, NbdServerOptions opts);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // read_only is OR-ed with dev->info().read_only.
  void AddExport(const std::string& name, BlockDevice* dev, bool read_only = false);
  void SetDefaultExport(const std::string& name);

  // Binds and starts accepting. Port 0 picks a free port: see tcp_port().
  Status ListenTcp(const HostPort& addr);
  Status ListenUnix(const std::string& path);
  // The same in two steps: Bind* creates the listening socket (any thread;
  // connections then wait in the kernel's backlog) and StartAccepting
  // (loop thread) serves every bound socket. flurry-disk binds before
  // recovering its volumes, so that a second instance on the same address
  // fails before it touches them, and accepts only once they are open.
  Status BindTcp(const HostPort& addr);
  Status BindUnix(const std::string& path);
  Status StartAccepting();
  // Port of the most recent TCP listener (0 if none).
  uint16_t tcp_port() const { return tcp_port_; }

  void Shutdown(std::function<void()> done);

  // Per-export counters, by export name.
  std::map<std::string, nbd::ExportStats> Stats() const;
  size_t connection_count() const { return conns_.size(); }

 private:
  struct Listener {
    int fd = -1;
    bool accept_pending = false;
  };
  Status StartListener(int fd);
  void Accept(Listener* l);
  void OnAccept(Listener* l, int r);
  void OnConnectionClosed(nbd::Connection* c);
  void MaybeShutdownDone();

  Loop* loop_;
  NbdServerOptions opts_;
  nbd::ExportTable exports_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<int> bound_;  // bound, not yet accepting
  std::unordered_map<nbd::Connection*, std::shared_ptr<nbd::Connection>> conns_;
  uint16_t tcp_port_ = 0;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace flurry
