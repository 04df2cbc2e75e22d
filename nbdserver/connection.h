// SPDX-License-Identifier: Apache-2.0
//
// Connection: one NBD client socket, driven entirely through flurry::Loop
// (io_uring). Glues Handshake, RequestParser and Transmission to the socket.
//
// Contract
// - Loop-thread only; not thread-safe. Owned by NbdServer through a
//   shared_ptr; every pending loop/device callback also holds a reference, so
//   the object (and its fd, closed in the destructor) lives until the last
//   callback has run.
// - Reading: one Recv at a time into a staging buffer, or straight into a
//   WRITE payload (no copy) when a large payload is pending. Reading stops
//   while max_inflight requests are executing or max_buffered_bytes of
//   payloads/replies are held, and resumes as they complete.
// - Writing: replies are sent out of order as requests complete; those
//   completed in one loop turn leave together at the end of the turn. One
//   Sendmsg at a time gathers queued replies into an iovec array (no copies
//   of READ data); short sends resume where they stopped.
// - NBD_CMD_DISC and BeginShutdown(): stop reading, finish in-flight
//   requests, send their replies, close. Protocol violations and socket
//   errors: Abort() -- shut the socket down at once, drop pending replies.
// - on_closed runs (posted to the loop) exactly once, after the socket is
//   shut down and no request or IO is outstanding.
#pragma once

#include <sys/uio.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/loop.h"
#include "nbdserver/exports.h"
#include "nbdserver/handshake.h"
#include "nbdserver/request_parser.h"
#include "nbdserver/transmission.h"

namespace flurry::nbd {

struct ConnectionOptions {
  Handshake::Limits handshake;
  uint32_t max_inflight = 128;
  uint64_t max_buffered_bytes = 64ull << 20;
  uint64_t handshake_timeout_ms = 30000;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Loop* loop, int fd, const ExportTable* exports, ConnectionOptions opts,
             std::function<void(Connection*)> on_closed);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // Graceful: finish in-flight requests, then close.
  void BeginShutdown();
  // Immediate: shut the socket down; replies still pending are dropped.
  void Abort(const std::string& why);

 private:
  bool Paused() const;
  void Pump();
  void ProcessInput();
  void StartRecv();
  void OnRecv(int r);
  void EnterTransmission();
  void HandleRequest(ParsedRequest pr);
  void OnReply(OutMsg m, uint64_t cost);
  void Enqueue(OutMsg m);
  void FlushSend();
  void OnSent(int r);
  void Drain(const std::string& why);
  void MaybeFinish();

  Loop* loop_;
  int fd_;
  ConnectionOptions opts_;
  std::function<void(Connection*)> on_closed_;
  Handshake hs_;
  std::optional<RequestParser> parser_;
  std::optional<Transmission> tx_;
  Loop::TimerId timer_;

  std::vector<uint8_t> rbuf_;
  size_t rstart_ = 0, rend_ = 0;
  bool recv_pending_ = false;
  bool recv_direct_ = false;  // current Recv targets the parser's payload window
  bool processing_ = false;

  uint32_t inflight_ = 0;
  uint64_t inflight_bytes_ = 0;

  std::deque<OutMsg> sendq_;
  uint64_t sendq_bytes_ = 0;
  size_t front_sent_ = 0;
  bool send_pending_ = false;
  bool flush_posted_ = false;  // a FlushSend is posted for the end of this loop turn
  std::vector<iovec> iov_;
  msghdr msg_{};

  bool draining_ = false;  // no more reads; close once idle
  bool closing_ = false;   // socket shut down
  bool finished_ = false;  // on_closed posted
};

}  // namespace flurry::nbd
