// SPDX-License-Identifier: Apache-2.0
//
// FdsClient::Conn: one pipelined connection to a tract server. Internal to
// fdsclient; loop thread only. Requests are sent in batches with sendmsg
// (payloads straight from the caller's buffer); replies are matched by id
// and read payloads are received straight into the caller's buffer.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/loop.h"
#include "common/tract_protocol.h"
#include "fdsclient/fds_client.h"

namespace flurry {

// One request on the wire, for one replica of one Op.
struct FdsReq {
  tractproto::RequestHeader hdr{};
  const uint8_t* payload = nullptr;
  uint64_t deadline_ns = 0;  // backstop: break the connection if still unanswered
  // Where a successful reply's payload goes (null = discard).
  std::vector<uint8_t>* aux_sink = nullptr;
  uint8_t* data_sink = nullptr;
  uint32_t data_len = 0;
  // Called once with the status (after payload receipt and verification).
  std::function<void(int res)> done;
};

class FdsClient::Conn {
 public:
  // local_socket: try the server's abstract unix socket before TCP
  // (common/net.h LocalTractSocketName).
  Conn(Loop* loop, std::string addr, bool local_socket, std::function<void(Conn*)> on_dead);
  // Queues a request (takes ownership).
  void Send(FdsReq* r);
  // Fails every pending request with err and closes the socket.
  void Break(int err);
  // Breaks the connection if it has requests outstanding and made no
  // progress for idle_timeout_ns, or a request is past its deadline_ns.
  void ExpireTimeouts(uint64_t now_ns, uint64_t idle_timeout_ns);
  bool broken() const { return broken_; }
  const std::string& addr() const { return addr_; }

 private:
  void Connect(bool local_socket);
  void OnConnected(int res);  // the connect finished (res < 0: failed)
  void Flush();
  void OnSent(int res);
  void PostRecv();
  void OnRecv(int res);
  void Parse();
  void FinishReply();
  void MaybeDelete();

  Loop* loop_;
  std::string addr_;
  std::function<void(Conn*)> on_dead_;
  int fd_ = -1;
  bool connected_ = false, broken_ = false, recv_in_flight_ = false, send_in_flight_ = false;
  bool connect_in_flight_ = false, deleting_ = false, flush_posted_ = false;
  sockaddr_storage sa_{};
  socklen_t salen_ = 0;
  std::deque<FdsReq*> sendq_;   // not yet fully sent
  size_t sent_ = 0;             // bytes of sendq_.front() already sent
  std::vector<iovec> iov_;
  msghdr msg_{};
  std::unordered_map<uint64_t, FdsReq*> pending_;  // sent or queued, awaiting reply
  uint64_t last_progress_ns_ = 0;  // last byte sent / reply received, or idle -> busy
  // Receive state.
  std::vector<uint8_t> rbuf_;
  size_t rstart_ = 0, rend_ = 0;
  bool in_payload_ = false;
  tractproto::ReplyHeader rh_{};
  FdsReq* cur_ = nullptr;
  struct Seg { uint8_t* p; size_t n; };
  Seg segs_[2]{};
  int nsegs_ = 0, seg_ = 0;
  size_t seg_off_ = 0;
  std::vector<uint8_t> discard_;
};

}  // namespace flurry
